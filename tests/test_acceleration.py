"""alignment/acceleration.py: what it changes on each model, that the compiled blocks trace whole (fullgraph) and
give the eager images, and the studio's switch. The tracing runs with ``backend="eager"`` (dynamo without a code
generator): the GPU numbers, inductor included, come from ``python -m evaluations.benchmark_compile``."""

import numpy as np
import pytest
import torch

from alignment import load_pipeline
from alignment.acceleration import REPEATED_BLOCKS, accelerate, compile_regions, fp8_linears, fp8_unavailable
from alignment.defaults import load_guidance_network
from alignment.diffusion_sampler import sample_guided
from alignment.flow_sampler import baseline
from alignment.rewards import load_reward
from studio.settings import StudioSettings

PROMPT = "a red star on a blue background"


def pixels(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_diffusion_pipeline_network_and_reward_compile_whole_and_match_eager():
    pipe, preset = load_pipeline("toy-sdxl", device="cpu")
    network = load_guidance_network().eval().requires_grad_(False)
    reward = load_reward("toy-pickscore")
    before = sample_guided(pipe, PROMPT, network=network, beta=0.3, seed=3, preset=preset, reward=reward)
    done = accelerate(pipe, network=network, reward=reward, backend="eager")
    assert done[0] == "fused qkv" and "compiled guidance network" in done and "compiled vae decoder" in done
    assert any(d.startswith("compiled ") and "BasicTransformerBlock" in d for d in done)
    assert any("CLIPEncoderLayer" in d for d in done)
    after = sample_guided(pipe, PROMPT, network=network, beta=0.3, seed=3, preset=preset, reward=reward)
    diff = np.abs(pixels(before.images[0]) - pixels(after.images[0]))
    assert diff.max() <= 2 and diff.mean() < 0.05  # fused projections round differently, nothing more
    assert float(after.rewards[0]) == pytest.approx(float(before.rewards[0]), abs=1e-3)


def test_flow_pipeline_keeps_its_repeated_context_attention_unfused():
    pipe, preset = load_pipeline("toy-sd3", device="cpu")
    before = baseline(pipe, PROMPT, seed=1, preset=preset, reward="toy-pickscore")
    done = accelerate(pipe, backend="eager")
    assert "fused qkv" not in done  # repeated_context's processor reads q, k and v apart
    assert any("JointTransformerBlock" in d for d in done)
    after = baseline(pipe, PROMPT, seed=1, preset=preset, reward="toy-pickscore")
    assert np.abs(pixels(before.images[0]) - pixels(after.images[0])).max() <= 1


def test_fp8_takes_the_repeated_blocks_linear_layers_and_refuses_clearly_off_an_fp8_gpu():
    pipe, _ = load_pipeline("toy-sd3", device="cpu")
    layers = fp8_linears(pipe.transformer)  # through repeated_context's wrapper
    blocks = [m for m in pipe.transformer.modules() if type(m).__name__ == "JointTransformerBlock"]
    expected = sum(isinstance(m, torch.nn.Linear) and m.in_features % 16 == 0 and m.out_features % 16 == 0
                   for b in blocks for m in b.modules())
    assert len(layers) == expected > 0
    assert all(".transformer_blocks." in f".{name}" for name in layers)  # not the embeddings nor the output layer
    assert any(name.endswith("attn.to_q") for name in layers)
    reason = fp8_unavailable(pipe.transformer)
    assert reason and "compute capability 8.9" in reason and "cpu" in reason
    vae_format = pipe.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="compute capability 8.9"):
        accelerate(pipe, fp8=True, backend="eager")
    # refused before anything changed
    assert pipe.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last) == vae_format
    assert not any(hasattr(b, "_compiled_call_impl") and b._compiled_call_impl is not None for b in blocks)


def test_compile_off_only_changes_memory_format():
    pipe, _ = load_pipeline("toy-sdxl", device="cpu")
    assert accelerate(pipe, compile=False, fuse=False) == ["channels-last unet", "channels-last vae"]


def test_compile_regions_counts_only_named_blocks():
    pipe, _ = load_pipeline("toy-sdxl", device="cpu")
    assert compile_regions(pipe.unet, ("NoSuchBlock",)) == 0
    n = sum(type(m).__name__ == "BasicTransformerBlock" for m in pipe.unet.modules())
    assert compile_regions(pipe.unet, REPEATED_BLOCKS["UNet2DConditionModel"], backend="eager") == n > 0


def test_studio_compile_setting(monkeypatch):
    monkeypatch.delenv("STUDIO_COMPILE", raising=False)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    auto = StudioSettings.from_env()
    assert auto.compile == "auto" and not auto.compiles("cpu") and auto.compiles("cuda:0")
    monkeypatch.setenv("STUDIO_COMPILE", "on")
    assert StudioSettings.from_env().compiles("cpu")
    assert not StudioSettings.from_env(compile="off").compiles("cuda")  # --no-compile wins over the environment
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")  # ZeroGPU does not support torch.compile
    assert not StudioSettings.from_env(compile="auto").compiles("cuda")
    monkeypatch.setenv("STUDIO_COMPILE", "sometimes")
    with pytest.raises(ValueError, match="STUDIO_COMPILE"):
        StudioSettings.from_env()


def test_studio_warm_up_accelerates_and_renders_every_model_when_compiling(monkeypatch, caplog):
    import alignment.acceleration as acceleration
    from studio.engine import WARM_LOG, WARM_UP_PROMPT, Engine

    calls = []
    monkeypatch.setattr(acceleration, "accelerate", lambda pipe=None, fullgraph=True, **kw: calls.append(
        (type(pipe).__name__ if pipe is not None else None, sorted(kw), fullgraph)) or [])
    engine = Engine(StudioSettings(compile="on"))
    rendered = []
    monkeypatch.setattr(engine, "explore", lambda model, prompt, seed, **kw: rendered.append((model, prompt, seed)))
    with caplog.at_level("INFO", logger="studio.engine"):
        engine.warm_up()
    assert rendered == [(m, WARM_UP_PROMPT, 0) for m in engine.models]
    assert caplog.messages[-1].startswith(WARM_LOG)  # last: what a script waits for before its first click
    # a server falls back to eager on a graph break rather than failing a request
    assert ("StableDiffusionXLPipeline", [], False) in calls and ("StableDiffusion3Pipeline", [], False) in calls
    assert (None, ["network"], False) in calls and (None, ["reward"], False) in calls
    assert Engine(StudioSettings(compile="off")).settings.compiles("cuda") is False


def test_benchmark_compile_smoke_run_writes_side_by_side_rows(tmp_path):
    import json

    from evaluations import benchmark_compile

    out = tmp_path / "compile.json"
    assert benchmark_compile.main(["--smoke", "--sections", "sdxl", "--batches", "2", "--repeats", "1",
                                   "--warmup", "0", "--out", str(out)]) == 0
    sdxl = json.loads(out.read_text())["sdxl"]
    assert set(sdxl["rows"]) == {"baseline b2", "guided b2", "scoring b2"}
    assert all(r["eager_ms"] > 0 and r["accelerated_ms"] > 0 for r in sdxl["rows"].values())
    assert sdxl["compile_seconds"] > 0 and sdxl["same_seed"]["max_abs"] <= 2
    assert sdxl["guided_over_baseline_b2"]["eager"] > 0


def test_benchmark_compile_smoke_runs_the_sd35_variants_attention_and_encoder_sections(tmp_path):
    import json

    from evaluations import benchmark_compile

    out = tmp_path / "compile.json"
    assert benchmark_compile.main(["--smoke", "--sections", "sd35", "attention", "encoder", "--skip-eager",
                                   "--variants", "full-context", "--encoder-batches", "2", "--repeats", "1",
                                   "--warmup", "0", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    sd35 = report["sd35"]
    assert all(r["eager_ms"] is None and r["accelerated_ms"] > 0 for r in sd35["rows"].values())
    variant = sd35["variants"]["full-context"]
    assert set(variant["rows"]) == set(sd35["rows"]) and variant["same_seed_vs_accelerated_bf16"]["max_abs"] <= 2
    cases = report["attention"]["cases"]
    assert cases["bias, default backend"]["ms"] > 0 and cases["no bias (333 context tokens), default"]["ms"] > 0
    encoder = report["encoder"]
    assert encoder["gflop_per_image"] > 0 and len(encoder["variants"]) == 5
    assert all(v["ms_per_image"] > 0 for v in encoder["variants"].values())


def test_a_compiled_network_keeps_one_graph_across_slider_positions():
    """β and η reach the network as tensors, so a new slider position is not a new graph (fullgraph with a small
    recompile limit would fail at the first recompilation)."""
    import torch

    pipe, preset = load_pipeline("toy-sdxl", device="cpu")
    network = load_guidance_network().eval().requires_grad_(False)
    network.compile(backend="eager", fullgraph=True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for beta, eta in ((0.3, 1.0), (0.5, 0.5), (1.1, 2.0)):
        sample_guided(pipe, PROMPT, network=network, beta=beta, eta=eta, seed=0, preset=preset)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_guidance_gradient_off_cuda_is_the_eager_gradient():
    """On the CPU nothing is graphed: accelerate() registers no graph and CudaGraphed runs the function as it is,
    with the same numbers (the CUDA replay is checked against eager by benchmark_compile's same-seed rows)."""
    from alignment.acceleration import CudaGraphed, guidance_gradient
    from alignment.diffusion_guidance import grad_log_h_of
    from alignment.guidance_network import GuidanceNetwork

    torch.manual_seed(0)
    network = GuidanceNetwork.toy_size().eval().requires_grad_(False)
    assert "cuda-graphed guidance gradient" not in accelerate(network=network, compile=False)
    x, text = torch.randn(2, 4, 16, 16), torch.randn(2, 32)
    t, beta, eta = torch.tensor([999.0, 999.0]), torch.full((2,), 0.5), torch.ones(2)
    u, grad = grad_log_h_of(network, x, text, t, beta, eta)
    graphed = CudaGraphed(lambda *a: grad_log_h_of(network, *a))
    for fn in (guidance_gradient(network), graphed):
        u2, grad2 = fn(x, text, t, beta, eta)
        assert torch.equal(u, u2) and torch.equal(grad, grad2)
    assert not graphed.graphs  # nothing captured off CUDA


def test_graphed_unet_and_decode_pass_through_off_cuda_and_under_compiled_blocks():
    """graph_method puts a CudaGraphed in front of the UNet's forward and the VAE's decode (what accelerate does on
    CUDA); on CPU tensors it calls through, with the compiled blocks and decoder inside, image for image."""
    from alignment.acceleration import CudaGraphed, graph_method

    pipe, preset = load_pipeline("toy-sdxl", device="cpu")
    network = load_guidance_network().eval().requires_grad_(False)
    before = sample_guided(pipe, PROMPT, network=network, beta=0.3, seed=1, preset=preset).images[0]
    graph_method(pipe.unet, "forward")
    graph_method(pipe.vae, "decode")
    graph_method(pipe.vae, "decode")  # a second call keeps the one wrapper
    accelerate(pipe, network=network, fuse=False, backend="eager")
    assert isinstance(pipe.unet.forward, CudaGraphed) and not isinstance(pipe.vae.decode.fn, CudaGraphed)
    after = sample_guided(pipe, PROMPT, network=network, beta=0.3, seed=1, preset=preset).images[0]
    assert np.abs(pixels(before) - pixels(after)).max() <= 1
    assert not pipe.unet.forward.graphs and not pipe.vae.decode.graphs


def test_cuda_graphed_bookkeeping_copies_in_and_out_caps_signatures_and_survives_a_failed_capture(caplog):
    """CudaGraphed's own logic, with the capture stood in for on the CPU: the inputs are copied into the captured
    tensors before each replay and the outputs copied out; each signature is captured once; past MAX_GRAPHS, or
    where a capture failed, the function runs as it is."""
    from alignment.acceleration import CudaGraphed

    class Replay:  # what a CUDA graph does on replay: run the recorded work on the same tensors
        def __init__(self, work):
            self.replay = work

    class OnCpu(CudaGraphed):
        MAX_GRAPHS = 2
        captured = 0

        @staticmethod
        def capturable(tensors):
            return True

        def _capture(self, leaves, spec):
            if leaves[0].shape[0] == 3:
                raise RuntimeError("operation not permitted when stream is capturing")
            OnCpu.captured += 1
            static = [x.clone() for x in leaves]
            out = torch.zeros_like(static[0])
            return static, out, Replay(lambda: out.copy_(static[0] * 2 + static[1]))

    calls = []
    graphed = OnCpu(lambda x, y: calls.append(x.shape[0]) or x * 2 + y)
    a, b = torch.ones(1, 2), torch.full((1, 2), 3.0)
    first, second = graphed(a, b), graphed(a * 5, b)
    assert torch.equal(first, torch.full((1, 2), 5.0)) and torch.equal(second, torch.full((1, 2), 13.0))
    assert first.data_ptr() != second.data_ptr() and OnCpu.captured == 1 and not calls  # replays, outputs copied out
    with caplog.at_level("WARNING"):
        assert torch.equal(graphed(torch.ones(3, 2), torch.ones(3, 2)), torch.full((3, 2), 3.0))  # capture failed
        graphed(torch.ones(3, 2), torch.ones(3, 2))
    assert calls == [3, 3] and len([r for r in caplog.records if "running it eagerly" in r.getMessage()]) == 1
    graphed(torch.ones(2, 2), torch.ones(2, 2))  # the cap: two signatures known (one failed), no third capture
    assert OnCpu.captured == 1 and calls == [3, 3, 2]


def test_the_studio_graphs_check_runs_on_the_cpu(tmp_path, monkeypatch):
    """benchmarks/studio_graphs.py (the GPU check of the accelerated studio engine), its plumbing on the CPU: two
    eager engines give the same images and six threads at once all get a view."""
    import json

    from benchmarks import studio_graphs

    monkeypatch.setattr(studio_graphs, "DEVICE", "cpu")
    studio_graphs.main(["--out", str(tmp_path / "graphs.json")])
    report = json.loads((tmp_path / "graphs.json").read_text())
    assert report["device"] == "cpu" and report["errors"] == [] and report["views"] == 6
    assert set(report["aligned_max_pixel_diff"].values()) == {0} and report["baseline_max_pixel_diff"] == 0
    assert report["parts_max_and_mean_pixel_diff"]["cuda graphs only"] == [[0, 0.0]] * 4  # nothing graphed on a CPU
