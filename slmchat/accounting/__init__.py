"""What a turn cost, what the large tier would have cost, and totals over time."""

from slmchat.accounting.pricing import Price, TurnCost, price_for, turn_cost

__all__ = ["Price", "TurnCost", "price_for", "turn_cost"]
