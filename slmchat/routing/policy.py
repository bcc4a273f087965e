"""The default routing policy: small first, the user's override always wins."""

from __future__ import annotations

from slmchat.routing.decision import Route, RouteDecision, Tier


class DefaultRouter:
    """Runs every automatic turn on the small tier and honours per-turn and sticky overrides.

    It computes no score: ``score`` and ``threshold`` stay ``None`` so nothing pretends
    to be a measurement.
    """

    def decide(self, text: str, route: Route, models: dict[Tier, str | None]) -> RouteDecision:
        """``models`` maps each tier to its configured model name, or None when absent."""
        if route is Route.AUTO:
            wanted: Tier = "small"
            reason = "auto: small tier by default"
        else:
            wanted = "large" if route is Route.LARGE else "small"
            reason = f"you chose the {wanted} tier"
        tier = wanted
        if models.get(wanted) is None:
            tier = "small"
            reason += "; no large tier is configured, so it ran on the small tier"
        return RouteDecision(
            tier=tier,
            wanted=wanted,
            model=models[tier] or "",
            reason=reason,
            override=None if route is Route.AUTO else route,
        )
