"""Routing evaluation: metrics on hand-made arrays, the CSV loader, the harnesses and `eval routing`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from slmchat.eval import routing_metrics as rm
from slmchat.eval.cli import eval_group
from slmchat.eval.routing_data import RoutingData, load_routing_csv
from slmchat.infra.errors import SlmchatError
from tests.helpers import SHARED_DATA

DATA = SHARED_DATA / "routing"
GSM8K = DATA / "gsm8k" / "gsm8k_responses.csv"
needs_data = pytest.mark.shared_data("routing/gsm8k/gsm8k_responses.csv", "routing/mmlu")

# Four prompts; only the first two are answered better by the strong model.
WEAK = np.array([0.0, 0.0, 0.0, 0.0])
STRONG = np.array([1.0, 1.0, 0.0, 0.0])
ORACLE = rm.oracle_scores(WEAK, STRONG)


# -- metrics ---------------------------------------------------------------------------------------


def test_oracle_reaches_the_maximum_and_known_cpt() -> None:
    result = rm.evaluate_scores(ORACLE, WEAK, STRONG, router="oracle")
    # quality 0, .25, .5, .5, .5 -> PGR 0, .5, 1, 1, 1 -> trapezoid area .75 (the most this data allows)
    assert result.quality == pytest.approx([0, 0.25, 0.5, 0.5, 0.5])
    assert result.apgr == pytest.approx(0.75)
    assert (result.cpt50, result.cpt80) == (0.25, 0.5)
    assert (result.share_at_95, result.cost_saved_at_95) == (0.5, 0.5)
    for _ in range(20):  # no ordering beats the oracle
        other = rm.evaluate_scores(np.random.default_rng(_).random(4), WEAK, STRONG)
        assert other.apgr <= result.apgr + 1e-12


def test_reversed_router_is_worse_than_random() -> None:
    reversed_ = rm.evaluate_scores(-ORACLE, WEAK, STRONG)
    random = rm.random_baseline(WEAK, STRONG, repeats=200, seed=1)
    assert reversed_.apgr == pytest.approx(0.25)  # PGR 0, 0, 0, .5, 1
    assert (reversed_.cpt50, reversed_.cpt80) == (0.75, 1.0)
    assert random.apgr == pytest.approx(0.5, abs=0.03)
    assert reversed_.apgr < random.apgr < 0.75


def test_cpt_on_a_larger_constructed_example() -> None:
    # 10 prompts: strong wins on 4 (gap .4); the router ranks two winners first, the other two late.
    weak = np.zeros(10)
    strong = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    scores = np.array([9, 8, 1, 0, 5, 4, 3, 2, 1.5, 0.5])
    result = rm.evaluate_scores(scores, weak, strong)
    # order: 0, 1 (PGR .5 at 20%), then losers 4, 5, 6, 7, 8, then 2 (PGR .75 at 80%), 9, 3 (PGR 1 at 100%)
    assert result.cpt50 == pytest.approx(0.2)
    assert result.cpt80 == pytest.approx(1.0)
    assert result.share_at_95 == pytest.approx(1.0) and result.cost_saved_at_95 == pytest.approx(0.0)


def test_ties_count_as_the_average_over_tie_breaks() -> None:
    constant = rm.evaluate_scores(np.zeros(4), WEAK, STRONG)
    assert constant.quality == pytest.approx([0, 0.125, 0.25, 0.375, 0.5])  # the straight line
    assert constant.apgr == pytest.approx(0.5)
    # a tie between a winner and a loser, ranked after the other winner: half the gain at k=2
    tied = rm.evaluate_scores(np.array([2.0, 1.0, 1.0, 0.0]), WEAK, STRONG)
    assert tied.quality == pytest.approx([0, 0.25, 0.375, 0.5, 0.5])
    # row order does not matter, even inside ties
    perm = np.array([3, 1, 0, 2])
    again = rm.evaluate_scores(np.array([2.0, 1.0, 1.0, 0.0])[perm], WEAK[perm], STRONG[perm])
    assert again.quality == pytest.approx(tied.quality)


def test_no_gap_between_strong_and_weak_is_defined() -> None:
    same = np.array([1.0, 0.0, 1.0])
    result = rm.evaluate_scores(np.array([3.0, 2.0, 1.0]), same, same)
    assert result.pgr is None and result.apgr is None and result.cpt50 is None and result.cpt80 is None
    assert result.quality == pytest.approx([2 / 3] * 4)
    assert (result.share_at_95, result.cost_saved_at_95) == (0.0, 1.0)  # the weak model is already there
    # strong and weak differ per prompt but not on average: PGR still undefined, no warning
    with np.errstate(all="raise"):
        swap = rm.evaluate_scores(np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert swap.apgr is None
    # a strong model worse on average: a negative denominator would flip PGR's sign, so also undefined
    worse = rm.evaluate_scores(np.zeros(2), np.array([1.0, 1.0]), np.array([1.0, 0.0]))
    assert worse.pgr is None and worse.apgr is None and worse.share_at_95 == 0.0


def test_numeric_quality_cost_ratio_and_unreachable_target() -> None:
    weak, strong = np.array([0.2, 0.4]), np.array([0.9, 0.45])
    result = rm.evaluate_scores(np.array([1.0, 0.0]), weak, strong, cost_ratio=10)
    assert result.quality == pytest.approx([0.3, 0.65, 0.675])  # 0.65 >= 0.95 * 0.675
    assert result.share_at_95 == 0.5 and result.cost_saved_at_95 == pytest.approx(0.5 * 0.9)
    negative = rm.evaluate_scores(np.zeros(2), np.array([-1.0, -1.0]), np.array([-0.5, -0.5]))
    assert negative.share_at_95 is None and negative.cost_saved_at_95 is None  # 0.95 * -0.5 > -0.5


def test_bad_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="3 scores for 4 prompts"):
        rm.evaluate_scores(np.zeros(3), WEAK, STRONG)
    with pytest.raises(ValueError, match="NaN"):
        rm.evaluate_scores(np.array([0, np.nan, 0, 0]), WEAK, STRONG)


def test_length_router_counts_characters() -> None:
    assert rm.length_scores(["ab", "a b c", ""]).tolist() == [2, 5, 0]


# -- harnesses -----------------------------------------------------------------------------------


def _recording_trainer(data: RoutingData, log: list[tuple[set[str], set[str]]]) -> rm.Trainer:
    labels = {p: (w, s) for p, w, s in zip(data.prompts, data.weak, data.strong, strict=True)}

    def train(prompts: list[str], weak: np.ndarray, strong: np.ndarray) -> rm.Scorer:
        assert all(labels[p] == (w, s) for p, w, s in zip(prompts, weak, strong, strict=True))  # labels stay aligned
        seen = set(prompts)

        def score(test: list[str]) -> np.ndarray:
            log.append((seen, set(test)))
            return np.array([len(p) for p in test], dtype=float)

        return score

    return train


def _toy(name: str, n: int, offset: int = 0) -> RoutingData:
    rng = np.random.default_rng(n + offset)
    prompts = [f"{name} question {i}" for i in range(n)] + [f"{name} question 0"]  # one duplicate
    weak, strong = rng.integers(0, 2, n + 1).astype(float), rng.integers(0, 2, n + 1).astype(float)
    weak[-1], strong[-1] = weak[0], strong[0]
    return RoutingData(name, prompts, weak, strong)


def test_kfold_never_trains_on_a_test_prompt() -> None:
    data = _toy("a", 53)
    log: list[tuple[set[str], set[str]]] = []
    result = rm.evaluate_kfold(data, _recording_trainer(data, log), router="rec", k=5, seed=3)
    assert len(log) == 5
    for seen, tested in log:
        assert not seen & tested  # the duplicate prompt lands in one fold only
        assert seen | tested == set(data.prompts)
    assert sum(len(t) for _, t in log) == len(set(data.prompts))
    assert result.protocol.startswith("5-fold cross-validation within the file")
    direct = rm.evaluate_scores(rm.length_scores(data.prompts), data.weak, data.strong)
    assert result.apgr == pytest.approx(direct.apgr)  # the recorded scorer is length, fold by fold


def test_leave_one_file_out_trains_on_the_other_files_only() -> None:
    files = [_toy("a", 20), _toy("b", 30), _toy("c", 25)]
    log: list[tuple[set[str], set[str]]] = []
    results = rm.evaluate_leave_one_file_out(files, _any_trainer(log))
    assert [r.n for r in results] == [21, 31, 26]
    for data, (seen, tested) in zip(files, log, strict=True):
        assert tested == set(data.prompts) and not seen & tested
        assert len(seen) == sum(len(set(d.prompts)) for d in files if d is not data)
    assert all(r.protocol.startswith("leave-one-file-out") for r in results)


def _any_trainer(log: list[tuple[set[str], set[str]]]) -> rm.Trainer:
    def train(prompts: list[str], weak: np.ndarray, strong: np.ndarray) -> rm.Scorer:
        assert len(prompts) == len(weak) == len(strong)
        return lambda test: log.append((set(prompts), set(test))) or np.zeros(len(test))

    return train


def test_router_spec_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError):
        rm.RouterSpec()
    with pytest.raises(ValueError):
        rm.RouterSpec(scorer=rm.length_scores, trainer=lambda p, w, s: rm.length_scores)


# -- loading -------------------------------------------------------------------------------------


@needs_data
def test_gsm8k_loads_without_contaminated_prompts() -> None:
    data = load_routing_csv(GSM8K)
    assert (len(data), data.excluded) == (1319 - 12, 12)
    assert (data.weak_model, data.strong_model) == ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")
    assert set(np.unique(data.weak)) <= {0.0, 1.0} and 0.6 < data.weak.mean() < data.strong.mean() < 0.9
    contaminated = [json.loads(line)["eval_prompt"] for line in (GSM8K.parent / "contaminated_prompts.jsonl").open()]
    assert not set(contaminated) & set(data.prompts) and not data.prompts[0].startswith("Janet")
    assert len(load_routing_csv(GSM8K, exclude_contaminated=False)) == 1319


def test_numeric_columns_and_text_columns(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text(
        "id_text,prompt,weak_response,weak,notes,strong,third\n"
        'a,"first, with comma",hi,0.25,x,1e-1,7\n'
        "b,second,there,TRUE,,0.9,8\n"
    )
    data = load_routing_csv(path)
    assert data.prompts == ["first, with comma", "second"]
    assert (data.weak_model, data.strong_model) == ("weak", "strong")
    assert data.weak.tolist() == [0.25, 1.0] and data.strong.tolist() == [0.1, 0.9]
    assert data.name == "scores" and data.excluded == 0


def test_contaminated_file_beside_the_csv(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("prompt,w,s\none,True,False\ntwo,False,True\n")
    (tmp_path / "contaminated_prompts.jsonl").write_text('{"train_prompt": "1", "eval_prompt": "two"}\n')
    assert load_routing_csv(tmp_path / "x.csv").prompts == ["one"]
    (tmp_path / "contaminated_prompts.jsonl").write_text("not json\n")
    with pytest.raises(SlmchatError, match=r"contaminated_prompts\.jsonl:1"):
        load_routing_csv(tmp_path / "x.csv")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("question,w,s\nq,True,False\n", "no 'prompt' column"),
        ("prompt,w,notes\nq,True,maybe\n", "need two score columns"),
        ("prompt,w,s\nq,True,nan\n", "not scores: 's'"),
        ("prompt,w,s\n", "no rows"),
        ("prompt,w,s\nq,True\n", "data row 1 has 2 fields"),
    ],
)
def test_bad_csvs_give_clear_errors(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SlmchatError, match=r"bad\.csv") as info:
        load_routing_csv(path)
    assert fragment in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SlmchatError, match="no such file"):
        load_routing_csv(tmp_path / "nope.csv")


# -- the command -------------------------------------------------------------------------------


@needs_data
def test_cli_json_and_plot_on_gsm8k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setitem(rm.ROUTERS, "oracle-peek", rm.RouterSpec(scorer=lambda p: np.zeros(len(p))))
    out = tmp_path / "curve.png"
    result = CliRunner().invoke(
        eval_group, ["routing", str(GSM8K), "--json", "--plot", str(out), "--repeats", "3", "--router", "oracle-peek"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    (file,) = report["files"]
    assert file["n"] == 1307 and file["excluded_contaminated"] == 12
    assert list(file["routers"]) == ["random", "length", "oracle-peek", "oracle"]
    length = file["routers"]["length"]
    assert 0.5 < length["apgr"] < 1 and 0 < length["cpt50"] < length["cpt80"] <= 1
    assert length["cost_saved_at_95"] == pytest.approx(1 - length["share_at_95"])
    assert file["routers"]["oracle"]["apgr"] > 1  # the oracle beats the strong model alone
    assert report["average"]["routers"]["length"]["apgr"] == pytest.approx(length["apgr"])
    assert report["protocols"]["length"].startswith("direct") and report["settings"]["length_unit"] == "characters"
    assert out.read_bytes().startswith(b"\x89PNG")


@needs_data
def test_cli_text_with_a_registered_trainer(monkeypatch: pytest.MonkeyPatch) -> None:
    def train(prompts: list[str], weak: np.ndarray, strong: np.ndarray) -> rm.Scorer:
        return rm.length_scores

    monkeypatch.setitem(rm.ROUTERS, "len-trained", rm.RouterSpec(trainer=train))
    files = [str(DATA / "mmlu" / "mmlu_abstract_algebra.csv"), str(DATA / "mmlu" / "mmlu_management.csv")]
    result = CliRunner().invoke(eval_group, ["routing", *files, "--repeats", "2", "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert "mmlu_management: n=103" in result.output and "average over 2 files" in result.output
    assert "len-trained: 3-fold cross-validation within the file" in result.output
    cross = CliRunner().invoke(eval_group, ["routing", *files, "--cross-file", "--router", "len-trained"])
    assert cross.exit_code == 0, cross.output
    assert "len-trained: leave-one-file-out: trained on the other 1 files" in cross.output


def test_cli_errors_are_slmchat_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,a,b\nq,1,0\n")
    result = CliRunner().invoke(eval_group, ["routing", str(bad)])
    assert isinstance(result.exception, SlmchatError) and "no 'prompt' column" in result.exception.message
    result = CliRunner().invoke(eval_group, ["routing", str(bad), "--router", "nope"])
    assert isinstance(result.exception, SlmchatError) and "no registered router named nope" in str(result.exception)


def test_plot_without_matplotlib_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv = tmp_path / "tiny.csv"
    csv.write_text("prompt,w,s\na,True,False\nbb,False,True\n")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    result = CliRunner().invoke(eval_group, ["routing", str(csv), "--plot", str(tmp_path / "x.png"), "--folds", "2"])
    assert isinstance(result.exception, SlmchatError) and result.exception.hint == "pip install matplotlib"
    assert not (tmp_path / "x.png").exists()
