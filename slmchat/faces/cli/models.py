"""`slmchat models`: every model you can pick, by backend, and which one each tier runs."""

from __future__ import annotations

import json

import click

from slmchat.engine.models import BackendModels, ModelEntry, ModelList, TierModel, list_models, shorten


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def models(as_json: bool) -> None:
    """Built-in, Ollama and cached MLX models, aliases, and the small and large tiers.

    An Ollama server that does not answer within 2 s is shown as unreachable, with the reason.
    Pick one with `slmchat ask -m NAME`, `/model NAME` in the chat, or [small] model in the config.
    """
    listing = list_models()
    if as_json:
        click.echo(json.dumps(listing.to_dict(), indent=2, ensure_ascii=False))
        return
    click.echo(render(listing))
    for problem in listing.problems:
        click.echo(f"warning: {problem}", err=True)


def render(listing: ModelList) -> str:
    """The text table: the tiers, then each backend's models with the tiers that run them."""
    lines = [_tier_line(tier) for tier in listing.tiers]
    width = max((len(m.name) for m in listing.models), default=0)
    for group in listing.backends:
        lines += ["", _group_line(group)]
        if group.reason:
            lines.append(f"  {group.reason}")
        if group.hint:
            lines.append(f"  fix: {group.hint}")
        lines += [_model_line(model, width) for model in group.models]
        if not group.models and group.status == "ok":
            lines.append("  none found")
    return "\n".join(lines)


def _tier_line(tier: TierModel) -> str:
    if tier.configured is None:
        return f"{tier.tier:<5}  not configured"
    if tier.problem:
        return f"{tier.tier:<5}  {shorten(tier.configured)}: {tier.problem}"
    shown = tier.model if tier.configured == tier.model else f"{tier.configured} -> {tier.model}"
    return f"{tier.tier:<5}  {shown}"


def _group_line(group: BackendModels) -> str:
    status = "" if group.status in ("ok", "configured") else f": {group.status}"
    return f"{group.backend} ({group.where}){status}"


def _model_line(model: ModelEntry, width: int) -> str:
    parts = [", ".join(model.tiers)] if model.tiers else []
    if model.aliases:
        parts.append("alias " + ", ".join(model.aliases))
    if model.detail:
        parts.append(model.detail)
    if model.size_bytes:
        parts.append(_size(model.size_bytes))
    return f"  {model.name:<{width}}  {'  '.join(parts)}".rstrip()


def _size(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"
