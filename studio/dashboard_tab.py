"""The Dashboard tab: the plotly figures of ``studio.dashboard`` over the store's votes and generations and the
β results in ``evaluations/results/*.json``, refreshed on opening the tab or on the button; exports as files.

Exports (the dashboard as one offline HTML file, the votes as CSV and as Pick-a-Pic parquet) hold every session's
votes, and deleting a session's votes changes the data, so on a public deployment both are admin actions: when
``STUDIO_ADMIN_TOKEN`` is set the token must be typed in; on Hugging Face Spaces (``SPACE_ID`` set) without a token
they are off. Locally they are open. With a hub sync (``studio.hub_sync``), its state is in the summary and exports
go up with its next commit.
"""

from __future__ import annotations

import hmac
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import gradio as gr

from .dashboard import RESULTS_DIR, dashboard_figures, load_results
from .errors import page_errors
from .store import Store, StoreError

N_BOOT = 300  # bootstrap resamples in the page (the exported HTML uses the dashboard's default)
TITLES = ("Win rate against the baseline", "Bradley–Terry ratings", "Reward distributions",
          "Reward models against people", "Reward and taste against β", "Alignment at equal compute")


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


class Dashboard:
    def __init__(self, store: Store | None, results_dir: str | Path = RESULTS_DIR, store_error: str | None = None,
                 export_dir: str | Path | None = None, sync=None):
        self.store, self.results_dir, self.sync = store, Path(results_dir), sync
        self.store_error = store_error or "The vote database is not available."
        self.export_dir = Path(export_dir) if export_dir else None

    def refresh(self):
        """(figures…, summary) for the page; an empty store gives figures that say so."""
        results, skipped = load_results(self.results_dir)
        if self.store is None:
            votes, generations, note = [], [], f"⚠️ {self.store_error} Showing evaluation results only."
        else:
            votes, generations, note = self.store.vote_records(), self.store.generation_records(), ""
        figures = dashboard_figures(votes, generations, results, n_boot=N_BOOT)
        sessions = votes["session_id"].nunique() if len(votes) else 0
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S UTC")
        summary = (f"**{count(len(votes), 'vote')}** from {count(sessions, 'session')} · "
                   f"{count(len(generations), 'arena generation')} · {count(len(results), 'evaluation row')} · "
                   f"updated {stamp}")
        if skipped:
            summary += f" · {count(len(skipped), 'result file')} not readable as an evaluation table"
        synced = self.sync.status() if self.sync is not None else ""
        return (*figures, "\n\n".join(s for s in (summary, note, synced) if s))

    def check_token(self, token: str | None, action: str = "exports") -> None:
        expected = os.environ.get("STUDIO_ADMIN_TOKEN")
        if expected:
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), expected.encode()):
                raise ValueError(f"{action} need the admin token (STUDIO_ADMIN_TOKEN): type it in the token field")
        elif os.environ.get("SPACE_ID"):
            raise ValueError(f"{action} are off on this public deployment: set STUDIO_ADMIN_TOKEN to turn them on")

    def delete_votes(self, session_id: str | None, token: str | None = None) -> str:
        """Delete one session's votes (an admin action, like the exports); a sentence saying how many."""
        self.check_token(token, "deletions")
        if self.store is None:
            raise StoreError(f"{self.store_error} There is nothing to delete.")
        if not isinstance(session_id, str) or not session_id.strip():
            raise ValueError("give the session id whose votes to delete (the CSV export lists them)")
        n = self.store.delete_votes(session_id.strip())
        return f"Deleted {count(n, 'vote')} of session {session_id.strip()[:64]}."

    def export(self, kind: str, token: str | None = None) -> str:
        """Write one export file and return its path: ``html``, ``csv`` or ``parquet``."""
        from .export import export_dashboard, export_votes_csv, export_votes_parquet

        self.check_token(token)
        if self.store is None:
            raise StoreError(f"{self.store_error} There is nothing to export.")
        writers = {"csv": export_votes_csv, "parquet": export_votes_parquet}
        if kind not in ("html", *writers):
            raise ValueError(f"unknown export {kind!r}; choose html, csv or parquet")
        folder = self.export_dir or Path(tempfile.mkdtemp(prefix="studio-export-"))
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = {"html": f"studio-dashboard-{stamp}.html", "csv": f"studio-votes-{stamp}.csv",
                "parquet": f"studio-votes-pickapic-{stamp}.parquet"}[kind]
        if kind == "html":
            path = export_dashboard(self.store, folder / name, self.results_dir)
        else:
            path = writers[kind](self.store, folder / name)
        if self.sync is not None:
            self.sync.add_export(path)
        return str(path)


def build_dashboard(dashboard: Dashboard, tab: gr.Tab) -> None:
    """The tab's components and events (inside ``tab``); opening the tab refreshes it."""
    with gr.Row():
        summary = gr.Markdown(elem_id="dashboard-summary")
        refresh = gr.Button("↻ Refresh", size="sm", scale=0, elem_id="dashboard-refresh")
    plots = [gr.Plot(label=title, elem_id=f"dashboard-plot-{i}") for i, title in enumerate(TITLES)]
    with gr.Accordion("Export", open=False, elem_id="dashboard-export"):
        token = gr.Textbox(label="Admin token (when STUDIO_ADMIN_TOKEN is set)", type="password", max_lines=1)
        with gr.Row():
            buttons = {kind: gr.Button(label, size="sm", elem_id=f"dashboard-export-{kind}")
                       for kind, label in (("html", "Dashboard (HTML)"), ("csv", "Votes (CSV)"),
                                           ("parquet", "Votes (Pick-a-Pic parquet)"))}
        files = gr.File(label="Exported file", interactive=False, elem_id="dashboard-file")
        with gr.Row():
            session = gr.Textbox(label="Session id", max_lines=1, scale=3, elem_id="dashboard-delete-session")
            delete = gr.Button("Delete this session's votes", size="sm", variant="stop", scale=1,
                               elem_id="dashboard-delete")
        deleted = gr.Markdown(elem_id="dashboard-deleted")

    update = dict(fn=page_errors(dashboard.refresh), outputs=[*plots, summary], concurrency_limit=2)
    refresh.click(api_name="dashboard", **update)
    tab.select(api_name=False, **update)

    def exporter(kind: str):
        @page_errors
        def export(admin_token):
            return dashboard.export(kind, admin_token)
        export.__name__ = f"export_{kind}"
        return export

    for kind, button in buttons.items():
        button.click(exporter(kind), inputs=token, outputs=files, api_name=f"export_{kind}", concurrency_limit=2)

    @page_errors
    def delete_votes(session_id, admin_token):
        return dashboard.delete_votes(session_id, admin_token)

    delete.click(delete_votes, inputs=[session, token], outputs=deleted, api_name="delete_votes", concurrency_limit=1)
