"""Every bad input, end to end (``benchmarks.bad_inputs``): the studio served in-process and called over real HTTP
as the browser speaks Gradio's queue protocol, the command lines (in this process) and the Python API. Nothing
crashes, every answer is one clear sentence, nothing wrong is stored, and prompt text never comes back as HTML."""

from __future__ import annotations

import pytest

from benchmarks.bad_inputs import IMG, SCRIPT, Row, clarity_problems, html_problems, markdown, run, show, stored_text


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return run(fast=True)


def test_every_kind_of_bad_input_was_tried(rows):
    entries = {r.entry for r in rows}
    for needed in ("page `explore` · prompt", "page `explore` · β", "page `explore` · η", "page `explore` · α",
                   "page `explore` · N", "page `explore` · seed", "page `explore` · model", "page `arena_pair` · prompt",
                   "page `vote_left`", "page `export_html`", "CLI `python -m alignment generate`",
                   "CLI `python -m studio dashboard`", "`alignment.load_pipeline`",
                   "`alignment.rewards.load_reward`", "`alignment.pickapic.iter_pairs`",
                   "`studio.store.Store.record_vote`"):
        assert needed in entries, needed
    inputs = " ".join(r.input for r in rows)
    for needed in ("''", "10,016 characters", "\\x00", "\\x1b[31m", "\\r\\n", "DROP TABLE votes", SCRIPT, IMG,
                   "NaN", "inf", "'abc'", "None", "--model nope", "--reward nope", "truncated", "garbled",
                   "label_0 NaN", "caption is missing", "not an image", "double click"):
        assert needed in inputs, needed
    assert len(rows) > 150


def test_nothing_crashes(rows):
    crashed = [(r.entry, r.input, r.answer) for r in rows if r.crashed and not r.outside]
    assert not crashed
    # the only crashes left are Gradio's own answers to malformed protocol messages that no page sends
    assert all(r.entry.startswith("Gradio protocol") for r in rows if r.outside)


def test_every_answer_is_one_clear_sentence(rows):
    unclear = [(r.entry, r.input, r.answer) for r in rows if not r.outside and
               (clarity_problems(r.answer) or "Traceback" in r.answer or "Error (Gradio's bare error" in r.answer
                or r.answer.strip() in ("Error", "ValueError", "ModelLoadError"))]
    assert not unclear
    greek = [r.answer for r in rows if r.answer[:1] in "ΒΗΑ"]  # "β must be…" must not read "Β (a B) must be…"
    assert not greek


def test_nothing_wrong_is_stored(rows):
    wrong = [(r.entry, r.input, r.stored, r.problems) for r in rows
             if r.stored.startswith("WRONG") or any(p.startswith(("stored", "prompt stored", "a broken row",
                                                                  "an image was written", "the database"))
                                                    for p in r.problems)]
    assert not wrong
    explore = [r for r in rows if r.entry.startswith("page `explore`")]
    assert explore and all(r.stored == "nothing" for r in explore)  # explore never writes
    refused_votes = [r for r in rows if "vote" in r.entry and ("already voted" in r.answer or "no pair" in r.answer)]
    assert len(refused_votes) >= 4 and all(r.stored == "nothing" for r in refused_votes)
    cleaned = [r for r in rows if r.entry == "page `arena_pair` · prompt" and "\\x1b[31m" in r.input]
    assert cleaned and "\\x1b" not in cleaned[0].stored  # stored as printable text


def test_prompt_text_is_never_html(rows):
    assert not [r for r in rows if any(p.startswith("raw ") for p in r.problems)]
    exports = [r for r in rows if r.entry in ("page `export_html`", "CLI `python -m studio dashboard`")
               and SCRIPT in r.input]
    assert len(exports) == 2 and all("as escaped text" in r.answer for r in exports)
    echoed = [r for r in rows if r.input == f"model = {SCRIPT!r}"]
    assert echoed and "&lt;script&gt;" in echoed[0].answer  # quoted back escaped: Gradio renders errors as HTML


def test_no_problem_is_left(rows):
    assert not [(r.entry, r.input, r.problems) for r in rows if r.problems and not r.outside]


def test_the_table_helpers():
    assert show("a\x00b") == "'a\\x00b'" and show("x" * 100).endswith("(100 characters)")
    assert show(float("nan")) == "NaN" and show(float("-inf")) == "-inf"
    assert clarity_problems("KeyError") and clarity_problems("") and clarity_problems("Traceback (most recent call")
    assert not clarity_problems("ValueError: the prompt is empty: describe the image")
    assert html_problems(f"<p>{SCRIPT}</p>", "x") and not html_problems("&lt;script&gt;", "x")
    assert stored_text({"votes": 1}, [], ["stored +1 vote"]).startswith("WRONG")
    table = markdown([Row("'a|b'", "e", "an answer", False, "nothing")], {"fast": True, "seconds": 1.0, "machine": "m",
                                                                             "when": "today"})
    assert "| input | entry point | answer | crashed? | stored? |" in table and "a\\|b" in table
