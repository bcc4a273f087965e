"""Deciding which tier runs a turn. For now a transparent default policy; the scorer comes later."""

from slmchat.routing.decision import Route, RouteDecision, Tier
from slmchat.routing.policy import DefaultRouter

__all__ = ["DefaultRouter", "Route", "RouteDecision", "Tier"]
