"""Hub twins (``evaluations.hub_twins``): the folders have the hub's layout and file names, load with the project's
own loaders, serve the studio's engine (baseline and aligned images), and the full-size path is the tiny one with
the public configs: checked on the meta device, where every component is built, counted and freed before the next."""

from __future__ import annotations

import gc
import json
import re
import weakref
from pathlib import Path

import pytest
import torch

from alignment import load_pipeline
from alignment.guidance_network import GuidanceNetwork
from alignment.rewards import CLIPModelReward, WeightedSum, load_reward, parse_spec
from evaluations import hub_twins, real_scale
from evaluations.hub_twins import Writer

CONFIGS = real_scale.CONFIGS
PROMPT = "a red star on a blue background"
TOKENIZER = {"merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"}
DIFFUSERS_MODEL = {"config.json", "diffusion_pytorch_model.safetensors"}
TRANSFORMERS_MODEL = {"config.json", "model.safetensors"}


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def components(index: dict) -> dict:
    return {k: v for k, v in index.items() if not k.startswith("_")}


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    out = tmp_path_factory.mktemp("twins")
    lines = []
    folders = Writer(out, tiny=True, dtype=torch.float32, device="cpu", log=lines.append).write()
    assert len(lines) == 5 + 5 + 1 + 1  # one line per component written: models and schedulers
    return folders


def test_the_layout_is_the_hubs(twins):
    sdxl, sd35 = twins["sdxl-turbo"], twins["sd3.5-large-turbo"]
    hub_sdxl = read(CONFIGS / "sdxl-turbo" / "model_index.json")
    assert components(read(sdxl / "model_index.json")) == components(hub_sdxl)
    assert read(sdxl / "model_index.json")["_class_name"] == hub_sdxl["_class_name"]
    hub_sd35 = read(CONFIGS / "sd35-large-turbo" / "model_index.reconstructed.json")
    without_t5 = {**components(hub_sd35), "text_encoder_3": [None, None], "tokenizer_3": [None, None]}
    got = components(read(sd35 / "model_index.json"))
    assert {k: v for k, v in got.items() if v != [None, None] or k in without_t5} == without_t5
    for folder, index in ((sdxl, hub_sdxl), (sd35, hub_sd35)):
        for name, (library, _) in ((k, v) for k, v in components(index).items() if isinstance(v, list)):
            if library is None or name.endswith("_3"):  # feature_extractor, image_encoder; T5
                assert not (folder / name).exists()
            elif name.startswith("tokenizer"):
                assert files(folder / name) == TOKENIZER
            elif name == "scheduler":
                assert files(folder / name) == {"scheduler_config.json"}
            else:
                assert files(folder / name) == (DIFFUSERS_MODEL if library == "diffusers" else TRANSFORMERS_MODEL)
    assert files(twins["pickscore"]) == TRANSFORMERS_MODEL | TOKENIZER | {"preprocessor_config.json"}
    assert files(twins["guidance"]) == DIFFUSERS_MODEL


def test_configs_and_tokenizers_are_the_public_ones(twins):
    """Every value of a public config is in the twin's, but for the tiny widths; tokenizer files are the hub's."""
    pairs = [(twins["sdxl-turbo"] / name, CONFIGS / "sdxl-turbo" / name, real_scale.TINY["sdxl-turbo"].get(name, {}))
             for name in ("unet", "vae", "text_encoder", "text_encoder_2")]
    pairs += [(twins["sd3.5-large-turbo"] / name, CONFIGS / "sd35-large-turbo" / name,
               real_scale.TINY["sd3.5-large-turbo"].get(name, {}))
              for name in ("transformer", "vae", "text_encoder", "text_encoder_2")]
    for twin, public, tiny in pairs:
        got, want = read(twin / "config.json"), read(real_scale._config(public))
        same = {k for k in want if k not in tiny and not k.startswith("_") and k not in ("torch_dtype", "dtype",
                                                                                        "transformers_version")}
        assert same and {k: got[k] for k in same} == {k: want[k] for k in same}, twin
    assert read(twins["sdxl-turbo"] / "scheduler" / "scheduler_config.json")["timestep_spacing"] == "trailing"
    for twin, hub in ((twins["sdxl-turbo"] / "tokenizer_2", CONFIGS / "sdxl-turbo" / "tokenizer_2"),
                      (twins["sd3.5-large-turbo"] / "tokenizer", CONFIGS / "sd35-large-turbo" / "tokenizer"),
                      (twins["pickscore"], CONFIGS / "sdxl-turbo" / "tokenizer")):
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            assert (twin / name).read_bytes() == (hub / name).read_bytes(), twin / name
        assert (twin / "vocab.json").read_bytes() == (CONFIGS / "sdxl-turbo" / "tokenizer" / "vocab.json").read_bytes()


def test_the_project_loaders_read_them(twins):
    sdxl, _ = load_pipeline(str(twins["sdxl-turbo"]), device="cpu")
    sd35, _ = load_pipeline(str(twins["sd3.5-large-turbo"]), device="cpu")
    assert type(sdxl).__name__ == "StableDiffusionXLPipeline" and type(sd35).__name__ == "StableDiffusion3Pipeline"
    assert sd35.text_encoder_3 is None
    # the pad tokens are the hub's, and the ones real_scale's in-memory pipelines use
    for pipe, parts in ((sdxl, real_scale.sdxl_parts(True)), (sd35, real_scale.sd35_parts(True))):
        for name in ("tokenizer", "tokenizer_2"):
            assert getattr(pipe, name).pad_token == parts[name]("cpu", torch.float32).pad_token, name
    assert sdxl.tokenizer_2.pad_token == "!" and sd35.tokenizer.pad_token == "<|endoftext|>"
    # the weights are what the builders draw from the seed
    torch.manual_seed(0 + list(real_scale.sdxl_parts(True)).index("unet"))
    unet = real_scale.sdxl_parts(True)["unet"]("cpu", torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(), sdxl.unet.state_dict().values()))

    reward = load_reward(str(twins["pickscore"]))
    assert isinstance(reward, CLIPModelReward) and reward.name == "pickscore" and reward.size == 32
    network = GuidanceNetwork.from_pretrained(twins["guidance"])
    assert network.config.text_dim == sdxl.text_encoder_2.config.projection_dim


def test_a_reward_folder_is_a_reward_spec(twins, tmp_path):
    folder = str(twins["pickscore"])
    assert parse_spec(f"{folder}+0.5*{folder}") == [(1.0, folder), (0.5, folder)]
    both = load_reward(f"{folder} + 0.5*{folder}")
    assert isinstance(both, WeightedSum) and both.differentiable
    image = torch.rand(1, 3, 40, 40)
    assert torch.allclose(both.score(image, PROMPT), 1.5 * load_reward(folder).score(image, PROMPT), atol=1e-5)
    with pytest.raises(ValueError, match="no reward model in"):
        parse_spec(str(tmp_path))  # a folder without a model config is no reward


def test_the_studio_engine_runs_on_the_twins(twins):
    from studio.engine import Engine
    from studio.settings import StudioSettings

    models = (str(twins["sdxl-turbo"]), str(twins["sd3.5-large-turbo"]))
    engine = Engine(StudioSettings(models=models, device="cpu", reward=str(twins["pickscore"]),
                                   guidance=str(twins["guidance"])))
    for model, knobs in zip(models, ({}, {"n": 4})):
        view = engine.explore(model, PROMPT, seed=0, **knobs)
        assert view.family == ("diffusion" if "sdxl" in model else "flow")
        assert view.aligned is not None and not view.notes, view.notes
        assert view.baseline.image.size == view.aligned.image.size == (64, 64)
        assert set(view.baseline.rewards) == set(view.aligned.rewards) == {"pickscore"}


def test_the_command_line_writes_the_chosen_twins(tmp_path, capsys):
    assert hub_twins.main(["--out", str(tmp_path), "--tiny", "--models", "guidance", "pickscore"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["guidance", "pickscore"]
    assert f"STUDIO_REWARD={tmp_path / 'pickscore'} STUDIO_GUIDANCE={tmp_path / 'guidance'} python app.py" in \
        capsys.readouterr().out


def test_large_components_are_sharded_with_the_hubs_names(tmp_path):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection

    Writer(tmp_path, tiny=True, dtype=torch.float32, device="cpu", max_shard_size="2MB",
           log=lambda _: None).sdxl_turbo()
    unet, text = tmp_path / "sdxl-turbo" / "unet", tmp_path / "sdxl-turbo" / "text_encoder_2"
    for folder, stem in ((unet, "diffusion_pytorch_model"), (text, "model")):
        index = read(folder / f"{stem}.safetensors.index.json")
        shards = sorted(set(index["weight_map"].values()))
        assert len(shards) > 1 and files(folder) == {"config.json", f"{stem}.safetensors.index.json", *shards}
        assert all(re.fullmatch(rf"{stem}-\d{{5}}-of-{len(shards):05d}\.safetensors", s) for s in shards), shards
    assert real_scale.n_parameters(UNet2DConditionModel.from_pretrained(unet)) == 1_714_532
    CLIPTextModelWithProjection.from_pretrained(text)


def test_full_size_is_written_one_component_at_a_time(tmp_path, monkeypatch):
    """The full-size writer on the meta device: each model of the public size and dtype, the one before it freed."""
    saved = []

    def record(component, folder, max_shard_size=None):
        if not isinstance(component, torch.nn.Module):
            return real_save(component, folder, max_shard_size)
        gc.collect()
        assert all(ref() is None for *_, ref in saved), "a component outlived its save"
        dtypes = {p.dtype for p in component.parameters()}
        saved.append((folder.relative_to(tmp_path).as_posix(), real_scale.n_parameters(component), dtypes,
                      weakref.ref(component)))

    real_save = hub_twins.save_component
    monkeypatch.setattr(hub_twins, "save_component", record)
    Writer(tmp_path, device="meta", log=lambda _: None).write()
    counts = {name: (n, dtypes) for name, n, dtypes, _ in saved}
    bf16 = {torch.bfloat16}
    assert counts["sdxl-turbo/unet"][0] == pytest.approx(2.567e9, rel=0.005)
    assert counts["sd3.5-large-turbo/transformer"][0] == pytest.approx(8.06e9, rel=0.005)
    assert counts["pickscore"][0] == pytest.approx(0.986e9, rel=0.01)
    assert counts["sdxl-turbo/text_encoder_2"][0] == counts["sd3.5-large-turbo/text_encoder_2"][0]
    assert all(dtypes == bf16 for name, (_, dtypes) in counts.items() if name != "guidance")
    assert counts["guidance"] == (real_scale.n_parameters(GuidanceNetwork.sdxl_size()), {torch.float32})
    assert real_scale.pooled_width() == GuidanceNetwork.sdxl_size().config.text_dim == 1280
    assert len(saved) == 4 + 4 + 1 + 1
    hub = read(CONFIGS / "sdxl-turbo" / "model_index.json")
    assert components(read(tmp_path / "sdxl-turbo" / "model_index.json")) == components(hub)
