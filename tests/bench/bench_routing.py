"""Router decision time per turn, embedding included, timed the way ``Session._route`` routes a turn.

Run from the repository root (well under a minute on two cores)::

    python tests/bench/bench_routing.py [--max-tokens N] [--sample N] [--seed S]
                                        [--weights PATH | --assume-embedding]

Each turn is timed from building the ``RouteContext`` (history, estimated context tokens) through
``embedding = router.embed(text) if router.uses_embedding else None`` to ``router.decide(...)``,
with a four-message history and both tiers configured. "embed" is the embedding call alone,
"decide" the rest (context, factors, score, decision). Three prompt mixes:

* (a) data: ``--sample`` prompts drawn (seeded) from ``shared/data/routing`` (GSM8K and MMLU);
* (b) chat: short chat messages written here, 3 to 20 words;
* (c) long: data prompts joined into texts of 1,000+ words.

Every mix starts with an empty embedder cache and holds distinct texts, so each timed turn runs the
model (the script checks the embedder's run count). The very first turn (model load) is reported
apart and left out of the percentiles; a repeated prompt (cache hit) gets its own line. Targets for
the data mix: p50 ≤ 20 ms, p99 ≤ 60 ms; they are printed as PASS/MISS and never change the exit code.
Without ``--weights`` the shipped weights are used; ``--assume-embedding`` adds a synthetic embedding
part when they have none, to time a router that embeds. The script is not named test_*.py, so pytest
does not collect it.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared/data/routing"
MODELS = {"small": "llamacpp:smollm2", "large": "openai:big"}
TARGET_P50_MS = 20.0
TARGET_P99_MS = 60.0
LONG_WORDS = 1000
LONG_PROMPTS = 40
CACHE_HIT_RUNS = 200

CHAT = [
    "hi there!",
    "thanks, that helps a lot",
    "what time zone is Tokyo in?",
    "can you make it shorter?",
    "translate 'good morning' into Spanish",
    "ok, and what about French?",
    "that's wrong, try again please",
    "give me a synonym for happy",
    "what's the capital of Australia?",
    "write a haiku about autumn rain",
    "how do I reverse a list in Python?",
    "explain recursion like I'm five",
    "is a tomato a fruit or a vegetable?",
    "summarize our conversation so far in two sentences",
    "what does HTTP 404 mean?",
    "recommend a good sci-fi book for a long flight",
    "how many grams are in a pound?",
    "no, I meant the other one",
    "can you list three quick breakfast ideas without eggs?",
    "why is the sky blue?",
    "fix the typo in my last message",
    "what's the difference between affect and effect?",
    "tell me a joke about cats",
    "convert 72 Fahrenheit to Celsius",
    "what should I name my new golden retriever puppy?",
    "write a polite email declining a meeting invitation for Friday afternoon",
    "is it safe to take ibuprofen with coffee?",
    "sort these words alphabetically: pear, apple, fig",
    "great, now do the same for the second paragraph",
    "what year did the Berlin Wall fall and why did it happen?",
]
#: the conversation before each timed turn (a session a few turns in)
HISTORY_TEXTS = [
    ("user", "Can you help me plan a three-day trip to Lisbon in May?"),
    (
        "assistant",
        "Of course. Day one: Alfama and the castle. Day two: Belém, the tower and the monastery, "
        "with pastéis de nata. Day three: a day trip to Sintra. Book the Sintra palaces ahead.",
    ),
    ("user", "Nice. What's the best way to get from the airport to the centre?"),
    ("assistant", "The metro red line runs from the airport to the centre in about 20 minutes; a taxi takes 15-30."),
]


def load_prompts(data_dir: Path) -> list[str]:
    """Distinct ``prompt`` values of the GSM8K and MMLU routing files, in a fixed order."""
    csv.field_size_limit(sys.maxsize)
    files = [data_dir / "gsm8k" / "gsm8k_responses.csv", *sorted((data_dir / "mmlu").glob("*.csv"))]
    prompts: dict[str, None] = {}
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                text = (row.get("prompt") or "").strip()
                if text:
                    prompts[text] = None
    return list(prompts)


def long_prompts(pool: Sequence[str], count: int, words: int) -> list[str]:
    """``count`` texts of ``words``+ words, each made of consecutive prompts from ``pool``."""
    out: list[str] = []
    parts: list[str] = []
    n = 0
    for text in pool:
        parts.append(text)
        n += len(text.split())
        if n >= words:
            out.append("\n\n".join(parts))
            parts, n = [], 0
            if len(out) == count:
                break
    return out


def percentiles(ms: np.ndarray) -> str:
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return f"{p50:8.2f} {p90:8.2f} {p99:8.2f} {ms.max():8.2f}"


def print_rows(label: str, n: int, words: int, tokens: int | None, times: np.ndarray, note: str = "") -> None:
    """Total, embed and decide percentiles of ``times`` (one row per turn: embed ms, decide ms)."""
    rows = (("total", times.sum(axis=1)), ("embed", times[:, 0]), ("decide", times[:, 1]))
    for i, (part, ms) in enumerate(rows):
        head = f"{label:<10} {n:>4} {words:>6} {'-' if tokens is None else tokens:>6}" if i == 0 else " " * 29
        print(f"{head}  {part:<7} {percentiles(ms)}{note if i == 0 else ''}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=None, help="embedding truncation (default: the embedder's)")
    parser.add_argument("--sample", type=int, default=300, help="data prompts in mix (a) (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help=f"routing data folder (default {DATA_DIR})")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=Path, default=None, help="router weights JSON instead of the shipped ones")
    weights.add_argument(
        "--assume-embedding",
        action="store_true",
        help="if the weights have no embedding part, add a synthetic one (timing only; decisions are meaningless)",
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    from slmchat.infra.backends.base import Message, estimate_tokens
    from slmchat.infra.embedding import DEFAULT_MAX_TOKENS, MiniLMEmbedder
    from slmchat.routing import Route, RouteContext, Router
    from slmchat.routing.scorer import RouterWeights, Scorer

    imported_ms = (time.perf_counter() - start) * 1000

    if not (args.data / "gsm8k").is_dir() or not (args.data / "mmlu").is_dir():
        print(f"routing data not found under {args.data} (expected gsm8k/ and mmlu/); nothing measured")
        return 0
    max_tokens = args.max_tokens or DEFAULT_MAX_TOKENS
    embedder = MiniLMEmbedder(max_tokens=max_tokens)
    loaded = RouterWeights.load(args.weights)
    if args.assume_embedding and loaded.embedding is None:
        vector = np.random.default_rng(args.seed).standard_normal(384).astype(np.float32)
        vector /= np.linalg.norm(vector)
        loaded = replace(loaded, embedding=vector, source=f"{loaded.source} + synthetic embedding")
    router = Router(Scorer(loaded, embedder=embedder))
    history = [Message(role, content) for role, content in HISTORY_TEXTS]  # type: ignore[arg-type]
    history_tokens = sum(estimate_tokens(m.content) for m in history)

    def turn(text: str) -> tuple[float, float]:
        """One routed turn, as Session._route does it: (embed ms, decide ms)."""
        t0 = time.perf_counter()
        context = RouteContext(text, history, context_tokens=history_tokens + estimate_tokens(text))
        t1 = time.perf_counter()
        embedding = router.embed(text) if router.uses_embedding else None
        t2 = time.perf_counter()
        router.decide(context, Route.AUTO, MODELS, embedding)  # type: ignore[arg-type]
        t3 = time.perf_counter()
        return (t2 - t1) * 1000, ((t1 - t0) + (t3 - t2)) * 1000

    all_prompts = load_prompts(args.data)
    rng = random.Random(args.seed)
    rng.shuffle(all_prompts)
    sample, rest = all_prompts[: args.sample], all_prompts[args.sample :]
    mixes: dict[str, list[str]] = {
        "(a) data": sample,
        "(b) chat": list(dict.fromkeys(CHAT)),
        "(c) long": long_prompts(rest, LONG_PROMPTS, LONG_WORDS),
    }

    print(f"router: weights {router.scorer.weights.source!r}, uses_embedding={router.uses_embedding}")
    if router.uses_embedding:
        trained = router.scorer.weights.extra.get("embedding_max_tokens")
        note = f"; weights trained at {trained} tokens" if trained else ""
        if trained and trained != embedder.max_tokens:
            note += " (timing is valid, decisions are not)"
        print(f"embedder: MiniLMEmbedder(max_tokens={embedder.max_tokens}), threads {embedder.threads}{note}")
    else:
        print("embedder: not used by these weights (embed is skipped; try --assume-embedding)")
    print(f"history: {len(history)} messages, ~{history_tokens} tokens; data: {len(all_prompts)} distinct prompts")
    print(f"import slmchat routing + embedding   {imported_ms:8.1f} ms")
    embed_ms, decide_ms = turn("Hello! Could you help me with something today?")
    print(
        f"first turn (cold, model load)       {embed_ms + decide_ms:8.1f} ms"
        f"  (embed {embed_ms:.1f}, decide {decide_ms:.1f}; not in the percentiles)"
    )
    print()
    header = f"{'mix':<10} {'n':>4} {'words':>6} {'tokens':>6}  {'part':<7}"
    print(f"{header} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")

    def tokens_of(text: str) -> int:
        """The tokens the model sees after the cut, [CLS] and [SEP] included."""
        return len(embedder._tokenizer.encode(text).ids)

    data_total: np.ndarray | None = None
    for name, texts in mixes.items():
        embedder.clear_cache()
        runs_before = embedder.runs
        times = np.array([turn(text) for text in texts])
        misses = embedder.runs - runs_before
        total = times.sum(axis=1)
        if name.startswith("(a)"):
            data_total = total
        words = int(np.median([len(t.split()) for t in texts]))
        tokens = int(np.median([tokens_of(t) for t in texts])) if embedder.loaded else None
        note = ""
        if router.uses_embedding and misses != len(texts):
            note = f"  warning: {misses} model runs for {len(texts)} turns (expected one per turn)"
        print_rows(name, len(texts), words, tokens, times, note)

    repeated = sample[0]
    turn(repeated)  # the miss that fills the cache
    runs_before = embedder.runs
    times = np.array([turn(repeated) for _ in range(CACHE_HIT_RUNS)])
    note = "" if embedder.runs == runs_before else f"  warning: {embedder.runs - runs_before} model runs"
    tokens = tokens_of(repeated) if embedder.loaded else None
    print_rows("cache hit", CACHE_HIT_RUNS, len(repeated.split()), tokens, times, note)

    print()
    assert data_total is not None
    p50, p99 = np.percentile(data_total, [50, 99])
    verdict = "PASS" if p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS else "MISS"
    print(
        f"data mix (a) targets: p50 {p50:.2f} ms ≤ {TARGET_P50_MS:.0f} ms "
        f"{'PASS' if p50 <= TARGET_P50_MS else 'MISS'}, p99 {p99:.2f} ms ≤ {TARGET_P99_MS:.0f} ms "
        f"{'PASS' if p99 <= TARGET_P99_MS else 'MISS'} -> {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
