"""Flow-matching alignment: the estimator against closed forms (a Gaussian mixture with a linear reward), the sample
bank (extension, bounded batches, caching, best-of-N) and the toy SD3 pipeline end to end with a cheap reward."""

import functools
import itertools
import json
import math

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from mixture import Mixture, MixtureVelocity

from alignment import generate, load_pipeline
from alignment.flow_guidance import effective_sample_size, flow_guidance, importance_weights, posterior_logits
from alignment.flow_sampler import GuidedTransformer, baseline, best_of_n, sample_is
from alignment.rewards import Reward, register
from alignment.sample_bank import MAX_BANK, SampleBank, sample_seed, start_noise

MIX = Mixture.of([0.5, 0.3, 0.2], [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], [0.5, 0.7, 0.4])
W = torch.tensor([0.6, 0.4], dtype=torch.float64)  # linear reward r(x) = w·x
PROMPT = "a red star on a blue background"


def _euler(model, x, steps):
    """The pipeline's loop: diffusers' FlowMatchEulerDiscreteScheduler (no shift) over the model's velocity."""
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        v = model(hidden_states=x, timestep=t.expand(x.shape[0]), return_dict=False)[0]
        x = scheduler.step(v, t, x, return_dict=False)[0]
    return x


# ---- the estimator --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [0.9, 0.6, 0.3])
def test_delta_v_is_the_closed_form_tilted_minus_pretrained_velocity(sigma):
    """Δv must equal v*(x_t) − v(x_t), both in closed form: this fixes the sign (moving E[x0] toward the tilted
    mean subtracts from v). Tolerance: the self-normalised estimates of E[x0|x_t] and E*[x0|x_t] err by about
    sqrt(tr Cov / ESS) each (Cov and ESS of the weights a, b); 5 such standard errors over σ."""
    g = torch.Generator().manual_seed(0)
    bank = MIX.sample(40_000, g)
    beta = 1.0
    x0 = MIX.sample(16, g)
    x_t = (1 - sigma) * x0 + sigma * torch.randn(16, 2, generator=g, dtype=torch.float64)
    got = flow_guidance(x_t, bank, bank @ W, sigma, beta)
    want = MIX.tilted(W, beta).velocity(x_t, sigma) - MIX.velocity(x_t, sigma)
    a, b = importance_weights(posterior_logits(x_t, bank, sigma), bank @ W, beta)

    def spread(w):  # tr Cov_w[x0] per point
        mean = w @ bank
        return (w @ (bank**2).sum(-1)) - (mean**2).sum(-1)

    se = torch.sqrt(spread(a) / got.ess_a + spread(b) / got.ess_b) / sigma
    err = (got.delta_v - want).norm(dim=-1)
    assert (err < 5 * se).all(), (err, se)
    assert (got.delta_v + want).norm(dim=-1).mean() > 10 * se.mean()  # the opposite sign would fail by far


def test_weights_are_safe_and_consistent():
    g = torch.Generator().manual_seed(1)
    bank, x_t = torch.randn(64, 3, 4, 4, generator=g), torch.randn(5, 3, 4, 4, generator=g)
    r = torch.randn(64, generator=g)
    out = flow_guidance(x_t, bank, r, 0.5, 0.3)
    assert out.delta_v.shape == x_t.shape and out.delta_v.dtype == x_t.dtype
    assert ((out.ess_a >= 1 - 1e-9) & (out.ess_a <= 64 + 1e-9)).all() and (out.ess_b <= 64 + 1e-9).all()
    # σ = 1: x_t carries no information about x0, a is uniform and b = softmax(r/β)
    top = flow_guidance(x_t, bank, r, 1.0, 0.3)
    assert torch.allclose(top.ess_a, torch.full((5,), 64.0, dtype=torch.float64))
    assert torch.allclose(top.ess_b, effective_sample_size(torch.softmax(r.double() / 0.3, 0)).expand(5))
    # equal rewards: the tilt is a no-op whatever β
    assert flow_guidance(x_t, bank, torch.full((64,), 3.0), 0.5, 1e-3).delta_v.abs().max() < 1e-5
    # a bank per image gives the same as the shared bank it repeats
    per_image = flow_guidance(x_t, bank.expand(5, *bank.shape), r.expand(5, 64), 0.5, 0.3)
    assert torch.allclose(per_image.delta_v, out.delta_v, atol=1e-6)
    # bf16 in, float64 inside, bf16 out; tiny σ and tiny β stay finite (logsumexp)
    low = flow_guidance(x_t.bfloat16(), bank.bfloat16(), r, 0.5, 0.3)
    assert low.delta_v.dtype == torch.bfloat16
    assert torch.allclose(low.delta_v.float(), out.delta_v, rtol=0.1, atol=0.1)
    for sigma, beta in [(1e-4, 0.3), (0.5, 1e-6), (0.0, 1.0)]:
        assert torch.isfinite(flow_guidance(x_t, bank, r, sigma, beta).delta_v).all()
    assert flow_guidance(x_t, bank, r, 0.0, 1.0).delta_v.abs().max() == 0  # σ -> 0: one point mass, Δv = 0


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf"), "strong"])
def test_bad_beta_is_refused(beta):
    with pytest.raises(ValueError, match="beta"):
        flow_guidance(torch.zeros(1, 2), torch.zeros(3, 2), torch.zeros(3), 0.5, beta)


def test_bad_shapes_and_rewards_are_refused():
    with pytest.raises(ValueError, match="bank"):
        flow_guidance(torch.zeros(2, 3), torch.zeros(4, 2), torch.zeros(4), 0.5, 1.0)
    with pytest.raises(ValueError, match="rewards"):
        flow_guidance(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(5), 0.5, 1.0)
    with pytest.raises(ValueError, match="finite"):
        flow_guidance(torch.zeros(2, 3), torch.zeros(4, 3), torch.tensor([0, 1, float("nan"), 2]), 0.5, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        flow_guidance(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(4), 1.5, 1.0)


def test_cfg_batches_get_the_correction_on_both_halves():
    """With CFG the transformer sees [uncond, cond]; u + g(c − u) of the wrapped outputs is v_cfg + Δv exactly."""
    g = torch.Generator().manual_seed(2)
    bank, rewards = torch.randn(2, 8, 4, generator=g), torch.randn(2, 8, generator=g)

    class Halves(torch.nn.Module):  # an unconditional and a conditional velocity that differ
        def forward(self, hidden_states, timestep, return_dict=False):
            return (hidden_states * torch.tensor([1.0, 1.0, 2.0, 2.0])[:, None],)

    x = torch.randn(2, 4, generator=g)
    out = GuidedTransformer(Halves(), bank, rewards, 0.5)(torch.cat([x, x]), torch.full((4,), 400.0),
                                                         return_dict=False)[0]
    u, c = out.chunk(2)
    dv = flow_guidance(x, bank, rewards, 0.4, 0.5).delta_v
    assert torch.allclose(u + 3.0 * (c - u), (x + 3.0 * (2 * x - x)) + dv, atol=1e-5)


# ---- the closed-form check of the whole guided flow -----------------------------------------------------------------

def test_guided_flow_samples_the_tilted_mixture():
    """A bank of 1024 draws of the mixture, its exact velocity wrapped by GuidedTransformer, 40 Euler steps of
    diffusers' scheduler from 1000 noise draws: the samples must follow the closed-form tilted mixture.

    Statistics: weights as the mean tilted responsibility E[γ*_i(x)] (= π*_i exactly under p*), means as
    responsibility-weighted averages. Two independent errors: the M samples (standard error measured from the
    samples) and the bank, whose importance weights at σ = 1 hold ESS_b0 effective draws, so a weight errs by about
    sqrt(π(1−π)/ESS_b0) and a component mean by s_i / sqrt(ESS_b0 π_i). Tolerance: 4 combined standard errors.
    (Euler's discretisation with 40 steps is far below these: the exact tilted velocity run the same way lands
    within them too.)"""
    beta, K, M = 1.0, 1024, 1000
    bank = MIX.sample(K, torch.Generator().manual_seed(0))
    guided = GuidedTransformer(MixtureVelocity(MIX), bank, bank @ W, beta)
    noise = torch.randn(M, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = _euler(guided, noise, 40)
    tilted = MIX.tilted(W, beta)
    ess_b0 = float(guided.ess_b[0, 0])
    assert guided.sigmas[0] == 1.0 and guided.ess_b.shape == (40, M)

    gamma = tilted.responsibilities(x)
    weights = gamma.mean(0)
    se = torch.sqrt(gamma.var(0) / M + tilted.weights * (1 - tilted.weights) / ess_b0)
    assert ((weights - tilted.weights).abs() < 4 * se).all(), (weights, tilted.weights, se)
    assert ((MIX.weights - tilted.weights).abs() > 8 * se).any()  # the tilt is far bigger than the tolerance
    means = (gamma[..., None] * x[:, None]).sum(0) / gamma.sum(0)[:, None]
    big = tilted.weights > 0.25
    se_mean = tilted.stds * torch.sqrt(1 / (M * tilted.weights) + 1 / (ess_b0 * tilted.weights))
    assert ((means - tilted.means).abs()[big] < 4 * se_mean[big, None]).all(), (means, tilted.means)

    exact = _euler(MixtureVelocity(tilted), noise, 40)  # the harness itself: exact tilted flow, same steps
    assert ((tilted.responsibilities(exact).mean(0) - tilted.weights).abs() < 4 * se).all()


def test_ess_falls_as_beta_shrinks():
    bank = MIX.sample(1024, torch.Generator().manual_seed(0))
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ess = []
    for beta in (4.0, 1.0, 0.5, 0.25):
        guided = GuidedTransformer(MixtureVelocity(MIX), bank, bank @ W, beta)
        _euler(guided, noise, 20)
        ess.append(float(guided.ess_b.mean()))
        assert guided.ess_b.shape == guided.ess_a.shape == (20, 64)
        assert torch.allclose(guided.ess_b[0], effective_sample_size(torch.softmax(bank @ W / beta, 0)).float())
    assert all(a > b for a, b in itertools.pairwise(ess)), ess


# ---- the bank and the toy pipeline ----------------------------------------------------------------------------------

@register("test-redness")
class Redness(Reward):
    """A cheap reward for tests: mean red minus mean blue."""

    name = "test-redness"

    def __init__(self, **_):
        pass

    def _score(self, x, prompts):
        return (x[:, 0].mean((1, 2)) - x[:, 2].mean((1, 2))).float()


@pytest.fixture(scope="module")
def sd3():
    return load_pipeline("toy-sd3", device="cpu")


@pytest.fixture()
def bank(sd3):
    return SampleBank(sd3[0], Redness(), preset=sd3[1], steps=2, batch_size=3)


def test_the_bank_extends_in_bounded_batches_and_is_deterministic(sd3, bank):
    three = bank.get(PROMPT, seed=5, n=3)
    assert bank.pipeline_calls == 1 and len(three) == 3
    five = bank.get(PROMPT, seed=5, n=5)
    assert bank.pipeline_calls == 2 and bank.largest_batch == 3 and bank.samples_made == 5  # only the 2 missing
    assert torch.equal(five.latents[:3], three.latents) and torch.equal(five.rewards[:3], three.rewards)
    assert five.seeds.tolist() == [sample_seed(5, k) for k in range(5)]
    assert torch.allclose(five.rewards, Redness().score(five.images, [PROMPT] * 5))
    again = bank.get(PROMPT, seed=5, n=4)  # a smaller N is a prefix, made by no one
    assert bank.pipeline_calls == 2 and torch.equal(again.latents, five.latents[:4])
    fresh = SampleBank(sd3[0], Redness(), preset=sd3[1], steps=2, batch_size=5).get(PROMPT, seed=5, n=5)
    assert torch.allclose(fresh.latents, five.latents, atol=1e-4)  # a sample does not depend on its batch
    other = bank.get(PROMPT, seed=6, n=1)
    assert not torch.allclose(other.latents, three.latents[:1])


def test_worker_threads_make_the_same_bank_and_leave_the_pipeline_usable(sd3):
    """workers=2: the samples are split over two threads (each with its own scheduler), the same bank comes out,
    and the shared pipeline still samples afterwards (its scheduler was never stepped by the threads)."""
    from studio.memo import memoise

    one = SampleBank(sd3[0], Redness(), preset=sd3[1], steps=2, batch_size=8).get(PROMPT, seed=9, n=5)
    threaded = SampleBank(sd3[0], Redness(), preset=sd3[1], steps=2, batch_size=8, workers=2)
    memo = memoise(sd3[0])  # the studio's memos see both threads at once
    try:
        with memo.paused():
            two = threaded.get(PROMPT, seed=9, n=5)
    finally:
        sd3[0].transformer = memo.model
        for name in ("text_encoder", "text_encoder_2"):
            setattr(sd3[0], name, getattr(sd3[0], name).model)
    assert threaded.pipeline_calls == 2 and threaded.largest_batch == 3  # chunks of ceil(5 / 2)
    assert torch.equal(two.seeds, one.seeds) and torch.allclose(two.latents, one.latents, atol=1e-4)
    assert torch.allclose(two.rewards, one.rewards, atol=1e-4)
    assert len(generate(sd3[0], PROMPT, seed=0, steps=2, preset=sd3[1]).images) == 1
    with pytest.raises(ValueError, match="workers must be at least 1"):
        SampleBank(sd3[0], Redness(), preset=sd3[1], workers=0)


def test_each_prompt_is_encoded_once_and_the_guided_trajectory_reuses_it(sd3, monkeypatch):
    """The bank encodes a prompt once, not once per sample, and IS-guidance samples from those embeddings: the
    same image as from the text."""
    from alignment.sampling import with_component

    pipe, preset = sd3
    calls = []
    encode = type(pipe).encode_prompt

    @functools.wraps(encode)  # keeps the signature the bank inspects
    def counted(self, *args, **kwargs):
        if kwargs.get("prompt") is not None:  # the pipeline's own call with prompt_embeds encodes nothing
            calls.append(kwargs["prompt"])
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "encode_prompt", counted)
    bank = SampleBank(pipe, Redness(), preset=preset, steps=2, batch_size=3)
    bank.get(PROMPT, seed=4, n=5)  # two pipeline calls
    bank.get(PROMPT, seed=5, n=2)  # another seed, the same prompt
    assert calls == [PROMPT]
    guided = sample_is(pipe, [PROMPT, PROMPT], seed=4, n=5, beta=0.5, bank=bank, estimator="paper")
    assert calls == [PROMPT]  # the guided trajectory did not encode it again
    monkeypatch.undo()
    embeds = bank.prompt_embeddings([PROMPT])
    view = with_component(pipe, transformer=GuidedTransformer(pipe.transformer, bank.get(PROMPT, 4, 5).latents,
                                                              bank.get(PROMPT, 4, 5).rewards, 0.5))
    noise = start_noise(pipe, [4], bank.settings)
    from_text = view(PROMPT, latents=noise, **bank.settings.pipe_kwargs()).images[0]
    assert np.abs(np.asarray(from_text, dtype=float) - np.asarray(guided.images[0], dtype=float)).max() <= 1
    assert set(embeds) >= {"prompt_embeds", "pooled_prompt_embeds"} and embeds["prompt_embeds"].shape[0] == 1
    bank.clear()
    assert not bank._memory and not bank._embeds


def test_the_bank_caches_on_disk_and_drops_least_recently_used(sd3, tmp_path):
    first = SampleBank(sd3[0], Redness(), preset=sd3[1], steps=2, batch_size=4, cache_dir=tmp_path, max_entries=1)
    a = first.get(PROMPT, seed=0, n=2)
    first.get("a white ring on a black background", seed=0, n=2)
    assert len(first._memory) == 1
    second = SampleBank(sd3[0], Redness(), preset=sd3[1], steps=2, batch_size=4, cache_dir=tmp_path)
    b = second.get(PROMPT, seed=0, n=2)
    assert second.pipeline_calls == 0 and torch.equal(a.latents, b.latents) and torch.equal(a.pixels, b.pixels)
    second.get(PROMPT, seed=0, n=3)
    assert second.samples_made == 1
    (next(tmp_path.glob("*.pt"))).write_bytes(b"broken")  # a broken file is remade, not trusted
    SampleBank(sd3[0], Redness(), preset=sd3[1], steps=2, batch_size=4, cache_dir=tmp_path).get(PROMPT, 0, 2)


def test_guided_run_end_to_end_reuses_the_bank_across_beta(sd3, bank):
    pipe = sd3[0]
    prompts = [PROMPT, "a white ring on a black background"]
    guided = sample_is(pipe, prompts, seed=3, n=4, beta=0.02, bank=bank)
    calls = bank.pipeline_calls
    assert len(guided.images) == 2 and guided.images[0].size == (64, 64)
    assert guided.rewards.shape == (2,) and guided.ess_a.shape == guided.ess_b.shape == (2, 2)
    assert guided.sigmas[0] == 1.0 and guided.sigmas[1] < 1.0
    assert ((guided.ess_b >= 1 - 1e-4) & (guided.ess_b <= 4 + 1e-4)).all()
    assert torch.allclose(guided.ess_a[0], torch.full((2,), 4.0))  # σ = 1: uniform posterior weights
    assert torch.allclose(guided.rewards, Redness().score(guided.images, prompts))
    assert guided.seconds_per_image > 0 and json.dumps(guided.summary())

    weak = sample_is(pipe, prompts, seed=3, n=4, beta=1e6, bank=bank, particles=1)  # β -> ∞, one particle: the baseline
    assert bank.pipeline_calls == calls  # a new β re-runs only the guided trajectory
    base = baseline(pipe, prompts, seed=3, bank=bank)
    diff = np.abs(np.asarray(weak.images[0], dtype=int) - np.asarray(base.images[0], dtype=int))
    assert diff.max() <= 1
    assert not np.array_equal(np.asarray(guided.images[0]), np.asarray(base.images[0]))

    best = best_of_n(pipe, prompts, seed=3, n=4, bank=bank)
    assert bank.pipeline_calls == calls
    for i, p in enumerate(prompts):
        entry = bank.get(p, seed=3, n=4)
        assert best.picks[i] == int(entry.rewards.argmax()) and best.rewards[i] == entry.rewards.max()
        assert np.array_equal(np.asarray(best.images[i]), entry.pixels[best.picks[i]].numpy())


@pytest.mark.parametrize("kwargs,match", [
    (dict(beta=0.0), "beta"), (dict(beta=-2.0), "beta"), (dict(beta=float("nan")), "beta"),
    (dict(n=0), "n "), (dict(n=MAX_BANK + 1), "n "), (dict(n=2.5), "n "), (dict(seed=-1), "seed"),
    (dict(prompt=""), "prompt"), (dict(prompt="   "), "prompt"), (dict(prompt=[]), "prompt"),
])
def test_bad_inputs_are_refused_before_any_work(sd3, bank, kwargs, match):
    call = dict(prompt=PROMPT, seed=0, n=4, beta=1.0) | kwargs
    with pytest.raises(ValueError, match=match):
        sample_is(sd3[0], call.pop("prompt"), bank=bank, **call)
    assert bank.pipeline_calls == 0


def test_a_bank_refuses_another_reward_or_other_settings(sd3, bank):
    with pytest.raises(ValueError, match="scores with"):
        sample_is(sd3[0], PROMPT, n=2, beta=1.0, bank=bank, reward="toy-pickscore")
    with pytest.raises(ValueError, match="steps"):
        best_of_n(sd3[0], PROMPT, n=2, bank=bank, steps=4)


def test_command_line_methods(tmp_path, capsys):
    from alignment.__main__ import main

    common = ["generate", "--model", "toy-sd3", "--device", "cpu", "--prompt", PROMPT, "--steps", "2",
              "--reward", "test-redness"]
    assert main(common + ["--method", "is", "--n", "2", "--beta", "0.05", "--out", str(tmp_path / "is.png")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["method"] == "is" and len(line["ess_b"]) == 2 and math.isfinite(line["reward"])
    assert (tmp_path / "is.png").is_file()
    assert main(common + ["--method", "bon", "--n", "2", "--out", str(tmp_path / "bon.png")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["method"] == "bon"
    assert main(common + ["--method", "baseline", "--out", str(tmp_path / "base.png")]) == 0
    assert "reward" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for bad, word in [(["--method", "is", "--beta", "0"], "beta"), (["--method", "bon", "--n", "0"], "n ")]:
        assert main(common + bad + ["--out", str(tmp_path / "x.png")]) == 2
        assert word in capsys.readouterr().err


def test_results_table_arithmetic():
    """The evaluation's diversity and paired win rates, on made-up records."""
    from PIL import Image

    from evaluations.flow_results import diversity, markdown, summarise

    black, white = Image.new("RGB", (4, 4)), Image.new("RGB", (4, 4), (255, 255, 255))
    assert diversity([black, white]) == 1.0 and diversity([black, black, white]) == pytest.approx(2 / 3)

    def rows(tastes):  # one record per (caption, seed)
        pairs = [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
        return [{"caption": c, "seed": s, "reward": 0.0, "taste": t, "prompt_fidelity": 1.0, "seconds": 1.0}
                for (c, s), t in zip(pairs, tastes)]

    records = {"base": rows([1, 1, 1, 1]), "IS N=8 β=1": rows([2, 1, 0, 2]), "best-of-8": rows([0, 0, 0, 0])}
    images = {(m, c, s): black if s == 0 else white for m in records for c in "ab" for s in (0, 1)}
    report = summarise(records, images, ["a", "b"], [0, 1], [8], [1.0])
    first = report["comparisons"][0]
    assert (first["a"], first["b"], first["win_rate"], first["ties"]) == ("IS N=8 β=1", "base", 0.625, 1)
    assert all(r["diversity"] == 1.0 for r in report["table"])
    report["config"] = {"model": "m", "smoke": True, "reward": "toy-taste", "captions": 2, "seeds": [0, 1],
                        "steps": 4, "guidance_scale": 3.0, "batch": 8, "device": "cpu", "machine": "x",
                        "wall_seconds": 1.0, "ns": [8]}
    report["bank_reward_std"] = 0.1
    assert "SMOKE" in markdown(report) and "62.5 %" in markdown(report)


def test_flow_results_command_without_a_grid(tmp_path):
    """`--grid-captions 0` writes the table and no grid (it used to fail after the whole run); a negative count is
    refused before anything loads."""
    from evaluations.flow_results import main

    with pytest.raises(SystemExit):
        main(["--grid-captions", "-1", "--out-dir", str(tmp_path)])
    assert not any(tmp_path.iterdir())
    assert main(["--captions", "1", "--seeds", "0", "--ns", "2", "--betas", "1", "--reward", "toy-taste",
                 "--grid-captions", "0", "--out-dir", str(tmp_path), "--device", "cpu"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["flow_results_toy-sd3_toy-taste_1x1.json", "flow_results_toy-sd3_toy-taste_1x1.md"]
