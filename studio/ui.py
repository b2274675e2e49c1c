"""The studio's page. For now: one prompt, one seed, one toy model, one image, with its oracle-free summary.

Models load once per process and stay cached; errors (empty prompt, missing weights, unreachable hub) are shown in
the page, not as a stack trace.
"""

from __future__ import annotations

import functools
import os

import gradio as gr

from alignment import ModelLoadError, generate, load_pipeline

EXAMPLES = [
    ["a red star on a blue background", 0],
    ["a large yellow circle on a black background", 1],
    ["a small white cross on a green background in the top left", 2],
    ["pink ring, cyan background", 3],
]


def available_models() -> list[str]:
    """Toy presets always; real hub models when STUDIO_MODELS names them (comma-separated)."""
    extra = [m.strip() for m in os.environ.get("STUDIO_MODELS", "").split(",") if m.strip()]
    return ["toy-sdxl", "toy-sd3"] + extra


@functools.lru_cache(maxsize=4)
def _pipeline(model: str):
    return load_pipeline(model)


def run_generation(model: str, prompt: str, seed: float):
    try:
        if seed is None or not float(seed).is_integer() or not 0 <= float(seed) < 2**31:
            raise ValueError("the seed must be a whole number between 0 and 2147483647")
        pipe, preset = _pipeline(model)
        result = generate(pipe, prompt, seed=int(seed), preset=preset)
    except (ModelLoadError, ValueError) as e:
        raise gr.Error(str(e)) from e
    summary = f"{model} · seed {result.seed} · {result.steps} steps · guidance {result.guidance_scale} · {result.seconds:.2f} s"
    return result.images[0], summary


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Alignment studio") as demo:
        gr.Markdown("# Alignment studio\nText-to-image generation on the embedded toy models (baseline sampling).")
        with gr.Row():
            with gr.Column():
                model = gr.Dropdown(available_models(), value="toy-sdxl", label="Model")
                prompt = gr.Textbox(value=EXAMPLES[0][0], label="Prompt", max_lines=2)
                seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
                button = gr.Button("Generate", variant="primary")
            with gr.Column():
                image = gr.Image(label="Baseline", type="pil", height=320)
                info = gr.Textbox(label="Run", interactive=False)
        gr.Examples(EXAMPLES, inputs=[prompt, seed])
        button.click(run_generation, inputs=[model, prompt, seed], outputs=[image, info], api_name="generate")
    return demo
