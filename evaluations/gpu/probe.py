"""Where the time goes, on one GPU, full-size architectures with random weights (bf16): the guided SDXL-Turbo call
against the baseline (host syncs, the guidance network's forward and backward alone) and the guidance cache's parts
(VAE encoder, text encoders, reward, consistency UNet call). Prints only; the benchmarks record.

    python -m evaluations.gpu.probe
"""
import statistics
import time

import numpy as np
import torch
from PIL import Image

from alignment.diffusion_guidance import grad_log_h_of
from alignment.diffusion_sampler import sample_baseline, sample_guided
from alignment.guidance_network import GuidanceNetwork
from alignment.presets import find_preset
from alignment.sampling import with_component
from evaluations import real_scale
from toyworld import sample_captions

BF16 = torch.bfloat16


def timed(fn, repeats=10, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        s = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - s)
    return statistics.median(out) * 1e3


def syncs(fn):
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    counts = {}
    for e in prof.key_averages():
        if any(k in e.key for k in ("Synchronize", "Memcpy", "_local_scalar_dense", "aten::item", "nonzero")):
            counts[e.key] = e.count
    return counts, prof


def main():
    pipe = real_scale.sdxl_turbo("cuda", BF16)
    preset = find_preset("sdxl-turbo")
    net = GuidanceNetwork.sdxl_size().to("cuda", BF16).eval().requires_grad_(False)
    caps = sample_captions(32, seed=3)
    for b in (1, 8):
        p = caps[:b]
        base = timed(lambda: sample_baseline(pipe, p, seed=0, preset=preset))
        guided = timed(lambda: sample_guided(pipe, p, network=net, beta=1.0, eta=1.0, seed=0, preset=preset))
        x = torch.randn(b, 4, 64, 64, device="cuda", dtype=BF16)
        pooled = torch.randn(b, 1280, device="cuda", dtype=BF16)
        t = torch.full((b,), 999, device="cuda")
        one = torch.ones(b, device="cuda")
        netonly = timed(lambda: grad_log_h_of(net, x, pooled, t, one, one))
        print(f"b{b}: baseline {base:.1f} ms, guided {guided:.1f} ms, network fwd+bwd alone {netonly:.1f} ms", flush=True)
    print(f"with_component {timed(lambda: with_component(pipe, unet=pipe.unet)):.2f} ms", flush=True)
    for name, fn in (("baseline", lambda: sample_baseline(pipe, caps[:1], seed=0, preset=preset)),
                     ("guided", lambda: sample_guided(pipe, caps[:1], network=net, beta=1.0, eta=1.0, seed=0,
                                                      preset=preset))):
        counts, prof = syncs(fn)
        print(name, "sync-like calls:", counts, flush=True)
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25, max_name_column_width=50), flush=True)
    # the network compiled alone
    cnet = GuidanceNetwork.sdxl_size().to("cuda", BF16).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    cnet.compile(fullgraph=True)
    x = torch.randn(1, 4, 64, 64, device="cuda", dtype=BF16)
    pooled = torch.randn(1, 1280, device="cuda", dtype=BF16)
    t, one = torch.full((1,), 999, device="cuda"), torch.ones(1, device="cuda")
    s = time.perf_counter(); grad_log_h_of(cnet, x, pooled, t, one, one); torch.cuda.synchronize()
    print(f"network compile {time.perf_counter() - s:.1f} s; compiled fwd+bwd b1 "
          f"{timed(lambda: grad_log_h_of(cnet, x, pooled, t, one, one)):.2f} ms", flush=True)

    # the guidance cache's parts, batch 32 at 512²
    n = 32
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)) for _ in range(n)]
    vae = pipe.vae
    stack = lambda: torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images]))  # noqa: E731
    print(f"cache, per image at batch {n}:", flush=True)
    print(f"  PIL -> uint8 stack {timed(stack, 3, 1) / n:.2f} ms", flush=True)
    pix = stack().cuda().permute(0, 3, 1, 2).to(BF16) / 127.5 - 1
    with torch.no_grad():
        print(f"  vae encode {timed(lambda: vae.encode(pix).latent_dist.mean, 5, 2) / n:.2f} ms", flush=True)
        vae.to(memory_format=torch.channels_last)
        pcl = pix.contiguous(memory_format=torch.channels_last)
        print(f"  vae encode channels-last {timed(lambda: vae.encode(pcl).latent_dist.mean, 5, 2) / n:.2f} ms", flush=True)
        print(f"  encode_prompt, 32 captions {timed(lambda: pipe.encode_prompt(caps, device='cuda', do_classifier_free_guidance=False), 5, 2) / n:.2f} ms", flush=True)
        reward = real_scale.pickscore("cuda", BF16)
        print(f"  reward from PIL {timed(lambda: reward.score(images, caps), 5, 2) / n:.2f} ms", flush=True)
        x01 = (pix.float() + 1) / 2
        print(f"  reward from GPU tensor {timed(lambda: reward.score(x01, caps), 5, 2) / n:.2f} ms", flush=True)
        lat = torch.randn(n, 4, 64, 64, device="cuda", dtype=BF16)
        emb = torch.randn(n, 77, 2048, device="cuda", dtype=BF16)
        pooled = torch.randn(n, 1280, device="cuda", dtype=BF16)
        ids = torch.tensor([[512, 512, 0, 0, 512, 512]], device="cuda", dtype=BF16).expand(n, 6)
        tt = torch.full((n,), 500, device="cuda")
        print(f"  unet forward {timed(lambda: pipe.unet(lat, tt, encoder_hidden_states=emb, added_cond_kwargs={'text_embeds': pooled, 'time_ids': ids}), 5, 2) / n:.2f} ms", flush=True)
        vae.encoder.compile(fullgraph=True)
        s = time.perf_counter(); vae.encode(pcl); torch.cuda.synchronize()
        print(f"  vae encoder compile {time.perf_counter() - s:.1f} s; compiled encode "
              f"{timed(lambda: vae.encode(pcl).latent_dist.mean, 5, 2) / n:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
