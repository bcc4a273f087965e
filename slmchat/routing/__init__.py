"""Deciding which tier runs a turn: a score from observable factors and a learned model, a
calibrated threshold, and the user's override on top."""

from slmchat.routing.decision import Route, RouteDecision, Tier
from slmchat.routing.factors import RouteContext
from slmchat.routing.policy import Router

__all__ = ["Route", "RouteContext", "RouteDecision", "Router", "Tier"]
