"""Fact extraction quality: precision and recall of extract_facts with the real SmolLM2-135M on labelled user turns.

Run from the repository root (one to four minutes on two cores, depending on what else runs)::

    python tests/bench/bench_extraction.py [--no-prefilter] [--verbose] [--raw-out FILE]

The labelled set is tests/data/memory_extraction.jsonl: customer turns from Taskmaster-4 (CC BY 4.0) and
ABCD (MIT) dialogs, each citing its conversation and turn, plus hand-written chat turns. A label is a
durable fact a person would want remembered (a name, a preference, an allergy, an account detail), or
nothing: a one-off order, a question or thanks has no fact.

A predicted fact matches a labelled fact of the same turn when their MiniLM cosine similarity is at least
0.75; matching is greedy and one-to-one (best pair first). Precision is matched / predicted, recall is
matched / labelled, over all turns. Seconds per turn are wall time of extract_facts (pre-filtered turns
included, then model calls only), after one untimed warm-up call. Prints figures only; not named test_*.py,
so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from slmchat.infra.backends.base import CancelToken, ChatBackend, GenParams, Message, StreamItem

DATA = Path(__file__).resolve().parents[1] / "data" / "memory_extraction.jsonl"
MATCH = 0.75


class Recording(ChatBackend):
    """Passes calls to ``inner`` and keeps the text of each reply."""

    name = "recording"

    def __init__(self, inner: ChatBackend) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.replies: list[str] = []

    async def stream(
        self, messages: list[Message], params: GenParams, cancel: CancelToken
    ) -> AsyncIterator[StreamItem]:
        pieces: list[str] = []
        async for item in self.inner.stream(messages, params, cancel):
            if isinstance(item, str):
                pieces.append(item)
            yield item
        self.replies.append("".join(pieces))


def match_count(predicted: list[str], labelled: list[str], embedder) -> int:  # type: ignore[no-untyped-def]
    """Greedy one-to-one matches at cosine >= MATCH."""
    if not predicted or not labelled:
        return 0
    vectors = embedder.embed(predicted + labelled)
    sims = vectors[: len(predicted)] @ vectors[len(predicted) :].T
    matched = 0
    while sims.size and sims.max() >= MATCH:
        i, j = np.unravel_index(int(sims.argmax()), sims.shape)
        sims[i, :] = -1.0
        sims[:, j] = -1.0
        matched += 1
    return matched


def ratio(a: int, b: int) -> str:
    return f"{a / b:.3f} ({a}/{b})" if b else "n/a"


async def run(args: argparse.Namespace) -> int:
    from slmchat.infra.backends.llamacpp import LlamaCppBackend
    from slmchat.infra.embedding import default_embedder
    from slmchat.memory.facts import MIN_CONFIDENCE, extract_facts

    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    if args.limit:
        rows = rows[: args.limit]
    embedder = default_embedder()
    embedder.load()
    model = LlamaCppBackend("smollm2", {"n_ctx": 2048})
    await model.load()
    backend = Recording(model)
    await extract_facts(backend, "I have a cat.")  # warm-up: builds the grammar, not timed
    backend.replies.clear()

    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # group -> [matched, predicted, labelled]
    seconds: list[float] = []
    called_seconds: list[float] = []
    false_on_empty = empty_turns = skipped_labelled = 0
    raw: list[dict] = []
    for row in rows:
        before = len(backend.replies)
        start = time.perf_counter()
        facts = await extract_facts(backend, row["text"], prefilter=not args.no_prefilter)
        elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        called = len(backend.replies) > before
        if called:
            called_seconds.append(elapsed)
        elif row["facts"]:
            skipped_labelled += len(row["facts"])
        predicted = [fact for fact, _ in facts]
        matched = match_count(predicted, row["facts"], embedder)
        group = "hand-written" if row["source"] == "hand-written" else "dialogs"
        for key in (group, "all"):
            totals[key][0] += matched
            totals[key][1] += len(predicted)
            totals[key][2] += len(row["facts"])
        if not row["facts"]:
            empty_turns += 1
            false_on_empty += bool(predicted)
        reply = backend.replies[-1] if called else None
        raw.append({"id": row["id"], "text": row["text"], "reply": reply, "kept": facts, "labels": row["facts"]})
        if args.verbose and (matched < len(predicted) or matched < len(row["facts"])):
            print(f"{row['id']}: {row['text']!r}\n   labels {row['facts']}\n   kept   {predicted}\n   reply  {reply}")

    print(f"extract_facts on {len(rows)} labelled turns ({args.data.name}), SmolLM2-135M, greedy")
    print(f"pre-filter: {'off' if args.no_prefilter else 'on'}; model calls: {len(called_seconds)}/{len(rows)}; "
          f"labelled facts in skipped turns: {skipped_labelled}; MIN_CONFIDENCE {MIN_CONFIDENCE}")  # fmt: skip
    for key in ("all", "dialogs", "hand-written"):
        matched, predicted, labelled = totals[key]
        print(f"{key:>13}: precision {ratio(matched, predicted)}  recall {ratio(matched, labelled)}")
    print(f"turns with no labelled fact that got one: {ratio(false_on_empty, empty_turns)}")
    p50_called = statistics.median(called_seconds) if called_seconds else 0.0
    print(f"seconds per turn: p50 {statistics.median(seconds):.3f} (all turns), {p50_called:.3f} (model calls); "
          f"max {max(seconds):.2f}; total {sum(seconds):.1f}")  # fmt: skip
    if args.raw_out:
        args.raw_out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in raw))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="labelled JSONL (default tests/data/...)")
    parser.add_argument("--no-prefilter", action="store_true", help="call the model on every turn")
    parser.add_argument("--verbose", action="store_true", help="print every turn that is not a perfect match")
    parser.add_argument("--limit", type=int, default=0, help="only the first N turns")
    parser.add_argument("--raw-out", type=Path, help="write each turn's model reply and kept facts here (JSONL)")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
