"""Offer only the tools a question is about: cosine similarity of embeddings, one threshold.

A small model offered a calculator will call it for "Hi!" too. The turn's embedding (the one
the router computed) is compared with each tool's name and description; tools below the
threshold are not offered, and with none left the turn is a plain answer. This also keeps
prompts short when many tools are installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from slmchat.infra.errors import SlmchatError
from slmchat.tools.base import ToolSpec
from slmchat.tools.registry import Toolbox

if TYPE_CHECKING:  # only annotations: numpy loads when the router or the embedder first needs it
    import numpy as np

#: Chosen on BFCL v4 questions (MiniLM-L6 int8): at 0.25 the best function of 99.3% of
#: simple_python and 99.5% of multiple items passes, against 51.7% of irrelevance items.
RELEVANCE_THRESHOLD = 0.25
#: Tools more than this below the best match are not offered either. On BFCL multiple the
#: expected function is the best match for 98% of questions and within 0.05 of it for 99.5%,
#: while SmolLM2 offered all of them picked a wrong one for about 1 question in 5.
RELEVANCE_MARGIN = 0.05


def tool_text(spec: ToolSpec) -> str:
    """What a tool is about, in words: its name split into words, then its description."""
    return f"{spec.name.replace('_', ' ').replace('.', ' ')}: {spec.description}"


def relevant_tools(
    question: np.ndarray,
    specs: Sequence[ToolSpec],
    embed: Callable[[list[str]], np.ndarray],
    threshold: float = RELEVANCE_THRESHOLD,
    margin: float = RELEVANCE_MARGIN,
) -> list[ToolSpec]:
    """The specs at least ``threshold`` similar to the (L2-normalised) question and within
    ``margin`` of the best one, best first (small models favour what they read first)."""
    if not specs:
        return []
    scores = [float(s) for s in embed([tool_text(spec) for spec in specs]) @ question]
    best = max(scores)
    ranked = sorted(zip(scores, range(len(specs)), strict=True), reverse=True)
    return [specs[i] for score, i in ranked if score >= threshold and score >= best - margin]


def relevant_toolbox(toolbox: Toolbox, text: str, question: np.ndarray | None, embedder: Any) -> Toolbox:
    """The part of ``toolbox`` relevant to ``text`` (``question`` is its embedding, if computed).

    If the embedding model fails, every tool is offered: the gate saves tokens and stray
    calls, it must not take the tools away.
    """
    try:
        vector = question if question is not None else embedder.embed_one(text)
        specs = relevant_tools(vector, toolbox.specs, embedder.embed)
    except SlmchatError:
        return toolbox
    return Toolbox({spec.name: toolbox[spec.name] for spec in specs})
