"""The similarity floor for recalled exchanges: does it keep the exchange a question is about, and keep
unrelated past chat out of the prompt? Embeddings only, no chat model (a few seconds).

Run from the repository root::

    python tests/bench/bench_recall_floor.py --split tune|heldout [--json]

Cases are the dialog-sourced questions of tests/data/memory_recall.jsonl; each one's *relevant exchange*
is the dialog turn its fact cites with the agent's next reply, stored as slmchat stores an exchange. The
pool holds every user turn of the dialogs in ../shared/data/dialogs that way (422 exchanges). A question
recalls its top ``SLOTS`` exchanges at or above the floor (the exchange slots left by 3 fact slots of
``recall_k`` 5). Probes are chit-chat and general questions about none of the dialogs: everything they
recall is unrelated.

Split by source file, fixed before any figure was seen: ``tune`` = the Taskmaster-4 cases and probe list A,
``heldout`` = the ABCD cases and probe list B. The floor shipped (``memory.min_exchange_similarity``) was
chosen on ``tune`` only.

Per floor it prints: the share of cases whose relevant exchange is recalled, unrelated exchanges (from
other conversations) recalled per question, and exchanges recalled per probe.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from slmchat.infra.embedding import default_embedder
from tests.bench.bench_memory import TASKMASTER, dialog_turns, load_cases, parse_source

PROBES = {
    "tune": ["Hi there", "Thanks!", "Tell me a joke", "How are you today?", "What is 2 + 2?",
             "Write a haiku about autumn", "Translate 'good morning' into Spanish", "What's the capital of Peru?",
             "ok", "Explain what a neural network is", "Give me three tips for sleeping better", "Good night"],
    "heldout": ["Hello!", "thank you so much", "Say something funny", "How's it going?", "What is 7 times 8?",
                "Write a limerick about a cat", "How do you say thank you in French?", "Who wrote Hamlet?",
                "cool", "What is photosynthesis?", "Suggest a name for a goldfish", "See you tomorrow"],
}  # fmt: skip
FLOORS = (0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
SLOTS = 2
EXCHANGE_CHARS = 600


def exchange_pool() -> list[tuple[str, int, str]]:
    """``(conversation, user turn index, exchange text)`` for every user turn with an agent reply."""
    pool = []
    for (_file, conversation), turns in dialog_turns().items():
        for index, (speaker, text) in enumerate(turns):
            reply = next((t for s, t in turns[index + 1 :] if s == "agent"), None)
            if speaker == "user" and reply is not None:
                pool.append((conversation, index, f"User: {text}\nAssistant: {reply}"[:EXCHANGE_CHARS]))
    return pool


def figures(split: str) -> list[dict[str, Any]]:
    cases = [c for c in load_cases() if (p := parse_source(c["source"])) and (p[0] == TASKMASTER) == (split == "tune")]
    pool = exchange_pool()
    embedder = default_embedder()
    vectors = embedder.embed([text for _, _, text in pool])
    questions = embedder.embed([c["question"] for c in cases])
    probes = embedder.embed(PROBES[split])
    rows = []
    for floor in FLOORS:
        kept = unrelated = 0
        for case, question in zip(cases, questions, strict=True):
            _, conversation, index = parse_source(case["source"])  # type: ignore[misc]
            sims = vectors @ question
            top = [j for j in np.argsort(-sims)[:SLOTS] if sims[j] >= floor]
            kept += any(pool[j][:2] == (conversation, index) for j in top)
            unrelated += sum(pool[j][0] != conversation for j in top)
        per_probe = [int(np.sum(np.sort(vectors @ p)[::-1][:SLOTS] >= floor)) for p in probes]
        rows.append({"floor": floor, "cases": len(cases), "relevant_kept": kept / len(cases),
                     "unrelated_per_question": unrelated / len(cases),
                     "recalled_per_probe": sum(per_probe) / len(per_probe)})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "heldout"), required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = figures(args.split)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{args.split}: {rows[0]['cases']} cases, {len(PROBES[args.split])} probes, {SLOTS} exchange slots")
    print("floor  relevant kept  unrelated/question  recalled/probe")
    for r in rows:
        print(f"{r['floor']:.2f}   {r['relevant_kept']:.3f}          {r['unrelated_per_question']:.2f}"
              f"                {r['recalled_per_probe']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
