"""Issue 15's routing pieces: the pooled view, the tuning/held-out split rule and the neighbour term."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from slmchat.eval import routing_metrics as rm
from slmchat.eval.cli import eval_group
from slmchat.eval.routing_data import RoutingData, split_files
from slmchat.routing.train import neighbour_trainer, neighbour_values

# Two files scored separately, then ranked together. Gains (strong - weak): A [1, 0], B [0, 1].
A = RoutingData("a", ["a1", "a2"], np.array([0.0, 0.0]), np.array([1.0, 0.0]))
B = RoutingData("b", ["b1", "b2"], np.array([1.0, 0.0]), np.array([1.0, 1.0]))
SCORES = {"a1": 2.0, "a2": 1.0, "b1": 0.5, "b2": 3.0}


def test_pooled_ranks_every_file_together_by_hand() -> None:
    spec = rm.RouterSpec(scorer=lambda prompts: np.array([SCORES[p] for p in prompts]))
    *per_file, whole = rm.evaluate_router("fixed", spec, [A, B], pool=True)
    # pooled order b2 (gain 1), a1 (1), a2 (0), b1 (0); weak mean .25, strong mean .75
    # quality .25, .5, .75, .75, .75 -> PGR 0, .5, 1, 1, 1 -> APGR (.25 + .75 + 1 + 1) / 4 = .75
    assert whole.n == 4 and whole.quality == pytest.approx([0.25, 0.5, 0.75, 0.75, 0.75])
    assert whole.apgr == pytest.approx(0.75)
    assert (whole.share_at_95, whole.cost_saved_at_95) == (0.5, 0.5)  # .95 * .75 = .7125 first reached at 2 of 4
    assert [r.n for r in per_file] == [2, 2] and "pooled" in whole.protocol
    # the same scores with B's shifted below A's rank worse pooled, and identically per file
    low = rm.RouterSpec(scorer=lambda prompts: np.array([SCORES[p] - 10 * p.startswith("b") for p in prompts]))
    *same, worse = rm.evaluate_router("shifted", low, [A, B], pool=True)
    assert [r.apgr for r in same] == [r.apgr for r in per_file]
    assert worse.apgr == pytest.approx((0.25 + 0.5 + 0.75 + 1) / 4)  # a1, a2, b2, b1: PGR 0, .5, .5, 1, 1


def test_held_out_files_are_trained_on_all_the_others() -> None:
    c = RoutingData("c", ["c1", "a1"], np.array([0.0, 0.0]), np.array([1.0, 1.0]))  # a1 also appears in A
    seen: list[set[str]] = []

    def train(prompts: list[str], weak: np.ndarray, strong: np.ndarray) -> rm.Scorer:
        seen.append(set(prompts))
        return lambda test: np.zeros(len(test))

    results = rm.evaluate_router("t", rm.RouterSpec(trainer=train), [A, B, c], cross_file=True, tested=[2])
    assert len(results) == 1 and results[0].n == 2
    assert seen == [{"a2", "b1", "b2"}]  # A and B, minus the tested file's own prompt text


def test_split_rule_alternates_sorted_file_names() -> None:
    names = [f"mmlu_{s}.csv" for s in "fedcba"] + ["gsm8k_responses.csv"]
    paths = [Path("data") / n for n in names]
    random.Random(0).shuffle(paths)
    tuning, held_out = split_files(paths)
    assert [p.name for p in tuning] == ["gsm8k_responses.csv", "mmlu_b.csv", "mmlu_d.csv", "mmlu_f.csv"]
    assert [p.name for p in held_out] == ["mmlu_a.csv", "mmlu_c.csv", "mmlu_e.csv"]


def test_neighbour_term_weights_the_nearest_prompts() -> None:
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    labels = np.array([1.0, 0.0, 0.0])
    query = np.array([[1.0, 0.0]])
    assert neighbour_values(query, bank, labels, k=1) == pytest.approx([1.0])
    # k = 2: the query's neighbours are bank 0 (cos 1) and bank 2 (cos .6), weights 1 and exp(-4)
    assert neighbour_values(query, bank, labels, k=2, temperature=0.1) == pytest.approx([1 / (1 + np.exp(-4))])
    assert neighbour_values(query, bank, labels, k=2, temperature=1e6) == pytest.approx([0.5])  # a plain mean
    assert neighbour_values(query, bank[:0], labels[:0]).tolist() == [0.0]


def test_neighbour_trainer_scores_by_the_weak_models_mistakes_nearby() -> None:
    vectors = {"easy": [1.0, 0.0], "easy too": [0.99, 0.141], "hard": [0.0, 1.0], "hard too": [0.141, 0.99]}
    fit = neighbour_trainer(lambda prompts: np.array([vectors[p] for p in prompts], dtype=np.float32), k=1)
    score = fit(["easy", "hard"], np.array([1.0, 0.0]), np.array([1.0, 1.0]))
    assert score(["easy too", "hard too"]).tolist() == [0.0, 1.0]


def test_cli_pooled_held_out_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, rows in {"f1": "q1,True,True\nq2,False,True", "f2": "r1,False,True\nr2,True,True",
                       "f3": "s1,True,False\ns2,False,False"}.items():  # fmt: skip
        (tmp_path / f"{name}.csv").write_text(f"prompt,w,s\n{rows}\n")
    trained: list[int] = []

    def train(prompts: list[str], weak: np.ndarray, strong: np.ndarray) -> rm.Scorer:
        trained.append(len(prompts))
        return rm.length_scores

    monkeypatch.setitem(rm.ROUTERS, "len-trained", rm.RouterSpec(trainer=train))
    monkeypatch.setattr("slmchat.eval.train_router.register_eval_routers", lambda: None)  # no embedding cache
    files = [str(tmp_path / f"f{i}.csv") for i in (3, 1, 2)]
    args = ["routing", *files, "--cross-file", "--pooled", "--json", "--router", "len-trained", "--repeats", "2"]
    report = json.loads(CliRunner().invoke(eval_group, [*args, "--split", "held-out"]).output)
    assert [f["name"] for f in report["files"]] == ["f2"] and trained == [4]  # trained on f1 and f3
    assert report["pooled"]["n"] == 2 and report["settings"]["held_out_files"] == ["f2"]
    assert list(report["pooled"]["routers"]) == ["random", "length", "len-trained", "file-oracle", "oracle"]
    assert report["settings"]["tuning_files"] == ["f1", "f3"]
    text = CliRunner().invoke(eval_group, [*args[:-6], "--split", "tuning", "--pooled", "--router", "len-trained"])
    assert text.exit_code == 0, text.output
    assert "pooled: the 2 files' scores ranked together, n=4" in text.output and "f2" not in text.output
    assert "split: tuning (files sorted by name" in text.output


def test_cli_pooled_plot_has_the_pooled_panel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setattr("slmchat.eval.train_router.register_eval_routers", lambda: None)
    monkeypatch.setattr(rm, "ROUTERS", {})  # baselines only, whatever other tests registered
    panels: list[str] = []
    monkeypatch.setattr("slmchat.eval.cli._plot", lambda datasets, rows, out: panels.extend(d.name for d in datasets))
    for name in ("f1", "f2"):
        (tmp_path / f"{name}.csv").write_text("prompt,w,s\nq,True,True\nqq,False,True\n")
    files = [str(tmp_path / "f1.csv"), str(tmp_path / "f2.csv")]
    result = CliRunner().invoke(eval_group, ["routing", *files, "--pooled", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert panels == ["f1", "f2", "pooled (2 files)"]
