"""The Explore tab: one prompt and seed, the baseline and the aligned image side by side with their rewards; for
flow models also best-of-N from the same bank and the effective sample size of every step.

Sliders act on release, and only the aligned image is made again (the baseline and the flow bank are cached in
the engine); Generate, Enter in the prompt, and a new seed or model make what isn't cached yet.
"""

from __future__ import annotations

import functools
import json
import random

import gradio as gr
from gradio.components.plot import PlotData

from .components import Dropdown, Number, Slider, text
from .engine import Engine, ExploreView
from .errors import page_errors
from .settings import gpu
from .shown_images import ShownImages
from .store import MAX_SEED

EXAMPLES = [
    ["a red star on a blue background", 0],
    ["a large yellow circle on a black background", 1],
    ["a small white cross on a green background in the top left", 2],
    ["pink ring, cyan background", 3],
    ["a purple triangle on an orange background", 4],
]
# The "tuned" / "paper" choice of each family: the flow estimator's options, or the diffusion model's guidance network
SETTING_CHOICES = {
    "flow": ("Estimator", [("tuned (the project's default)", "tuned"), ("paper (the paper's exact estimator)", "paper")]),
    "diffusion": ("Guidance network", [("tuned (trained through its sampler; the default)", "tuned"),
                                       ("paper (trained with the paper's loss)", "paper")]),
}


def setting_radio(family: str) -> dict:
    """The setting radio's label and choices for a model family."""
    label, choices = SETTING_CHOICES[family]
    return dict(label=label, choices=choices)


def defaults_for(family: str) -> dict:
    """The sliders' starting values for a model family: ``alignment.defaults``, the settings that won the
    compute-matched evaluation."""
    from alignment import defaults

    return dict(beta=defaults.DIFFUSION_BETA if family == "diffusion" else defaults.FLOW_BETA,
                eta=defaults.DIFFUSION_ETA, alpha=defaults.DIFFUSION_ALPHA, n=defaults.FLOW_N,
                estimator=defaults.FLOW_ESTIMATOR)


@functools.cache
def _plotly_template() -> dict:
    import plotly.io as pio

    return pio.templates[pio.templates.default].to_plotly_json()


def ess_figure(view: ExploreView) -> PlotData | None:
    """ESS of the bank's weights at every step (flow): the tilted weights b that guide, and the posterior weights a
    (without the reward) for reference. N is the ceiling, 1 a bank that leans on one sample.

    Written as the plotly JSON the page draws (with plotly's default template), not as a ``go.Figure``: building
    and validating the figure and then ``to_json`` cost ~10 ms of every β change; this costs well under 1 ms."""
    if not view.ess:
        return None
    steps = list(range(1, len(view.ess) + 1))
    n = view.n

    def line(y, color, label, anchor):
        return (dict(type="line", xref="paper", x0=0, x1=1, y0=y, y1=y, line=dict(dash="dot", color=color)),
                dict(xref="paper", x=1, y=y, text=label, showarrow=False, xanchor="right", yanchor=anchor))

    top, bottom = line(n, "#444", f"N = {n}", "top"), line(1, "firebrick", "degenerate", "bottom")
    sigmas = [f"σ = {s:.3f}" for s in view.sigmas or []]
    hover = "step %{x}, %{text}: ESS %{y:.2f}<extra></extra>"
    traces = [dict(type="scatter", x=steps, y=[float(e) for e in view.ess], mode="lines+markers",
                   name="tilted b (guidance)", text=sigmas, hovertemplate=hover)]
    if view.ess_posterior:
        traces.append(dict(type="scatter", x=steps, y=[float(e) for e in view.ess_posterior], mode="lines+markers",
                           name="posterior a (no reward)", text=sigmas, hovertemplate=hover,
                           line=dict(dash="dash", color="#999")))
    layout = dict(title=dict(text=f"Effective sample size of the bank's weights, per step (of N = {n})"),
                  xaxis=dict(title=dict(text="step"), dtick=1),
                  yaxis=dict(title=dict(text="ESS"), range=[0, n * 1.08 + 0.5]),
                  height=300, margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.25),
                  shapes=[top[0], bottom[0]], annotations=[top[1], bottom[1]], template=_plotly_template())
    return PlotData(type="plotly", plot=json.dumps({"data": traces, "layout": layout}))


def describe(view: ExploreView) -> str:
    """The run's summary line and any notes, as Markdown (no user text in it)."""
    parts = [f"**{text(view.model)}** ({view.family}) · seed {view.seed}"]
    if view.aligned is not None:
        parts.append(text(view.aligned.title))
    parts.append(f"{view.seconds:.2f} s")
    lines = [" · ".join(parts)]
    if view.ess:
        lines.append("ESS per step: " + " · ".join(f"{e:.2f}" for e in view.ess) + f" (of N = {view.n}; posterior "
                     "without the reward: " + " · ".join(f"{e:.2f}" for e in view.ess_posterior or []) + ")")
    lines += [f"⚠️ {text(note)}" for note in view.notes]
    return "\n\n".join(lines)


def caption(panel) -> str:
    return panel.caption() if panel is not None else ""


def check_sent(beta, eta, alpha, n) -> None:
    """The page always sends every slider: a missing one (null, as a browser sends NaN) is a bad input, not a
    request for the default."""
    for value, name in ((beta, "β"), (eta, "η"), (alpha, "α"), (n, "N (the bank size)")):
        if value is None:
            raise ValueError(f"{name} must be a number, not empty")


def as_shown(image, to_file=None):
    """The image as the page receives it: a file path through ``to_file`` (``studio.shown_images``), else as is."""
    return image if to_file is None or image is None else to_file(image)


def run_explore(engine: Engine, model, prompt, seed, beta, eta, alpha, n, estimator=None, progress=None,
                to_file=None):
    """The tab's outputs: baseline image and caption, aligned image and caption, best-of-N image and caption, the
    ESS figure and the summary. Notes (a missing network, a degenerate bank) also pop up as warnings. Images are
    PIL images, or what ``to_file`` makes of them (the page: files it serves as they are)."""
    check_sent(beta, eta, alpha, n)
    view = engine.explore(model, prompt, seed, beta=beta, eta=eta, alpha=alpha, n=n, estimator=estimator,
                          progress=progress)
    for note in view.notes:
        gr.Warning(note)
    return (as_shown(view.baseline.image, to_file), caption(view.baseline),
            as_shown(view.aligned.image if view.aligned else None, to_file), caption(view.aligned),
            as_shown(view.best_of_n.image if view.best_of_n else None, to_file), caption(view.best_of_n),
            ess_figure(view), describe(view))


def explore_steps(engine: Engine, model, prompt, seed, beta, eta, alpha, n, estimator=None, progress=None,
                  to_file=None):
    """``run_explore`` as the page's generator: when a flow bank must be made first (seconds), the baseline is
    shown at once and the rest follows; otherwise one answer. Last, what the page now shows (see ``shown_key``)."""
    check_sent(beta, eta, alpha, n)
    if not engine.bank_ready(model, prompt, seed, n):
        panel = engine.baseline(model, prompt, seed)
        yield (as_shown(panel.image, to_file), caption(panel), *[gr.skip()] * 5,
               f"Making the bank of {int(float(n))} samples…", gr.skip())
    yield (*run_explore(engine, model, prompt, seed, beta, eta, alpha, n, estimator, progress, to_file),
           shown_key(model, prompt, seed, n))


def shown_key(model, prompt, seed, n) -> tuple:
    """What decides the baseline image (model, prompt, seed) and the best-of-N image (and N)."""
    return (model, prompt, seed, n)


def retune_steps(engine: Engine, model, prompt, seed, beta, eta, alpha, n, shown, estimator=None,
                 progress=None, to_file=None) -> tuple:
    """A slider moved: ``run_explore`` as one answer, not a stream (a streaming handler costs Gradio a second round
    through its queue, ~5 ms), without the baseline and best-of-N images when they are the ones on the page
    (``shown``), so the browser does not fetch them again (on the server this saves only ~2 ms: Gradio builds a
    component for every skipped output)."""
    out = list(run_explore(engine, model, prompt, seed, beta, eta, alpha, n, estimator, progress, to_file))
    key = shown_key(model, prompt, seed, n)
    if shown is not None and tuple(shown[:3]) == key[:3]:
        out[0] = gr.skip()
        if shown[3] == key[3]:
            out[4] = gr.skip()
    return *out, key


def family_controls(engine: Engine, model):
    """Show η and α for diffusion models, N and best-of-N for flow models, and the family's "tuned" / "paper"
    choice (estimator or guidance network); β starts at the family's default."""
    try:
        family = engine.family(model)
    except Exception:  # noqa: BLE001 - an unknown model keeps the diffusion layout; Generate reports it
        family = "diffusion"
    diffusion = family == "diffusion"
    return (gr.update(visible=diffusion), gr.update(visible=diffusion), gr.update(visible=not diffusion),
            gr.update(visible=not diffusion), gr.update(visible=not diffusion), family_text(family),
            gr.update(value=defaults_for(family)["beta"]), gr.update(**setting_radio(family)))


def family_text(family: str) -> str:
    if family == "diffusion":
        return ("**diffusion** model: the aligned image follows a trained guidance network at β and η, with "
                "strength α (the tuned network, or the one trained with the paper's loss).")
    return ("**flow** model: the aligned image follows importance-sampled guidance over a bank of N baseline "
            "samples at temperature β (the tuned estimator, or the paper's exact one); best-of-N comes free from the "
            "same bank.")


def _first_family(engine: Engine, model: str) -> str:
    from alignment.presets import find_preset

    preset = find_preset(model)
    return preset.family if preset else "diffusion"


def build_explore(engine: Engine) -> None:
    """The tab's components and events (inside a ``gr.Tab``)."""
    models = list(engine.models)
    files = ShownImages()
    gr.set_static_paths([files.folder])  # served as written: Gradio neither encodes nor copies them again

    @gpu
    @page_errors
    def explore(model, prompt, seed, beta, eta, alpha, n, estimator="tuned", progress=gr.Progress()):
        yield from explore_steps(engine, model, prompt, seed, beta, eta, alpha, n, estimator,
                                 progress=lambda f, desc: progress(f, desc=desc), to_file=files)

    @gpu
    @page_errors
    def retune(model, prompt, seed, beta, eta, alpha, n, estimator, shown, progress=gr.Progress()):
        return retune_steps(engine, model, prompt, seed, beta, eta, alpha, n, shown, estimator,
                            progress=lambda f, desc: progress(f, desc=desc), to_file=files)

    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(value=EXAMPLES[0][0], label="Prompt", max_lines=2, elem_id="explore-prompt")
        with gr.Column(scale=1, min_width=200):
            model = Dropdown(models, value=models[0], label="Model", elem_id="explore-model")
        with gr.Column(scale=1, min_width=160):
            seed = Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="explore-seed")
            dice = gr.Button("🎲 random seed", size="sm")
    first = _first_family(engine, models[0])
    diffusion = first == "diffusion"
    start = defaults_for(first)
    family_md = gr.Markdown(family_text(first), elem_id="explore-family")
    with gr.Row():
        beta = Slider(0.05, 5.0, value=start["beta"], step=0.05,
                      label="β (temperature: small = strong alignment)", elem_id="explore-beta")
        eta = Slider(0.0, 2.0, value=start["eta"], step=0.1, label="η (consistency weight)", visible=diffusion,
                     elem_id="explore-eta")
        alpha = Slider(0.0, 5.0, value=start["alpha"], step=0.1, label="α (guidance strength)",
                       visible=diffusion, elem_id="explore-alpha")
        n = Slider(1, engine.settings.max_n, value=start["n"], step=1, label="N (bank size)",
                   visible=not diffusion, elem_id="explore-n")
        estimator = gr.Radio(value=start["estimator"], elem_id="explore-estimator", **setting_radio(first))
    generate = gr.Button("Generate", variant="primary", elem_id="explore-generate")
    with gr.Row():
        with gr.Column(elem_classes="studio-image"):
            base_img = gr.Image(label="Baseline", type="filepath", format="png", height=256, interactive=False,
                                buttons=["download", "fullscreen"], elem_id="explore-baseline")
            base_md = gr.Markdown(elem_id="explore-baseline-reward")
        with gr.Column(elem_classes="studio-image"):
            aligned_img = gr.Image(label="Aligned", type="filepath", format="png", height=256, interactive=False,
                                   buttons=["download", "fullscreen"], elem_id="explore-aligned")
            aligned_md = gr.Markdown(elem_id="explore-aligned-reward")
        with gr.Column(elem_classes="studio-image", visible=not diffusion) as bon_col:
            bon_img = gr.Image(label="Best-of-N (same bank)", type="filepath", format="png", height=256,
                               interactive=False, buttons=["download", "fullscreen"], elem_id="explore-bon")
            bon_md = gr.Markdown(elem_id="explore-bon-reward")
    ess_plot = gr.Plot(label="ESS", visible=not diffusion, elem_id="explore-ess")
    info = gr.Markdown(elem_id="explore-info")
    gr.Examples(EXAMPLES, inputs=[prompt, seed], label="Example prompts")

    shown = gr.State(None)  # (model, prompt, seed, N) of the baseline and best-of-N images on the page
    inputs = [model, prompt, seed, beta, eta, alpha, n, estimator]
    outputs = [base_img, base_md, aligned_img, aligned_md, bon_img, bon_md, ess_plot, info, shown]
    common = dict(fn=explore, inputs=inputs, outputs=outputs, concurrency_id="models", concurrency_limit=1)
    generate.click(api_name="explore", **common)
    prompt.submit(api_name=False, **common)
    for slider in (beta, eta, alpha, n):
        slider.release(api_name=False, trigger_mode="always_last", show_progress="minimal",
                       **{**common, "fn": retune, "inputs": [*inputs, shown]})
    estimator.input(api_name=False, trigger_mode="always_last", show_progress="minimal",
                     **{**common, "fn": retune, "inputs": [*inputs, shown]})
    dice.click(lambda: random.randrange(MAX_SEED + 1), outputs=seed, api_name=False, queue=False).then(
        api_name=False, **common)
    controls = [eta, alpha, n, bon_col, ess_plot, family_md, beta, estimator]
    model.change(lambda m: family_controls(engine, m), inputs=model, outputs=controls, api_name=False, queue=False)
