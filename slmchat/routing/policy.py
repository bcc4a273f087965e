"""The routing policy: score the request, compare with the threshold, honour overrides."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from slmchat.infra.backends.base import Message, estimate_tokens
from slmchat.infra.errors import SlmchatError
from slmchat.routing.decision import Route, RouteDecision, Tier
from slmchat.routing.factors import RouteContext
from slmchat.routing.scorer import Score, Scorer

if TYPE_CHECKING:  # numpy loads with the weights (RouterWeights.load), not with this module
    import numpy as np

#: how each factor reads in a reason when it pushed towards the large tier
LABELS = {"learned": "resembles questions small models get wrong"}


class Router:
    """Large tier iff score ≥ threshold, unless the user chose a tier; explains either way."""

    def __init__(self, scorer: Scorer | None = None, threshold: float | None = None) -> None:
        self.scorer = scorer or Scorer()
        self.threshold = self.scorer.weights.threshold if threshold is None else threshold

    @property
    def uses_embedding(self) -> bool:
        return self.scorer.weights.embedding is not None

    def neutral_embedding(self) -> np.ndarray:
        """A vector the learned part gives no weight to, for when the embedding model fails."""
        import numpy as np

        assert self.scorer.weights.embedding is not None
        return np.zeros_like(self.scorer.weights.embedding)

    def embed(self, text: str) -> np.ndarray:
        """The turn's one embedding of the user text (shared with memory)."""
        return self.scorer.embedder.embed_one(text)

    def decide(
        self,
        context: RouteContext,
        route: Route,
        models: dict[Tier, str | None],
        embedding: np.ndarray | None = None,
        blocked: str | None = None,
    ) -> RouteDecision:
        """``models`` maps each tier to its configured model name, or None when absent.

        ``blocked`` says why the large tier may not be used now (a spent budget); such a turn
        runs on the small tier and the reason says so.
        """
        score = self.scorer.score(context, embedding)
        by_score: Tier = "large" if score.value >= self.threshold else "small"
        comparison = f"score {score.value:.2f} {'≥' if by_score == 'large' else '<'} {self.threshold:.2f}"
        if route is Route.AUTO:
            wanted = by_score
            reason = f"{_why(score, wanted)} ({comparison})"
        else:
            wanted = "large" if route is Route.LARGE else "small"
            reason = f"you chose the {wanted} tier"
            if wanted != by_score:
                reason += f" (the router would have chosen {by_score}: {comparison})"
        tier = wanted
        if models.get(wanted) is None:
            tier = "small"
            reason += "; no large tier is configured, so it ran on the small tier"
        elif wanted == "large" and blocked:
            tier = "small"
            reason += f"; {blocked}, so it ran on the small tier"
        return RouteDecision(
            tier=tier,
            wanted=wanted,
            model=models[tier] or "",
            reason=reason,
            score=round(score.value, 4),
            threshold=self.threshold,
            factors={name: round(value, 4) + 0.0 for name, value in score.contributions.items()},
            override=None if route is Route.AUTO else route,
        )

    def decide_turn(
        self,
        text: str,
        history: list[Message],
        route: Route,
        models: dict[Tier, str | None],
        blocked: str | None,
        long_context_tokens: int,
    ) -> tuple[RouteDecision, np.ndarray | None]:
        """Score a user turn (one embedding, returned for memory to reuse) and decide its tier.

        If the embedding model fails, the turn is routed on the factors alone and says so.
        """
        context = RouteContext(
            text=text,
            history=history,
            context_tokens=sum(estimate_tokens(m.content) for m in history) + estimate_tokens(text),
            long_context_tokens=long_context_tokens,
        )
        embedding, trouble = None, None
        if self.uses_embedding:
            try:
                embedding = self.embed(text)
            except SlmchatError as exc:
                trouble = f"learned part off: {exc.message}"
                embedding = self.neutral_embedding()
        decision = self.decide(context, route, models, embedding, blocked)
        if trouble:
            return replace(decision, reason=f"{decision.reason} ({trouble})"), None
        return decision, embedding


def _why(score: Score, tier: Tier, most: int = 2) -> str:
    """The strongest reasons in a few words."""
    if tier == "small":
        learned = score.contributions.get("learned", 0.0)
        return "small: " + ("resembles questions small models answer well" if learned < -0.5 else "simple request")
    ranked = sorted(score.contributions.items(), key=lambda kv: kv[1], reverse=True)
    phrases = []
    for name, value in ranked[:most]:
        if value <= 0.05:
            break
        factor = score.factors.get(name)
        phrases.append(LABELS.get(name) or (factor.why if factor and factor.why else name.replace("_", " ")))
    return "; ".join(phrases) or "complex request"
