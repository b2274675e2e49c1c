"""Votes kept in a hub dataset (``studio/hub_sync.py``), against a local stand-in for the hub: a repo is a folder,
a commit copies the uploaded bytes into it, a download copies files out. Nothing here reaches the network.

Votes cast and committed come back identical in a fresh store; a process killed between commits loses only the
votes since the last commit; restoring twice adds nothing; deleted votes stay deleted; a corrupt row is skipped
and counted; no token or no hub leaves the page serving and says why; without the setting nothing is created.
Also the Spaces deployment pieces: ZeroGPU durations per handler and the README's front matter. The restore into
a fresh store runs on SQLite and on PostgreSQL (``tests/postgres.py``: skipped unless a server is configured).
"""

from __future__ import annotations

import ast
import fnmatch
import json
import logging
import random
import shutil
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from sqlalchemy import func, select

from studio import hub_sync, settings as studio_settings
from studio.hub_sync import HubSync, start
from studio.schema import CHOICES, Session, Vote
from studio.settings import StudioSettings, gpu
from studio.store import Store

ROOT = Path(__file__).resolve().parents[1]
REPO = "someone/studio-votes"


class FakeHub:
    """The few ``HfApi`` methods the sync and ``CommitScheduler`` call, over a folder per repo."""

    def __init__(self, root: Path, *, offline: bool = False, refuse: Exception | None = None):
        self.root, self.offline, self.refuse = Path(root), offline, refuse
        self.commits, self.private = 0, {}
        self._executor = ThreadPoolExecutor(max_workers=1)  # one commit at a time, as HfApi.run_as_future

    def _reach(self):
        if self.offline:
            raise ConnectionError("the hub can't be reached")

    def repo(self, repo_id: str = REPO) -> Path:
        return self.root / repo_id

    def repo_exists(self, repo_id, *, repo_type=None, **_):
        self._reach()
        return self.repo(repo_id).is_dir()

    def create_repo(self, repo_id, *, private=None, repo_type=None, exist_ok=False, **_):
        self._reach()
        if self.refuse is not None:
            raise self.refuse
        assert repo_type == "dataset"
        self.repo(repo_id).mkdir(parents=True, exist_ok=exist_ok)
        self.private.setdefault(repo_id, private)
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, *, commit_message=None, repo_type=None, revision=None, **_):
        self._reach()
        for op in operations:
            with op.as_file() as f:
                data = f.read()
            target = self.repo(repo_id) / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self.commits += 1
        return SimpleNamespace(oid=str(self.commits))

    def run_as_future(self, fn, *args, **kwargs):
        return self._executor.submit(fn, *args, **kwargs)

    def snapshot_download(self, repo_id, *, repo_type=None, local_dir=None, allow_patterns=None, **_):
        self._reach()
        repo = self.repo(repo_id)
        for path in repo.rglob("*"):
            name = path.relative_to(repo).as_posix()
            if path.is_file() and any(fnmatch.fnmatchcase(name, p) for p in allow_patterns or ["*"]):
                (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, Path(local_dir) / name)
        return str(local_dir)

    def lines(self, kind: str) -> list[str]:
        return [line for path in sorted((self.repo() / kind).glob("*.jsonl"))
                for line in path.read_text().splitlines()]


@pytest.fixture
def hub(tmp_path):
    return FakeHub(tmp_path / "hub")


@pytest.fixture
def syncs():
    """Every sync a test opens, stopped afterwards (so no commit runs at the interpreter's exit)."""
    opened = []
    yield opened
    for sync in opened:
        sync.stop()


def open_sync(syncs, store, hub, **kwargs) -> HubSync:
    sync = start(store, REPO, api=hub, **kwargs)
    syncs.append(sync)
    if sync.scheduler is not None:
        sync.commit()  # waits for the scheduler's first commit too (one commit at a time)
    return sync


def new_store(folder: Path) -> Store:
    return Store(f"sqlite:///{folder / 'studio.sqlite'}", folder, client_salt="test-salt")


def cast(store: Store, rng: random.Random, votes: int, client: str = "203.0.113.7") -> str:
    """One session casting ``votes`` votes on fresh pairs (seeded images, configs, rewards and choices)."""
    session = store.start_session(client_address=client)
    for _ in range(votes):
        prompt = rng.choice(["a red star", "a blue circle on green", "two yellow squares"])
        ids = []
        for method in ("baseline", "guided"):
            image = Image.fromarray(np.array([[rng.randrange(256) for _ in range(48)]] * 16, dtype=np.uint8)
                                    .reshape(16, 16, 3))
            config = {} if method == "baseline" else {"beta": rng.choice([0.3, 0.5]), "eta": 1.0}
            ids.append(store.add_generation(prompt, image, model="toy-sdxl", method=method, config=config,
                                            seed=rng.randrange(1000), rewards={"toy-pickscore": rng.random()},
                                            latency_s=rng.random()))
        pair = store.create_comparison(session, *rng.sample(ids, 2))
        store.record_vote(session, pair, rng.choice(CHOICES))
    return session


def count_votes(store: Store) -> int:
    with store.engine.connect() as c:
        return c.scalar(select(func.count()).select_from(Vote))


def sessions(store: Store) -> list[tuple]:
    with store.engine.connect() as c:
        return sorted(map(tuple, c.execute(select(Session.id, Session.client_hash, Session.vote_count))))


def test_committed_votes_come_back_identical_in_a_fresh_store(database_url, tmp_path, hub, syncs):
    rng = random.Random(0)
    first = new_store(tmp_path / "first")
    sync = open_sync(syncs, first, hub)
    assert sync.scheduler is not None and hub.private[REPO] is True
    for client in ("203.0.113.7", "198.51.100.2", "203.0.113.7"):
        cast(first, rng, 4, client)
    sync.commit()
    assert len(hub.lines("votes")) == 12 and len(hub.lines("generations")) == 24
    assert len(list((hub.repo() / "images").rglob("*.png"))) == 24

    fresh = Store(database_url, tmp_path / "fresh", client_salt="test-salt")  # the restarted Space: nothing kept
    restored = open_sync(syncs, fresh, hub)
    assert restored.report.votes == 12 and restored.report.generations == 24 and restored.report.images == 24
    assert not restored.report.problems
    pd.testing.assert_frame_equal(fresh.vote_records(), first.vote_records())
    pd.testing.assert_frame_equal(fresh.generation_records(), first.generation_records())
    assert sessions(fresh) == sessions(first)  # ids, salted client hashes and vote counts (the caps)
    for sha in first.generation_records()["image"]:
        assert fresh.images.path(sha).read_bytes() == first.images.path(sha).read_bytes()
    assert "12 votes were restored" in restored.status()

    cast(fresh, rng, 2)  # the restored Space goes on (new ids after the restored ones); old votes aren't written again
    restored.commit()
    assert len(hub.lines("votes")) == 14
    assert len({json.loads(line)["vote_id"] for line in hub.lines("votes")}) == 14


def test_a_kill_between_commits_loses_only_the_votes_since_the_last_commit(tmp_path, hub, syncs):
    rng = random.Random(1)
    folder = tmp_path / "space"
    store = new_store(folder)
    sync = open_sync(syncs, store, hub)
    cast(store, rng, 3)
    sync.commit()
    committed = store.vote_records()
    cast(store, rng, 2)  # cast, never committed: then the process is killed
    sync.stop()
    store.close()
    del sync, store
    for line in hub.lines("votes") + hub.lines("generations"):
        json.loads(line)  # the repo holds whole lines only

    fresh = new_store(tmp_path / "fresh")
    restored = open_sync(syncs, fresh, hub)
    assert restored.report.votes == 3 and not restored.report.problems
    pd.testing.assert_frame_equal(fresh.vote_records(), committed)

    # With persistent storage the killed run's database survives; its next start commits the two votes it missed.
    survivor = new_store(folder)
    assert count_votes(survivor) == 5
    open_sync(syncs, survivor, hub)
    assert len(hub.lines("votes")) == 5
    again = new_store(tmp_path / "again")
    open_sync(syncs, again, hub)
    pd.testing.assert_frame_equal(again.vote_records(), survivor.vote_records())


def test_a_kill_while_writing_a_line_corrupts_nothing(tmp_path, hub, syncs):
    folder = tmp_path / "space"
    store = new_store(folder)
    sync = open_sync(syncs, store, hub)
    cast(store, random.Random(2), 1)
    sync.commit()
    cast(store, random.Random(3), 1)
    with sync.scheduler.lock:  # the next commit had begun writing its lines when the process died
        sync.append_new()
    sync.stop()
    path = folder / "votes" / f"{sync.run}.jsonl"
    path.write_bytes(path.read_bytes()[:-20])
    assert len(hub.lines("votes")) == 1  # the dataset saw none of it

    reopened = open_sync(syncs, store, hub)  # a kept disk: the next run commits the vote again, in its own file
    assert reopened.last_error is None
    assert len({json.loads(line)["comparison_id"] for line in hub.lines("votes")}) == 2
    assert not (hub.repo() / "votes" / f"{sync.run}.jsonl").read_bytes().count(b"\n") != 1
    fresh = new_store(tmp_path / "fresh")
    assert open_sync(syncs, fresh, hub).report.problems == []
    pd.testing.assert_frame_equal(fresh.vote_records(), store.vote_records())


def test_restoring_twice_adds_nothing(tmp_path, hub, syncs):
    first = new_store(tmp_path / "first")
    sync = open_sync(syncs, first, hub)
    cast(first, random.Random(3), 5)
    sync.commit()
    fresh = new_store(tmp_path / "fresh")
    restored = open_sync(syncs, fresh, hub)
    before = fresh.vote_records()
    again = restored.restore()
    assert (again.votes, again.generations, again.already, again.problems) == (0, 0, 15, [])
    pd.testing.assert_frame_equal(fresh.vote_records(), before)
    assert count_votes(fresh) == 5
    open_sync(syncs, fresh, hub)  # a restart on a kept disk: the store is not empty, nothing is imported
    assert count_votes(fresh) == 5 and len(hub.lines("votes")) == 5


def test_deleted_votes_stay_deleted_and_their_session_keeps_its_count(tmp_path, hub, syncs):
    rng = random.Random(4)
    first = new_store(tmp_path / "first")
    sync = open_sync(syncs, first, hub)
    spammer, kept = cast(first, rng, 3, "192.0.2.1"), cast(first, rng, 2)
    sync.commit()
    assert first.delete_votes(spammer) == 3
    sync.commit()
    assert len(hub.lines("deletions")) == 3
    fresh = new_store(tmp_path / "fresh")
    restored = open_sync(syncs, fresh, hub)
    assert (restored.report.votes, restored.report.deleted) == (2, 3)
    pd.testing.assert_frame_equal(fresh.vote_records(), first.vote_records())
    assert fresh.votes_left(spammer) == first.votes_left(spammer) and fresh.votes_left(kept) == first.votes_left(kept)


def test_a_corrupt_row_is_skipped_counted_and_logged(tmp_path, hub, syncs, caplog):
    first = new_store(tmp_path / "first")
    sync = open_sync(syncs, first, hub)
    cast(first, random.Random(5), 4)
    sync.commit()
    votes = next((hub.repo() / "votes").glob("*.jsonl"))
    lines = votes.read_text().splitlines()
    bad_choice = dict(json.loads(lines[0]), choice="maybe")
    bad_image = dict(json.loads(lines[1]), left_image="not-a-hash")
    no_session = {k: v for k, v in json.loads(lines[2]).items() if k != "session_id"}
    votes.write_text("\n".join([json.dumps(bad_choice), json.dumps(bad_image), json.dumps(no_session), lines[3],
                                "{not json", "[1, 2]", lines[3][:40]]) + "\n")

    caplog.set_level(logging.INFO, logger="studio")
    fresh = new_store(tmp_path / "fresh")
    restored = open_sync(syncs, fresh, hub)  # start-up goes on
    assert restored.scheduler is not None
    assert restored.report.votes == 1 and restored.report.skipped == 6
    assert fresh.vote_records()["comparison_id"].tolist() == [json.loads(lines[3])["comparison_id"]]
    assert "skipped 6 rows that can't be restored" in caplog.text
    assert "choice must be one of" in caplog.text and "missing field 'session_id'" in caplog.text


def test_a_generation_whose_line_is_lost_is_rebuilt_from_its_vote(tmp_path, hub, syncs):
    first = new_store(tmp_path / "first")
    sync = open_sync(syncs, first, hub)
    cast(first, random.Random(6), 2)
    sync.commit()
    for path in (hub.repo() / "generations").glob("*.jsonl"):
        path.write_text("")
    fresh = new_store(tmp_path / "fresh")
    restored = open_sync(syncs, fresh, hub)
    assert restored.report.votes == 2 and not restored.report.problems
    pd.testing.assert_frame_equal(fresh.vote_records(), first.vote_records())


def test_exports_go_up_with_the_next_commit(tmp_path, hub, syncs, monkeypatch):
    from studio.dashboard_tab import Dashboard

    monkeypatch.delenv("STUDIO_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    store = new_store(tmp_path / "space")
    sync = open_sync(syncs, store, hub)
    cast(store, random.Random(7), 2)
    dashboard = Dashboard(store, export_dir=tmp_path / "exports", sync=sync)
    path = Path(dashboard.export("csv"))
    sync.commit()
    assert (hub.repo() / "exports" / path.name).read_bytes() == path.read_bytes()
    assert "Votes are saved to the hub dataset" in dashboard.refresh()[-1]


@pytest.mark.parametrize("hub_kind", ["offline", "no token"])
def test_no_hub_or_no_token_leaves_the_page_serving_and_says_why(tmp_path, syncs, caplog, hub_kind):
    from huggingface_hub.errors import LocalTokenNotFoundError

    from studio.dashboard_tab import Dashboard

    hub = FakeHub(tmp_path / "hub", offline=hub_kind == "offline",
                  refuse=LocalTokenNotFoundError("Token is required") if hub_kind == "no token" else None)
    store = new_store(tmp_path / "space")
    sync = open_sync(syncs, store, hub)
    assert sync.scheduler is None
    assert ("HF_TOKEN" if hub_kind == "no token" else "ConnectionError") in sync.error
    assert "votes are NOT saved" in caplog.text
    cast(store, random.Random(8), 1)  # votes still work, locally
    summary = Dashboard(store, sync=sync).refresh()[-1]
    assert "**1 vote**" in summary and "Votes are not saved to the hub dataset" in summary
    sync.add_export(__file__)  # a no-op without the sync
    assert not (tmp_path / "space" / "exports").exists() and hub.commits == 0


def test_without_the_setting_no_sync_is_created(tmp_path, monkeypatch):
    from studio import ui

    def refuse(*args, **kwargs):
        raise AssertionError("a sync object was created")

    for name in ("STUDIO_HUB_DATASET", "STUDIO_HUB_EVERY", "STUDIO_HUB_IMAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub_sync, "HubSync", refuse)
    monkeypatch.setattr(hub_sync, "CommitScheduler", refuse)
    monkeypatch.setattr(hub_sync, "HfApi", refuse)
    settings = StudioSettings.from_env()
    assert settings.hub_dataset is None
    store = new_store(tmp_path / "space")
    assert ui.hub_sync(store, settings) is None
    assert not any(p.name in ("votes", "generations", "deletions") for p in (tmp_path / "space").iterdir())

    monkeypatch.setenv("STUDIO_HUB_DATASET", f" {REPO} ")
    monkeypatch.setenv("STUDIO_HUB_EVERY", "2.5")
    monkeypatch.setenv("STUDIO_HUB_IMAGES", "0")
    assert (lambda s: (s.hub_dataset, s.hub_every, s.hub_images))(StudioSettings.from_env()) == (REPO, 2.5, False)
    monkeypatch.setenv("STUDIO_HUB_EVERY", "0")
    with pytest.raises(ValueError, match="STUDIO_HUB_EVERY"):
        StudioSettings.from_env()


def test_images_can_be_left_out(tmp_path, hub, syncs):
    store = new_store(tmp_path / "space")
    sync = open_sync(syncs, store, hub, images=False)
    cast(store, random.Random(9), 1)
    sync.commit()
    assert len(hub.lines("votes")) == 1 and not (hub.repo() / "images").exists()
    fresh = new_store(tmp_path / "fresh")
    restored = open_sync(syncs, fresh, hub, images=False)
    assert (restored.report.votes, restored.report.images_missing) == (1, 2)


# -- Spaces deployment ---------------------------------------------------------------------------------------------

def gpu_handlers() -> set[str]:
    """The names of the studio's functions decorated with ``@gpu``."""
    names = set()
    for path in (ROOT / "studio").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and any(
                    (d.func if isinstance(d, ast.Call) else d).id == "gpu" for d in node.decorator_list
                    if isinstance(d.func if isinstance(d, ast.Call) else d, ast.Name)):
                names.add(node.name)
    return names


def test_every_gpu_handler_asks_zerogpu_for_an_explicit_duration_within_its_limit(monkeypatch):
    asked = {}

    def fake_gpu(fn=None, duration=60):
        def wrap(f):
            asked[f.__name__] = duration
            return f
        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=fake_gpu))
    handlers = gpu_handlers()
    assert handlers == {"explore", "retune", "make_pair"}
    assert handlers <= set(studio_settings.GPU_SECONDS)
    for name in handlers:
        def handler():
            pass
        handler.__name__ = name
        gpu(handler)
    assert asked == studio_settings.GPU_SECONDS
    assert all(0 < s <= 120 for s in asked.values())
    with pytest.raises(ValueError, match="ZeroGPU duration"):
        gpu(duration=300)(lambda: None)
    monkeypatch.setitem(sys.modules, "spaces", None)  # not installed: `import spaces` fails
    assert gpu(len) is len  # the function unchanged


def test_the_readme_front_matter_is_complete_for_spaces():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---")[1])
    for key in ("title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file", "pinned", "license",
                "short_description", "python_version"):
        assert key in meta, key
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert str(meta["sdk_version"]) == version("gradio")
    assert len(meta["short_description"]) <= 60
    gradio_line = next(line for line in (ROOT / "requirements.txt").read_text().splitlines()
                       if line.startswith("gradio"))
    assert gradio_line.split("#")[0].strip() == f"gradio>={meta['sdk_version']}"
