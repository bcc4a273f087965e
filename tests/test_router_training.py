"""Training the router on routing labels, and the `route score` and `eval routing` commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from slmchat.faces.cli import main
from slmchat.infra.embedding import MiniLMEmbedder
from slmchat.routing import Route, RouteContext, Router
from slmchat.routing.scorer import RouterWeights, Scorer
from slmchat.routing.train import EmbeddingCache, fit_logistic, logits, train
from tests.helpers import SHARED_DATA

SMALL_FILES = [SHARED_DATA / "routing" / "mmlu" / f"mmlu_{name}.csv" for name in ("management", "medical_genetics")]
needs_data = pytest.mark.shared_data(*(str(path.relative_to(SHARED_DATA)) for path in SMALL_FILES))


def test_logistic_fit_recovers_known_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    true = np.array([2.0, -1.0, 0.0])
    y = (rng.random(4000) < 1 / (1 + np.exp(-(0.5 + x @ true)))).astype(float)
    bias, w = fit_logistic(x, y, np.full(3, 1e-6))
    assert bias == pytest.approx(0.5, abs=0.15) and np.allclose(w, true, atol=0.15)
    _, shrunk = fit_logistic(x, y, np.full(3, 1e4))
    assert np.all(np.abs(shrunk) < np.abs(w))  # the penalty pulls weights towards zero


def test_trained_weights_score_the_same_in_bulk_and_per_turn(tmp_path: Path) -> None:
    prompts = ["What is 2+2?", "Explain step by step why the sky is blue and compare it with sunsets.", "Hi"] * 4
    weak, strong = np.array([1, 0, 1] * 4), np.array([1, 1, 1] * 4)
    embedder = MiniLMEmbedder()
    weights = train(prompts, weak, strong, embedder.embed, large_share=1 / 3)
    assert weights.embedding is not None and weights.embedding.shape == (384,)
    scorer = Scorer(weights, embedder)
    per_turn = [scorer.score(RouteContext(p)).value for p in prompts]
    assert np.allclose(1 / (1 + np.exp(-logits(weights, prompts, embedder.embed(prompts)))), per_turn, atol=1e-5)
    # the threshold sends the asked share (here: the prompts where only the strong model was right) large
    assert [v >= weights.threshold for v in per_turn[:3]] == [False, True, False]
    weights.save(tmp_path / "w.json")
    assert Router(Scorer(RouterWeights.load(tmp_path / "w.json"), embedder)).uses_embedding


def test_embedding_cache_persists(tmp_path: Path) -> None:
    embedder = MiniLMEmbedder()
    first = EmbeddingCache(embedder, tmp_path / "c.npz").embed(["one", "two", "one"])
    runs = embedder.runs
    again = EmbeddingCache(embedder, tmp_path / "c.npz").embed(["two", "one"])
    assert embedder.runs == runs and np.array_equal(again, first[[1, 0]])


def test_shipped_weights_are_trained_and_decide_in_a_session_turn() -> None:
    router = Router()
    assert router.uses_embedding and "slmchat.routing.train" in router.scorer.weights.source
    decision = router.decide(RouteContext("What is 2+2?"), Route.AUTO, {"small": "s", "large": "l"})
    assert "learned" in decision.factors and decision.threshold == router.scorer.weights.threshold


def test_route_score_reads_and_writes_json_lines() -> None:
    lines = '{"prompt": "What is 2+2?"}\n\n{"prompt": "Write a poem and also translate it to French."}\n'
    result = CliRunner().invoke(main, ["route", "score"], input=lines)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["prompt"] for r in rows] == ["What is 2+2?", "Write a poem and also translate it to French."]
    weights, router = RouterWeights.load(), Router()
    for row in rows:  # the logistic score of the shipped bias plus the contributions listed (4 decimals each)
        logit = weights.bias + sum(row["factors"].values())
        assert row["score"] == pytest.approx(1 / (1 + math.exp(-logit)), abs=2e-4), row
        first_turn = router.decide(RouteContext(row["prompt"]), Route.AUTO, {"small": "s", "large": "l"})
        assert (row["score"], row["factors"]) == (first_turn.score, first_turn.factors)  # as a first turn scores
    assert rows[1]["factors"]["several_intents"] > 0 and "learned" in rows[0]["factors"]


def test_route_score_rejects_a_bad_line() -> None:
    result = CliRunner().invoke(main, ["route", "score"], input='{"prompt": "ok"}\n[1, 2]\n')
    assert result.exit_code == 1
    assert 'line 2 of stdin is not a JSON object with a string "prompt"' in result.output


@needs_data
def test_eval_routing_retrains_slmchat_per_split_and_labels_the_protocol(tmp_path: Path) -> None:
    args = ["eval", "routing", *map(str, SMALL_FILES), "--json", "--router", "slmchat"]
    kfold = json.loads(CliRunner().invoke(main, args).output)
    cross = json.loads(CliRunner().invoke(main, [*args, "--cross-file"]).output)
    assert kfold["protocols"]["slmchat"].startswith("5-fold cross-validation within the file")
    assert cross["protocols"]["slmchat"].startswith("leave-one-file-out")
    for report in (kfold, cross):
        for f in report["files"]:
            assert set(f["routers"]) == {"random", "length", "slmchat", "oracle"}
            assert f["routers"]["slmchat"]["apgr"] is not None
