"""Eager against accelerated (``alignment.acceleration.accelerate``: fused projections, channels-last, regional
compilation) on one GPU, side by side in one run, full-size architectures with random weights, bf16:

    python -m evaluations.benchmark_compile --sections sdxl sd35 --out evaluations/results/benchmark_compile.json

* ``sdxl``: SDXL-Turbo 512², one step: baseline and guided (the SDXL-size guidance network) at batch 1 and 8, and
  reward scoring (PickScore architecture) of 8 images, measured eager; then ``accelerate`` and the first call at
  each shape (the compile, reported as ``compile_seconds``); then the same measured again. Correctness: the
  same seed's baseline and guided image eager and accelerated (mean and max absolute pixel difference, 0–255).
* ``sd35``: SD3.5-Large-Turbo 1024², four steps: the baseline image and a β change on a made bank (IS at the
  default N and K, and with one guided particle), eager then accelerated, and the compile.

Every time is a median of ``--repeats`` interleaved rounds, synchronised; ``--smoke`` runs it all on the toy
presets on the CPU with ``backend="eager"`` (tracing only), which is what tests/test_acceleration.py does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from alignment.acceleration import CudaGraphed, accelerate, quantize_fp8
from alignment.defaults import FLOW_BETA, FLOW_N
from alignment.diffusion_sampler import sample_baseline, sample_guided
from alignment.flow_sampler import baseline, sample_is
from alignment.repeated_context import attend_repeats_once
from alignment.sample_bank import SampleBank
from toyworld import sample_captions

from . import benchmark_gpu as gpu
from .benchmarking import machine

RESULTS = Path(__file__).resolve().parent / "results"


def pixel_difference(a, b) -> dict:
    a, b = (np.asarray(x.convert("RGB"), dtype=np.float64) for x in (a, b))
    return {"mean_abs": float(np.abs(a - b).mean()), "max_abs": float(np.abs(a - b).max())}


def first_calls(configs: dict) -> None:
    """One call of every config, synchronised: where the compiler runs."""
    for fn in configs.values():
        fn(10**6)
    gpu.synchronize()


def eager_then_accelerated(configs: dict, args, section: str, **parts) -> tuple[dict, dict, dict]:
    """Every config measured eager (saved as the section's report at once, so a compile that fails or runs out of
    time keeps them), then ``accelerate(**parts)`` and the first call of each (the compile), then measured again:
    (eager times, accelerated times, the report's common fields). ``--skip-eager`` measures the accelerated side
    alone (the eager columns then read None)."""
    eager = None if args.skip_eager else gpu.interleaved(configs, args.repeats, args.warmup)
    if eager is not None:
        args.save(section, {"eager": {name: {"ms": r["seconds"] * 1e3} for name, r in eager.items()}})
    torch._dynamo.reset()  # no graphs of another section's models (the VAE decoder and CLIP code are shared)
    started = time.perf_counter()
    done = accelerate(**parts, **args.compile_kwargs)
    first_calls(configs)
    compile_seconds = time.perf_counter() - started
    fast = gpu.interleaved(configs, args.repeats, args.warmup)
    rows = {name: {"eager_ms": eager[name]["seconds"] * 1e3 if eager else None,
                   "accelerated_ms": fast[name]["seconds"] * 1e3,
                   "speed_up": eager[name]["seconds"] / fast[name]["seconds"] if eager else None} for name in fast}
    return eager, fast, {"accelerated": done, "compile_seconds": compile_seconds, "rows": rows}


def print_report(model: str, out: dict) -> None:
    for name, row in out["rows"].items():
        eager = f"eager {row['eager_ms']:.1f} ms, " if row["eager_ms"] is not None else ""
        ratio = f" ({row['speed_up']:.2f}×)" if row["speed_up"] is not None else ""
        print(f"{model} {name}: {eager}accelerated {row['accelerated_ms']:.1f} ms{ratio}", flush=True)
    guided = f", guided {out['same_seed_guided']}" if "same_seed_guided" in out else ""
    print(f"compile {out['compile_seconds']:.1f} s; same seed: {out['same_seed']}{guided}; {out['accelerated']}",
          flush=True)


def bench_sdxl(args) -> dict:
    pipe, preset = gpu.SCALE.diffusion()
    reward = gpu.SCALE.reward()
    network = gpu.SCALE.network().to(gpu.SCALE.device, gpu.SCALE.dtype).eval().requires_grad_(False)  # as served
    captions = sample_captions(max(args.batches), seed=3)
    holder: dict = {}

    def configs_for(batch):
        prompts = captions[:batch]
        return {
            f"baseline b{batch}": lambda s: sample_baseline(pipe, prompts, seed=s, preset=preset),
            f"guided b{batch}": lambda s: sample_guided(pipe, prompts, network=network, beta=1.0, eta=1.0, seed=s,
                                                        preset=preset),
            **({f"scoring b{batch}": lambda s: reward.score(holder["images"][:batch], prompts)} if batch > 1 else {}),
        }

    holder["images"] = sample_baseline(pipe, captions, seed=0, preset=preset).images
    reference = sample_baseline(pipe, captions[:1], seed=7, preset=preset).images[0]
    guided_reference = sample_guided(pipe, captions[:1], network=network, beta=1.0, eta=1.0, seed=7,
                                     preset=preset).images[0]
    configs = {k: v for b in args.batches for k, v in configs_for(b).items()}
    eager, fast, out = eager_then_accelerated(configs, args, "sdxl", pipe=pipe, network=network, reward=reward)
    out["same_seed"] = pixel_difference(reference, sample_baseline(pipe, captions[:1], seed=7, preset=preset).images[0])
    out["same_seed_guided"] = pixel_difference(guided_reference, sample_guided(
        pipe, captions[:1], network=network, beta=1.0, eta=1.0, seed=7, preset=preset).images[0])
    for b in args.batches:
        out[f"baseline_images_per_second_b{b}"] = {"eager": b / eager[f"baseline b{b}"]["seconds"] if eager else None,
                                                   "accelerated": b / fast[f"baseline b{b}"]["seconds"]}
        out[f"guided_over_baseline_b{b}"] = {
            name: times[f"guided b{b}"]["seconds"] / times[f"baseline b{b}"]["seconds"]
            for name, times in (("eager", eager), ("accelerated", fast)) if times}
        if f"scoring b{b}" in out["rows"]:
            out["rows"][f"scoring b{b}"]["accelerated_ms_per_image"] = out["rows"][f"scoring b{b}"]["accelerated_ms"] / b
    print_report(preset.name, out)
    gpu.free(pipe, reward, network)
    return out


KERNEL_KINDS = (("attention", ("fmha", "flash", "attention", "sdpa", "cudnn_generated_fort_native_sdpa")),
                ("fp8 matmul", ("f8", "e4m3", "scaled_mm")),
                ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "sm90", "sm80")),
                ("convolution", ("conv", "implicit_convolve", "winograd")),
                ("fused elementwise (Triton)", ("triton",)))


def kernel_profile(fn, top: int = 12) -> dict:
    """One call of ``fn`` under ``torch.profiler``: the GPU kernels' time by kind (``KERNEL_KINDS``, by kernel
    name), the busiest kernels, and the wall time, in ms."""
    from torch.profiler import ProfilerActivity, profile

    gpu.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        started = time.perf_counter()
        fn(10**6)
        gpu.synchronize()
        wall = time.perf_counter() - started
    kernels: dict[str, float] = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels[event.name] = kernels.get(event.name, 0.0) + event.device_time / 1e3
    kinds: dict[str, float] = {}
    for name, ms in kernels.items():
        kind = next((k for k, marks in KERNEL_KINDS if any(m in name.lower() for m in marks)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + ms
    busiest = sorted(kernels.items(), key=lambda kv: -kv[1])[:top]
    return {"wall_ms": wall * 1e3, "kernel_ms": sum(kernels.values()),
            "by_kind_ms": {k: round(v, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
            "busiest_ms": [[name[:140], round(ms, 2)] for name, ms in busiest]}


def bench_attention(args) -> dict:
    """SD3.5-Large's joint attention at the shapes of a β change (two particles, 1024²: 4,096 image tokens, 38
    heads of 64), per call, by how it is asked: with the additive bias ``repeated_context`` passes for the run of
    256 identical padding tokens (77 CLIP tokens and that run kept once), by each SDPA backend that takes it; and
    without a bias, over the full 333 context tokens, as plain SD3 attention runs."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    device, dtype = gpu.SCALE.device, gpu.SCALE.dtype
    heads, dim, image, batch = (2, 16, 64, 2) if args.smoke else (38, 64, 4096, 2)

    def qkv(context):
        g = torch.Generator(device).manual_seed(0)
        return [torch.randn(batch, heads, image + context, dim, device=device, dtype=dtype, generator=g)
                for _ in range(3)]

    short, full = qkv(78), qkv(333)
    bias = torch.zeros(1, image + 78, device=device, dtype=dtype)
    bias[0, -1] = torch.tensor(256.0).log()
    cases = {"bias, default backend": (short, bias, None),
             "bias, memory-efficient": (short, bias, SDPBackend.EFFICIENT_ATTENTION),
             "bias, cuDNN": (short, bias, SDPBackend.CUDNN_ATTENTION),
             "no bias (333 context tokens), default": (full, None, None),
             "no bias (333 context tokens), flash": (full, None, SDPBackend.FLASH_ATTENTION),
             "no bias (333 context tokens), cuDNN": (full, None, SDPBackend.CUDNN_ATTENTION)}
    reference = None
    out = {"shape": {"batch": batch, "heads": heads, "image_tokens": image, "head_dim": dim}, "cases": {}}
    for name, ((q, k, v), mask, backend) in cases.items():
        def call(_seed, q=q, k=k, v=v, mask=mask, backend=backend):
            if backend is None:
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            with sdpa_kernel([backend]):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        try:
            result = call(0)
        except RuntimeError as e:  # a backend that can't take this input says so
            out["cases"][name] = {"error": str(e).splitlines()[0][:200]}
            continue
        if mask is not None:
            reference = result if reference is None else reference
            error = float((result.float() - reference.float()).abs().max())
        else:
            error = None
        seconds = gpu.interleaved({name: call}, args.repeats * 4, args.warmup)[name]["seconds"]
        tflops = 4 * batch * heads * q.shape[2] ** 2 * dim / seconds / 1e12
        out["cases"][name] = {"ms": seconds * 1e3, "tflops": tflops, "max_abs_difference_to_first": error}
        print(f"attention {name}: {seconds * 1e3:.2f} ms ({tflops:.0f} TFLOP/s)", flush=True)
    return out


def bench_encoder(args) -> dict:
    """SDXL's VAE encoder on 512² images, the cost of the guidance cache (``training.guidance_data.encode_rows``)
    and of the encoding any trainer of SDXL needs: per image at ``--encoder-batches``, eager, compiled (what
    ``prepare_encoders`` does), channels-last, both, and both from a CUDA graph of the whole call; with the
    encoder's FLOPs, so that the rate can be read against the card's."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    pipe, _ = gpu.SCALE.diffusion()
    base = pipe.vae.encoder.eval().requires_grad_(False)
    device, dtype = gpu.SCALE.device, gpu.SCALE.dtype
    size = 64 if args.smoke else 512
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        base(torch.zeros(1, 3, size, size, device=device, dtype=dtype))
    out = {"resolution": size, "gflop_per_image": counter.get_total_flops() / 1e9, "variants": {}}

    def variant(channels_last: bool, compiled: bool, graphed: bool):
        encoder = copy.deepcopy(base)
        if channels_last:
            encoder.to(memory_format=torch.channels_last)
        if compiled:
            encoder.compile(**args.compile_kwargs)
        call = (lambda x: encoder(x))
        return CudaGraphed(call) if graphed and device.type == "cuda" else call

    variants = {"eager": (False, False, False), "compiled": (False, True, False),
                "channels-last": (True, False, False), "channels-last, compiled": (True, True, False),
                "channels-last, compiled, CUDA graph": (True, True, True)}
    for batch in args.encoder_batches:
        pixels = torch.rand(batch, 3, size, size, device=device, dtype=dtype) * 2 - 1
        for name, flags in variants.items():
            torch._dynamo.reset()
            encoder = variant(*flags)

            def call(_seed, encoder=encoder, flags=flags):
                with torch.no_grad():
                    return encoder(pixels.contiguous(memory_format=torch.channels_last) if flags[0] else pixels)

            started = time.perf_counter()
            call(0)
            gpu.synchronize()
            first = time.perf_counter() - started
            r = gpu.interleaved({name: call}, args.repeats * 2, args.warmup)[name]
            ms = r["seconds"] * 1e3 / batch
            out["variants"][f"{name}, batch {batch}"] = {
                "ms_per_image": ms, "first_call_seconds": first,
                "tflops": out["gflop_per_image"] / ms,  # GFLOP per ms = TFLOP/s
            }
            print(f"VAE encoder {name}, batch {batch}: {ms:.2f} ms per image ({out['gflop_per_image'] / ms:.0f} "
                  f"TFLOP/s), first call {first:.1f} s", flush=True)
            del encoder
    gpu.free(pipe)
    return out


def bench_sd35(args) -> dict:
    started = time.perf_counter()
    pipe, preset = gpu.SCALE.flow()
    attend_repeats_once(pipe)  # as load_pipeline and so the studio run SD3 without T5
    reward = gpu.SCALE.reward()
    prompt = sample_captions(1, seed=5)
    bank = SampleBank(pipe, reward, preset=preset, batch_size=args.bank_batch)
    sample_is(pipe, prompt, seed=3, n=FLOW_N, beta=FLOW_BETA, bank=bank)  # makes the bank
    reference = baseline(pipe, prompt, seed=7, bank=bank).images[0]
    print(f"loaded, bank made: {time.perf_counter() - started:.1f} s", flush=True)
    betas = iter(FLOW_BETA * (1 + k / 100) for k in range(1, 10_000))  # every call a new β: only the guided half runs
    configs = {"baseline": lambda s: baseline(pipe, prompt, seed=s, bank=bank),
               "β change": lambda s: sample_is(pipe, prompt, seed=3, n=FLOW_N, beta=next(betas), bank=bank),
               "β change, one particle": lambda s: sample_is(pipe, prompt, seed=3, n=FLOW_N, beta=next(betas),
                                                             bank=bank, particles=1)}
    _, fast, out = eager_then_accelerated(configs, args, "sd35", pipe=pipe, reward=reward)
    out.update(n=FLOW_N, same_seed=pixel_difference(reference, baseline(pipe, prompt, seed=7, bank=bank).images[0]))
    print_report(preset.name, out)
    if args.profile:
        out["profile_beta_change"] = kernel_profile(configs["β change"])
        print(f"β change kernels: {out['profile_beta_change']}", flush=True)
    accelerated_reference = baseline(pipe, prompt, seed=7, bank=bank).images[0]

    def full_context() -> str:  # plain SD3 joint attention over all 333 context tokens: no bias, so flash kernels
        from diffusers.models.attention_processor import JointAttnProcessor2_0
        pipe.transformer = pipe.transformer.transformer
        pipe.transformer.set_attn_processor(JointAttnProcessor2_0())
        return "full context"

    changes = {"fp8": lambda: f"fp8 {quantize_fp8(pipe.transformer)} layers", "full-context": full_context}
    for name in args.variants:
        # the same accelerated pipeline changed once more (the changes add up), compiled again, measured again
        args.save("sd35", out)
        torch._dynamo.reset()
        started = time.perf_counter()
        done = changes[name]()
        first_calls(configs)
        variant = {"done": done, "compile_seconds": time.perf_counter() - started}
        times = gpu.interleaved(configs, args.repeats, args.warmup)
        variant["rows"] = {k: {"accelerated_ms": fast[k]["seconds"] * 1e3, "variant_ms": r["seconds"] * 1e3,
                               "speed_up": fast[k]["seconds"] / r["seconds"]} for k, r in times.items()}
        image = baseline(pipe, prompt, seed=7, bank=bank).images[0]
        variant["same_seed_vs_accelerated_bf16"] = pixel_difference(accelerated_reference, image)
        variant["same_seed_vs_eager_bf16"] = pixel_difference(reference, image)
        label = " + ".join(args.variants[: args.variants.index(name) + 1])
        for k, row in variant["rows"].items():
            print(f"{preset.name} [{label}] {k}: {row['variant_ms']:.1f} ms against accelerated bf16 "
                  f"{row['accelerated_ms']:.1f} ms ({row['speed_up']:.2f}×)", flush=True)
        print(f"[{label}] {done}, compile {variant['compile_seconds']:.1f} s; same seed vs accelerated bf16 "
              f"{variant['same_seed_vs_accelerated_bf16']}", flush=True)
        if args.profile:
            variant["profile_beta_change"] = kernel_profile(configs["β change"])
            print(f"[{label}] β change kernels: {variant['profile_beta_change']['by_kind_ms']}", flush=True)
        out.setdefault("variants", {})[label] = variant
    gpu.free(pipe, reward, bank)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.benchmark_compile")
    parser.add_argument("--sections", nargs="+", default=["sdxl", "sd35"], choices=["sdxl", "sd35", "attention", "encoder"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--bank-batch", type=int, default=8)
    parser.add_argument("--encoder-batches", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: inductor's default)")
    parser.add_argument("--skip-eager", action="store_true", help="measure the accelerated side alone")
    parser.add_argument("--variants", nargs="*", default=[], choices=["fp8", "full-context"],
                        help="sd35: then again after each change in turn (they add up): 'fp8', the transformer blocks' "
                             "linear layers in FP8 (torchao; Ada/Hopper); 'full-context', plain SD3 attention over "
                             "every context token instead of repeated_context's")
    parser.add_argument("--profile", action="store_true", help="sd35: the GPU kernels of one β change, by kind")
    parser.add_argument("--smoke", action="store_true", help="toy presets on the CPU, tracing only (checks the script)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    gpu.SCALE = gpu.Scale(args.smoke)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("error: this benchmark needs a CUDA GPU; --smoke runs it on the toy presets on the CPU")
    args.compile_kwargs = {"backend": "eager"} if args.smoke else ({"mode": args.mode} if args.mode else {})
    torch.backends.cuda.matmul.allow_tf32 = True
    out = args.out or RESULTS / ("benchmark_compile_smoke.json" if args.smoke else "benchmark_compile.json")
    report = {"machine": machine(gpu.SCALE.device), "dtype": str(gpu.SCALE.dtype).removeprefix("torch."),
              "weights": "toy presets (smoke run)" if args.smoke else "random, from alignment/model_configs",
              "command": "python -m evaluations.benchmark_compile " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d")}

    def save(section: str, data: dict) -> None:  # as it goes: a killed run keeps what it measured
        report[section] = data
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")

    args.save = save
    if not args.smoke:  # the compiler toolchain works at all (Triton, a C compiler), before minutes of eager runs
        started = time.time()
        torch.compile(lambda x: x.sin() + 1)(torch.ones(8, device="cuda"))
        report["preflight_compile_seconds"] = round(time.time() - started, 1)
    for name in args.sections:
        started = time.time()
        data = {"sdxl": bench_sdxl, "sd35": bench_sd35, "attention": bench_attention, "encoder": bench_encoder}[name](args)
        save(name, {**data, "wall_seconds": round(time.time() - started, 1)})  # rows hold the eager times too
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
