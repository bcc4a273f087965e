"""Routing curves, the RouteLLM metrics, baselines, and the protocols that produce router scores.

A router gives each prompt a score (higher = more likely to need the strong model). Sending the
top k prompts to the strong model and the rest to the weak one gives quality(k/n) = mean(strong
where routed else weak), for k = 0..n: the routing curve. Ties are broken in expectation: the
prompts of a tie group share the group's mean gain, so the curve is the average over uniformly
random tie-breaks. It is deterministic and does not depend on row order; a constant scorer gives
the straight line from weak to strong quality.

Metrics (RouteLLM, Ong et al. 2024), with weak_mean/strong_mean the all-weak/all-strong quality:

- PGR(s) = (quality(s) - weak_mean) / (strong_mean - weak_mean); APGR = its area over s in [0, 1]
  (trapezoid on every prompt count). CPT(x%) = the least share s with PGR(s) >= x/100.
- share_at_95 = the least share with quality >= 0.95 * strong_mean (None if never reached);
  cost_saved_at_95 = 1 - cost at that share / cost of all-strong = (1 - share) * (1 - 1/cost_ratio),
  with cost_ratio = strong cost per call / weak cost per call (None: the weak model is free).
- When strong_mean <= weak_mean there is no gap to recover: PGR is undefined (a zero or negative
  denominator), so `pgr`, APGR and the CPTs are None; the curve and the 95% figures still exist.

Pooled: the scores of several files ranked together as one population (`pooled`, `pool=True`), the
way a router meets real traffic: one threshold over every prompt, so scores of different files must
be comparable. The per-file figures cannot show that; the pooled ones can.

Protocols (each result names its own in `protocol`): "direct" runs a fixed scorer on the file;
k-fold trains on k-1 folds and scores the held-out fold; leave-one-file-out trains on the other
files. Baselines: random scores (mean curve of N seeded runs), prompt length in characters, and
the oracle (score = strong - weak: every prompt the strong model gets right and the weak one
wrong comes first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slmchat.eval.routing_data import RoutingData

Scorer = Callable[[list[str]], np.ndarray]
Trainer = Callable[[list[str], np.ndarray, np.ndarray], Scorer]

_EPS = 1e-9
DIRECT = "direct: fixed scorer, no training"


@dataclass(frozen=True)
class RouterSpec:
    """A router to evaluate: a fixed `scorer(prompts) -> scores`, or a `trainer` that makes one.

    A trainer is called as `trainer(train_prompts, train_weak, train_strong)` and returns a scorer.
    """

    scorer: Scorer | None = None
    trainer: Trainer | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if (self.scorer is None) == (self.trainer is None):
            raise ValueError("a RouterSpec needs exactly one of scorer and trainer")


ROUTERS: dict[str, RouterSpec] = {}
"""Routers `slmchat eval routing` evaluates beside the baselines; other modules add theirs here."""


@dataclass(frozen=True, eq=False)
class RoutingResult:
    """One router on one file: the figures, the protocol that produced them, and the curve."""

    router: str
    protocol: str
    n: int
    weak_mean: float
    strong_mean: float
    apgr: float | None
    cpt50: float | None
    cpt80: float | None
    share_at_95: float | None
    cost_saved_at_95: float | None
    shares: np.ndarray  # k / n for k = 0..n strong calls
    quality: np.ndarray  # mean quality at each share

    @property
    def pgr(self) -> np.ndarray | None:
        """PGR at each share; None unless the strong model is better on average."""
        if not has_gap(self.weak_mean, self.strong_mean):
            return None
        return (self.quality - self.weak_mean) / (self.strong_mean - self.weak_mean)

    def summary(self) -> dict[str, Any]:
        """The figures without the curve, JSON-ready."""
        keys = ("router", "protocol", "n", "apgr", "cpt50", "cpt80", "share_at_95", "cost_saved_at_95")
        return {key: getattr(self, key) for key in keys}


def routing_curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Mean quality with the top k prompts (by score) on the strong model, for k = 0..n."""
    scores, weak, strong = _check(scores, weak, strong)
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    gain = (strong - weak)[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    sizes = np.diff(np.r_[starts, len(ranked)])
    gain = np.repeat(np.add.reduceat(gain, starts) / sizes, sizes)
    return (weak.sum() + np.r_[0.0, np.cumsum(gain)]) / len(weak)


def metrics_from_curve(
    quality: np.ndarray,
    weak_mean: float,
    strong_mean: float,
    *,
    router: str,
    protocol: str,
    cost_ratio: float | None = None,
) -> RoutingResult:
    """APGR, CPT(50%), CPT(80%) and the 95%-of-strong figures from a routing curve."""
    if cost_ratio is not None and cost_ratio <= 0:
        raise ValueError("cost_ratio must be positive")
    quality = np.asarray(quality, dtype=float)
    n = len(quality) - 1
    shares = np.arange(n + 1) / n
    apgr = cpt50 = cpt80 = None
    if has_gap(weak_mean, strong_mean):
        pgr = (quality - weak_mean) / (strong_mean - weak_mean)
        apgr = float(np.sum(pgr[1:] + pgr[:-1]) / (2 * n))
        cpt50, cpt80 = _least_share(pgr >= 0.5 - _EPS, shares), _least_share(pgr >= 0.8 - _EPS, shares)
    share_95 = _least_share(quality >= 0.95 * strong_mean - _EPS, shares)
    saved = None
    if share_95 is not None:
        saved = (1 - share_95) * (1 - (1 / cost_ratio if cost_ratio else 0.0))
    return RoutingResult(
        router, protocol, n, float(weak_mean), float(strong_mean), apgr, cpt50, cpt80, share_95, saved, shares, quality
    )


def evaluate_scores(
    scores: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    *,
    router: str = "router",
    protocol: str = DIRECT,
    cost_ratio: float | None = None,
) -> RoutingResult:
    """Every metric for one set of per-prompt scores."""
    quality = routing_curve(scores, weak, strong)
    return metrics_from_curve(
        quality, float(np.mean(weak)), float(np.mean(strong)), router=router, protocol=protocol, cost_ratio=cost_ratio
    )


# -- baselines ---------------------------------------------------------------------------------


def length_scores(prompts: Sequence[str]) -> np.ndarray:
    """Prompt length in characters (not tokens): longer prompts go to the strong model first."""
    return np.array([len(p) for p in prompts], dtype=float)


def oracle_scores(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """strong - weak: the prompts only the strong model gets right first, the reverse ones last."""
    return np.asarray(strong, dtype=float) - np.asarray(weak, dtype=float)


def random_baseline(
    weak: np.ndarray, strong: np.ndarray, *, repeats: int = 20, seed: int = 0, cost_ratio: float | None = None
) -> RoutingResult:
    """A router with uniform random scores: the mean curve of `repeats` seeded runs."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    rng = np.random.default_rng(seed)
    curves = [routing_curve(rng.random(len(weak)), weak, strong) for _ in range(repeats)]
    return metrics_from_curve(
        np.mean(curves, axis=0),
        float(np.mean(weak)),
        float(np.mean(strong)),
        router="random",
        protocol=f"random scores: mean curve of {repeats} runs (seed {seed})",
        cost_ratio=cost_ratio,
    )


def evaluate_baselines(
    data: RoutingData, *, repeats: int = 20, seed: int = 0, cost_ratio: float | None = None
) -> list[RoutingResult]:
    """random, length (characters) and oracle on one file."""
    return [
        random_baseline(data.weak, data.strong, repeats=repeats, seed=seed, cost_ratio=cost_ratio),
        evaluate_scores(length_scores(data.prompts), data.weak, data.strong, router="length", cost_ratio=cost_ratio),
        evaluate_scores(
            oracle_scores(data.weak, data.strong),
            data.weak,
            data.strong,
            router="oracle",
            protocol="labels: score = strong - weak (the ceiling, not a router)",
            cost_ratio=cost_ratio,
        ),
    ]


# -- protocols for routers that learn -----------------------------------------------------------


def kfold_scores(
    prompts: Sequence[str], weak: np.ndarray, strong: np.ndarray, trainer: Trainer, *, k: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold scores: each prompt is scored by a model trained on the other k-1 folds only.

    Folds are a seeded shuffle of the distinct prompt texts, so a prompt that occurs twice never
    sits in a training fold and a test fold at once. The folds' scores are ranked together.
    """
    prompts = list(prompts)
    weak, strong = np.asarray(weak, dtype=float), np.asarray(strong, dtype=float)
    ids: dict[str, int] = {}
    group = np.array([ids.setdefault(p, len(ids)) for p in prompts], dtype=int)
    if not 2 <= k <= len(ids):
        raise ValueError(f"k must be between 2 and the number of distinct prompts ({len(ids)}), got {k}")
    fold_of_group = np.empty(len(ids), dtype=int)
    for fold, members in enumerate(np.array_split(np.random.default_rng(seed).permutation(len(ids)), k)):
        fold_of_group[members] = fold
    folds = fold_of_group[group]
    scores = np.empty(len(prompts))
    for fold in range(k):
        test, train = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
        score = trainer([prompts[i] for i in train], weak[train].copy(), strong[train].copy())
        scores[test] = _as_scores(score([prompts[i] for i in test]), len(test))
    return scores


def evaluate_kfold(
    data: RoutingData,
    trainer: Trainer,
    *,
    router: str = "router",
    k: int = 5,
    seed: int = 0,
    cost_ratio: float | None = None,
) -> RoutingResult:
    """Metrics on one file from k-fold out-of-fold scores."""
    scores = kfold_scores(data.prompts, data.weak, data.strong, trainer, k=k, seed=seed)
    protocol = f"{k}-fold cross-validation within the file (seed {seed}): out-of-fold scores"
    return evaluate_scores(scores, data.weak, data.strong, router=router, protocol=protocol, cost_ratio=cost_ratio)


def leave_one_file_out_scores(
    datasets: Sequence[RoutingData], trainer: Trainer, tested: Sequence[int] | None = None
) -> list[np.ndarray]:
    """Scores of each tested file (default: all) from a model trained on all the other files.

    The training set is every other file of ``datasets``, minus any prompt text of the tested file.
    """
    if len(datasets) < 2:
        raise ValueError("leave-one-file-out needs at least two files")
    scores = []
    for held_out in range(len(datasets)) if tested is None else tested:
        data = datasets[held_out]
        test = set(data.prompts)
        others = [d for i, d in enumerate(datasets) if i != held_out]
        keep = [np.array([p not in test for p in d.prompts], dtype=bool) for d in others]
        prompts = [p for d, m in zip(others, keep, strict=True) for p, kept in zip(d.prompts, m, strict=True) if kept]
        weak = np.concatenate([d.weak[m] for d, m in zip(others, keep, strict=True)])
        strong = np.concatenate([d.strong[m] for d, m in zip(others, keep, strict=True)])
        scores.append(_as_scores(trainer(prompts, weak, strong)(list(data.prompts)), len(data)))
    return scores


def evaluate_leave_one_file_out(
    datasets: Sequence[RoutingData], trainer: Trainer, *, router: str = "router", cost_ratio: float | None = None
) -> list[RoutingResult]:
    """For each file, train on all the other files (minus any prompt text of this one) and test on it."""
    protocol = f"leave-one-file-out: trained on the other {len(datasets) - 1} files, tested on this one"
    return [
        evaluate_scores(scores, data.weak, data.strong, router=router, protocol=protocol, cost_ratio=cost_ratio)
        for data, scores in zip(datasets, leave_one_file_out_scores(datasets, trainer), strict=True)
    ]


def router_scores(
    spec: RouterSpec,
    datasets: Sequence[RoutingData],
    *,
    cross_file: bool = False,
    k: int = 5,
    seed: int = 0,
    tested: Sequence[int] | None = None,
) -> tuple[list[np.ndarray], str]:
    """Each tested file's scores (default: all files) and the protocol that produced them.

    With ``cross_file``, a tested file is scored by a model trained on all the other files of
    ``datasets``, tested or not; otherwise by k-fold within the file.
    """
    tested = list(range(len(datasets))) if tested is None else list(tested)
    if spec.scorer is not None:
        return [_as_scores(spec.scorer(list(datasets[i].prompts)), len(datasets[i])) for i in tested], DIRECT
    assert spec.trainer is not None
    if cross_file:
        scores = leave_one_file_out_scores(datasets, spec.trainer, tested)
        return scores, f"leave-one-file-out: trained on the other {len(datasets) - 1} files, tested on this one"
    scores = [kfold_scores(datasets[i].prompts, datasets[i].weak, datasets[i].strong, spec.trainer, k=k, seed=seed)
              for i in tested]  # fmt: skip
    return scores, f"{k}-fold cross-validation within the file (seed {seed}): out-of-fold scores"


def pooled(datasets: Sequence[RoutingData]) -> RoutingData:
    """All files as one population: the way a router meets traffic, one threshold over every prompt."""
    return RoutingData(
        name=f"pooled ({len(datasets)} files)",
        prompts=[p for d in datasets for p in d.prompts],
        weak=np.concatenate([d.weak for d in datasets]),
        strong=np.concatenate([d.strong for d in datasets]),
        weak_model=datasets[0].weak_model,
        strong_model=datasets[0].strong_model,
        excluded=sum(d.excluded for d in datasets),
    )


def evaluate_router(
    name: str,
    spec: RouterSpec,
    datasets: Sequence[RoutingData],
    *,
    cross_file: bool = False,
    k: int = 5,
    seed: int = 0,
    cost_ratio: float | None = None,
    tested: Sequence[int] | None = None,
    pool: bool = False,
) -> list[RoutingResult]:
    """One result per tested file (default: all): a scorer runs directly; a trainer goes through
    k-fold or leave-one-file-out. With ``pool``, one more result at the end: every tested file's
    scores ranked together as one population (`pooled`)."""
    tested = list(range(len(datasets))) if tested is None else list(tested)
    scores, protocol = router_scores(spec, datasets, cross_file=cross_file, k=k, seed=seed, tested=tested)
    results = [
        evaluate_scores(s, datasets[i].weak, datasets[i].strong, router=name, protocol=protocol, cost_ratio=cost_ratio)
        for i, s in zip(tested, scores, strict=True)
    ]
    if pool:
        whole = pooled([datasets[i] for i in tested])
        protocol = f"{protocol}; the files' scores pooled and ranked together"
        results.append(
            evaluate_scores(
                np.concatenate(scores), whole.weak, whole.strong, router=name, protocol=protocol, cost_ratio=cost_ratio
            )
        )
    return results


# -- helpers -------------------------------------------------------------------------------------


def has_gap(weak_mean: float, strong_mean: float) -> bool:
    """Whether the strong model is better on average, so that PGR is defined."""
    return strong_mean - weak_mean > 1e-12 * max(1.0, abs(weak_mean), abs(strong_mean))


def _least_share(reached: np.ndarray, shares: np.ndarray) -> float | None:
    hits = np.flatnonzero(reached)
    return float(shares[hits[0]]) if len(hits) else None


def _as_scores(scores: Any, n: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if len(scores) != n:
        raise ValueError(f"the router returned {len(scores)} scores for {n} prompts")
    if np.isnan(scores).any():
        raise ValueError("the router returned NaN scores")
    return scores


def _check(scores: Any, weak: Any, strong: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weak, strong = np.asarray(weak, dtype=float).reshape(-1), np.asarray(strong, dtype=float).reshape(-1)
    if len(weak) == 0 or len(weak) != len(strong):
        raise ValueError("weak and strong must be non-empty and of the same length")
    return _as_scores(scores, len(weak)), weak, strong
