"""Pooled MMLU and GSM8K figures for the router, the way RouteLLM reports them (one pool per benchmark).

Run: python tests/bench/routing_pooled.py. Every prompt's score comes from a model that never saw it:
leave-one-file-out (trained on the other 29 files), and 5-fold cross-validation within its own file.
For the tuning/held-out split of issue 15 use `slmchat eval routing FILES --cross-file --pooled --split held-out`.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from slmchat.eval.routing_data import load_routing_csv
from slmchat.eval.routing_metrics import (
    RoutingResult,
    evaluate_scores,
    kfold_scores,
    leave_one_file_out_scores,
    length_scores,
)
from slmchat.infra.embedding import default_embedder
from slmchat.routing.train import EmbeddingCache, trainer

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "routing"


def line(r: RoutingResult) -> str:
    return (
        f"APGR {r.apgr:.3f}  CPT50 {r.cpt50:.3f}  CPT80 {r.cpt80:.3f}  "
        f"strong@95 {r.share_at_95:.3f}  saved@95 {r.cost_saved_at_95:.3f}"
    )


def main() -> None:
    datasets = [load_routing_csv(f) for f in sorted(glob.glob(str(DATA / "*" / "*.csv")))]
    fit = trainer(EmbeddingCache(default_embedder()).embed)
    lofo = leave_one_file_out_scores(datasets, fit)
    kfold = [kfold_scores(d.prompts, d.weak, d.strong, fit, k=5, seed=0) for d in datasets]
    groups = {
        "MMLU pooled (29 subjects)": [i for i, d in enumerate(datasets) if d.name.startswith("mmlu")],
        "GSM8K": [i for i, d in enumerate(datasets) if d.name.startswith("gsm8k")],
    }
    for name, idx in groups.items():
        prompts = [p for i in idx for p in datasets[i].prompts]
        weak = np.concatenate([datasets[i].weak for i in idx])
        strong = np.concatenate([datasets[i].strong for i in idx])
        rng = [np.random.default_rng(seed).random(len(prompts)) for seed in range(20)]
        random = [evaluate_scores(s, weak, strong, router="random") for s in rng]
        print(f"{name}: n={len(prompts)}, weak {weak.mean():.3f}, strong {strong.mean():.3f}")
        print(f"  random (20 runs)     APGR {np.mean([r.apgr for r in random]):.3f}  "
              f"saved@95 {np.mean([r.cost_saved_at_95 for r in random]):.3f}")  # fmt: skip
        print("  length              ", line(evaluate_scores(length_scores(prompts), weak, strong, router="length")))
        for label, scores in (("slmchat 5-fold      ", kfold), ("slmchat leave-1-out ", lofo)):
            pooled = np.concatenate([scores[i] for i in idx])
            print(f"  {label}", line(evaluate_scores(pooled, weak, strong, router="slmchat")))


if __name__ == "__main__":
    main()
