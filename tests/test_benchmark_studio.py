"""benchmarks.benchmark_studio against a studio served elsewhere (``--url``): the page's events read from the real
page's ``/config``, and the whole run driven over a fake server (httpx's MockTransport speaking Gradio's queue
protocol), offline and without models."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from benchmarks import benchmark_studio as bench

URL = "http://studio.test/"


@pytest.fixture(scope="module")
def page_config(tmp_path_factory):
    """The toy studio's real ``/config`` (the page built, nothing loaded or served)."""
    from studio.engine import Engine
    from studio.settings import StudioSettings
    from studio.store import Store
    from studio.ui import build_demo

    folder = tmp_path_factory.mktemp("page")
    store = Store(f"sqlite:///{folder / 'studio.sqlite'}", folder / "data", client_salt="test")
    demo = build_demo(engine=Engine(StudioSettings(device="cpu")), store=store, warm_up=False)
    try:
        # through JSON, as the browser reads it (tuples become lists)
        return json.loads(json.dumps(demo.get_config_file(), default=str))
    finally:
        store.close()


def test_the_events_and_their_inputs_are_found_on_the_real_page(page_config):
    events = bench.page_events(page_config)
    names = {d["id"]: d.get("api_name") for d in page_config["dependencies"]}
    assert names[events["explore"]] == "explore" and names[events["arena_pair"]] == "arena_pair"
    assert names[events["vote"]] == "vote_left"
    assert len({events["beta"], events["n"], events["explore"]}) == 3
    knobs = {"explore-model": "toy-sd3", "explore-prompt": "p", "explore-seed": 3, "explore-beta": 0.7,
             "explore-eta": 1.0, "explore-alpha": 1.0, "explore-n": 12, "explore-estimator": "tuned"}
    assert bench.event_data(page_config, events["explore"], knobs) == ["toy-sd3", "p", 3, 0.7, 1.0, 1.0, 12, "tuned"]
    # a slider's release also reads the page's state (what it shows), sent as None
    assert bench.event_data(page_config, events["beta"], knobs) == ["toy-sd3", "p", 3, 0.7, 1.0, 1.0, 12, "tuned",
                                                                    None]
    arena = {"arena-prompt": "q", "arena-pairing": bench.PAIRING, "arena-configs": ["a", "b"]}
    assert bench.event_data(page_config, events["arena_pair"], arena) == [None, "q", bench.PAIRING, ["a", "b"]]
    assert bench.event_data(page_config, events["vote"], {}) == [None]
    with pytest.raises(ValueError, match="explore-seed"):
        bench.event_data(page_config, events["explore"], {k: v for k, v in knobs.items() if k != "explore-seed"})


def test_models_families_and_arena_labels_come_from_the_page(page_config):
    assert bench.choices(page_config, "explore-model") == ["toy-sdxl", "toy-sd3"]
    labels = bench.choices(page_config, "arena-configs")
    assert bench.model_family(labels, "toy-sd3") == "flow" and bench.model_family(labels, "toy-sdxl") == "diffusion"
    from alignment import defaults

    guided = (f"toy-sdxl · guided · β={defaults.DIFFUSION_BETA:g} η={defaults.DIFFUSION_ETA:g} "
              f"α={defaults.DIFFUSION_ALPHA:g}")
    assert bench.arena_labels(labels, "toy-sdxl") == ["toy-sdxl · baseline", guided]
    assert bench.arena_labels(labels, "toy-sd3")[0] == "toy-sd3 · baseline"
    assert bench.arena_labels(labels, "toy-sd3")[1].startswith("toy-sd3 · is · β=0.1 N=8 ")
    with pytest.raises(ValueError):
        bench.arena_labels(labels, "toy-sd")  # a prefix of a model's name is not that model


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (512, 512), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


class FakeStudio:
    """Gradio's queue protocol over httpx's MockTransport: ``/config``, ``queue/join``, the session's event
    stream (a warning, a first answer for streaming events, then the answer), and the images. ``fail``: event ids
    that complete with an error."""

    def __init__(self, config: dict, fail: tuple[int, ...] = ()):
        self.config, self.fail = config, set(fail)
        self.events = bench.page_events(config)
        self.joined: list[dict] = []
        self.pending: dict[str, dict] = {}

    def outputs(self, fn_index: int) -> list:
        image = {"path": "/tmp/x.png", "url": URL + "gradio_api/file=/tmp/x.png", "meta": {"_type": "gradio.FileData"}}
        if fn_index == self.events["vote"]:
            return [None, "reveal", "", "", "Vote saved. 199 votes left in this session.", {}, {}, {}, {}, {}]
        if fn_index == self.events["arena_pair"]:
            return [None, image, image, "", "", "", "200 votes left in this session."]
        return [image, "pickscore **0.1** · 1.00 s", image, "pickscore **0.2** · 1.00 s", None, "", None,
                "**model** · seed 1 · 1.00 s", None]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/config":
            return httpx.Response(200, content=json.dumps(self.config), headers={"content-type": "application/json"})
        if path == "/gradio_api/queue/join":
            body = json.loads(request.content)
            self.joined.append(body)
            self.pending[body["session_hash"]] = body
            return httpx.Response(200, json={"event_id": f"e{len(self.joined)}"})
        if path == "/gradio_api/queue/data":
            body = self.pending.pop(request.url.params["session_hash"])
            event_id, fn_index = f"e{len(self.joined)}", body["fn_index"]
            messages = [{"msg": "estimation", "event_id": event_id, "rank": 0},
                        {"msg": "log", "event_id": event_id, "log": "a note", "level": "warning"}]
            if fn_index == self.events["explore"]:
                messages.append({"msg": "process_generating", "event_id": event_id, "success": True,
                                 "output": {"data": []}})
            if fn_index in self.fail:
                messages.append({"msg": "process_completed", "event_id": event_id, "success": False,
                                 "output": {"error": "Something went wrong"}})
            else:
                messages.append({"msg": "process_completed", "event_id": event_id, "success": True,
                                 "output": {"data": self.outputs(fn_index)}})
            messages.append({"msg": "close_stream", "event_id": None})
            text = "".join(f"data: {json.dumps(m)}\n\n" for m in messages)
            return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})
        if path.startswith("/gradio_api/file="):
            return httpx.Response(200, content=png())
        return httpx.Response(404)


def test_a_remote_run_drives_every_step_and_writes_as_it_goes(page_config, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "gpu_memory", lambda pid=None: {"used_mib": 1234})
    out = tmp_path / "report.json"
    out.write_text(json.dumps({"card": "fake", "stages": {"hub_twins_s": 1.0}}))
    studio = FakeStudio(page_config)
    data = bench.remote_numbers(URL, ["toy-sdxl", "toy-sd3"], out=out, images=tmp_path / "img",
                                transport=httpx.MockTransport(studio))
    written = json.loads(out.read_text())
    assert written["card"] == "fake" and written["stages"] == {"hub_twins_s": 1.0}  # the script's keys are kept
    assert written["studio"] == json.loads(json.dumps(data))
    diffusion, flow = data["models"]["toy-sdxl"], data["models"]["toy-sd3"]
    assert diffusion["family"] == "diffusion" and flow["family"] == "flow"
    assert list(diffusion["steps"]) == ["first_pair", "second_prompt", "beta_change", "arena_pair", "vote"]
    assert list(flow["steps"]) == ["first_pair", "second_prompt", "beta_change", "n_change", "arena_pair", "vote"]
    for row in (diffusion, flow):
        for step in row["steps"].values():
            assert step["ok"] and step["seconds"] >= 0 and step["gpu_memory_after"] == {"used_mib": 1234}
            assert step["warnings"] == ["a note"]
    assert flow["steps"]["first_pair"]["first_output_s"] is not None
    assert flow["steps"]["vote"]["status"].startswith("Vote saved")
    # what was sent: flow knobs, then a β change and an N change on the second prompt, in one session per model
    sent = [body for body in studio.joined if body["data"][:1] == ["toy-sd3"]]
    assert [b["data"][3] for b in sent] == [0.1, 0.1, 0.3, 0.3] and [b["data"][6] for b in sent] == [8, 8, 8, 12]
    assert sent[1]["data"][1] != sent[0]["data"][1]  # a second, new prompt
    sessions = {b["session_hash"] for b in studio.joined if b["data"][:1] == ["toy-sd3"]}
    assert len(sessions) == 1
    pair = next(b for b in studio.joined if b["fn_index"] == studio.events["arena_pair"])
    from alignment import defaults

    assert pair["data"][3] == ["toy-sdxl · baseline", f"toy-sdxl · guided · β={defaults.DIFFUSION_BETA:g} "
                               f"η={defaults.DIFFUSION_ETA:g} α={defaults.DIFFUSION_ALPHA:g}"]
    # the first model's second pair, saved small: two files at most
    images = sorted(Path(p).name for p in diffusion["steps"]["second_prompt"]["images"])
    assert images == ["toy-sdxl-aligned.png", "toy-sdxl-baseline.png"]
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == images
    assert Image.open(tmp_path / "img" / images[0]).size == (256, 256)


def test_a_failed_step_is_reported_and_the_run_goes_on(page_config, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "gpu_memory", lambda pid=None: None)
    events = bench.page_events(page_config)
    data = bench.remote_numbers(URL, ["toy-sd3"], out=tmp_path / "r.json",
                                transport=httpx.MockTransport(FakeStudio(page_config, fail=(events["n"],))))
    steps = data["models"]["toy-sd3"]["steps"]
    assert not steps["n_change"]["ok"] and "Something went wrong" in steps["n_change"]["error"]
    assert steps["arena_pair"]["ok"] and steps["vote"]["ok"]
    with pytest.raises(ValueError, match="offers no model"):
        bench.remote_numbers(URL, ["sdxl-turbo"], transport=httpx.MockTransport(FakeStudio(page_config)))


def test_steps_past_the_budget_are_skipped(page_config, monkeypatch):
    monkeypatch.setattr(bench, "gpu_memory", lambda pid=None: None)
    data = bench.remote_numbers(URL, ["toy-sdxl"], budget_s=1.0, transport=httpx.MockTransport(FakeStudio(page_config)))
    assert all(step == {"ok": False, "error": "skipped: out of time"}
               for step in data["models"]["toy-sdxl"]["steps"].values())


def test_no_nvidia_smi_no_gpu_memory(monkeypatch):
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    assert bench.gpu_memory(123) is None
