"""``python -m training``: the trainers' options are made from their config dataclasses, and every option users
type (the README's and the module docstring's commands) keeps its name and its default."""

from pathlib import Path

import pytest

from training import configs
from training.__main__ import CONFIG_COMMANDS, PAUSED, build_parser, main
from training.options import config_from

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = object()
# every option of these commands before they were made from the dataclasses, with its default then
OPTIONS = {
    "toy-base": {"--preset": REQUIRED, "--work": REQUIRED, "--export": None, "--init-from": None,
                 "--fresh-denoiser": False, "--vae-steps": 3000, "--steps": 20000, "--batch-size": 128, "--lr": 3e-4,
                 "--vae-lr": 1e-3, "--workers": 4, "--max-minutes": 1e9, "--save-every": 1000, "--seed": 0,
                 "--pool": None, "--pool-size": 200000, "--time-shift": 1.0, "--uniform-time-share": 0.0,
                 "--logit-mean": 0.0, "--adaln-zero": False, "--anneal": False},
    "toy-decoder": {"--init-from": REQUIRED, "--work": REQUIRED, "--export": None, "--steps": 20000,
                    "--batch-size": 256, "--lr": 3e-4, "--workers": 4, "--max-minutes": 1e9, "--save-every": 1000,
                    "--seed": 0, "--pool": None, "--pool-size": 200000},
    "toy-distill": {"--init-from": REQUIRED, "--work": REQUIRED, "--export": None, "--pairs": 200000,
                    "--teacher-steps": 16, "--teacher-guidance": 4.0, "--student-steps": 4, "--sampler-share": 0.5,
                    "--logit-mean": 0.0, "--steps": 8000, "--batch-size": 1024, "--pair-batch": 4096, "--lr": 2e-4,
                    "--workers": 4, "--max-minutes": 1e9, "--save-every": 1000, "--seed": 0, "--pool": None,
                    "--pool-size": 200000},
    "toy-pickscore": {"--pairs": REQUIRED, "--work": REQUIRED, "--export": None, "--pool": None, "--pool-size": 100000,
                      "--init-from": None, "--pretrain-steps": 3000, "--steps": 3000, "--batch-size": 512, "--lr": 1e-3,
                      "--clip-weight": 0.2, "--workers": 8, "--max-minutes": 1e9, "--save-every": 500, "--seed": 0},
    "guidance-cache": {"--pairs": REQUIRED, "--out": REQUIRED, "--model": "toy-sdxl", "--reward": "toy-pickscore",
                       "--models": (), "--chunk": 2048, "--batch": 256, "--limit": None, "--consistency-draws": 0},
    "guidance": {"--cache": REQUIRED, "--work": REQUIRED, "--export": None, "--model": "toy-sdxl", "--size": "toy",
                 "--init-from": None, "--consistency-fraction": 1.0, "--consistency-source": "unet", "--focus": 0.0,
                 "--steps": 20000, "--readout-steps": 0, "--readout-t-max": 50, "--no-cuda-graph": True,
                 "--batch-size": 256, "--lr": 5e-4, "--beta-range": (0.05, 5.0), "--eta-range": (0.0, 2.0),
                 "--max-minutes": 1e9, "--save-every": 1000, "--seed": 0},
    "guidance-eval": {"--cache": REQUIRED, "--network": REQUIRED, "--model": "toy-sdxl", "--betas": (0.5, 1.0, 2.0),
                      "--seed": 0, "--out": None},
}
REQUIRED_VALUES = {"--preset": "toy-sd3", "--init-from": str(ROOT / "checkpoints" / "toy-sd3")}


def subparser(command: str):
    return build_parser()._subparsers._group_actions[0].choices[command]


@pytest.mark.parametrize("command", list(OPTIONS))
def test_every_option_keeps_its_name_and_default(command):
    actions = {s: a for a in subparser(command)._actions for s in a.option_strings}
    required = [o for o, d in OPTIONS[command].items() if d is REQUIRED]
    assert sorted(o for o, a in actions.items() if a.required) == sorted(required)
    argv = [command] + [x for o in required for x in (o, REQUIRED_VALUES.get(o, "some/path"))]
    cls = next(c for name, c, _, _ in CONFIG_COMMANDS if name == command)
    cfg = config_from(cls, build_parser().parse_args(argv))
    for option, default in OPTIONS[command].items():
        if default is not REQUIRED:
            assert getattr(cfg, actions[option].dest) == default, option


def test_values_parse_into_the_config_types():
    args = build_parser().parse_args(["guidance", "--cache", "c", "--work", "w", "--beta-range", "0.1", "2",
                                      "--no-cuda-graph", "--steps", "7"])
    cfg = config_from(configs.GuidanceTrainConfig, args)
    assert cfg.beta_range == (0.1, 2.0) and cfg.cuda_graph is False and cfg.steps == 7
    assert cfg.cache == Path("c") and cfg.export is None
    args = build_parser().parse_args(["guidance-cache", "--pairs", "p", "--out", "o", "--models", "a", "b",
                                      "--limit", "5"])
    assert config_from(configs.CacheConfig, args).models == ("a", "b")
    assert config_from(configs.CacheConfig, args).limit == 5
    args = build_parser().parse_args(["toy-base", "--preset", "toy-sd3", "--work", "w", "--fresh-denoiser",
                                      "--adaln-zero", "--anneal"])
    cfg = config_from(configs.ToyTrainConfig, args)
    assert cfg.fresh_denoiser and cfg.adaln_zero and cfg.anneal
    with pytest.raises(SystemExit):
        build_parser().parse_args(["guidance", "--cache", "c", "--work", "w", "--size", "huge"])


def test_help_shows_the_dataclass_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["toy-pickscore", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--save-every SAVE_EVERY save the state every so many steps (default: 500)" in out


def test_main_hands_the_config_to_the_trainer_and_says_when_it_paused(monkeypatch):
    import training.guidance_eval
    import training.toy_base
    import training.toy_pickscore

    seen = []
    monkeypatch.setattr(training.toy_pickscore, "run", lambda cfg: seen.append(cfg) or False)
    assert main(["toy-pickscore", "--pairs", "p", "--work", "w", "--steps", "5"]) == PAUSED == 3
    assert seen == [configs.PickScoreTrainConfig(work=Path("w"), pairs=Path("p"), steps=5)]
    monkeypatch.setattr(training.toy_base, "run", lambda cfg: seen.append(cfg) or False)
    assert main(["toy-base", "--preset", "toy-sdxl", "--work", "w"]) == 0  # toy-base's recipes pause on purpose
    assert seen[-1] == configs.ToyTrainConfig(preset="toy-sdxl", work=Path("w"))
    monkeypatch.setattr(training.guidance_eval, "evaluate", seen.append)
    assert main(["guidance-eval", "--cache", "c", "--network", "n", "--betas", "1", "3"]) == 0
    assert seen[-1] == configs.GuidanceEvalConfig(cache=Path("c"), network=Path("n"), betas=(1.0, 3.0))
