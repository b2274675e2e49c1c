"""The guidance network trained through its own sampler (training/guidance_control.py)."""

import json

import pytest
import torch

from alignment import load_pipeline
from alignment.defaults import load_guidance_network
from alignment.diffusion_guidance import grad_log_h_of, vp_coefficients
from alignment.guidance_network import GuidanceNetwork
from alignment.sampling import encode_prompt_kwargs
from training.__main__ import main as training_main
from training.configs import GuidanceControlConfig
from training.guidance_control import run, training_prompts, unrolled_guided_sample

PROMPTS = ["a red star on a blue background", "a small green circle on a white background"]


@pytest.fixture(scope="module")
def toy():
    pipe, preset = load_pipeline("toy-sdxl", dtype=torch.float32)
    side = preset.resolution // pipe.vae_scale_factor
    noise = torch.randn(2, pipe.unet.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    return pipe, preset, noise


@pytest.mark.parametrize("guidance", [0.0, 3.0])  # without and with classifier-free guidance (toy-sdxl's 3)
def test_without_a_network_it_is_the_pipelines_sampler(toy, guidance):
    pipe, preset, noise = toy
    text = encode_prompt_kwargs(pipe, PROMPTS, guidance > 1)
    with torch.no_grad():
        ours, price = unrolled_guided_sample(pipe, None, text, noise, None, None, preset.steps, preset.resolution,
                                             guidance)
        theirs = pipe(**text, num_inference_steps=preset.steps, guidance_scale=guidance, latents=noise.clone(),
                      height=preset.resolution, width=preset.resolution, output_type="pt").images
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.equal(price, torch.zeros(2))


def test_the_reward_gradient_reaches_the_network_and_the_price_is_the_guidance_energy(toy):
    pipe, preset, noise = toy
    network = load_guidance_network()
    text = encode_prompt_kwargs(pipe, PROMPTS, True)
    beta, eta = torch.full((2,), 0.3), torch.ones(2)
    images, price = unrolled_guided_sample(pipe, network, text, noise, beta, eta, preset.steps, preset.resolution,
                                           preset.guidance_scale)
    images.sum().backward()
    grads = [p.grad for p in network.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    # the first step's share of the price, by hand: ½‖σ_t ∇log h(x_T)‖²
    scheduler = pipe.scheduler
    scheduler.set_timesteps(preset.steps)
    t = scheduler.timesteps[:1].expand(2)
    _, sigma = vp_coefficients(scheduler.alphas_cumprod, t)
    _, grad = grad_log_h_of(network, noise * scheduler.init_noise_sigma, text["pooled_prompt_embeds"], t, beta, eta)
    first = 0.5 * (sigma.view(-1, 1, 1, 1) * grad).pow(2).flatten(1).sum(1)
    assert torch.all(price.detach() > first) and torch.all(first > 0)


def test_prompts_come_from_a_file_in_a_seeded_cycle_or_from_the_training_split(tmp_path):
    cfg = GuidanceControlConfig(work=tmp_path / "w")
    toy = training_prompts(cfg, 1, 4)
    assert len(toy) == 4 and toy == training_prompts(cfg, 1, 4) and toy != training_prompts(cfg, 2, 4)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n\na dog\na cow\n")
    cfg = GuidanceControlConfig(work=tmp_path / "w", captions=prompts)
    batch = training_prompts(cfg, 0, 3) + training_prompts(cfg, 1, 3)
    assert sorted(batch[:3]) == ["a cat", "a cow", "a dog"] and sorted(batch[3:]) == ["a cat", "a cow", "a dog"]
    prompts.write_text("\n  \n")
    with pytest.raises(ValueError, match="no prompts"):
        training_prompts(cfg, 0, 3)


def test_training_runs_pauses_resumes_and_exports_a_network_the_samplers_load(tmp_path):
    work, export = tmp_path / "work", tmp_path / "export"
    common = ["guidance-control", "--work", str(work), "--export", str(export), "--batch-size", "2",
              "--init-from", "checkpoints/toy-guidance", "--save-every", "1", "--lr", "0.5"]
    assert training_main(common + ["--steps", "2"]) == 0
    first = GuidanceNetwork.from_pretrained(export).state_dict()
    assert training_main(common + ["--steps", "4"]) == 0  # goes on from the saved step 2
    assert json.loads((work / "progress.json").read_text())["step"] == 4
    meta = json.loads((export / "training.json").read_text())
    assert meta["objective"] == "guidance-control" and meta["step"] == 4 and meta["finished"]
    network = load_guidance_network(export)
    assert any(not torch.equal(first[k], v) for k, v in network.state_dict().items())
    from alignment.diffusion_sampler import sample_guided

    pipe, preset = load_pipeline("toy-sdxl", dtype=torch.float32)
    out = sample_guided(pipe, PROMPTS[0], network=network, beta=0.3, preset=preset, reward="toy-pickscore")
    assert out.rewards.isfinite().all()


def test_bad_settings_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="kl-weight"):
        run(GuidanceControlConfig(work=tmp_path, kl_weight=-1.0))
    with pytest.raises(ValueError, match="UNet"):
        run(GuidanceControlConfig(work=tmp_path, model="toy-sd3"))

    class Opaque:  # a reward scored by something gradients cannot pass (a remote judge, a classifier's argmax)
        differentiable = False

    monkeypatch.setattr("training.guidance_control.load_reward", lambda name, device=None: Opaque())
    with pytest.raises(ValueError, match="not differentiable"):
        run(GuidanceControlConfig(work=tmp_path))


def test_a_fresh_network_is_sized_for_the_pipeline(tmp_path):
    export = tmp_path / "export"
    assert training_main(["guidance-control", "--work", str(tmp_path / "work"), "--export", str(export),
                          "--size", "toy-wide", "--batch-size", "1", "--steps", "1"]) == 0
    network = GuidanceNetwork.from_pretrained(export)
    assert tuple(network.config.channels) == tuple(GuidanceNetwork.toy_wide_size().config.channels)
    assert network.config.text_dim == 32 and network.config.in_channels == 4  # toy-sdxl's pooled text and latents


def test_the_pairwise_reward_term_weighs_pairs_by_their_chance_to_lose():
    from training.guidance_control import reward_term

    r, base = torch.tensor([12.0, 12.5, 11.0], requires_grad=True), torch.tensor([12.0, 11.5, 12.0])
    assert torch.equal(reward_term(r, None, 0.0), -r)  # off: the plain reward
    term = reward_term(r, base, 0.5)
    assert torch.allclose(term[0], 0.5 * torch.log(torch.tensor(2.0)))  # a tie: −T log ½
    term.sum().backward()
    # d/dr = −σ(−(r − r_base)/T): ½ for a tie, small for a pair that wins by much, near 1 for one that loses
    assert torch.allclose(r.grad, -torch.sigmoid(-(r.detach() - base) / 0.5))
    assert r.grad[1] > -0.2 and r.grad[2] < -0.8
    wide = reward_term(r.detach(), base, 1e4)  # a large T is the reward difference, halved, up to a constant
    assert torch.allclose(wide - wide[0], -(r.detach() - base) / 2 - (-(r.detach()[0] - base[0]) / 2), atol=1e-3)


def test_pairwise_training_runs_and_records_its_temperature(tmp_path):
    export = tmp_path / "export"
    assert training_main(["guidance-control", "--work", str(tmp_path / "work"), "--export", str(export),
                          "--init-from", "checkpoints/toy-guidance", "--batch-size", "2", "--steps", "1",
                          "--pair-temperature", "0.5"]) == 0
    meta = json.loads((export / "training.json").read_text())
    assert meta["pair_temperature"] == 0.5 and meta["settings"]["steps"] == 1 and meta["device"].endswith("CPU")
    assert meta["settings"]["init_from"] == "checkpoints/toy-guidance" and meta["exported"].endswith("UTC")
    with pytest.raises(ValueError, match="pair-temperature"):
        run(GuidanceControlConfig(work=tmp_path, pair_temperature=-1.0))
