"""Rewards by name, and weighted sums of them: ``load_reward("pickscore+0.5*hpsv2.1")``.

Names: ``pickscore``, ``hpsv2``, ``hpsv2.1``, ``clip``, ``toy-pickscore``. ``toy-taste`` (the toy world's oracle,
for evaluation only) is registered by ``toyworld.taste_reward.register_toy_taste()``, called where it is needed,
because ``alignment`` never imports the toy world.
Keyword arguments go to the named reward's factory (e.g. ``source=`` a local folder or file).
A term may also be a local folder holding a ``CLIPModel`` and its processor (PickScore's layout, e.g. written by
``python -m evaluations.hub_twins``): ``load_reward("/models/pickscore")`` scores with the PickScore code, under the
folder's name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from ..presets import CHECKPOINTS
from .base import Reward, WeightedSum
from .open_clip_rewards import OpenClipReward, hps_checkpoint
from .clip_model import CLIPModelReward

REWARDS: dict[str, Callable[..., Reward]] = {}


def register(name: str):
    def wrap(factory):
        REWARDS[name] = factory
        return factory
    return wrap


@register("pickscore")
def _pickscore(source: str = "yuvalkirstain/PickScore_v1", processor: str = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
               **kw) -> Reward:
    return CLIPModelReward(source, processor, name="pickscore", **kw)


@register("toy-pickscore")
def _toy_pickscore(source: str = str(CHECKPOINTS / "toy-pickscore"), **kw) -> Reward:
    return CLIPModelReward(source, name="toy-pickscore", **kw)


def _hps(version: str):
    def factory(source: str | None = None, arch: str = "ViT-H-14", **kw) -> Reward:
        return OpenClipReward(arch, checkpoint=source or hps_checkpoint(version), kind="hps", name=version, **kw)
    return factory


register("hpsv2")(_hps("hpsv2"))
register("hpsv2.1")(_hps("hpsv2.1"))


@register("clip")
def _clip(arch: str = "ViT-H-14", pretrained: str = "laion2b_s32b_b79k", source: str | None = None, **kw) -> Reward:
    return OpenClipReward(arch, checkpoint=source, pretrained=None if source else pretrained, kind="clip", name="clip",
                          **kw)


_WEIGHT = r"^\s*(?:([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*\*\s*)?"
_TERM = re.compile(_WEIGHT + r"([A-Za-z][\w.\-]*)\s*$")
_FOLDER_TERM = re.compile(_WEIGHT + r"(.+?)\s*$")


def is_reward_folder(name: str) -> bool:
    """Whether ``name`` is a local folder with a model config (a registered name wins over a folder of that name)."""
    return name not in REWARDS and (Path(name).expanduser() / "config.json").is_file()


def parse_spec(spec: str) -> list[tuple[float, str]]:
    """``"pickscore+0.5*hpsv2.1"`` -> [(1.0, "pickscore"), (0.5, "hpsv2.1")]; a clear ValueError otherwise."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("no reward named: use e.g. 'pickscore' or 'pickscore+0.5*hpsv2.1'")
    terms = []
    for part in spec.split("+"):
        m = _FOLDER_TERM.match(part)  # WEIGHT*NAME, the name a registered reward or a folder
        name = m.group(2) if m else ""
        if not (name in REWARDS or (name and is_reward_folder(name))):
            if "/" in name or os.sep in name:
                raise ValueError(f"no reward model in {name!r}: a reward folder holds a CLIPModel (config.json, "
                                 "weights) and its processor")
            if not _TERM.match(part):
                raise ValueError(f"cannot read the reward term {part!r} in {spec!r}: write NAME or WEIGHT*NAME")
            raise ValueError(f"unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}, or a local "
                             "folder with a CLIPModel and its processor")
        terms.append((float(m.group(1) or 1.0), name))
    return terms


def load_reward(spec: str, **kwargs) -> Reward:
    """Build the reward a spec names; ``kwargs`` go to every named reward. A name that appears twice in a sum is
    loaded once."""
    terms = parse_spec(spec)
    built = {name: REWARDS[name](**kwargs) if name in REWARDS else
             CLIPModelReward(str(Path(name).expanduser()), name=Path(name).name, **kwargs)
             for name in dict.fromkeys(n for _, n in terms)}
    if len(terms) == 1 and terms[0][0] == 1.0:
        return built[terms[0][1]]
    return WeightedSum([(w, built[n]) for w, n in terms], name=spec.replace(" ", ""))
