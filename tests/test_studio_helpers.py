"""Shared pieces of the studio tests (imported by the other test_studio_* modules): a cheap reward, a random guidance
network in a temp folder, one engine over the shipped toy pipelines for the whole session, and the whole page served
in-process over a fresh store."""

from __future__ import annotations

import contextlib

import pytest
import torch

from alignment.guidance_network import GuidanceNetwork
from alignment.rewards import Reward, register
from studio.engine import Engine
from studio.settings import StudioSettings
from studio.store import Store

REWARD = "test-studio-redness"
PROMPT = "a red star on a blue background"


@register(REWARD)
class Redness(Reward):
    """Cheap and differentiable: mean red minus mean blue, ×10."""

    name = REWARD
    differentiable = True

    def __init__(self, **_):
        pass

    def _score(self, x, prompts):
        return ((x[:, 0].mean((1, 2)) - x[:, 2].mean((1, 2))) * 10).float()


def random_network(folder) -> str:
    torch.manual_seed(0)
    GuidanceNetwork.toy_size(reward_std=5.0).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def studio_engine(tmp_path_factory) -> Engine:
    folder = random_network(tmp_path_factory.mktemp("guidance"))
    return Engine(StudioSettings(device="cpu", reward=REWARD, guidance=folder, max_n=16))


@pytest.fixture()
def studio_store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'studio.sqlite'}", tmp_path / "data", vote_cap=3, client_salt="test")
    yield store
    store.close()


def test_the_cheap_reward_prefers_red():
    red, blue = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    red[:, 0], blue[:, 2] = 1, 1
    assert Redness().score(red, ["x"]) > Redness().score(blue, ["x"])


@contextlib.contextmanager
def served_page(engine, folder, configs):
    """(demo, store): the studio page over ``engine`` and a fresh SQLite store in ``folder``, served with Gradio's
    queue on a free loopback port, closed afterwards."""
    from benchmarks.load_test import free_port
    from studio.ui import LAUNCH_KWARGS, QUEUE_KWARGS, build_demo

    store = Store(f"sqlite:///{folder / 'studio.sqlite'}", folder / "data", client_salt="test")
    demo = build_demo(engine=engine, store=store, arena_configs=configs, warm_up=False)
    demo.queue(**QUEUE_KWARGS).launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                                      quiet=True, **LAUNCH_KWARGS)
    try:
        yield demo, store
    finally:
        demo.close()
        store.close()
