"""Embedding latency: load time, then embed_one p50/p99 by prompt length and max_tokens, and a cache hit.

Run from the repository root (takes about half a minute on two cores)::

    python tests/bench/bench_embedding.py [--runs N] [--threads T]

Prompts are English prose of 10, 100 and 1,000 words. Each (prompt, max_tokens) pair is timed on an
embedder without a cache, after one warm-up call, so every timed call tokenizes and runs the model.
"Tokens" is what the model sees after the cut, counting [CLS] and [SEP]. It prints figures only and
is not named test_*.py, so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SENTENCES = [
    "Please summarise the attached quarterly report and list the three biggest risks it mentions.",
    "The meeting moved to Thursday because the projector in the main room is broken again.",
    "Write a short Python function that parses an ISO date and returns the weekday as a string.",
    "Our customers in the north region ordered twice as many parts as last year, mostly in spring.",
    "Explain the difference between a process and a thread to someone who has never programmed.",
]
LENGTHS = {"short": 10, "medium": 100, "long": 1000}
MAX_TOKENS = (64, 128, 256)


def prose(words: int) -> str:
    """``words`` words of plain English taken round-robin from ``SENTENCES``."""
    pool = " ".join(SENTENCES).split()
    return " ".join(pool[i % len(pool)] for i in range(words))


def timings_ms(fn, runs: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    fn()  # warm-up, not timed
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="timed calls per figure (default 50)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default min(2, cpus))")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    from slmchat.infra.embedding import MiniLMEmbedder

    imported = time.perf_counter() - start
    embedder = MiniLMEmbedder(threads=args.threads)
    start = time.perf_counter()
    embedder.load()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    embedder.embed_one("warm up")
    first = time.perf_counter() - start
    start = time.perf_counter()
    MiniLMEmbedder(threads=args.threads).load()
    warm = time.perf_counter() - start
    print(f"threads {embedder.threads}, {args.runs} runs per figure")
    print(f"import slmchat.infra.embedding   {imported * 1000:7.1f} ms")
    print(f"first load (cold)          {cold * 1000:7.1f} ms  (imports onnxruntime + tokenizers, session)")
    print(f"first embed after load     {first * 1000:7.1f} ms")
    print(f"second load (warm)         {warm * 1000:7.1f} ms  (session only)")
    print()
    print(f"{'prompt':<8} {'words':>5} {'max_tokens':>10} {'tokens':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for max_tokens in MAX_TOKENS:
        uncached = MiniLMEmbedder(max_tokens=max_tokens, cache_size=0, threads=args.threads)
        uncached.load()
        for name, words in LENGTHS.items():
            text = prose(words)
            tokens = min(len(uncached._tokenizer.encode(text).ids), max_tokens)
            ms = timings_ms(lambda text=text, e=uncached: e.embed_one(text), args.runs)
            p50, p99 = np.percentile(ms, [50, 99])
            print(f"{name:<8} {words:>5} {max_tokens:>10} {tokens:>6} {p50:>8.2f} {p99:>8.2f}")
    print()
    long_text = prose(LENGTHS["long"])
    embedder.embed_one(long_text)
    ms = timings_ms(lambda: embedder.embed_one(long_text), args.runs)
    p50, p99 = np.percentile(ms, [50, 99])
    print(f"cache hit (1,000 words)    p50 {p50 * 1000:.1f} µs, p99 {p99 * 1000:.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
