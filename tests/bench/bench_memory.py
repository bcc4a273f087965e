"""Long-term memory: recall of the right fact, the small model's answers with and without memory, recall latency.

Run from the repository root (about five to ten minutes on two cores, most of it embedding the latency store)::

    python tests/bench/bench_memory.py [--latency-items 10000] [--skip-answers] [--verbose]

The set is tests/data/memory_recall.jsonl: facts a customer states in a Taskmaster-4 coffee-ordering dialog
(Google, CC BY 4.0) or an ABCD support dialog (ASAPP, MIT), each citing its conversation and turn, plus
hand-written ones; each has a question asked later, in a new conversation, worded differently.

1. Recall: one embedded MemoryStore (a temp dir) holds every fact of the set, so each case's fact has the
   others as distractors, plus exchange distractors made from the dialogs' turns ("User: ...\\nAssistant: ...",
   kind ``exchange``), leaving out the turns a fact cites. Each question is searched as the engine searches
   (k = recall_k, both kinds, the default recency weight, half-life and min_similarity); Recall@1, Recall@5
   and MRR@5 count where the case's own fact comes.
2. Answers: a Session on the real small model (llamacpp:smollm2, temperature 0, seed 0, 48 tokens, no tools)
   asks each question in a new conversation, once with a Memory over that store (recall only: nothing is
   extracted or stored) and once with memory off; an answer is right when it contains one of the case's
   answer_keywords (case-insensitive, at a word start).
3. Latency: a store of N items (the set's facts, the dialog exchanges, then generated facts and exchanges),
   built with ``import_items``; p50/p95 over 200 queries of a search by a precomputed embedding (what a turn
   does: the router's embedding is reused) and of a search by text (embedding included), against the same
   searches on a store of 100 items built in the same run.

Prints a table, then one JSON line. Not named test_*.py, so pytest does not collect it;
tests/test_memory_recall_set.py checks the data and Recall@5 without the model.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "memory_recall.jsonl"
DIALOGS = ROOT.parent / "shared" / "data" / "dialogs"
TASKMASTER = "taskmaster4/data_07.json"
ABCD = "abcd_sample/abcd_sample.json"
DISTRACTORS = 500
QUERIES = 200
BASELINE_ITEMS = 100
SOURCE = re.compile(r"^(?P<file>\S+) (?:conversation_id|convo_id)=(?P<conversation>\S+) turn=(?P<turn>\d+)$")


# -- the set and the dialogs -------------------------------------------------------------------


def load_cases(path: Path = DATA) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def keyword_hit(keyword: str, text: str) -> bool:
    """``keyword`` occurs in ``text``, case-insensitively, not inside a longer word ("hat" is not in "what")."""
    return re.search(r"(?<![a-z0-9])" + re.escape(keyword.lower()), text.lower()) is not None


def correct(answer: str, keywords: Iterable[str]) -> bool:
    return any(keyword_hit(keyword, answer) for keyword in keywords)


def parse_source(source: str) -> tuple[str, str, int] | None:
    """``(file, conversation id, turn index)`` of a dialog-sourced case; None for a hand-written one."""
    if source == "hand":
        return None
    match = SOURCE.match(source)
    if match is None:
        raise ValueError(f"bad source: {source!r}")
    return match["file"], match["conversation"], int(match["turn"])


def dialog_turns(dialogs: Path = DIALOGS) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Every dialog as ``(speaker, text)`` turns, ``speaker`` being user or agent, keyed by (file, id).

    Taskmaster-4 turns are its ``utterances`` (user, assistant); ABCD turns are its ``original`` lines
    (customer, agent, and system ``action`` lines, kept so that turn indexes match the file).
    """
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for dialog in json.loads((dialogs / TASKMASTER).read_text(encoding="utf-8")):
        turns: list[tuple[str, str]] = []
        for utterance in dialog["utterances"]:
            assert utterance["index"] == len(turns), "Taskmaster utterances are numbered in order"
            speaker = {"user": "user", "assistant": "agent"}.get(utterance["speaker"], utterance["speaker"])
            turns.append((speaker, utterance["text"]))
        found[(TASKMASTER, dialog["conversation_id"])] = turns
    for dialog in json.loads((dialogs / ABCD).read_text(encoding="utf-8")):
        turns = [({"customer": "user"}.get(speaker, speaker), text) for speaker, text in dialog["original"]]
        found[(ABCD, str(dialog["convo_id"]))] = turns
    return found


def dialog_exchanges(
    cases: list[dict[str, Any]], dialogs: Path = DIALOGS, limit: int = DISTRACTORS
) -> list[dict[str, Any]]:
    """Exchange distractors: each user turn with the agent's next reply, as slmchat stores an exchange.

    The turns the set's facts cite are left out (they carry the answer, so they are not distractors).
    """
    cited = {parsed for case in cases if (parsed := parse_source(case["source"])) is not None}
    rows: list[dict[str, Any]] = []
    for (file, conversation), turns in dialog_turns(dialogs).items():
        for index, (speaker, text) in enumerate(turns):
            if speaker != "user" or (file, conversation, index) in cited:
                continue
            reply = next((t for s, t in turns[index + 1 :] if s == "agent"), None)
            if reply is None:
                continue
            rows.append(
                {"kind": "exchange", "text": f"User: {text}\nAssistant: {reply}"[:600], "conversation_id": conversation}
            )
    unique = list({row["text"]: row for row in rows}.values())
    return unique[:limit]


def fact_rows(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": f"fact-{case['id']}", "kind": "fact", "text": case["fact"], "source": "user"} for case in cases]


# -- recall ----------------------------------------------------------------------------------


def search_settings() -> dict[str, Any]:
    """What a turn's recall passes to ``MemoryStore.search`` (the config's defaults)."""
    from slmchat.infra.config import MemoryConfig

    config = MemoryConfig()
    return {
        "k": config.recall_k,
        "kinds": ("fact", "exchange"),
        "recency_weight": config.recency_weight,
        "half_life_days": config.half_life_days,
        "min_similarity": config.min_similarity,
    }


def recall_variants() -> dict[str, dict[str, Any]]:
    """The searches Recall is measured with; ``search`` (the headline) is the store's defaults over both kinds."""
    return {
        "search": {"k": 5, "kinds": ("fact", "exchange")},
        "engine": {"k": 5, "engine": True},  # Memory.recall_hits: fact slots, then exchanges, as a turn recalls
        "facts_only": {"k": 5, "kinds": ("fact",)},  # without the exchange distractors
    }


def fill_store(store: Any, rows: list[dict[str, Any]]) -> float:
    """Store ``rows`` with ``MemoryStore.import_items`` (its batch API); returns the seconds it took."""
    now = time.time()
    stamped = [{"created_at": now, "updated_at": now, **row} for row in rows]
    started = time.perf_counter()
    store.import_items(stamped)
    return time.perf_counter() - started


def recall_figures(store: Any, cases: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """Recall@1, Recall@k and MRR@k of each case's own fact; ``misses`` lists what came first instead."""
    ranks: list[int | None] = []
    misses: list[dict[str, Any]] = []
    settings = dict(settings)
    if settings.pop("engine", False):
        from slmchat.infra.config import MemoryConfig
        from slmchat.memory.manager import Memory

        memory = Memory(MemoryConfig(), opener=lambda: store)

        def search(question: str) -> list[Any]:
            return memory.recall_hits(question)
    else:

        def search(question: str) -> list[Any]:
            return store.search(question, **settings)

    for case in cases:
        texts = [hit.item.text for hit in search(case["question"])]
        rank = texts.index(case["fact"]) + 1 if case["fact"] in texts else None
        ranks.append(rank)
        if rank != 1:
            misses.append({"id": case["id"], "rank": rank, "question": case["question"], "got": texts[:2]})
    n = len(cases)
    return {
        "n": n,
        "k": settings["k"],
        "recall_at_1": sum(rank == 1 for rank in ranks) / n,
        f"recall_at_{settings['k']}": sum(rank is not None for rank in ranks) / n,
        f"mrr_at_{settings['k']}": sum(1 / rank for rank in ranks if rank is not None) / n,
        "misses": misses,
    }


# -- answers ---------------------------------------------------------------------------------


def answer_figures(store: Any, cases: list[dict[str, Any]], folder: Path, verbose: bool) -> dict[str, Any]:
    """Each question in a new conversation, with a Memory over ``store`` and with memory off."""
    import asyncio

    from slmchat.engine.session import Session
    from slmchat.infra.backends.llamacpp import LlamaCppBackend
    from slmchat.infra.config import Config, MemoryConfig, TierConfig
    from slmchat.infra.store import Store
    from slmchat.memory.manager import Memory
    from slmchat.tools import Toolbox

    backend = LlamaCppBackend("smollm2", {"n_ctx": 2048})
    asyncio.run(backend.load())
    small = TierConfig(model="llamacpp:smollm2", temperature=0.0, seed=0, max_tokens=48)
    recall_only = MemoryConfig(path=folder / "recall", extract=False, store_exchanges=False)
    runs = {
        "with_memory": Session(
            Config(small=small, memory=recall_only), store=Store(folder / "with.sqlite3"),
            backends={"small": backend}, tools=Toolbox(), memory=Memory(recall_only, opener=lambda: store),
        ),
        "without_memory": Session(
            Config(small=small, memory=MemoryConfig(enabled=False)), store=Store(folder / "without.sqlite3"),
            backends={"small": backend}, tools=Toolbox(),
        ),
    }  # fmt: skip
    figures: dict[str, Any] = {"n": len(cases), "model": "llamacpp:smollm2", "max_tokens": 48}
    fact_in_prompt = right_when_recalled = 0
    for name, session in runs.items():
        assert (session.memory is not None) == (name == "with_memory")
        right, seconds = 0, []
        for case in cases:
            session.new_conversation()
            started = time.perf_counter()
            stats = session.ask(case["question"])
            seconds.append(time.perf_counter() - started)
            ok = correct(stats.answer, case["answer_keywords"])
            right += ok
            if name == "with_memory":
                recalled = [item["text"] for item in (stats.memory or {}).get("recalled", [])]
                if case["fact"] in recalled:
                    fact_in_prompt += 1
                    right_when_recalled += ok
            if verbose and not ok:
                print(f"  [{name}] {case['id']}: {case['question']!r} -> {' '.join(stats.answer.split())!r}")
        figures[name] = right / len(cases)
        figures[f"{name}_right"] = right
        figures[f"{name}_seconds_p50"] = statistics.median(seconds)
        session.close()
    figures["fact_in_prompt"] = fact_in_prompt / len(cases)
    figures["with_memory_right_when_fact_in_prompt"] = right_when_recalled / fact_in_prompt if fact_in_prompt else None
    return figures


# -- latency ---------------------------------------------------------------------------------

_PEOPLE = [
    "sister",
    "brother",
    "mother",
    "father",
    "son",
    "daughter",
    "partner",
    "cousin",
    "neighbour",
    "manager",
    "colleague",
    "best friend",
    "aunt",
    "uncle",
    "grandmother",
    "landlord",
    "dentist",
    "coach",
]
_NAMES = [
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elif",
    "Farid",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemi",
    "Luca",
    "Mira",
    "Nils",
    "Omar",
    "Paula",
    "Quinn",
    "Rosa",
    "Sami",
    "Tomas",
    "Uma",
    "Vera",
    "Wen",
    "Yusuf",
    "Zoe",
]
_DOES = [
    "lives in {place}",
    "works at a {place} hospital",
    "is moving to {place}",
    "studies law in {place}",
    "runs a bakery in {place}",
    "visits every {day}",
    "is allergic to {food}",
    "cannot eat {food}",
    "has a birthday on {day}",
    "plays {sport} on {day}s",
    "is learning {language}",
    "speaks {language}",
    "teaches {sport}",
    "hates {food}",
    "loves {food}",
]
_PLACES = [
    "Porto",
    "Leeds",
    "Kyoto",
    "Austin",
    "Graz",
    "Lyon",
    "Tartu",
    "Cork",
    "Bergen",
    "Malmo",
    "Quito",
    "Perth",
    "Cusco",
    "Ghent",
    "Riga",
    "Split",
    "Turin",
    "Oslo",
    "Nantes",
    "Bilbao",
]
_DAYS = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "May 3",
    "July 19",
    "August 30",
    "December 12",
    "January 7",
]
_FOODS = [
    "shellfish",
    "gluten",
    "mushrooms",
    "coriander",
    "olives",
    "sesame",
    "eggs",
    "soy",
    "spicy food",
    "blue cheese",
    "aubergine",
    "strawberries",
]
_SPORTS = ["tennis", "chess", "volleyball", "climbing", "squash", "table tennis", "rowing", "football", "judo"]
_LANGUAGES = ["Polish", "Korean", "Spanish", "Greek", "Arabic", "Dutch", "Swahili", "Finnish", "Hindi", "Italian"]
_TASKS = [
    "rename a branch",
    "merge two spreadsheets",
    "plan a three-day trip",
    "fix a leaking tap",
    "write a cover letter",
    "bake sourdough bread",
    "set up a budget",
    "train for a 10 km run",
    "prune a rose bush",
    "back up a phone",
    "learn to juggle",
    "cook risotto",
    "tune a guitar",
    "change a bike tyre",
    "write a haiku",
    "brew cold brew coffee",
    "clean a cast iron pan",
    "negotiate a salary",
    "start a compost heap",
    "repot a cactus",
]
_TOOLS = [
    "git",
    "Excel",
    "a paper notebook",
    "Python",
    "a calendar app",
    "plain English",
    "a spreadsheet",
    "five steps",
    "ten minutes",
    "a checklist",
    "the terminal",
    "a short list",
]
_STEPS = [
    "start with the smallest piece and check it before moving on",
    "write down what you have first, then change one thing at a time",
    "make a copy before you begin so you can go back",
    "set a timer and stop when it rings, then review",
    "follow the order given and keep notes of anything unusual",
    "ask someone who has done it before to look over your plan",
]


def generated_texts(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` distinct varied facts and exchanges, about half of each."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    attempts = 0
    while len(rows) < count:
        attempts += 1
        if attempts > 20 * count + 1000:
            raise RuntimeError(f"the templates give fewer than {count} distinct texts")
        if len(rows) % 2 == 0:
            template = rng.choice(_DOES)
            text = f"The user's {rng.choice(_PEOPLE)} {rng.choice(_NAMES)} " + template.format(
                place=rng.choice(_PLACES), day=rng.choice(_DAYS), food=rng.choice(_FOODS),
                sport=rng.choice(_SPORTS), language=rng.choice(_LANGUAGES),
            )  # fmt: skip
            kind = "fact"
        else:
            task, tool, step, day = rng.choice(_TASKS), rng.choice(_TOOLS), rng.choice(_STEPS), rng.choice(_DAYS)
            text = (
                f"User: How do I {task} with {tool} before {day}?\nAssistant: To {task} with {tool} by {day}, {step}."
            )
            kind = "exchange"
        if text not in seen:
            seen.add(text)
            rows.append({"kind": kind, "text": text})
    return rows


def query_texts(cases: list[dict[str, Any]], count: int = QUERIES, seed: int = 1) -> list[str]:
    """The set's questions, then generated ones, ``count`` distinct texts in all."""
    rng = random.Random(seed)
    queries = list(dict.fromkeys(case["question"] for case in cases))[:count]
    while len(queries) < count:
        text = rng.choice([
            f"Where does my {rng.choice(_PEOPLE)} live these days?",
            f"What should I cook when {rng.choice(_NAMES)} visits, given what they cannot eat?",
            f"Can you remind me how to {rng.choice(_TASKS)}?",
            f"Which day does my {rng.choice(_PEOPLE)} play {rng.choice(_SPORTS)}?",
            f"Is {rng.choice(_FOODS)} something I should avoid at dinner with {rng.choice(_NAMES)}?",
        ])  # fmt: skip
        if text not in queries:
            queries.append(text)
    return queries


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


def time_searches(search: Callable[[Any], object], queries: list[Any], warm_up: list[Any]) -> dict[str, float]:
    for query in warm_up:
        search(query)  # loads the index and the model; not timed
    samples = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def measure(store: Any, vectors: list[Any], queries: list[str]) -> dict[str, Any]:
    """p50/p95 of recall's search on ``store``: by precomputed embedding, then by text (embedding included)."""
    settings = search_settings()
    by_embedding = time_searches(lambda vector: store.search(embedding=vector, **settings), vectors, vectors[:5])
    store.embedding_function.embedder.clear_cache()  # every timed query is embedded: none was seen before
    warm_up = [f"warm-up question number {i} about nothing in particular" for i in range(5)]
    by_text = time_searches(lambda text: store.search(text, **settings), queries, warm_up)
    return {"by_embedding_ms": by_embedding, "by_text_ms": by_text}


def latency_figures(pool: list[dict[str, Any]], items: int, queries: list[str], folder: Path) -> dict[str, Any]:
    from slmchat.infra.embedding import default_embedder
    from slmchat.memory.store import MemoryStore

    settings = search_settings()
    router = default_embedder()  # the router's embedder: its vector is what a turn hands to recall
    vectors = list(router.embed(queries))
    figures: dict[str, Any] = {"queries": len(queries), "k": settings["k"]}
    for label, size in (("baseline", BASELINE_ITEMS), ("store", items)):
        rows = pool[:size]
        if len(rows) < size:
            raise SystemExit(f"only {len(rows)} texts for a store of {size}")
        store = MemoryStore.open(folder / f"latency-{size}")
        try:
            build_s = fill_store(store, rows)
            figures[label] = {"items": store.count(), "build_s": build_s, **measure(store, vectors, queries)}
        finally:
            store.close()
    for way in ("by_embedding_ms", "by_text_ms"):
        figures[f"{way.removesuffix('_ms')}_p50_ratio"] = figures["store"][way]["p50"] / figures["baseline"][way]["p50"]
    return figures


# -- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from slmchat.memory.store import MemoryStore

    cases = load_cases(args.data)
    exchanges = dialog_exchanges(cases, args.dialogs) if args.dialogs.is_dir() else []
    result: dict[str, Any] = {"cases": len(cases)}
    with tempfile.TemporaryDirectory(prefix="slmchat-bench-memory-") as tmp:
        folder = Path(tmp)
        store = MemoryStore.open(folder / "recall")
        try:
            build_s = fill_store(store, fact_rows(cases) + exchanges)
            recall: dict[str, Any] = {
                "facts": store.count("fact"), "exchanges": store.count("exchange"), "build_s": build_s,
            }  # fmt: skip
            for name, settings in recall_variants().items():
                recall[name] = recall_figures(store, cases, settings)
            print_recall(recall, args.verbose)
            result["recall"] = recall
            if not args.skip_answers:
                result["answers"] = answer_figures(store, cases, folder, args.verbose)
                print_answers(result["answers"])
        finally:
            store.close()
        if args.latency_items:
            pool = fact_rows(cases) + exchanges
            pool += generated_texts(max(0, args.latency_items - len(pool)))
            result["latency"] = latency_figures(pool, args.latency_items, query_texts(cases), folder)
            print_latency(result["latency"])
    for name in recall_variants():
        figures = result["recall"][name]
        figures["missed"] = [miss["id"] for miss in figures.pop("misses") if miss["rank"] is None]
    return result


def print_recall(recall: dict[str, Any], verbose: bool) -> None:
    print(f"recall over {recall['facts']} facts + {recall['exchanges']} dialog exchanges "
          f"(built in {recall['build_s']:.1f} s), {recall['search']['n']} questions")  # fmt: skip
    labels = {
        "search": "search(k=5, both kinds)",
        "engine": "engine (3 fact slots, min 0.2)",
        "facts_only": "facts only (no exchanges)",
    }
    print(f"  {'':<28}{'R@1':>7}{'R@5':>7}{'MRR@5':>7}")
    for name, label in labels.items():
        figures = recall[name]
        print(f"  {label:<28}{figures['recall_at_1']:>7.3f}{figures['recall_at_5']:>7.3f}{figures['mrr_at_5']:>7.3f}")
    for miss in recall["search"]["misses"]:
        if verbose or miss["rank"] is None:
            print(f"  [search] rank {miss['rank']}: {miss['id']} {miss['question']!r} -> {miss['got']}")


def print_answers(answers: dict[str, Any]) -> None:
    n = answers["n"]
    print(f"answers of {answers['model']} (temperature 0, seed 0, {answers['max_tokens']} tokens, no tools), n={n}")
    for name in ("with_memory", "without_memory"):
        print(f"  {name.replace('_', ' '):<26}{answers[name]:.3f} ({answers[name + '_right']}/{n}), "
              f"p50 {answers[name + '_seconds_p50']:.2f} s per question")  # fmt: skip
    print(f"  {'fact in the prompt':<26}{answers['fact_in_prompt']:.3f}")
    when = answers["with_memory_right_when_fact_in_prompt"]
    print(f"  {'right when it was':<26}{'n/a' if when is None else f'{when:.3f}'}")


def print_latency(latency: dict[str, Any]) -> None:
    base, big = latency["baseline"], latency["store"]
    print(f"recall latency in ms, {latency['queries']} queries, k={latency['k']} over facts and exchanges "
          "(emb: by the turn's precomputed embedding; text: embedding included)")  # fmt: skip
    print(f"  {'':<26}{'items':>7}{'build s':>9}{'emb p50':>9}{'emb p95':>9}{'text p50':>10}{'text p95':>10}")
    for label, figures in (("baseline", base), ("store", big)):
        e, t = figures["by_embedding_ms"], figures["by_text_ms"]
        print(f"  {label:<26}{figures['items']:>7}{figures['build_s']:>9.1f}{e['p50']:>9.2f}{e['p95']:>9.2f}"
              f"{t['p50']:>10.2f}{t['p95']:>10.2f}")  # fmt: skip
    print(f"  {'p50 ratio store/baseline':<26}by embedding {latency['by_embedding_p50_ratio']:.2f}x, "
          f"by text {latency['by_text_p50_ratio']:.2f}x")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the recall set (default tests/data/...)")
    parser.add_argument("--dialogs", type=Path, default=DIALOGS, help="the shared dialogs folder")
    parser.add_argument("--latency-items", type=int, default=10_000, help="items in the latency store (0: skip)")
    parser.add_argument("--skip-answers", action="store_true", help="do not run the model")
    parser.add_argument("--verbose", action="store_true", help="print every miss and every wrong answer")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, separators=(",", ":"), default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
