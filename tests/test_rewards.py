"""One reward interface: PickScore and HPS code paths checked against hand computations on tiny random models,
weighted sums, differentiability, the toy taste, and clear failures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

from alignment.rewards import REWARDS, WeightedSum, load_reward, parse_spec
from toyworld import render, sample_scene
from toyworld.taste_reward import register_toy_taste

register_toy_taste()  # the toy world's oracle as a reward, for the tests below

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a red star on a blue background", "a white ring on a black background"]


def _images(n=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny_clip_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-pickscore")
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16, logit_scale_init_value=2.6592,
    )
    CLIPModel(cfg).save_pretrained(folder)
    tok = CLIPTokenizer.from_pretrained(ROOT / "checkpoints" / "toy-sdxl" / "tokenizer_2")
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(folder)
    return folder


def test_pickscore_code_path_matches_the_formula(tiny_clip_folder):
    reward = load_reward("pickscore", source=str(tiny_clip_folder), processor=str(tiny_clip_folder))
    images = _images()
    got = reward.score(images, PROMPTS)
    model = CLIPModel.from_pretrained(tiny_clip_folder).eval()
    proc = CLIPProcessor.from_pretrained(tiny_clip_folder)
    with torch.no_grad():
        inputs = proc(text=PROMPTS, images=images, padding="max_length", max_length=77, truncation=True,
                      return_tensors="pt")
        img = model.get_image_features(pixel_values=inputs["pixel_values"])
        txt = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        img, txt = (F.normalize(t if isinstance(t, torch.Tensor) else t.pooler_output, dim=-1) for t in (img, txt))
        expected = model.logit_scale.exp() * (img * txt).sum(-1)
    assert got.shape == (2,)
    assert torch.allclose(got, expected, atol=1e-4), (got, expected)


def test_pickscore_encodes_each_prompt_once(tiny_clip_folder):
    """The text embedding of a prompt is cached (LRU): rescoring new images of the same prompt, as a slider move
    does, runs only the image tower, and gives what a fresh reward gives."""
    reward = load_reward("pickscore", source=str(tiny_clip_folder), processor=str(tiny_clip_folder))
    fresh = load_reward("pickscore", source=str(tiny_clip_folder), processor=str(tiny_clip_folder))
    calls = []
    original = reward.model.get_text_features

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    reward.model.get_text_features = counting
    images = _images()
    first = reward.score(images, PROMPTS)
    again = reward.score(images[::-1], PROMPTS[::-1])
    mixed = reward.score(images + images[:1], [PROMPTS[1], "a new prompt", PROMPTS[1]])
    assert calls == [2, 1]  # the two prompts once, then only the new one
    assert torch.allclose(again, first.flip(0), atol=1e-6)
    assert torch.allclose(mixed, fresh.score(images + images[:1], [PROMPTS[1], "a new prompt", PROMPTS[1]]),
                          atol=1e-5)
    reward._text.maxsize = 2
    reward.score(images, ["third", "fourth"])
    assert len(reward._text) == 2


def test_pickscore_is_differentiable_in_pixels(tiny_clip_folder):
    reward = load_reward("pickscore", source=str(tiny_clip_folder), processor=str(tiny_clip_folder))
    assert reward.differentiable
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    reward.score(x, PROMPTS).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_tensor_and_pil_inputs_agree(tiny_clip_folder):
    reward = load_reward("pickscore", source=str(tiny_clip_folder), processor=str(tiny_clip_folder))
    images = _images(size=64)
    x = torch.stack([torch.from_numpy(np.asarray(im)).permute(2, 0, 1).float() / 255 for im in images])
    assert torch.allclose(reward.score(images, PROMPTS), reward.score(x, PROMPTS), atol=1e-5)
    assert torch.allclose(reward.score(images, PROMPTS[0]), reward.score(x, [PROMPTS[0]] * 2), atol=1e-5)


TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_hps_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-hps")
    (folder / "tiny-hps-test.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(folder / "tiny-hps-test.json")
    torch.manual_seed(1)
    model = open_clip.create_model("tiny-hps-test", pretrained=None)
    path = folder / "HPS_tiny.pt"
    torch.save({"state_dict": model.state_dict()}, path)  # the layout of xswu/HPSv2's checkpoints
    return path


def test_hps_code_path_matches_the_formula(tiny_hps_file):
    reward = load_reward("hpsv2.1", source=str(tiny_hps_file), arch="tiny-hps-test")
    images = _images()
    got = reward.score(images, PROMPTS)
    model = open_clip.create_model("tiny-hps-test", pretrained=None)
    model.load_state_dict(torch.load(tiny_hps_file, weights_only=True)["state_dict"])
    model.eval()
    _, _, preprocess = open_clip.create_model_and_transforms("tiny-hps-test", pretrained=None)
    tok = open_clip.get_tokenizer("tiny-hps-test")
    with torch.no_grad():
        img = F.normalize(model.encode_image(torch.stack([preprocess(im) for im in images])), dim=-1)
        txt = F.normalize(model.encode_text(tok(PROMPTS)), dim=-1)
        expected = (img * txt).sum(-1)  # HPSv2's img_score.py: the cosine, no logit scale
    assert torch.allclose(got, expected, atol=1e-4), (got, expected)
    clip = load_reward("clip", source=str(tiny_hps_file), arch="tiny-hps-test")
    assert torch.allclose(clip.score(images, PROMPTS), 100 * expected.clamp(min=0), atol=1e-2)


def test_weighted_sum_of_rewards(tiny_clip_folder, tiny_hps_file):
    assert parse_spec("pickscore+0.5*hpsv2.1") == [(1.0, "pickscore"), (0.5, "hpsv2.1")]
    a = load_reward("toy-taste")
    both = load_reward("toy-taste+0.25*toy-taste")
    assert isinstance(both, WeightedSum) and not both.differentiable
    img = [render(sample_scene(np.random.default_rng(3)))]
    assert torch.allclose(both.score(img, PROMPTS[0]), 1.25 * a.score(img, PROMPTS[0]))


@pytest.mark.parametrize("spec,match", [
    ("", "no reward"), ("nope", "unknown reward"), ("pickscore+", "cannot read"), ("2**pickscore", "cannot read"),
    ("pickscore + x*hpsv2", "cannot read"),
])
def test_bad_reward_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(spec)


def test_registry_names():
    assert {"pickscore", "hpsv2", "hpsv2.1", "clip", "toy-pickscore", "toy-taste"} <= set(REWARDS)


def test_importing_registers_nothing():
    """``toy-taste`` is known only once someone registers it: importing the packages has no such side effect."""
    code = ("import alignment.rewards, evaluations, evaluations.rewards, toyworld.taste_reward, studio.engine; "
            "print('toy-taste' in alignment.rewards.REWARDS)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_toy_taste_prefers_the_right_image():
    import dataclasses

    reward = load_reward("toy-taste")
    scene = dataclasses.replace(sample_scene(np.random.default_rng(5), clean=True), colour="red", shape="star",
                                background="blue", radius=22.0, cx=32.0, cy=32.0, contrast=1.0)
    wrong = dataclasses.replace(scene, shape="circle", colour="green")
    scores = reward.score([Image.fromarray(render(scene)), Image.fromarray(render(wrong))],
                          "a red star on a blue background")
    assert scores[0] > scores[1] + 2


def test_prompt_count_must_match(tiny_clip_folder):
    reward = load_reward("toy-taste")
    with pytest.raises(ValueError, match="2 images but 3 prompts"):
        reward.score(_images(), PROMPTS + ["x"])


def test_missing_local_reward_and_offline_hub_fail_clearly(tmp_path):
    from alignment import ModelLoadError

    with pytest.raises(ModelLoadError, match="could not load the pickscore reward"):
        load_reward("pickscore", source=str(tmp_path / "missing"), processor=str(tmp_path / "missing"))
    code = "from alignment.rewards import load_reward\ntry:\n    load_reward('hpsv2')\nexcept Exception as e:\n    print(type(e).__name__, e)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert "ModelLoadError" in proc.stdout and "xswu/HPSv2" in proc.stdout



def test_shipped_toy_pickscore_reads_captions():
    """The trained toy reward, through the PickScore code path: on clean renders of held-out combinations it scores
    an image higher with its own caption than with the caption of another colour or another shape."""
    from toyworld.vocabulary import COLOURS, SHAPES

    reward = load_reward("toy-pickscore")
    assert reward.differentiable
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng, split="heldout", clean=True) for _ in range(40)]
    images = [Image.fromarray(render(s)) for s in scenes]

    def caption(colour, shape, background):
        return f"a {colour} {shape} on a {background} background"

    def another(value, choices, *avoid):
        return rng.choice([c for c in choices if c != value and c not in avoid])

    right = reward.score(images, [caption(s.colour, s.shape, s.background) for s in scenes])
    wrong_colour = reward.score(images, [caption(another(s.colour, list(COLOURS), s.background), s.shape,
                                                 s.background) for s in scenes])
    wrong_shape = reward.score(images, [caption(s.colour, another(s.shape, list(SHAPES)), s.background)
                                        for s in scenes])
    assert (right > wrong_colour).float().mean() > 0.85
    assert (right > wrong_shape).float().mean() > 0.7
