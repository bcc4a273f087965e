"""Fact extraction quality: precision and recall of extract_facts with the real SmolLM2-135M on labelled user turns.

Run from the repository root (one to four minutes on two cores, depending on what else runs)::

    python tests/bench/bench_extraction.py [--split tune|heldout|both] [--no-prefilter] [--verbose] [--raw-out FILE]

The labelled turns are customer turns from Taskmaster-4 (CC BY 4.0, Bill Byrne and Saravanan Ganesh, Google
LLC) and ABCD (MIT, ASAPP Research) dialogs, each citing its conversation and turn, plus hand-written chat
turns. A turn that answers the assistant carries the assistant's previous turn as ``question``, and it is
passed to extract_facts when that takes one ("Blue." is a fact only after "What's your favourite colour?").
A label is a durable fact a person would want remembered (a name, a preference, an allergy, an account
detail), or nothing: a one-off order, a question, thanks or talk about someone else has no fact.

The split is by source, fixed before any tuning (:data:`SPLITS`, :func:`taskmaster_split`):

- ``tune``: tests/data/memory_extraction.jsonl (the set the first prompt was chosen on) and
  memory_extraction_tune.jsonl (the first 25 unused Taskmaster-4 conversations whose id sorts in the first
  half, the rest of the ABCD turns, 38 hand-written turns). Every prompt, rule and threshold is chosen here.
- ``heldout``: memory_extraction_heldout.jsonl, committed before any change to the prompt or guards: every
  user turn of the Taskmaster-4 conversations whose id sorts in the second half and that the tuned file does
  not use, and 50 hand-written turns labelled before any model run. Report on it; never tune on it.

A predicted fact matches a labelled fact of the same turn when their MiniLM cosine similarity is at least
0.75; matching is greedy and one-to-one (best pair first). Precision is matched / predicted, recall is
matched / labelled, over all turns. Seconds per turn are wall time of extract_facts (pre-filtered turns
included, then model calls only), after one untimed warm-up call. Prints figures only; not named test_*.py,
so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import statistics
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from slmchat.infra.backends.base import CancelToken, ChatBackend, GenParams, Message, StreamItem

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SPLITS: dict[str, tuple[str, ...]] = {
    "tune": ("memory_extraction.jsonl", "memory_extraction_tune.jsonl"),
    "heldout": ("memory_extraction_heldout.jsonl",),
}
MATCH = 0.75


def taskmaster_split(conversation_id: str, all_ids: list[str]) -> str:
    """The split rule for Taskmaster-4 conversations: ids sorting in the second half are held out.

    (The tuned file's 24 conversations, chosen before the split existed, stay in ``tune`` wherever they sort.)
    """
    ids = sorted(all_ids)
    return "heldout" if conversation_id in set(ids[len(ids) // 2 :]) else "tune"


def load_rows(split: str, data: list[Path] | None = None) -> list[dict]:
    """The labelled rows of ``split`` (or of the ``data`` files), each tagged with its split."""
    files = data or [DATA_DIR / name for name in SPLITS[split]]
    rows = []
    for path in files:
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append({**json.loads(line), "split": split if not data else path.stem})
    return rows


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

    splits = ("tune", "heldout") if args.split == "both" else (args.split,)
    rows = load_rows("", args.data) if args.data else [row for split in splits for row in load_rows(split)]
    if args.limit:
        rows = rows[: args.limit]
    embedder = default_embedder()
    embedder.load()
    model = LlamaCppBackend("smollm2", {"n_ctx": 2048})
    await model.load()
    takes_question = "question" in inspect.signature(extract_facts).parameters
    backend = Recording(model)
    await extract_facts(backend, "I have a cat.")  # warm-up: builds the grammar, not timed
    backend.replies.clear()

    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # group -> [matched, predicted, labelled]
    seconds: list[float] = []
    called_seconds: list[float] = []
    empty: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # split -> [turns with a fact, turns]
    skipped_labelled = 0
    raw: list[dict] = []
    for row in rows:
        before = len(backend.replies)
        start = time.perf_counter()
        kwargs = {"question": row.get("question")} if takes_question else {}
        facts = await extract_facts(backend, row["text"], prefilter=not args.no_prefilter, **kwargs)
        elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        called = len(backend.replies) > before
        if called:
            called_seconds.append(elapsed)
        elif row["facts"]:
            skipped_labelled += len(row["facts"])
        predicted = [fact for fact, _ in facts]
        matched = match_count(predicted, row["facts"], embedder)
        group = "hand-written" if row["source"].startswith("hand-written") else "dialogs"
        for key in (row["split"], f"{row['split']} {group}"):
            totals[key][0] += matched
            totals[key][1] += len(predicted)
            totals[key][2] += len(row["facts"])
        if not row["facts"]:
            empty[row["split"]][0] += bool(predicted)
            empty[row["split"]][1] += 1
        reply = backend.replies[-1] if called else None
        raw.append({"id": row["id"], "split": row["split"], "text": row["text"], "question": row.get("question"),
                    "reply": reply, "kept": facts, "labels": row["facts"]})  # fmt: skip
        if args.verbose and (matched < len(predicted) or matched < len(row["facts"])):
            print(f"{row['id']}: {row['text']!r}\n   labels {row['facts']}\n   kept   {predicted}\n   reply  {reply}")

    print(f"extract_facts on {len(rows)} labelled turns (split {args.split}), SmolLM2-135M, greedy; "
          f"question passed: {'yes' if takes_question else 'no (extract_facts takes none)'}")  # fmt: skip
    print(f"pre-filter: {'off' if args.no_prefilter else 'on'}; model calls: {len(called_seconds)}/{len(rows)}; "
          f"labelled facts in skipped turns: {skipped_labelled}; MIN_CONFIDENCE {MIN_CONFIDENCE}")  # fmt: skip
    for key in sorted(totals, key=lambda k: (k.split()[0], len(k), k)):
        matched, predicted, labelled = totals[key]
        print(f"{key:>22}: precision {ratio(matched, predicted)}  recall {ratio(matched, labelled)}")
    for split, (wrong, turns) in sorted(empty.items()):
        print(f"{split}: turns with no labelled fact that got one: {ratio(wrong, turns)}")
    p50_called = statistics.median(called_seconds) if called_seconds else 0.0
    print(f"seconds per turn: p50 {statistics.median(seconds):.3f} (all turns), {p50_called:.3f} (model calls); "
          f"max {max(seconds):.2f}; total {sum(seconds):.1f}")  # fmt: skip
    if args.raw_out:
        args.raw_out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in raw))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("tune", "heldout", "both"), default="tune", help="which split (tune)")
    parser.add_argument("--data", type=Path, nargs="+", help="labelled JSONL files instead of a split")
    parser.add_argument("--no-prefilter", action="store_true", help="call the model on every turn")
    parser.add_argument("--verbose", action="store_true", help="print every turn that is not a perfect match")
    parser.add_argument("--limit", type=int, default=0, help="only the first N turns")
    parser.add_argument("--raw-out", type=Path, help="write each turn's model reply and kept facts here (JSONL)")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
