"""`slmchat eval`: offline evaluation commands. Heavy imports happen inside the commands."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from slmchat.infra.errors import SlmchatError

if TYPE_CHECKING:
    from slmchat.eval.routing_data import RoutingData
    from slmchat.eval.routing_metrics import RoutingResult

METRICS = ("apgr", "cpt50", "cpt80", "share_at_95", "cost_saved_at_95")
FILE_ORACLE = (
    "labels: every prompt scored with its file's mean gain (a router that knows only each file's need), pooled"
)
_HEADER = f"  {'router':<16}{'APGR':>8}{'CPT(50%)':>10}{'CPT(80%)':>10}{'strong@95%':>12}{'saved@95%':>11}"


@click.group("eval")
def eval_group() -> None:
    """Evaluate slmchat's parts offline on recorded data."""


@eval_group.command("routing")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write quality vs strong share as a PNG.")
@click.option("--repeats", default=20, show_default=True, type=click.IntRange(min=1), help="Runs of the random router.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2), help="k for routers that train.")
@click.option("--router", "names", multiple=True, help="Registered router to evaluate (repeatable; default: all).")
@click.option("--cross-file", is_flag=True, help="Evaluate trained routers leave-one-file-out instead of k-fold.")
@click.option("--seed", default=0, show_default=True, help="Seed for the random router and the fold shuffle.")
@click.option(
    "--cost-ratio",
    type=click.FloatRange(min=0, min_open=True),
    help="Strong cost per call / weak cost per call (default: the weak model is free).",
)
@click.option("--keep-contaminated", is_flag=True, help="Keep prompts listed in contaminated_prompts.jsonl.")
@click.option("--pooled", "pool", is_flag=True, help="Also rank all reported files' scores together as one population.")
@click.option(
    "--split",
    type=click.Choice(["all", "tuning", "held-out"]),
    default="all",
    show_default=True,
    help="Report on the tuning files only (trained among them) or the held-out ones (trained on all others).",
)
def routing(
    files: tuple[Path, ...],
    as_json: bool,
    plot: Path | None,
    repeats: int,
    folds: int,
    names: tuple[str, ...],
    cross_file: bool,
    seed: int,
    cost_ratio: float | None,
    keep_contaminated: bool,
    pool: bool,
    split: str,
) -> None:
    """Score routers on routing CSVs (prompt, weak correct, strong correct): APGR, CPT, cost saved.

    Shows per file the random router (mean of --repeats runs), prompt length in characters, each
    registered router and the oracle (the ceiling), then the unweighted mean over files, and with
    --pooled all reported files ranked together. --split divides the files by SPLIT_RULE (file names).
    """
    import numpy as np

    from slmchat.eval.routing_data import SPLIT_RULE, load_routing_csv, split_files
    from slmchat.eval.routing_metrics import ROUTERS, evaluate_baselines, evaluate_router, evaluate_scores, pooled
    from slmchat.eval.train_router import register_eval_routers

    register_eval_routers()

    unknown = [name for name in names if name not in ROUTERS]
    if unknown:
        raise SlmchatError(
            f"no registered router named {', '.join(unknown)}",
            f"registered: {', '.join(sorted(ROUTERS)) or 'none'} (random, length and oracle always run)",
        )
    tuning, held_out = split_files(list(files))
    if split != "all" and not (tuning if split == "tuning" else held_out):
        raise SlmchatError(f"no {split} files among the {len(files)} given", f"the rule: {SPLIT_RULE}")
    paths = tuning if split == "tuning" else list(files)  # held-out files train on all the others
    datasets = [load_routing_csv(path, exclude_contaminated=not keep_contaminated) for path in paths]
    tested = [i for i, path in enumerate(paths) if split != "held-out" or path in held_out]
    reported = [datasets[i] for i in tested] + ([pooled([datasets[i] for i in tested])] if pool else [])
    per_file = [evaluate_baselines(d, repeats=repeats, seed=seed, cost_ratio=cost_ratio) for d in reported]
    for name in names or sorted(ROUTERS):
        try:
            results = evaluate_router(
                name,
                ROUTERS[name],
                datasets,
                cross_file=cross_file,
                k=folds,
                seed=seed,
                cost_ratio=cost_ratio,
                tested=tested,
                pool=pool,
            )
        except ValueError as exc:
            raise SlmchatError(f"router {name!r}: {exc}") from exc
        for row, result in zip(per_file, results, strict=True):
            row.insert(-1, result)  # the oracle stays last
    if pool:  # the most a per-file term (calibration, a subject's difficulty) could add: each file's mean gain
        gains = [np.full(len(datasets[i]), float(np.mean(datasets[i].strong - datasets[i].weak))) for i in tested]
        whole = reported[-1]
        per_file[-1].insert(-1, evaluate_scores(np.concatenate(gains), whole.weak, whole.strong, router="file-oracle",
                                                protocol=FILE_ORACLE, cost_ratio=cost_ratio))  # fmt: skip
    report = _report(reported[: len(tested)], per_file[: len(tested)])
    if pool:
        report["pooled"] = _report(reported[-1:], per_file[-1:])["files"][0]
    report["settings"] = {
        "repeats": repeats,
        "folds": folds,
        "seed": seed,
        "cross_file": cross_file,
        "cost_ratio": cost_ratio,
        "length_unit": "characters",
        "exclude_contaminated": not keep_contaminated,
        "pooled": pool,
        "split": split,
        "split_rule": SPLIT_RULE,
        "tuning_files": [path.stem for path in tuning],
        "held_out_files": [path.stem for path in held_out],
    }
    if plot:
        _plot(reported, per_file, plot)  # with --pooled, the pooled curve is the last panel
    click.echo(json.dumps(report, indent=2) if as_json else _text(report))
    if plot and not as_json:
        click.echo(f"wrote {plot}")


def _report(datasets: Sequence[RoutingData], per_file: Sequence[Sequence[RoutingResult]]) -> dict[str, Any]:
    files = []
    for data, results in zip(datasets, per_file, strict=True):
        routers = {r.router: {k: v for k, v in r.summary().items() if k not in ("router", "n")} for r in results}
        files.append(
            {
                "name": data.name,
                "path": str(data.path),
                "n": len(data),
                "excluded_contaminated": data.excluded,
                "weak_model": data.weak_model,
                "strong_model": data.strong_model,
                "weak_quality": float(data.weak.mean()),
                "strong_quality": float(data.strong.mean()),
                "routers": routers,
            }
        )
    average: dict[str, Any] = {
        "files": len(files),
        "weighting": "unweighted mean over files; a metric's mean skips files where it is undefined",
        "weak_quality": _mean([f["weak_quality"] for f in files]),
        "strong_quality": _mean([f["strong_quality"] for f in files]),
        "routers": {
            name: {m: _mean([f["routers"][name][m] for f in files]) for m in METRICS} for name in files[0]["routers"]
        },
    }
    protocols = {r.router: r.protocol for r in per_file[0]}
    return {"files": files, "average": average, "protocols": protocols}


def _text(report: dict[str, Any]) -> str:
    lines = []
    for f in report["files"]:
        dropped = f", {f['excluded_contaminated']} contaminated dropped" if f["excluded_contaminated"] else ""
        lines.append(
            f"{f['name']}: n={f['n']}{dropped}; weak {f['weak_quality']:.3f} ({f['weak_model']}), "
            f"strong {f['strong_quality']:.3f} ({f['strong_model']})"
        )
        if f["strong_quality"] <= f["weak_quality"]:
            lines.append("  the strong model is not better here: PGR, APGR and CPT are undefined (n/a)")
        lines += [_HEADER, *(_row(name, m) for name, m in f["routers"].items()), ""]
    avg = report["average"]
    lines.append(
        f"average over {avg['files']} file{'s' * (avg['files'] != 1)} (unweighted): "
        f"weak {avg['weak_quality']:.3f}, strong {avg['strong_quality']:.3f}"
    )
    lines += [_HEADER, *(_row(name, m) for name, m in avg["routers"].items()), ""]
    if "pooled" in report:
        p = report["pooled"]
        lines.append(
            f"pooled: the {avg['files']} files' scores ranked together, n={p['n']}; "
            f"weak {p['weak_quality']:.3f}, strong {p['strong_quality']:.3f}"
        )
        lines += [_HEADER, *(_row(name, m) for name, m in p["routers"].items()), ""]
    if report.get("settings", {}).get("split", "all") != "all":
        s = report["settings"]
        lines.append(f"split: {s['split']} ({s['split_rule']})")
    lines.append("CPT(x%): least share of strong calls with PGR >= x%; strong@95%: least share reaching 95% of")
    lines.append("strong quality; saved@95%: cost saved there vs all-strong. Averages skip n/a. Protocols:")
    lines += [f"  {name}: {protocol}" for name, protocol in report["protocols"].items()]
    if "pooled" in report:
        lines.append(f"  file-oracle: {FILE_ORACLE}")
    return "\n".join(lines)


def _row(name: str, m: dict[str, Any]) -> str:
    apgr = "n/a" if m["apgr"] is None else f"{m['apgr']:.3f}"
    pct = ["n/a" if m[k] is None else f"{100 * m[k]:.1f}%" for k in METRICS[1:]]
    return f"  {name:<16}{apgr:>8}{pct[0]:>10}{pct[1]:>10}{pct[2]:>12}{pct[3]:>11}"


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def _plot(datasets: Sequence[RoutingData], per_file: Sequence[Sequence[RoutingResult]], out: Path) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise SlmchatError("--plot needs matplotlib, which is not installed", "pip install matplotlib") from exc
    cols = min(len(datasets), 5)
    rows = math.ceil(len(datasets) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    styles = {"random": {"color": "grey", "linestyle": "--"}, "oracle": {"color": "black", "linestyle": ":"}}
    for i, (data, results) in enumerate(zip(datasets, per_file, strict=True)):
        ax = fig.add_subplot(rows, cols, i + 1)
        for result in results:
            ax.plot(result.shares, result.quality, label=result.router, linewidth=1.2, **styles.get(result.router, {}))
        ax.axhline(0.95 * float(data.strong.mean()), color="tab:red", linewidth=0.6, alpha=0.5)
        ax.set_title(f"{data.name} (n={len(data)})", fontsize=9)
        ax.set_xlabel("share of strong calls", fontsize=8)
        ax.set_ylabel("quality", fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7, title="red: 95% of strong", title_fontsize=7)
    try:
        fig.savefig(out, format="png", dpi=100)
    except OSError as exc:
        hint = "check the folder exists and is writable"
        raise SlmchatError(f"cannot write {out}: {exc.strerror or exc}", hint) from exc


from slmchat.eval import tools_cli  # noqa: E402, F401  (registers `eval tools` on this group)
