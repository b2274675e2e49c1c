"""The compute-matched evaluation: method parsing and cost, the splits, paired win rates and the table, on made-up
records (the numbers are checked by hand), plus one tiny end-to-end run."""

import json

import pytest
from PIL import Image

from alignment.defaults import TUNED
from alignment.flow_guidance import Estimator
from evaluations.pareto import main, paired, parse_method, split_captions, summarise


def test_methods_parse_with_their_cost_in_trajectories():
    assert parse_method("base").trajectories == 1
    assert parse_method("bon:n=9").name == "best-of-9" and parse_method("bon:n=9").trajectories == 9
    paper = parse_method("is:n=8,beta=0.3,estimator=paper")
    assert paper.estimator == Estimator() and paper.trajectories == 9 and paper.name == "IS[paper] N=8 β=0.3"
    tuned = parse_method("is:n=8,beta=0.3,estimator=tuned")
    assert tuned.estimator == TUNED and tuned.name.startswith("IS[tuned]")
    custom = parse_method("is:n=6,beta=0.1,tau=16,scale=3,particles=3,rounds=2")
    assert custom.trajectories == 6 + 3 * 2 and custom.estimator == Estimator(tau=16, scale=3)
    assert custom.name == "IS[tau=16,scale=3] N=6 K=3 R=2 β=0.1"
    assert parse_method("fk:particles=9,beta=0.3").trajectories == 9
    assert parse_method("guided:beta=0.1,eta=1,alpha=2").name == "guided β=0.1 η=1 α=2"
    assert parse_method("guided:beta=0.3,eta=1,network=paper").name == "guided[paper] β=0.3 η=1"


@pytest.mark.parametrize("text,word", [("best:n=3", "unknown method kind"), ("bon:n", "key=value"),
                                       ("is:n=8", "beta"), ("guided:beta=1", "eta"), ("bon:n=0", "n must"),
                                       ("is:n=8,beta=1,estimator=magic", "unknown estimator"),
                                       ("is:n=8,beta=1,colour=red", "unknown option"),
                                       ("is:n=8,beta=1,tau=0", "tau"),
                                       ("bon:n=2,network=paper", "guided methods only")])
def test_bad_methods_are_refused_with_the_reason(text, word):
    with pytest.raises(ValueError, match=word):
        parse_method(text)


def test_validation_never_holds_a_test_caption():
    test, validation = split_captions("test", 200), split_captions("validation", 150)
    assert len(test) == 200 and len(validation) == 150 and not set(test) & set(validation)
    assert split_captions("test", 5) == test[:5]
    with pytest.raises(ValueError, match="split"):
        split_captions("training", 3)
    seen = split_captions("train", 50)  # the training split's captions, for the seen-vs-new check only
    assert len(seen) == 50 and not set(seen) & set(test) and not set(seen) & set(validation)


def _rows(tastes, rewards=None):
    keys = [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    rewards = rewards or [0.0] * 4
    return [{"caption": c, "seed": s, "taste": t, "reward": r, "prompt_fidelity": 1.0}
            for (c, s), t, r in zip(keys, tastes, rewards)]


def test_paired_win_rates_count_ties_half():
    out = paired(_rows([2, 1, 0, 3], [1, 1, 1, 1]), _rows([1, 1, 1, 1]))
    assert out["pairs"] == 4 and out["ties"] == 1 and out["win_rate"] == pytest.approx(0.625)
    assert out["taste_gain"] == pytest.approx(0.5) and out["reward_gain"] == pytest.approx(1.0)
    assert out["reward_win_rate"] == 1.0
    mixed = paired(_rows([1, 1, 1, 1], [2, 0, 1, 3]), _rows([1, 1, 1, 1], [1, 1, 1, 1]))
    assert mixed["reward_win_rate"] == pytest.approx(0.625)  # above, below, a tie (half), above


def test_the_table_compares_each_method_with_the_cheapest_best_of_n_that_costs_as_much():
    black, white = Image.new("RGB", (4, 4)), Image.new("RGB", (4, 4), (255, 255, 255))
    methods = [parse_method(t) for t in ("base", "bon:n=5", "bon:n=9", "is:n=8,beta=1,estimator=paper",
                                         "is:n=4,beta=1,estimator=paper")]

    def results(tastes):  # taste is read off the image by the oracle: use (caption, seed, image, reward, seconds)
        return [(c, s, black if s == 0 else white, float(t), 1.0) for (c, s), t in
                zip([("a red star on a blue background", 0), ("a red star on a blue background", 1)], tastes)]

    res = {m.name: results([1.0, 2.0]) for m in methods}
    table = summarise(res, methods, [0, 1], steps=6)["table"]
    by = {r["method"]: r for r in table}
    assert by["IS[paper] N=8 β=1"]["vs_matched_bon"]["against"] == "best-of-9"
    assert by["IS[paper] N=4 β=1"]["vs_matched_bon"]["against"] == "best-of-5"
    assert by["IS[paper] N=8 β=1"]["denoiser_calls"] == 9 * 6 and by["base"]["trajectories"] == 1
    assert by["best-of-9"]["diversity"] == pytest.approx(1.0)  # black against white: RMS distance 1
    assert "vs_bon" not in by["base"] and "vs_base" not in by["base"]


def test_a_tiny_run_writes_the_report(tmp_path):
    """One caption, one seed, the toy-sd3 pipeline end to end (toy-taste as the reward: a smoke run)."""
    assert main(["--model", "toy-sd3", "--split", "validation", "--captions", "1", "--seeds", "7", "--methods",
                 "base", "bon:n=2", "is:n=1,beta=0.3,estimator=tuned", "fk:particles=2,beta=0.3", "--reward",
                 "toy-taste", "--device", "cpu", "--out-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "pareto_toy-sd3_validation.json").read_text())
    assert [r["method"] for r in report["table"]] == ["base", "best-of-2", "IS[tuned] N=1 β=0.3", "FK K=2 β=0.3"]
    assert report["table"][2]["vs_matched_bon"]["against"] == "best-of-2"
    assert (tmp_path / "pareto_toy-sd3_validation.md").read_text().startswith("# Compute-matched")
    assert (tmp_path / "pareto_toy-sd3_validation.html").is_file()
    with pytest.raises(SystemExit):
        main(["--methods", "bon:n=2", "bon:n=2", "--out-dir", str(tmp_path)])  # two rows of one name
