"""Train the router's weights on routing labels (the command is ``python -m slmchat.eval.train_router FILE...``).

Input: CSV files in the RouteLLM format (``prompt``, a weak-model and a strong-model quality
column), such as ``shared/data/routing``. The label of a prompt is "the strong model did better
than the weak one". One logistic model is fitted over the complexity factors and the prompt's
MiniLM embedding (L2-penalised, the embedding more strongly), and written to
``router_weights.json`` with a threshold that sends ``--large-share`` of the training prompts
to the large tier. Retrain on your own labels the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import platformdirs

from slmchat.routing.factors import RouteContext, all_factors
from slmchat.routing.scorer import PRIOR_WEIGHTS, RouterWeights

#: the factors whose weights the labels can teach (the others keep PRIOR_WEIGHTS)
LEARNED_FACTORS = ["length", "requirements", "domain_breadth", "tool_needs", "reasoning_depth"]
DEFAULT_L2_FACTORS = 1.0
DEFAULT_L2_EMBEDDING = 0.3  # chosen by leave-one-file-out among 30, 5, 1, 0.3, 0.1 (docs/routing.md)


@lru_cache(maxsize=50_000)
def _factor_row(prompt: str) -> tuple[tuple[float, ...], float]:
    """The learned factors of a prompt and the log-odds its fixed-weight signals add."""
    factors = all_factors(RouteContext(prompt))
    offset = sum(weight * factors[name].value for name, weight in PRIOR_WEIGHTS.items())
    return tuple(factors[name].value for name in LEARNED_FACTORS), offset


def factor_matrix(prompts: Sequence[str]) -> np.ndarray:
    rows = [_factor_row(p)[0] for p in prompts]
    return np.asarray(rows, dtype=np.float64).reshape(len(prompts), len(LEARNED_FACTORS))


def prior_offset(prompts: Sequence[str]) -> np.ndarray:
    """The log-odds the fixed-weight signals add, so the fit accounts for them."""
    return np.array([_factor_row(p)[1] for p in prompts], dtype=np.float64)


def logits(weights: RouterWeights, prompts: Sequence[str], vectors: np.ndarray | None) -> np.ndarray:
    """The scorer's log-odds for many prompts at once (same formula as ``Scorer.score``)."""
    w = np.array([weights.factors.get(name, 0.0) for name in LEARNED_FACTORS])
    out = weights.bias + factor_matrix(prompts) @ w + prior_offset(prompts)
    if weights.embedding is not None and vectors is not None:
        out = out + vectors @ weights.embedding
    return out


class EmbeddingCache:
    """Embeddings of training prompts, kept on disk: embedding thousands of prompts takes minutes."""

    def __init__(self, embedder: object, path: Path | None = None) -> None:
        self.embedder = embedder
        tag = f"{getattr(embedder, 'max_tokens', 'x')}"
        self.path = path or Path(platformdirs.user_cache_dir("slmchat")) / f"routing-embeddings-{tag}.npz"
        self._loaded: dict[str, np.ndarray] | None = None  # read on first use: registering a router stays cheap

    @property
    def _vectors(self) -> dict[str, np.ndarray]:
        if self._loaded is None:
            self._loaded = {}
            if self.path.exists():
                with np.load(self.path) as data:
                    self._loaded = {key: data[key] for key in data.files}
        return self._loaded

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        missing = sorted({p for p in prompts if self.key(p) not in self._vectors})
        for start in range(0, len(missing), 64):
            batch = missing[start : start + 64]
            for text, vector in zip(batch, self.embedder.embed(batch), strict=True):  # type: ignore[attr-defined]
                self._vectors[self.key(text)] = np.asarray(vector, dtype=np.float32)
        if missing:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, **self._vectors)
        return np.stack([self._vectors[self.key(p)] for p in prompts]) if prompts else np.zeros((0, 384))


def fit_logistic(
    x: np.ndarray, y: np.ndarray, penalty: np.ndarray, offset: np.ndarray | None = None, iterations: int = 30
) -> tuple[float, np.ndarray]:
    """L2-penalised logistic regression by Newton's method; the intercept is not penalised."""
    n, d = x.shape
    design = np.hstack([np.ones((n, 1)), x])
    lam = np.concatenate([[0.0], penalty])
    w = np.zeros(d + 1)
    base = np.zeros(n) if offset is None else offset
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ w + base)))
        gradient = design.T @ (p - y) + lam * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(lam) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-7:
            break
    return float(w[0]), w[1:]


def train(
    prompts: Sequence[str],
    weak: np.ndarray,
    strong: np.ndarray,
    embed: Callable[[Sequence[str]], np.ndarray] | None,
    *,
    l2_factors: float = DEFAULT_L2_FACTORS,
    l2_embedding: float = DEFAULT_L2_EMBEDDING,
    large_share: float = 0.2,
    label: str = "gain",
) -> RouterWeights:
    """Fit the weights; the threshold sends ``large_share`` of these prompts to the large tier.

    ``label``: ``gain`` (the strong model did better than the weak one) or ``weak_wrong`` (the weak
    model's quality is below its best, a denser signal that ranks prompts much the same way).
    """
    weak, strong = np.asarray(weak, float), np.asarray(strong, float)
    y = (strong > weak).astype(float) if label == "gain" else (weak < weak.max()).astype(float)
    factors = factor_matrix(prompts)
    parts, penalty = [factors], [np.full(factors.shape[1], l2_factors)]
    if embed is not None:
        vectors = embed(prompts)
        parts.append(vectors)
        penalty.append(np.full(vectors.shape[1], l2_embedding))
    x = np.hstack(parts)
    offset = prior_offset(prompts)
    bias, w = fit_logistic(x, y, np.concatenate(penalty), offset)
    scores = 1.0 / (1.0 + np.exp(-(bias + x @ w + offset)))
    threshold = float(np.quantile(scores, 1.0 - large_share)) if len(scores) else 0.5
    nf = len(LEARNED_FACTORS)
    return RouterWeights(
        bias=bias,
        factors={name: float(v) for name, v in zip(LEARNED_FACTORS, w[:nf], strict=True)},
        threshold=round(threshold, 4),
        embedding=w[nf:].astype(np.float32) if embed is not None else None,
        source=f"slmchat.routing.train on {len(prompts)} prompts",
        extra={"label": label, "positives": int(y.sum()), "large_share": large_share},
    )


def trainer(embed: Callable[[Sequence[str]], np.ndarray] | None, **options: float):  # type: ignore[no-untyped-def]
    """A trainer for the evaluation harness: fit on the training split, score the test prompts."""

    def fit(prompts: Sequence[str], weak: np.ndarray, strong: np.ndarray) -> Callable[[Sequence[str]], np.ndarray]:
        weights = train(prompts, weak, strong, embed, **options)

        def score(test: Sequence[str]) -> np.ndarray:
            return logits(weights, test, embed(test) if embed is not None else None)  # same order as scores

        return score

    return fit


#: the neighbour term chosen on the tuning files (issue 15; docs/routing.md "Measured")
NEIGHBOURS_K = 300
NEIGHBOURS_TEMPERATURE = 0.1


def neighbour_values(
    queries: np.ndarray,
    bank: np.ndarray,
    labels: np.ndarray,
    k: int = NEIGHBOURS_K,
    temperature: float = NEIGHBOURS_TEMPERATURE,
) -> np.ndarray:
    """The similarity-weighted mean label of each query's ``k`` nearest bank vectors (cosine).

    Weights are ``exp((cos - 1) / temperature)``, so the closest neighbours count most; with the
    bank's vectors L2-normalised, as MiniLM's are, the cosine is the dot product.
    """
    queries, bank = np.atleast_2d(np.asarray(queries, np.float32)), np.asarray(bank, np.float32)
    labels = np.asarray(labels, np.float64)
    k = min(k, len(bank))
    if k == 0:
        return np.zeros(len(queries))
    out = np.empty(len(queries))
    for start in range(0, len(queries), 512):  # bounded memory: 512 x bank similarities at a time
        sims = queries[start : start + 512] @ bank.T
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(bank) else np.argsort(-sims, axis=1)
        near = np.take_along_axis(sims, nearest, axis=1).astype(np.float64)
        weight = np.exp((near - 1.0) / temperature)
        out[start : start + 512] = (weight * labels[nearest]).sum(1) / np.maximum(weight.sum(1), 1e-300)
    return out


def neighbour_trainer(
    embed: Callable[[Sequence[str]], np.ndarray], k: int = NEIGHBOURS_K, temperature: float = NEIGHBOURS_TEMPERATURE
):  # type: ignore[no-untyped-def]
    """An evaluation router: a prompt's score is the share of its nearest training prompts the weak
    model got wrong (``weak_wrong``, weighted by similarity). Evaluated only; not what ships."""

    def fit(prompts: Sequence[str], weak: np.ndarray, strong: np.ndarray) -> Callable[[Sequence[str]], np.ndarray]:
        weak = np.asarray(weak, float)
        bank, labels = embed(prompts), (weak < weak.max()).astype(float)

        def score(test: Sequence[str]) -> np.ndarray:
            return neighbour_values(embed(test), bank, labels, k, temperature)

        return score

    return fit
