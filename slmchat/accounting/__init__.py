"""What a turn cost, what the large tier would have cost, and totals over time.

The names load on first use (PEP 562): pricing needs the config's pydantic models, which a
module that only imports ``slmchat.accounting.stats`` should not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slmchat.accounting.pricing import Price, TurnCost, price_for, turn_cost

__all__ = ["Price", "TurnCost", "price_for", "turn_cost"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'slmchat.accounting' has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module("slmchat.accounting.pricing"), name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
