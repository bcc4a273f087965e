"""`slmchat eval tools`: tool calling on BFCL files with the embedded model (or any tier)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from slmchat.eval.cli import eval_group
from slmchat.infra.errors import SlmchatError


@eval_group.command("tools")
@click.argument("questions", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--answers", type=click.Path(dir_okay=False, path_type=Path), help="BFCL possible_answer file.")
@click.option("--prompt", "style", type=click.Choice(["compact", "json"]), default="compact", show_default=True)
@click.option("--no-constrain", is_flag=True, help="Let the model write freely instead of grammar-constrained JSON.")
@click.option("--no-gate", is_flag=True, help="Offer every function, not only those relevant to the question.")
@click.option("--no-ground", is_flag=True, help="Keep calls whose values are not in the question.")
@click.option("--spans", is_flag=True, help="A free string argument must be a run of the question's words.")
@click.option("--no-fill-named", is_flag=True, help="Let the model leave out optional parameters the question names.")
@click.option("--split", type=click.Choice(["tune", "heldout", "all"]), default="all", show_default=True,
              help="Only the items of this side of the tuning split (slmchat.eval.bfcl.in_split).")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N items (of the split).")
@click.option("--model", help="backend:model to test (default: the tier's model from the config).")
@click.option("--tier", type=click.Choice(["small", "large"]), default="small", show_default=True,
              help="Whose settings (server, options) to use.")  # fmt: skip
@click.option("--max-tokens", default=256, show_default=True, type=click.IntRange(min=16))
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), help="Write raw model replies (JSON lines).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def tools(
    questions: Path,
    answers: Path | None,
    style: str,
    no_constrain: bool,
    no_gate: bool,
    no_ground: bool,
    spans: bool,
    no_fill_named: bool,
    split: str,
    limit: int | None,
    model: str | None,
    tier: str,
    max_tokens: int,
    record: Path | None,
    as_json: bool,
) -> None:
    """Score the first tool call on a BFCL questions file (BFCL's AST rules).

    Without --answers (irrelevance), scores that no tool is called. The prompt is the same
    agent loop the chat uses, with its recovery templates, stopped at the first valid call.
    """
    from slmchat.eval.bfcl import load_bfcl
    from slmchat.eval.tools_eval import run_item, summarize, write_record
    from slmchat.infra.backends import create_backend, parse_model_name
    from slmchat.infra.config import load_config

    items = load_bfcl(questions, answers, limit, split)
    config = load_config()
    cfg = config.small if tier == "small" else config.large
    if cfg is None and model is None:
        raise SlmchatError(f"no {tier} tier is configured", "pass --model, or add the tier to the config")
    ref = parse_model_name(model or cfg.model, config.aliases)  # type: ignore[union-attr]
    options = {"base_url": cfg.base_url, "timeout_s": cfg.timeout_s, **cfg.options} if cfg else {}
    if cfg and cfg.api_key_env:
        options["api_key_env"] = cfg.api_key_env
    backend = create_backend(ref, options)

    async def run_all() -> list:
        await backend.load()
        results = []
        try:
            for index, item in enumerate(items, 1):
                result = await run_item(
                    backend,
                    item,
                    style=style,
                    constrain=not no_constrain,
                    max_tokens=max_tokens,
                    gate=not no_gate,  # type: ignore[arg-type]
                    ground=not no_ground,
                    spans=spans,
                    fill_named=not no_fill_named,
                )
                results.append(result)
                if not as_json and sys.stderr.isatty():
                    click.echo(f"\r{index}/{len(items)} {sum(r.ok for r in results)} ok", nl=False, err=True)
        finally:
            await backend.aclose()
        return results

    results = asyncio.run(run_all())
    if record:
        write_record(record, results)
    summary = summarize(results, irrelevance=answers is None)
    summary.update(
        file=questions.name, split=split, model=str(ref), prompt=style, constrained=not no_constrain,
        gate=not no_gate, ground=not no_ground,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    if sys.stderr.isatty():
        click.echo("", err=True)
    score = "no-call rate" if answers is None else "accuracy"
    value = summary.get("no_call_rate", summary.get("accuracy"))
    click.echo(f"{questions.name} ({split}): {summary['n']} items, {score} {value:.1%} ({style} prompt, "
               f"{'constrained' if not no_constrain else 'unconstrained'}, {ref})")  # fmt: skip
    click.echo(f"  tool section {summary['tool_tokens_mean']:.0f} tokens (JSON schema: "
               f"{summary['json_tool_tokens_mean']:.0f}); prompt {summary['prompt_tokens_mean']:.0f}, "
               f"completion {summary['completion_tokens_mean']:.0f} tokens per item")  # fmt: skip
    click.echo(f"  {summary['seconds_per_item']:.2f} s/item, {summary['model_calls_mean']:.2f} model calls/item, "
               f"{summary['recoveries']} recoveries, ended: {summary['terminations']}")  # fmt: skip
    missed, wrong = summary["missed_call_rate"], summary["wrong_call_rate"]
    click.echo(f"  missed calls {'-' if missed is None else f'{missed:.1%}'} (relevant items, no call), "
               f"wrong calls {'-' if wrong is None else f'{wrong:.1%}'} (irrelevant items, a call); "
               f"{summary['dropped_calls']} calls dropped as not grounded")  # fmt: skip
    if summary["failures"]:
        click.echo(f"  failures: {summary['failures']}")
