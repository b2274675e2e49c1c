"""The studio's page: three tabs composed from their modules.

* Explore (``studio.explore``): baseline and aligned side by side with rewards; live β / η / α or β / N sliders.
* Arena (``studio.arena_tab``): blind pairs, votes, the reveal after the vote.
* Dashboard (``studio.dashboard_tab``): win rates, ratings, reward distributions and agreement, β curves; exports.

    demo = build_demo()                      # StudioSettings.from_env(): toy presets on CPU unless told otherwise
    demo.queue(**QUEUE_KWARGS).launch(**LAUNCH_KWARGS)

Generation lives in ``studio.engine`` (no Gradio), votes in ``studio.store`` / ``studio.arena``. A store that can't
be opened (read-only or full disk, unreachable database) leaves the Explore tab working and says so in the others.
With ``STUDIO_HUB_DATASET`` set, the votes are restored from that dataset and synced to it (``studio.hub_sync``).
"""

from __future__ import annotations

import logging
import threading

import gradio as gr

from .arena_tab import CSS as ARENA_CSS, ArenaSession, build_arena
from .dashboard_tab import Dashboard, build_dashboard
from .configs import Config
from .engine import Engine
from .explore import build_explore
from .hub_sync import HubSync, start as start_hub_sync
from .settings import StudioSettings
from .store import Store, StoreError

log = logging.getLogger("studio")

CSS = """
.studio-image .image-frame img { image-rendering: pixelated; object-fit: contain !important; }
""" + ARENA_CSS + "\n"
LAUNCH_KWARGS = dict(css=CSS)
# How the page's queue is served (app.py, and the load test as app.py serves it). Four events of a kind at once by
# default (pairs have their own group, studio.arena_tab); queue positions and waiting-time estimates go to the
# waiting browsers once a second, not to every waiting browser each time any event starts ("auto"): with 50 voters
# queued for pairs that broadcast was O(voters) messages per pair, and the status every second took the Arena from
# 32-34 to 38-39 votes/s on the 2-core CPU (benchmarks/load_test.py, run alternately three times each).
QUEUE_KWARGS = dict(default_concurrency_limit=4, status_update_rate=1.0)
INTRO = ("# Alignment studio\n"
         "Inference-time alignment of text-to-image models with a reward: sample from "
         "p(x0|y) · exp(r(x0, y)/β). **Explore** the method, vote blind in the **Arena**, read the votes in the "
         "**Dashboard**.")


def available_models() -> list[str]:
    """Toy presets always; more when STUDIO_MODELS names them (comma-separated) or STUDIO_REAL=1."""
    return list(StudioSettings.from_env().models)


def open_store() -> tuple[Store | None, str | None]:
    """The vote store from the environment (STUDIO_DATABASE_URL, STUDIO_DATA_DIR), or (None, why not)."""
    try:
        return Store(), None
    except StoreError as e:
        log.warning("vote store unavailable: %s", e)
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - a bad database URL must not take the page down
        log.exception("vote store unavailable")
        return None, f"The vote database can't be opened ({type(e).__name__}: {str(e)[:200]})."


def hub_sync(store: Store | None, settings: StudioSettings) -> HubSync | None:
    """The store's sync to ``settings.hub_dataset`` (restored first when the store is empty), or None when unset."""
    if not settings.hub_dataset:
        return None
    if store is None:
        log.warning("votes are not saved to the hub dataset %s: the vote store is not available",
                    settings.hub_dataset)
        return None
    return start_hub_sync(store, settings.hub_dataset, every=settings.hub_every, images=settings.hub_images)


def build_demo(settings: StudioSettings | None = None, *, engine: Engine | None = None, store: Store | None = None,
               arena_configs: list[Config] | None = None, warm_up: bool = True) -> gr.Blocks:
    """The whole studio. ``store`` defaults to the environment's, restored from and synced to the hub dataset when
    one is set; ``warm_up`` loads the first model, its reward and guidance network in the background so the first
    click doesn't wait for them."""
    engine = engine or Engine(settings or StudioSettings.from_env())
    store_error = None
    if store is None:
        store, store_error = open_store()
    sync = hub_sync(store, engine.settings)
    arena = ArenaSession(engine, store, arena_configs, store_error=store_error)
    dashboard = Dashboard(store, store_error=store_error, sync=sync)
    with gr.Blocks(title="Alignment studio") as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Explore", id="explore", elem_id="tab-explore"):
                build_explore(engine)
            with gr.Tab("Arena", id="arena", elem_id="tab-arena"):
                build_arena(arena)
            with gr.Tab("Dashboard", id="dashboard", elem_id="tab-dashboard") as tab:
                build_dashboard(dashboard, tab)
    demo.studio_engine, demo.studio_store, demo.studio_sync = engine, store, sync  # for tests and scripts
    if warm_up:
        threading.Thread(target=engine.warm_up, name="studio-warm-up", daemon=True).start()
    return demo
