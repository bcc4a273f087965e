"""Fit the router's weights on routing CSV files, and register slmchat's router with `eval routing`.

``python -m slmchat.eval.train_router FILE...`` writes ``slmchat/routing/router_weights.json``.
The fitting itself lives in ``slmchat.routing.train``; reading the evaluation data lives here,
so the runtime package never imports ``eval``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from slmchat.routing.scorer import WEIGHTS_FILE, RouterWeights
from slmchat.routing.train import DEFAULT_L2_EMBEDDING, EmbeddingCache, neighbour_trainer, train, trainer


def register_eval_routers() -> None:
    """Make slmchat's router available to `slmchat eval routing`, always retrained per split.

    The shipped weights saw every public file, so they are never scored on them; the harness
    trains a fresh model on each training split (k-fold, or leave-one-file-out).
    """
    from slmchat.eval.routing_metrics import ROUTERS, RouterSpec
    from slmchat.infra.embedding import default_embedder

    cache = EmbeddingCache(default_embedder())
    ROUTERS.setdefault(
        "slmchat",
        RouterSpec(trainer=trainer(cache.embed), description="factors + MiniLM embedding, logistic, retrained"),
    )
    ROUTERS.setdefault("factors-only", RouterSpec(trainer=trainer(None), description="the five factors, logistic"))
    ROUTERS.setdefault(
        "neighbours",
        RouterSpec(
            trainer=neighbour_trainer(cache.embed),
            description="share of the 300 nearest training prompts the weak model got wrong (evaluated, not shipped)",
        ),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m slmchat.eval.train_router", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="routing CSV files (prompt, weak, strong)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "routing" / WEIGHTS_FILE)
    parser.add_argument("--large-share", type=float, default=0.2)
    parser.add_argument("--l2-embedding", type=float, default=DEFAULT_L2_EMBEDDING)
    parser.add_argument("--no-embedding", action="store_true", help="factors only")
    parser.add_argument("--label", choices=["gain", "weak_wrong"], default="gain")
    args = parser.parse_args(argv)

    from slmchat.eval.routing_data import load_routing_csv
    from slmchat.infra.embedding import default_embedder

    datasets = [load_routing_csv(path) for path in args.files]
    prompts = [p for d in datasets for p in d.prompts]
    weak = np.concatenate([d.weak for d in datasets])
    strong = np.concatenate([d.strong for d in datasets])
    embed = None if args.no_embedding else EmbeddingCache(default_embedder()).embed
    weights = train(
        prompts, weak, strong, embed, l2_embedding=args.l2_embedding, large_share=args.large_share, label=args.label
    )
    weights = RouterWeights(
        weights.bias, weights.factors, weights.threshold, weights.embedding,
        f"{weights.source} from {len(datasets)} files",
        {**weights.extra, "files": [d.name for d in datasets], "embedding_max_tokens": default_embedder().max_tokens},
    )  # fmt: skip
    weights.save(args.out)
    print(f"wrote {args.out}: {len(prompts)} prompts, threshold {weights.threshold} for {args.large_share:.0%} large")


if __name__ == "__main__":
    import sys

    from slmchat.infra.errors import SlmchatError

    try:
        main()
    except SlmchatError as exc:
        sys.exit(f"error: {exc.message}" + (f"\n  fix: {exc.hint}" if exc.hint else ""))
