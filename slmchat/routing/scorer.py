"""One score in [0, 1] per request: a logistic model over the factors and the prompt's embedding.

``score = sigmoid(bias + Σ weight_f · factor_f + w · embedding)``. Each term is kept as that
factor's contribution (in log-odds), so a decision shows what pushed it up or down. The
weights ship in ``router_weights.json``, written by ``python -m slmchat.eval.train_router``.
Signals that the training labels cannot teach (several intents, long context, corrections:
the public routing sets are single questions) keep the hand-set weights in ``PRIOR_WEIGHTS``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from slmchat.routing.factors import Factor, RouteContext, all_factors

if TYPE_CHECKING:  # numpy loads with the weights, so importing the router does not pay for it
    import numpy as np

WEIGHTS_FILE = "router_weights.json"
#: log-odds added when a signal is fully present; used for signals the data has no labels for
PRIOR_WEIGHTS: dict[str, float] = {
    "several_intents": 1.5,
    "long_context": 1.0,
    "user_corrections": 2.0,
}
#: until weights are trained: lean on length, reasoning and breadth, no embedding
FALLBACK = {
    "bias": -2.5,
    "factors": {"length": 1.5, "requirements": 1.0, "domain_breadth": 1.0, "tool_needs": 0.8, "reasoning_depth": 2.0},
    "threshold": 0.5,
}


class Embedder(Protocol):
    def embed_one(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True)
class RouterWeights:
    bias: float
    factors: dict[str, float]
    threshold: float
    embedding: np.ndarray | None = None
    #: how the weights were made, shown by `slmchat route info` and kept with decisions
    source: str = "hand-set fallback"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> RouterWeights:
        """The shipped weights (or ``path``); the hand-set fallback if none were trained yet."""
        import numpy as np

        if path is None:
            shipped = resources.files("slmchat.routing").joinpath(WEIGHTS_FILE)
            if not shipped.is_file():
                return cls(FALLBACK["bias"], dict(FALLBACK["factors"]), FALLBACK["threshold"])  # type: ignore[arg-type]
            data = json.loads(shipped.read_text(encoding="utf-8"))
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
        vector = data.get("embedding")
        return cls(
            bias=float(data["bias"]),
            factors={k: float(v) for k, v in data["factors"].items()},
            threshold=float(data["threshold"]),
            embedding=np.asarray(vector, dtype=np.float32) if vector else None,
            source=str(data.get("source", path or WEIGHTS_FILE)),
            extra={k: v for k, v in data.items() if k not in {"bias", "factors", "threshold", "embedding", "source"}},
        )

    def save(self, path: Path) -> None:
        data = {
            "source": self.source,
            "bias": self.bias,
            "threshold": self.threshold,
            "factors": self.factors,
            "embedding": [round(float(x), 6) for x in self.embedding] if self.embedding is not None else None,
            **self.extra,
        }
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Score:
    value: float
    #: log-odds each factor added (``learned`` is the embedding model's part)
    contributions: dict[str, float]
    factors: dict[str, Factor]
    embedding: np.ndarray | None


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class Scorer:
    """Scores requests with fixed weights; the embedder is used only if the weights have an embedding part."""

    def __init__(self, weights: RouterWeights | None = None, embedder: Embedder | None = None) -> None:
        self.weights = weights or RouterWeights.load()
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from slmchat.infra.embedding import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    def score(self, context: RouteContext, embedding: np.ndarray | None = None) -> Score:
        factors = all_factors(context)
        weights = {**PRIOR_WEIGHTS, **self.weights.factors}
        contributions = {name: weights.get(name, 0.0) * f.value for name, f in factors.items()}
        if self.weights.embedding is not None:
            if embedding is None:
                embedding = self.embedder.embed_one(context.text)
            contributions["learned"] = float(self.weights.embedding @ embedding)
        logit = self.weights.bias + sum(contributions.values())
        return Score(sigmoid(logit), contributions, factors, embedding)
