"""The whole page in-process over real HTTP (Gradio's queue protocol, as a browser speaks it): it builds, its API
names are there, a blind pair's payload names no configuration (text, file names, PNG chunks), the vote's payload
reveals them, and bad input comes back as a sentence, not a stack trace."""

from __future__ import annotations

import hashlib
import json
import struct
import uuid

import gradio as gr
import httpx
import pytest
from test_studio_helpers import PROMPT, served_page, studio_engine  # noqa: F401  (fixture)

from alignment import load_pipeline
from studio.components import text
from studio.configs import Config
from studio.errors import page_errors, sentence
from studio.settings import StudioSettings
from studio.ui import build_demo

API_NAMES = {"explore", "arena_pair", "vote_left", "vote_right", "vote_tie", "vote_both_bad", "dashboard",
             "export_html", "export_csv", "export_parquet", "delete_votes"}
CONFIGS = [Config.of("toy-sdxl", "baseline"), Config.of("toy-sdxl", "guided", alpha=1.0, beta=0.5, eta=1.0)]
# what would tell the configurations apart ("eta" alone is also Gradio's queue field "rank_eta": η and β stand in)
SECRETS = ("baseline", "guided", "toy-sdxl", "beta", "β", "η", "α", "alpha", "reward", "seed", "method")


@pytest.fixture(scope="module")
def served(studio_engine, tmp_path_factory):
    with served_page(studio_engine, tmp_path_factory.mktemp("page"), CONFIGS) as served:
        yield served


def call(demo, api_name: str, data: list, session: str) -> tuple[list, str]:
    """One event through Gradio's queue as the browser sends it; (output data, every raw byte of the stream)."""
    fn_index = next(i for i, fn in demo.fns.items() if fn.api_name == api_name)
    api = demo.local_url + "gradio_api/"
    with httpx.Client(timeout=120) as client:
        client.post(api + "queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                              "event_data": None, "trigger_id": None}).raise_for_status()
        raw, output = "", None
        with client.stream("GET", api + "queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                raw += line + "\n"
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    output = message
                    break
    return output, raw


def png_chunks(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append(data[at + 4 : at + 8].decode("ascii"))
        at += 12 + length
    return chunks


def test_the_page_builds_with_its_api(served):
    demo, _ = served
    assert isinstance(demo, gr.Blocks)
    assert API_NAMES <= {fn.api_name for fn in demo.fns.values()}


def test_before_the_vote_nothing_names_a_configuration_then_the_vote_reveals(served):
    demo, store = served
    session = uuid.uuid4().hex[:11]
    labels = [c.label for c in CONFIGS]
    output, raw = call(demo, "arena_pair", [None, PROMPT, "baseline vs aligned", labels], session)
    assert output["success"], output
    lowered = raw.lower()
    assert not [word for word in SECRETS if word.lower() in lowered], raw
    images = [value for value in output["output"]["data"] if isinstance(value, dict) and value.get("url")]
    assert len(images) == 2
    for image in images:
        data = httpx.get(image["url"]).content
        assert image["orig_name"] == f"{hashlib.sha256(data).hexdigest()}.png"  # named by its content alone
        assert set(png_chunks(data)) <= {"IHDR", "IDAT", "IEND"}, "no text, EXIF or other metadata chunks"
        assert not any(word.encode() in data for word in ("baseline", "guided", "toy-sdxl"))

    output, raw = call(demo, "vote_left", [None], session)
    assert output["success"]
    reveal = output["output"]["data"][1]
    assert "You chose" in reveal and "baseline" in reveal and "guided" in reveal
    assert list(store.vote_records()["choice"]) == ["left"]
    output, _ = call(demo, "vote_left", [None], session)  # the same pair again: refused, nothing stored
    assert "already voted" in output["output"]["data"][4]
    assert len(store.vote_records()) == 1


def test_bad_input_comes_back_as_a_sentence(served):
    demo, _ = served
    output, _ = call(demo, "explore", ["toy-sdxl", "", 0, 0.5, 1.0, 1.0, 8, "tuned"], uuid.uuid4().hex[:11])
    assert not output["success"] and "The prompt is empty" in output["output"]["error"]
    output, _ = call(demo, "explore", ["toy-sdxl", PROMPT, 0, 4.9, 1.0, 1.0, 8, "tuned"], uuid.uuid4().hex[:11])
    assert output["success"]  # the slider's maximum is a valid β
    output, _ = call(demo, "arena_pair", [None, PROMPT, "any two of the list", ["nope"]], uuid.uuid4().hex[:11])
    assert not output["success"] and "nope" in output["output"]["error"]  # not one of the page's configurations


def test_unexpected_failures_become_one_sentence():
    @page_errors
    def broken():
        raise KeyError("internal detail")

    @page_errors
    def refused():
        raise ValueError("the seed must be a whole number")

    with pytest.raises(gr.Error, match="Something went wrong \\(KeyError\\)"):
        broken()
    with pytest.raises(gr.Error) as error:
        refused()
    assert error.value.message == "The seed must be a whole number"
    assert sentence(ValueError("")) == "ValueError"
    assert text("<script>alert(1)</script> *x*") == "&lt;script&gt;alert\\(1\\)&lt;/script&gt; \\*x\\*"


def test_explore_streams_the_baseline_first_only_when_a_bank_must_be_made(studio_engine):
    from studio.explore import explore_steps

    steps = list(explore_steps(studio_engine, "toy-sd3", PROMPT, 21, 0.5, 1.0, 1.0, 4))
    assert len(steps) == 2 and steps[0][0] is not None and steps[0][2] == gr.skip()
    assert "Making the bank of 4 samples" in steps[0][7] and "ESS per step" in steps[1][7]
    assert steps[0][8] == gr.skip() and steps[1][8] == ("toy-sd3", PROMPT, 21, 4)  # what the page shows, at the end
    assert len(list(explore_steps(studio_engine, "toy-sd3", PROMPT, 21, 0.9, 1.0, 1.0, 4))) == 1  # β moved
    assert len(list(explore_steps(studio_engine, "toy-sdxl", PROMPT, 21, 0.9, 1.0, 1.0, 4))) == 1


def test_a_slider_resends_only_the_images_that_changed(studio_engine):
    from studio.explore import retune_steps

    shown = ("toy-sd3", PROMPT, 22, 4)
    first = retune_steps(studio_engine, *shown[:3], 0.5, 1.0, 1.0, 4, None)  # nothing known: everything sent
    assert first[0] is not None and first[4] is not None and first[8] == shown
    moved = retune_steps(studio_engine, *shown[:3], 0.8, 1.0, 1.0, 4, shown)  # β: baseline and best-of-N stay
    assert moved[0] == gr.skip() and moved[4] == gr.skip() and moved[2] is not None
    assert "from the cache" in moved[1] and "β=0\\.8" in moved[7]  # the captions are still sent
    more = retune_steps(studio_engine, *shown[:3], 0.8, 1.0, 1.0, 5, shown)  # N: best-of-N may change
    assert more[0] == gr.skip() and more[4] != gr.skip() and more[8] == (*shown[:3], 5)
    other = retune_steps(studio_engine, "toy-sd3", PROMPT, 23, 0.8, 1.0, 1.0, 5, more[8])  # a new seed typed in
    assert other[0] != gr.skip() and other[4] != gr.skip()


def test_a_streaming_handler_reports_errors_as_sentences():
    @page_errors
    def stream():
        yield 1
        raise ValueError("the bank is empty")

    steps = stream()
    assert next(steps) == 1
    with pytest.raises(gr.Error) as error:
        next(steps)
    assert error.value.message == "The bank is empty"


def test_the_page_builds_without_a_vote_store(studio_engine, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("STUDIO_DATA_DIR", str(blocker / "data"))
    monkeypatch.delenv("STUDIO_DATABASE_URL", raising=False)
    demo = build_demo(engine=studio_engine, warm_up=False)
    assert demo.studio_store is None and API_NAMES <= {fn.api_name for fn in demo.fns.values()}


def test_the_served_queue_sends_its_status_on_a_clock_not_at_every_event(served):
    """app.py and the page's harnesses serve the queue with QUEUE_KWARGS: with many voters queued for pairs,
    Gradio's default ("auto") sends every waiting browser a status message each time any event starts."""
    from studio.ui import QUEUE_KWARGS

    demo, _ = served
    assert QUEUE_KWARGS["status_update_rate"] != "auto"
    assert demo._queue.live_updates is False and 0 < demo._queue.update_intervals <= 2
    assert demo._queue.default_concurrency_limit == QUEUE_KWARGS["default_concurrency_limit"]


def test_app_flags():
    import app

    args = app.parse_args(["--real", "--device", "cuda", "--models", "a/b,./c", "--port", "7000"])
    assert args.real and args.device == "cuda" and args.models == "a/b,./c" and args.port == 7000
    assert app.parse_args([]).host == "127.0.0.1"


def test_fp8_is_refused_at_start_up_where_it_cannot_run(monkeypatch):
    import app

    monkeypatch.delenv("STUDIO_FP8", raising=False)
    with pytest.raises(SystemExit, match="FP8 needs the compiled models"):
        app.main(["--fp8", "--no-compile", "--device", "cpu"])
    monkeypatch.setenv("STUDIO_FP8", "1")
    monkeypatch.setenv("STUDIO_COMPILE", "on")
    with pytest.raises(SystemExit, match="compute capability 8.9"):  # before any model loads or port opens
        app.main(["--device", "cpu"])


def test_fp8_setting_reaches_the_pipelines_and_skips_float32_models(monkeypatch):
    import alignment.acceleration as acceleration
    from studio.resources import Resources

    calls, accelerate = [], acceleration.accelerate
    monkeypatch.setattr(acceleration, "accelerate", lambda **kw: calls.append(sorted(kw)) or [])
    resources = Resources(StudioSettings(models=("toy-sd3",), compile="on", fp8=True))
    resources.pipeline("toy-sd3")
    resources.reward("toy-sd3")
    assert ["fp8", "fullgraph", "pipe"] in calls and ["fullgraph", "reward"] in calls  # fp8 for pipelines only
    # a float32 denoiser (the toy presets) is left in its dtype, and says so
    pipe, _ = load_pipeline("toy-sd3", device="cpu")
    monkeypatch.setattr(acceleration, "fp8_unavailable", lambda _model: None)  # as on an Ada or Hopper GPU
    done = accelerate(pipe, fp8=True, compile=False)
    assert "fp8 skipped (float32 weights; FP8 takes bf16 models)" in done


def test_the_ess_figure_is_valid_plotly_with_the_view_numbers():
    import json
    from types import SimpleNamespace

    import plotly.graph_objects as go

    from studio.explore import ess_figure

    view = SimpleNamespace(ess=[6.1, 2.5, 1.0], ess_posterior=[8.0, 2.0, 1.0], sigmas=[1.0, 0.75, 0.5], n=8)
    plot = ess_figure(view)
    assert plot.type == "plotly"
    figure = go.Figure(json.loads(plot.plot))  # plotly validates every property: a typo would raise here
    assert [list(t.y) for t in figure.data] == [view.ess, view.ess_posterior]
    assert figure.layout.yaxis.range == (0, 8 * 1.08 + 0.5) and figure.layout.template.layout.colorway
    assert "σ = 0.750" in figure.data[0].text
    assert ess_figure(SimpleNamespace(ess=None)) is None  # diffusion: no figure
