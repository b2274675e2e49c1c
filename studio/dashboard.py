"""The studio's dashboard: plotly figures of human votes and evaluation results, and one self-contained HTML file.

Inputs are plain records, so the page's Dashboard tab, its exports and the command line share this module:
``votes`` and ``generations`` as described in ``studio/vote_records.py``, and result rows from the JSON files
of ``evaluations/results/`` (the evaluations write them there; they are read as files, nothing is imported).
Figures:

* win rate of each configuration against a baseline it met (method ``baseline``), with bootstrap 95 % intervals;
* Bradley–Terry ratings of all configurations with bootstrap 95 % intervals;
* reward distributions per configuration, one panel per reward model;
* agreement of each reward model with the human votes;
* reward gain, taste and win rate against β, one line per method, and taste and win rate against compute
  (trajectories per image) beside best-of-N, from the compute-matched evaluation's tables
  (``evaluations/results/pareto_*.json``).

    python -m studio dashboard --db sqlite:///studio-data/studio.sqlite --out dashboard.html --csv votes.csv

The HTML inlines plotly.js (works offline) and writes every prompt and label through ``html.escape``: text stays
text. A figure without data says so instead of failing.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from .ratings import bradley_terry, reward_agreement, win_rate
from .vote_records import GENERATION_COLUMNS, JSON_COLUMNS, VOTE_COLUMNS, as_frame

RESULTS_DIR = Path(__file__).resolve().parent.parent / "evaluations" / "results"  # the evaluations' result files


def _empty(title: str, message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=260)
    return figure


def _error_bars(center, low, high) -> dict:
    center, low, high = (np.asarray(v, dtype=float) for v in (center, low, high))
    return dict(type="data", symmetric=False, array=high - center, arrayminus=center - low)


# -- figures ----------------------------------------------------------------------------------------------------

def baseline_matchups(votes: pd.DataFrame) -> list[tuple[str, str]]:
    """(configuration, baseline) pairs that met in the votes, where the baseline's method is ``baseline``."""
    pairs = set()
    for _, v in votes.iterrows():
        for me, other in (("left", "right"), ("right", "left")):
            if v[f"{other}_method"] == "baseline" and v[f"{me}_method"] != "baseline":
                pairs.add((v[f"{me}_label"], v[f"{other}_label"]))
    return sorted(pairs)


def win_rate_figure(votes, n_boot: int = 1000, rng=0) -> go.Figure:
    title = "Win rate against the baseline (ties and both-bad count ½; bootstrap 95 %)"
    votes = as_frame(votes)
    rates = [win_rate(votes, a, b, n_boot=n_boot, rng=rng) for a, b in baseline_matchups(votes)]
    if not rates:
        return _empty(title, "No votes between a baseline and another configuration yet.")
    names = [f"{r.a}<br>vs {r.b}" for r in rates]
    figure = go.Figure(go.Bar(x=names, y=[r.rate for r in rates],
                              error_y=_error_bars([r.rate for r in rates], [r.low for r in rates],
                                                  [r.high for r in rates]),
                              text=[f"{r.rate:.0%} of {r.n}" for r in rates], textposition="inside"))
    figure.add_hline(y=0.5, line_dash="dot")
    figure.update_layout(title=title, yaxis=dict(title="win rate", range=[0, 1], tickformat=".0%"))
    return figure


def ratings_figure(votes, n_boot: int = 1000, rng=0) -> go.Figure:
    title = "Bradley–Terry ratings (Elo-like scale, mean 1000; bootstrap 95 %)"
    table = bradley_terry(as_frame(votes), n_boot=n_boot, rng=rng)
    if table.empty:
        return _empty(title, "No votes yet.")
    table = table.iloc[::-1]
    figure = go.Figure(go.Scatter(x=table["rating"], y=table["label"], mode="markers",
                                  error_x=_error_bars(table["rating"], table["low"], table["high"]),
                                  text=[f"{n} votes" for n in table["votes"]]))
    figure.update_layout(title=title, xaxis_title="rating", height=200 + 40 * len(table))
    return figure


def reward_distribution_figure(generations) -> go.Figure:
    title = "Reward distributions per configuration"
    frame = as_frame(generations, GENERATION_COLUMNS)
    long = [(g["label"], name, value) for _, g in frame.iterrows() for name, value in g["rewards"].items()]
    if not long:
        return _empty(title, "No scored generations yet.")
    long = pd.DataFrame(long, columns=["label", "reward", "value"])
    names = sorted(long["reward"].unique())
    figure = make_subplots(rows=len(names), cols=1, subplot_titles=names, vertical_spacing=0.08)
    for row, name in enumerate(names, start=1):
        part = long[long["reward"] == name]
        figure.add_trace(go.Box(x=part["label"], y=part["value"], name=name, boxpoints="all", jitter=0.3),
                         row=row, col=1)
    figure.update_layout(title=title, showlegend=False, height=120 + 280 * len(names))
    return figure


def agreement_figure(votes, n_boot: int = 1000, rng=0) -> go.Figure:
    title = "Reward models against people: the reward prefers the chosen image (decisive votes; bootstrap 95 %)"
    table = reward_agreement(as_frame(votes), n_boot=n_boot, rng=rng)
    if table.empty:
        return _empty(title, "No decisive votes on scored images yet.")
    figure = go.Figure(go.Bar(x=table["reward"], y=table["agreement"],
                              error_y=_error_bars(table["agreement"], table["low"], table["high"]),
                              text=[f"{a:.0%} of {n}" for a, n in zip(table["agreement"], table["n"])],
                              textposition="inside"))
    figure.add_hline(y=0.5, line_dash="dot")
    figure.update_layout(title=title, yaxis=dict(title="agreement", range=[0, 1], tickformat=".0%"))
    return figure


def _series(row: dict, drop: str) -> str:
    """A method's line name: its name without the β (or the budget: N, K), prefixed by model and split."""
    import re

    name = re.sub(drop, "", row["method"]).strip()
    if row.get("kind") == "bon":
        name = "best-of-N"
    return f"{row['model']} · {row['split']} · {name}"


def _colours(names) -> dict:
    """One colour per line name, the same in every panel (plotly would colour each panel's traces anew)."""
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly + plotly.colors.qualitative.D3
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(set(names)))}


def _error_y(values) -> dict:
    return dict(type="data", array=[0.0 if v is None or pd.isna(v) else float(v) for v in values], visible=True)


def beta_figure(rows: list[dict]) -> go.Figure:
    """One line per method (and N) against β on a log axis: reward gain over base, taste (± s.e.) and the share
    of paired images that beat base on taste (± s.e.), from the compute-matched evaluation's tables."""
    title = "Reward and taste against β (evaluation results)"
    columns = ["beta", "kind", "model", "split", "method", "reward_gain", "taste", "taste_se", "base_win_rate",
               "base_win_rate_se"]
    frame = pd.DataFrame([r for r in rows if r.get("beta") is not None and r.get("kind") != "bon"], columns=columns)
    if frame.empty:
        return _empty(title, "No evaluation rows with a β yet: run python -m evaluations.pareto.")
    frame["series"] = [_series(r, r" β=[^ ]+") for r in frame.to_dict("records")]
    frame = frame[frame.groupby("series")["beta"].transform("nunique") > 1]  # a curve needs two β at least
    if frame.empty:
        return _empty(title, "No method was evaluated at two β or more yet.")
    panels = [("reward_gain", None, "reward gain over base"), ("taste", "taste_se", "taste (oracle)"),
              ("base_win_rate", "base_win_rate_se", "beats base on taste")]
    return _panel_lines(title, frame, "beta", "β (log)", panels)


def compute_figure(rows: list[dict]) -> go.Figure:
    """Taste (± s.e.) and the win rate against base over trajectories per image (one sampler run each): every
    method beside best-of-N at equal compute, from the test split's tables."""
    title = "Alignment at equal compute (test split)"
    columns = ["trajectories", "kind", "model", "split", "method", "taste", "taste_se", "base_win_rate",
               "base_win_rate_se"]
    frame = pd.DataFrame([r for r in rows if r.get("split") == "test"], columns=columns)
    if frame.empty:
        return _empty(title, "No test-split evaluation yet: run python -m evaluations.pareto --split test.")
    frame["series"] = [_series(r, r" (N|K)=\d+") for r in frame.to_dict("records")]
    panels = [("taste", "taste_se", "taste (oracle)"), ("base_win_rate", "base_win_rate_se", "beats base on taste")]
    return _panel_lines(title, frame, "trajectories", "trajectories per image (log)", panels)


def _panel_lines(title: str, frame: pd.DataFrame, x: str, x_title: str, panels: list[tuple]) -> go.Figure:
    """One panel per (metric, its standard error or None, title), side by side; in each, one line per
    ``frame["series"]`` over ``x`` (log axis), one colour per series in every panel. The last panel is a share."""
    figure = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[2] for p in panels], horizontal_spacing=0.07)
    colour = _colours(frame["series"])
    for col, (metric, error, _) in enumerate(panels, start=1):
        for series, part in frame.groupby("series", sort=True):
            part = part.sort_values(x)
            figure.add_trace(go.Scatter(x=part[x], y=part[metric], mode="lines+markers", name=series,
                                        legendgroup=series, showlegend=col == 1, text=part["method"],
                                        line=dict(color=colour[series]),
                                        error_y=_error_y(part[error]) if error else None,
                                        hovertemplate="%{text}: %{y:.3f}<extra></extra>"), row=1, col=col)
    figure.update_xaxes(title_text=x_title, type="log")
    figure.update_yaxes(tickformat=".0%", row=1, col=len(panels))
    figure.update_layout(title=title, height=520, legend=dict(orientation="h", y=-0.25))
    return figure


# -- results files ----------------------------------------------------------------------------------------------

def _result_row(row: dict, config: dict, source: str) -> dict:
    """One table row of an evaluation file, flat: its numbers, model, split, and the win rates against base and
    against best-of-N at equal compute."""
    flat = {k: v for k, v in row.items() if isinstance(v, (str, int, float, bool)) or v is None}
    base, bon = row.get("vs_base") or {}, row.get("vs_matched_bon") or {}
    flat.update(model=config.get("model", "?"), split=config.get("split", "?"), source=source,
                base_win_rate=base.get("win_rate"), base_win_rate_se=base.get("win_rate_se"),
                reward_gain=base.get("reward_gain"), bon_win_rate=bon.get("win_rate"), bon_against=bon.get("against"))
    return flat


def load_results(folder: str | Path = RESULTS_DIR) -> tuple[list[dict], list[str]]:
    """The rows of the compute-matched evaluation's tables (``pareto_*.json``, written by ``python -m
    evaluations.pareto``), and the names of files skipped (unreadable or not in that format). A missing folder
    gives no rows."""
    rows, skipped = [], []
    for path in sorted(Path(folder).glob("pareto_*.json")):
        try:
            doc = json.loads(path.read_text())
            found = [_result_row(r, doc["config"], path.stem) for r in doc["table"] if isinstance(r, dict)
                     and isinstance(r.get("method"), str)]
        except (OSError, ValueError, KeyError, TypeError):
            found = []
        rows.extend(found)
        if not found:
            skipped.append(path.name)
    return rows, skipped


# -- the page and the CSV ---------------------------------------------------------------------------------------

def dashboard_figures(votes=(), generations=(), results: list[dict] = (), n_boot: int = 1000,
                      rng=0) -> list[go.Figure]:
    votes, generations = as_frame(votes), as_frame(generations, GENERATION_COLUMNS)
    return [win_rate_figure(votes, n_boot, rng), ratings_figure(votes, n_boot, rng),
            reward_distribution_figure(generations), agreement_figure(votes, n_boot, rng),
            beta_figure(list(results)), compute_figure(list(results))]


def _votes_table(votes: pd.DataFrame, limit: int = 200) -> str:
    cells = ("voted_at", "prompt", "left_label", "right_label", "choice")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cells)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v[c]))}</td>" for c in cells) + "</tr>"
                   for _, v in votes.tail(limit).iloc[::-1].iterrows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def dashboard_html(votes=(), generations=(), results: list[dict] = (), *, title: str = "Alignment studio",
                   n_boot: int = 1000, rng=0) -> str:
    """One HTML page with plotly.js inlined: the figures, the counts, and the latest votes as an escaped table."""
    votes, generations = as_frame(votes), as_frame(generations, GENERATION_COLUMNS)
    figures = dashboard_figures(votes, generations, results, n_boot, rng)
    parts = [f.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{i}", config={"responsive": True})
             for i, f in enumerate(figures)]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sessions = votes["session_id"].nunique() if len(votes) else 0
    summary = (f"{len(votes)} votes from {sessions} sessions, {len(generations)} generations, "
               f"{len(results)} evaluation rows · made {stamp}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;font-size:0.9em}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(summary)}</p>
{"".join(f"<section>{p}</section>" for p in parts)}
<section><h2>Latest votes</h2>{_votes_table(votes)}</section>
</body></html>
"""


def write_dashboard(path: str | Path, votes=(), generations=(), results: list[dict] = (), **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dashboard_html(votes, generations, results, **kwargs), encoding="utf-8")
    return path


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """Text a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``+cmd``, ``@SUM``) gets a leading ``'``
    (OWASP's advice against CSV injection); everything else is unchanged."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def votes_csv(votes, path: str | Path) -> Path:
    """The votes as CSV, one row each with :data:`VOTE_COLUMNS`; config and rewards as JSON text, which
    ``studio.vote_records.as_frame(pd.read_csv(path))`` reads back. Free-text cells that start like a spreadsheet
    formula are prefixed with ``'``."""
    frame = as_frame(votes)[list(VOTE_COLUMNS)].copy()
    for column in frame.columns:
        if column.endswith(JSON_COLUMNS):
            frame[column] = frame[column].map(lambda d: json.dumps(d, sort_keys=True, ensure_ascii=False))
        else:
            frame[column] = frame[column].map(spreadsheet_safe)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
