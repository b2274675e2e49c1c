"""The minimal studio page builds, generates, and turns bad input into a message in the page."""

import gradio as gr
import pytest

from studio.ui import build_demo, run_generation


def test_page_builds():
    demo = build_demo()
    assert isinstance(demo, gr.Blocks)


def test_generation_from_the_page():
    image, summary = run_generation("toy-sdxl", "a red star on a blue background", 0)
    assert image.size == (64, 64) and "toy-sdxl" in summary and "seed 0" in summary


@pytest.mark.parametrize("prompt,seed,match", [
    ("", 0, "prompt is empty"), ("a red star", -1, "seed"), ("a red star", 1.5, "seed"), ("a red star", None, "seed"),
])
def test_bad_input_becomes_a_page_error(prompt, seed, match):
    with pytest.raises(gr.Error, match=match):
        run_generation("toy-sdxl", prompt, seed)


def test_unknown_model_becomes_a_page_error():
    with pytest.raises(gr.Error, match="neither a preset"):
        run_generation("./no-such-model", "a red star", 0)
