"""The guided and Tweedie samplers on the shipped toy-sdxl pipeline, the guidance network's save/load, and the
guidance training end to end on a few cached pairs (CPU, seconds)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from alignment import load_pipeline
from alignment.diffusion_sampler import sample_baseline, sample_guided, sample_tweedie
from alignment.guidance_network import GuidanceNetwork
from alignment.rewards import Reward

PROMPTS = ["a red star on a blue background", "a small green ring on a white background"]


class Redness(Reward):
    """Differentiable toy reward: mean red minus mean green and blue."""

    name = "redness"
    differentiable = True

    def _score(self, x, prompts):
        return (x[:, 0] - 0.5 * (x[:, 1] + x[:, 2])).mean(dim=(1, 2)) * 10


class NotDifferentiable(Redness):
    differentiable = False


@pytest.fixture(scope="module")
def sdxl():
    return load_pipeline("toy-sdxl", device="cpu")


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return GuidanceNetwork.toy_size(reward_std=5.0)


def pixels(images):
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


def test_zero_strength_is_the_baseline_and_guidance_changes_the_image(sdxl, network):
    pipe, preset = sdxl
    base = sample_baseline(pipe, PROMPTS, seed=3, preset=preset, reward=Redness())
    off = sample_guided(pipe, PROMPTS, network=network, beta=0.5, eta=1.0, alpha=0.0, seed=3, preset=preset)
    on = sample_guided(pipe, PROMPTS, network=network, beta=0.1, eta=1.0, alpha=5.0, seed=3, preset=preset,
                       reward=Redness())
    assert np.array_equal(pixels(base.images), pixels(off.images))
    assert np.abs(pixels(base.images) - pixels(on.images)).max() > 0
    assert on.rewards.shape == (2,) and on.seconds > 0 and on.method == "guided"
    assert on.summary()["beta"] == 0.1


def test_prompts_are_encoded_once_per_pipeline_and_give_the_pipelines_own_image(sdxl, network, monkeypatch):
    """A slider move samples the same prompt again: its embeddings are reused (per pipeline, prompt list and CFG
    setting), and the images are exactly the ones the pipeline makes from the text."""
    from alignment import generate

    pipe, preset = sdxl
    prompts = ["a small cyan ring on a black background", "a red cross"]
    reference = generate(pipe, prompts, seed=5, preset=preset).images  # the pipeline's own call, with the text
    calls = []
    original = type(pipe).encode_prompt

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("prompt"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "encode_prompt", counting)
    first = sample_baseline(pipe, prompts, seed=5, preset=preset)
    assert np.array_equal(pixels(first.images), pixels(reference))
    for beta in (0.5, 1.0):
        sample_guided(pipe, prompts, network=network, beta=beta, eta=1.0, seed=5, preset=preset)
    assert calls.count(prompts) == 1  # encoded once; the pipeline's own encode_prompt calls pass embeddings
    sample_baseline(pipe, prompts, seed=5, preset=preset, guidance_scale=0.0)  # no CFG: another entry
    assert calls.count(prompts) == 2


def test_tweedie_guidance_points_uphill(sdxl):
    """A small step along Tweedie's guidance raises the reward of x̂0 (first order, at t = 250 where the toy
    UNet's Jacobian is well behaved); and the full sampler runs and scores its images."""
    from alignment.diffusion_guidance import vp_coefficients
    from alignment.diffusion_sampler import TweedieUNet

    pipe, preset = sdxl
    reward = Redness()
    wrapper = TweedieUNet(pipe.unet, pipe.vae, reward, PROMPTS, 3.0, beta=1.0, alpha=1.0)
    wrapper.alphas_cumprod = pipe.scheduler.alphas_cumprod
    emb, neg, pooled, neg_pooled = pipe.encode_prompt(PROMPTS, device="cpu", num_images_per_prompt=1,
                                                      do_classifier_free_guidance=True)
    states, cond = torch.cat([neg, emb]), {"text_embeds": torch.cat([neg_pooled, pooled]),
                                           "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 4)}
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([250, 250])
    alpha_t, sigma_t = vp_coefficients(pipe.scheduler.alphas_cumprod, t)
    delta = wrapper.delta(torch.cat([x, x]), t, sigma_t, states, cond, None)

    def reward_of_x0(shift):
        with torch.no_grad():
            e = pipe.unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=states,
                          added_cond_kwargs=cond).sample
            e = e[:2] + 3.0 * (e[2:] - e[:2]) + shift
            x0 = (x - sigma_t.view(-1, 1, 1, 1) * e) / alpha_t.view(-1, 1, 1, 1)
            decoded = pipe.vae.decode(x0 / pipe.vae.config.scaling_factor).sample
            return reward.score(((decoded + 1) / 2).clamp(0, 1), PROMPTS)

    assert (reward_of_x0(0.1 * delta) > reward_of_x0(0.0)).all()
    out = sample_tweedie(pipe, PROMPTS, reward=reward, beta=1.0, seed=4, preset=preset)
    assert out.rewards.shape == (2,) and out.method == "tweedie"


def test_bad_inputs_are_refused(sdxl, network):
    pipe, preset = sdxl
    with pytest.raises(ValueError, match="β"):
        sample_guided(pipe, PROMPTS, network=network, beta=0.0, preset=preset)
    with pytest.raises(ValueError, match="trained for β"):
        sample_guided(pipe, PROMPTS, network=network, beta=50.0, preset=preset)
    with pytest.raises(ValueError, match="η"):
        sample_guided(pipe, PROMPTS, network=network, beta=1.0, eta=float("nan"), preset=preset)
    with pytest.raises(ValueError, match="empty"):
        sample_guided(pipe, ["  "], network=network, beta=1.0, preset=preset)
    with pytest.raises(ValueError, match="differentiable"):
        sample_tweedie(pipe, PROMPTS, reward=NotDifferentiable(), beta=1.0, preset=preset)


def test_network_round_trip(tmp_path, network):
    network.save_pretrained(tmp_path / "net")
    loaded = GuidanceNetwork.from_pretrained(tmp_path / "net")
    x, text = torch.randn(3, 4, 16, 16), torch.randn(3, 32)
    with torch.no_grad():
        a = network(x, text, torch.tensor([10, 500, 990]), 0.5, 1.0)
        b = loaded(x, text, torch.tensor([10, 500, 990]), 0.5, 1.0)
    assert a.shape == (3,) and torch.allclose(a, b)


def test_sdxl_size_network_is_about_72_mb():
    with torch.device("meta"):
        net = GuidanceNetwork.sdxl_size()
    mb = sum(p.numel() for p in net.parameters()) * 4 / 1e6
    assert 65 < mb < 80


def test_guidance_training_end_to_end_and_resume(tmp_path):
    """Cache 6 pairs (toy-sdxl VAE and encoders, a pixel reward), train 4 steps, resume to 6, load the export."""
    from alignment.rewards import register
    from training.guidance import GuidanceTrainConfig, run
    from training.guidance_data import CacheConfig, build_cache, load_cache
    from training.preference_data import write_pickapic
    from training.toy_preferences import make_toy_pairs

    register("test-redness")(lambda **_: Redness())
    rows = make_toy_pairs(6, seed=2, device="cpu")
    write_pickapic(rows, tmp_path / "pairs.parquet")
    info = build_cache(CacheConfig(pairs=tmp_path / "pairs.parquet", out=tmp_path / "cache", reward="test-redness",
                                   chunk=4, batch=4))
    assert info["kept"] == 6
    data = load_cache(tmp_path / "cache")
    assert data["latents"].shape == (12, 4, 16, 16) and data["prompt_embeds"].shape[:2] == (12, 77)
    assert int(data["preferred"].sum()) <= 6
    cfg = GuidanceTrainConfig(cache=tmp_path / "cache", work=tmp_path / "work", export=tmp_path / "net", steps=4,
                              batch_size=8, save_every=2)
    assert run(cfg)
    cfg.steps = 6
    assert run(cfg)
    assert json.loads((tmp_path / "work" / "progress.json").read_text())["step"] == 6
    # the full-scale savings: L_consistency on a random half of the preferred rows, half the rows at the sampler's t
    cfg.steps, cfg.consistency_fraction, cfg.focus = 8, 0.5, 0.5
    assert run(cfg)
    # cached consistency targets: the data step calls the UNet, training does not
    info = build_cache(CacheConfig(pairs=tmp_path / "pairs.parquet", out=tmp_path / "cache_k", reward="test-redness",
                                   chunk=4, batch=4, consistency_draws=2))
    assert info["consistency_draws"] == 2
    data_k = load_cache(tmp_path / "cache_k")
    assert data_k["c_xt"].shape == (12, 2, 4, 16, 16) and data_k["c_t"].shape == (12, 2)
    assert bool((data_k["c_residual"][~data_k["preferred"]] == 0).all())
    assert bool((data_k["c_residual"][data_k["preferred"]] != 0).any())
    assert run(GuidanceTrainConfig(cache=tmp_path / "cache_k", work=tmp_path / "work_k", steps=3, batch_size=8,
                                   consistency_source="cache"))
    # the readout warm start: its first steps regress β·log h onto r at small t, then L_guidance goes on
    assert run(GuidanceTrainConfig(cache=tmp_path / "cache", work=tmp_path / "work_r", steps=4, batch_size=8,
                                   readout_steps=2))
    with pytest.raises(ValueError, match="readout_steps"):
        run(GuidanceTrainConfig(cache=tmp_path / "cache", work=tmp_path / "work_y", readout_steps=-1))
    with pytest.raises(ValueError, match="no cached consistency targets"):
        run(GuidanceTrainConfig(cache=tmp_path / "cache", work=tmp_path / "work_x", steps=1,
                                consistency_source="cache"))
    # held-out losses: deterministic, finite, one entry per β
    from training.guidance_eval import GuidanceEvalConfig, evaluate

    ecfg = GuidanceEvalConfig(cache=tmp_path / "cache", network=tmp_path / "net", betas=(0.5, 2.0), block=5)
    first, second = evaluate(ecfg), evaluate(ecfg)
    assert first == second and first["images"] == 12 and set(first["by_beta"]) == {"0.5", "2"}
    assert all(math.isfinite(v) for row in first["by_beta"].values() for v in row.values())
    assert set(first["reward_readout_corr"]) == {"t0", "tmax"}
    assert all(-1 <= c <= 1 for c in first["reward_readout_corr"].values())
    r = load_cache(tmp_path / "cache")["rewards"].double()
    for beta, row in first["by_beta"].items():  # the constant's loss: 1 + log mean exp(r/β), no constant does better
        u = torch.logsumexp(r / float(beta), 0) - math.log(len(r))
        assert row["l_guidance_best_constant"] == pytest.approx(float(1 + u), rel=1e-9)
        for shift in (-0.3, 0.3):
            assert row["l_guidance_best_constant"] <= float((torch.exp(r / float(beta) - u - shift) + u + shift).mean())
    for bad in (dict(consistency_fraction=0.0), dict(focus=1.5)):
        with pytest.raises(ValueError):
            run(GuidanceTrainConfig(cache=tmp_path / "cache", work=tmp_path / "bad", **bad))
    net = GuidanceNetwork.from_pretrained(tmp_path / "net")
    assert net.config.reward_std > 0


def objective_and_draws(sdxl, network, seed: int, n: int):
    """The training objective over the toy UNet, a generator, and n latents and noises (8×8) drawn from it."""
    from training.guidance import Objective

    pipe, preset = sdxl
    objective = Objective(network, pipe.unet, pipe.scheduler.alphas_cumprod, preset.resolution)
    g = torch.Generator().manual_seed(seed)
    return objective, g, torch.randn(n, 4, 8, 8, generator=g), torch.randn(n, 4, 8, 8, generator=g)


def test_cached_consistency_targets_give_the_same_loss_as_calling_the_unet(sdxl, network):
    """L_consistency from the data step's (x_t, t, ε_θ(x_t) − ε) equals L_consistency with the UNet called live."""
    from training.guidance_data import consistency_targets

    pipe, preset = sdxl
    n = 5
    objective, g, x0, noise = objective_and_draws(sdxl, network, 3, n)
    embeds, _, pooled, _ = pipe.encode_prompt(PROMPTS * 2 + PROMPTS[:1], device="cpu", do_classifier_free_guidance=False)
    rewards, beta, eta = torch.randn(n, generator=g), torch.full((n,), 0.7), torch.full((n,), 1.5)
    preferred = torch.tensor([True, False, True, True, False])
    targets = consistency_targets(pipe.unet, pipe.scheduler.alphas_cumprod, x0, embeds, pooled, preferred, 1,
                                  preset.resolution, seed=0)
    rows = torch.nonzero(preferred).flatten()
    # the live path at the very (t, ε) the cache drew: recover ε from x_t = α x0 + σ ε
    from alignment.diffusion_guidance import vp_coefficients

    t = torch.zeros(n, dtype=torch.long)
    t[rows] = targets["c_t"][rows, 0].long()
    a, sg = vp_coefficients(pipe.scheduler.alphas_cumprod, t)
    live_noise = noise.clone()
    live_noise[rows] = (targets["c_xt"][rows, 0].float() - a[rows].view(-1, 1, 1, 1) * x0[rows]) / sg[rows].view(-1, 1, 1, 1)
    live = objective(x0, embeds, pooled, rewards, t, live_noise, beta, eta, rows)
    cached = objective(x0, embeds, pooled, rewards, t, live_noise, beta, eta, rows,
                       cached={"x_t": targets["c_xt"][rows, 0], "t": targets["c_t"][rows, 0],
                               "residual": targets["c_residual"][rows, 0]})
    assert torch.allclose(live[1], cached[1])  # L_guidance: same rows, same draws
    assert torch.allclose(live[2], cached[2], rtol=2e-2, atol=1e-4)  # fp16 storage of x_t and the residual
    assert float(live[2]) > 0


def test_readout_loss_is_the_regression_of_beta_log_h_onto_the_reward(sdxl, network):
    """Objective(readout=True) = mean(((β log h_ψ(x_t) − r) / std r)²), and its gradient reaches only ψ."""
    pipe, _ = sdxl
    n = 4
    objective, g, x0, noise = objective_and_draws(sdxl, network, 5, n)
    text = torch.randn(n, network.config.text_dim, generator=g)
    rewards, beta, eta = torch.randn(n, generator=g) + 3, torch.full((n,), 0.5), torch.zeros(n)
    t = torch.tensor([0, 3, 10, 49])
    loss, reported, zero = objective(x0, None, text, rewards, t, noise, beta, eta, readout=True)
    from alignment.diffusion_guidance import noised, vp_coefficients

    a, s = vp_coefficients(pipe.scheduler.alphas_cumprod, t)
    v = beta * network(noised(x0, noise, a, s), text, t, beta, eta)
    expected = ((v - rewards) / network.config.reward_std).pow(2).mean()
    assert torch.allclose(loss, expected) and float(zero) == 0 and torch.equal(reported, loss.detach())
    loss.backward()
    assert any(p.grad is not None for p in network.parameters())
    assert all(p.grad is None for p in pipe.unet.parameters())
    network.zero_grad(set_to_none=True)  # the fixture is shared


def test_execution_device_is_worked_out_once_per_pipeline(monkeypatch):
    """diffusers walks every submodule on each read of _execution_device; the samplers read it once per pipeline
    and again only when its components or device change."""
    from alignment.sampling import execution_device, with_component

    pipe, preset = load_pipeline("toy-sdxl", device="cpu")
    cls, reads = type(pipe), []
    original = cls._execution_device
    monkeypatch.setattr(cls, "_execution_device", property(lambda self: reads.append(1) or original.fget(self)))
    assert execution_device(pipe) == torch.device("cpu") and execution_device(pipe) == torch.device("cpu")
    assert len(reads) == 1
    sample_baseline(pipe, "a red star on a blue background", seed=0, preset=preset)
    view = with_component(pipe)
    assert len(reads) == 1 and execution_device(view) == torch.device("cpu")
    pipe.register_modules(scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config))  # a new component
    execution_device(pipe)
    assert len(reads) == 2
