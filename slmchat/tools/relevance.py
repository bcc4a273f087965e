"""Offer only the tools a question is about: embedding similarity, or the tool's words in the question.

A small model offered a calculator will call it for "Hi!" too. The turn's embedding (the one
the router computed) is compared with each tool's name and description; tools below the
threshold are not offered, and with none left the turn is a plain answer. This also keeps
prompts short when many tools are installed.

MiniLM is English-only and short requests embed poorly, so a lexical score stands beside it:
the share of the tool's key words (its name and parameter names) found in the question,
matching words by their first letters ("wetter" does not match "weather", "temperatura" does
match "temperature"). Whether an offered tool is really called is decided after the call, by
whether its values come from the question (``tools.grounding``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from slmchat.infra.errors import SlmchatError
from slmchat.tools.base import ToolSpec
from slmchat.tools.grounding import Sources, fold, words
from slmchat.tools.registry import Toolbox

if TYPE_CHECKING:  # only annotations: numpy loads when the router or the embedder first needs it
    import numpy as np

#: Chosen on the tuning split (``eval.bfcl.in_split``: simple_python, parallel, irrelevance a-m),
#: MiniLM-L6 int8. At 0.25 the relevant function of 0.8% of tuning items is not offered, against
#: 0.2% at 0.15, while irrelevant items offered their function rise from 50% to 67%: lower
#: thresholds buy little on the tuning split and cost many stray calls (docs/tools.md, curve).
RELEVANCE_THRESHOLD = 0.25
#: The lexical score counts this much against the cosine: a tool half of whose key words are in
#: the question passes even when MiniLM misses it (short or non-English requests); on the tuning
#: split this offers 0.5% more irrelevant items.
LEXICAL_WEIGHT = 0.5
#: at most this many tools are offered (best first)
TOP_K = 3
#: Tools more than this below the best match are not offered either. Chosen on tuning items made
#: of a simple_python question, its function and the 2-3 functions most like it: at 0.1 the
#: right function is offered for 98.3% (3 tools) and 95.8% (4 tools), 1.9 tools on average;
#: at 0.05, 95.0% and 92.7%. Offering more costs: offered all of them, SmolLM2 picks a wrong one
#: more often.
RELEVANCE_MARGIN = 0.1


def tool_text(spec: ToolSpec) -> str:
    """What a tool is about, in words: its name split into words, then its description."""
    return f"{spec.name.replace('_', ' ').replace('.', ' ')}: {spec.description}"


#: words in tool and parameter names that say nothing about what a tool is for
_GENERIC = frozenset(
    "get set calculate calc find compute search fetch retrieve data value values info information the of for and "
    "to in by with from is name type list number count num id result results details detail specific given query"
    .split()
)  # fmt: skip
_CAMEL = re.compile(r"([a-z])([A-Z])")


def name_words(name: str) -> list[str]:
    """The words of a name that say what it is about (``avoid_tolls`` -> avoid, tolls; ``get_data`` -> none)."""
    found = words(fold(_CAMEL.sub(r"\1 \2", name).replace("_", " ").replace(".", " ")))
    return [w for w in dict.fromkeys(found) if len(w) > 2 and w not in _GENERIC]


def key_words(spec: ToolSpec) -> list[str]:
    """The words of a tool's name and parameter names that say what it is about."""
    return list(dict.fromkeys(w for name in [spec.name, *spec.properties] for w in name_words(name)))


def lexical_score(text: str, spec: ToolSpec, sources: Sources | None = None) -> float:
    """The share of the tool's key words found in ``text`` (by their first letters)."""
    keys = key_words(spec)
    if not keys:
        return 0.0
    sources = sources or Sources([text])
    return sum(sources.has_word(word) for word in keys) / len(keys)


def relevance_scores(
    question: np.ndarray, text: str, specs: Sequence[ToolSpec], embed: Callable[[list[str]], np.ndarray]
) -> list[float]:
    """Each spec's relevance to the question: the larger of its cosine and its weighted lexical score."""
    cosines = [float(s) for s in embed([tool_text(spec) for spec in specs]) @ question]
    sources = Sources([text])
    return [max(c, LEXICAL_WEIGHT * lexical_score(text, spec, sources)) for c, spec in zip(cosines, specs, strict=True)]


def pick(
    scores: Sequence[float],
    threshold: float = RELEVANCE_THRESHOLD,
    margin: float = RELEVANCE_MARGIN,
    top_k: int = TOP_K,
) -> list[int]:
    """Indexes of the scores that pass: at least ``threshold``, within ``margin`` of the best, best first."""
    if not scores:
        return []
    best = max(scores)
    ranked = sorted(zip(scores, range(len(scores)), strict=True), reverse=True)
    return [i for score, i in ranked if score >= threshold and score >= best - margin][:top_k]


def relevant_tools(
    question: np.ndarray,
    specs: Sequence[ToolSpec],
    embed: Callable[[list[str]], np.ndarray],
    text: str = "",
    threshold: float = RELEVANCE_THRESHOLD,
    margin: float = RELEVANCE_MARGIN,
    top_k: int = TOP_K,
) -> list[ToolSpec]:
    """The specs relevant to the (L2-normalised) ``question`` whose words are ``text``: at least
    ``threshold``, within ``margin`` of the best one, at most ``top_k``, best first (small models
    favour what they read first)."""
    if not specs:
        return []
    return [specs[i] for i in pick(relevance_scores(question, text, specs, embed), threshold, margin, top_k)]


def relevant_toolbox(toolbox: Toolbox, text: str, question: np.ndarray | None, embedder: Any) -> Toolbox:
    """The part of ``toolbox`` relevant to ``text`` (``question`` is its embedding, if computed).

    If the embedding model fails, every tool is offered: the gate saves tokens and stray
    calls, it must not take the tools away.
    """
    try:
        vector = question if question is not None else embedder.embed_one(text)
        specs = relevant_tools(vector, toolbox.specs, embedder.embed, text)
    except SlmchatError:
        return toolbox
    return Toolbox({spec.name: toolbox[spec.name] for spec in specs})
