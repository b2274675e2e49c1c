"""Dashboard and exports: figures from vote records, one offline HTML file with prompts escaped, result rows with
β from any JSON layout, votes as CSV and as Pick-a-Pic parquet read back by the training loader, and the CLI."""

import json
import random
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alignment.pickapic import LoadReport, iter_pairs
from studio.__main__ import main
from studio.arena import Arena
from studio.dashboard import (baseline_matchups, beta_figure, compute_figure, dashboard_figures, dashboard_html, load_results,
                              votes_csv)
from studio.export import export_dashboard, export_votes_csv, export_votes_parquet
from studio.store import Store
from studio.vote_records import VOTE_COLUMNS, as_frame, read_generations, read_votes

EVIL = "<script>alert('x')</script> a red star & <b>friends</b>"


@pytest.fixture
def studio(tmp_path):
    """A store with 24 votes: baseline vs guided (β=0.5) and baseline vs guided (β=2), every choice."""
    url = f"sqlite:///{tmp_path / 'dash.sqlite'}"
    store = Store(url, tmp_path / "data", vote_cap=100, client_salt="s")
    arena, rng = Arena(store, random.Random(0)), np.random.default_rng(0)
    sessions = [store.start_session(f"10.0.0.{i}") for i in range(3)]
    for k in range(24):
        prompt = EVIL if k == 0 else f"a red star number {k % 4}"
        ids = []
        for method, config, shade in (("baseline", {}, 40), ("guided", {"beta": 0.5 if k % 2 else 2.0}, 200)):
            pixels = np.clip(rng.normal(shade, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            ids.append(store.add_generation(prompt, Image.fromarray(pixels), model="toy-sdxl", method=method,
                                            config=config, seed=k, rewards={"toy-pickscore": float(shade) / 100 +
                                                                             float(rng.normal(0, 0.5))}))
        pair = arena.pair(sessions[k % 3], *ids)
        arena.vote(sessions[k % 3], pair.comparison_id, ("left", "right", "left", "tie", "both_bad", "left")[k % 6])
    yield store, url
    store.close()


def test_the_cli_reader_and_the_store_see_the_same_votes(studio):
    store, url = studio
    votes = read_votes(url)
    assert tuple(votes.columns) == VOTE_COLUMNS and len(votes) == 24
    pd.testing.assert_frame_equal(votes, store.vote_records())
    assert set(votes["choice"]) == {"left", "right", "tie", "both_bad"}
    assert votes.loc[0, "prompt"] == " ".join(EVIL.split())
    assert isinstance(votes.loc[0, "left_rewards"], dict) and isinstance(votes.loc[0, "right_config"], dict)
    assert len(read_generations(url)) == 48
    with pytest.raises(ValueError, match="no table"):
        read_votes("sqlite://")


def test_figures_from_votes(studio):
    store, _ = studio
    votes = store.vote_records()
    assert baseline_matchups(votes) == [("toy-sdxl · guided · β=0.5", "toy-sdxl · baseline"),
                                        ("toy-sdxl · guided · β=2", "toy-sdxl · baseline")]
    win, ratings, rewards, agreement, beta, compute = dashboard_figures(votes, store.generation_records(), [],
                                                                        n_boot=50)
    assert len(win.data[0].x) == 2 and all(0 <= y <= 1 for y in win.data[0].y)
    assert set(ratings.data[0].y) == {"toy-sdxl · baseline", "toy-sdxl · guided · β=0.5", "toy-sdxl · guided · β=2"}
    assert len(rewards.data) == 1 and len(rewards.data[0].y) == 48
    assert list(agreement.data[0].x) == ["toy-pickscore"]
    assert not beta.data and not compute.data  # no evaluation rows: figures that say so


def test_html_is_self_contained_and_prompts_stay_text(studio, tmp_path):
    store, _ = studio
    path = export_dashboard(store, tmp_path / "out" / "dash.html", results_dir=tmp_path / "none", n_boot=50)
    page = path.read_text(encoding="utf-8")
    assert len(page) > 1_000_000 and "Plotly.newPlot" in page  # plotly.js inlined
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page, re.I)  # nothing fetched
    assert "<script>alert(" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;friends&lt;/b&gt;" in page and "24 votes from 3 sessions, 48 generations" in page
    assert page.count('class="plotly-graph-div"') == 6


def test_an_empty_studio_and_no_results_still_make_a_page():
    page = dashboard_html([], [], [], n_boot=10)
    assert "0 votes from 0 sessions" in page and page.count('class="plotly-graph-div"') == 6


def _pareto_file(path, model, split, rows):
    path.write_text(json.dumps({"config": {"model": model, "split": split}, "table": rows, "records": {}}))


def test_evaluation_tables_give_one_line_per_method_against_beta_and_compute(tmp_path):
    def row(method, kind, beta, n, trajectories, taste, win):
        return {"method": method, "kind": kind, "beta": beta, "n": n, "trajectories": trajectories, "reward": 1.0,
                "taste": taste, "taste_se": 0.05, "vs_base": {"win_rate": win, "win_rate_se": 0.03,
                                                            "reward_gain": 0.1}}

    _pareto_file(tmp_path / "pareto_toy-sd3_validation.json", "toy-sd3", "validation",
                 [row("base", "base", None, 1, 1, 8.0, None) | {"vs_base": None}]
                 + [row(f"IS[tuned] N=8 β={b:g}", "is", b, 8, 9, 8.5, 0.7) for b in (0.05, 0.1, 0.3)]
                 + [row(f"IS[paper] N=8 β={b:g}", "is", b, 8, 9, 8.2, 0.6) for b in (0.1, 0.3)]
                 + [row("best-of-9", "bon", None, 9, 9, 8.6, 0.7)])
    _pareto_file(tmp_path / "pareto_toy-sd3_test.json", "toy-sd3", "test",
                 [row("base", "base", None, 1, 1, 8.0, None) | {"vs_base": None}]
                 + [row(f"best-of-{n}", "bon", None, n, n, 8.5, 0.7) for n in (5, 9)]
                 + [row(f"IS[tuned] N={n} β=0.1", "is", 0.1, n, n + 1, 8.7, 0.8) for n in (4, 8)])
    (tmp_path / "pareto_broken.json").write_text("{not json")
    (tmp_path / "flow_results.json").write_text("[]")  # not an evaluation table: not read at all
    rows, skipped = load_results(tmp_path)
    assert len(rows) == 12 and skipped == ["pareto_broken.json"]
    figure = beta_figure(rows)
    names = {t.name for t in figure.data}
    assert names == {"toy-sd3 · validation · IS[tuned] N=8", "toy-sd3 · validation · IS[paper] N=8"}
    assert len(figure.data) == 2 * 3 and figure.layout.xaxis.type == "log"  # two lines in each of three panels
    assert list(figure.data[0].x) == [0.05, 0.1, 0.3] or list(figure.data[1].x) == [0.05, 0.1, 0.3]
    compute = compute_figure(rows)
    assert {t.name for t in compute.data} == {"toy-sd3 · test · base", "toy-sd3 · test · best-of-N",
                                              "toy-sd3 · test · IS[tuned] β=0.1"}
    assert load_results(tmp_path / "missing") == ([], [])
    assert beta_figure([]).layout.annotations and compute_figure([]).layout.annotations  # "none yet", no crash


def test_votes_csv_round_trip(studio, tmp_path):
    store, _ = studio
    path = export_votes_csv(store, tmp_path / "votes.csv")
    back = as_frame(pd.read_csv(path))
    votes = store.vote_records()
    assert list(back.columns) == list(VOTE_COLUMNS) and len(back) == 24
    assert list(back["choice"]) == list(votes["choice"]) and list(back["prompt"]) == list(votes["prompt"])
    assert list(back["left_rewards"]) == list(votes["left_rewards"])
    assert list(back["right_config"]) == list(votes["right_config"])
    with pytest.raises(ValueError, match="lack the column"):
        votes_csv(votes.drop(columns=["choice"]), tmp_path / "x.csv")


def test_votes_csv_defuses_spreadsheet_formulas(studio, tmp_path):
    store, _ = studio
    votes = store.vote_records()
    votes.loc[0, "prompt"] = '=HYPERLINK("http://x.example","click")'
    votes.loc[1, "prompt"] = "@SUM(A1:A2)"
    back = pd.read_csv(votes_csv(votes, tmp_path / "votes.csv"))
    assert back.loc[0, "prompt"] == "'" + votes.loc[0, "prompt"] and back.loc[1, "prompt"] == "'@SUM(A1:A2)"
    assert back.loc[2, "prompt"] == votes.loc[2, "prompt"]


def test_votes_parquet_is_read_back_by_the_training_loader(studio, tmp_path):
    store, _ = studio
    path = export_votes_parquet(store, tmp_path / "votes.parquet")
    votes = store.vote_records()
    kept = votes[votes["choice"] != "both_bad"].reset_index(drop=True)
    report = LoadReport()
    pairs = list(iter_pairs(path, report=report))
    assert report.kept == len(kept) == 20 and not report.skipped
    expected = {"left": (1.0, 0.0), "right": (0.0, 1.0), "tie": (0.5, 0.5)}
    for pair, (_, vote) in zip(pairs, kept.iterrows()):
        assert pair.caption == vote["prompt"] and (pair.label_0, pair.label_1) == expected[vote["choice"]]
        assert (pair.model_0, pair.model_1) == (vote["left_label"], vote["right_label"])
        for image, sha in ((pair.image_0, vote["left_image"]), (pair.image_1, vote["right_image"])):
            # JPEG (as Pick-a-Pic) of noisy 16×16 images: the mean shade (40 or 200) survives
            assert abs(np.asarray(image).mean() - np.asarray(store.image(sha)).mean()) < 3
    frame = pd.read_parquet(path)
    assert frame["user_id"].nunique() == 3


def test_cli_writes_the_page_and_the_csv(studio, tmp_path, capsys):
    _, url = studio
    out, csv = tmp_path / "cli.html", tmp_path / "cli.csv"
    assert main(["dashboard", "--db", url, "--out", str(out), "--csv", str(csv), "--n-boot", "20",
                 "--results", str(tmp_path)]) == 0
    assert out.exists() and len(pd.read_csv(csv)) == 24 and "24 votes" in capsys.readouterr().out
    assert main(["dashboard", "--db", "postgresql://u:secret@127.0.0.1:1/none", "--out", str(out)]) == 2
    assert "secret" not in capsys.readouterr().err
    assert main(["dashboard", "--out", str(tmp_path / "results-only.html"), "--n-boot", "5"]) == 0
