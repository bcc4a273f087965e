"""`slmchat memory`: see, search, forget, export and import what slmchat remembers."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from slmchat.infra.errors import SlmchatError


def _store() -> Any:
    from slmchat.infra.config import load_config
    from slmchat.memory.store import MemoryStore

    config = load_config().memory
    return MemoryStore.open(config.path, config.url)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _line(row: dict[str, Any]) -> str:
    source = f"turn {row['turn_id']}" if row.get("turn_id") is not None else row.get("source", "")
    score = f"  ({row['similarity']:.2f})" if "similarity" in row else ""
    return f"{row['id'][:12]}  {row['kind']:<8} {_when(row['updated_at'])}  {source:<10} {row['text']}{score}"


def _echo(rows: list[dict[str, Any]], as_json: bool, empty: str) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif not rows:
        click.echo(empty)
    else:
        for row in rows:
            click.echo(_line(row))


@click.group("memory")
def memory_group() -> None:
    """What slmchat remembers about you: facts and past exchanges (stored in Chroma)."""


@memory_group.command("list")
@click.option("--kind", type=click.Choice(["fact", "exchange"]), help="Only facts, or only exchanges.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_memories(kind: str | None, limit: int, as_json: bool) -> None:
    """The most recently updated memories first."""
    rows = [item.to_dict() for item in _store().items(kind, limit)]
    _echo(rows, as_json, "nothing remembered yet")


@memory_group.command("search")
@click.argument("query")
@click.option("--limit", "k", type=click.IntRange(min=1, max=100), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with similarity and score).")
def search(query: str, k: int, as_json: bool) -> None:
    """Memories most similar to QUERY, with their source turn and timestamps."""
    rows = [hit.to_dict() for hit in _store().search(query, k=k, recency_weight=0.0)]
    _echo(rows, as_json, f"nothing remembered about {query!r}")


@memory_group.command("forget")
@click.argument("ids", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
def forget(ids: tuple[str, ...], yes: bool) -> None:
    """Delete memories by ID (a unique prefix of 6 or more characters is enough)."""
    store = _store()
    full = _resolve(store, ids)
    for item_id in full:
        item = store.get(item_id)
        click.echo(_line(item.to_dict()))
    if not yes and not click.confirm(f"delete {len(full)} memor{'y' if len(full) == 1 else 'ies'}?", default=False):
        click.echo("nothing deleted")
        return
    click.echo(f"deleted {store.delete(full)}")


def _resolve(store: Any, ids: tuple[str, ...]) -> list[str]:
    known = [item.id for item in store.items(None, None)]
    found = []
    for prefix in ids:
        matches = [item_id for item_id in known if item_id.startswith(prefix)] if len(prefix) >= 6 else []
        if len(matches) != 1:
            problem = "matches nothing" if not matches else f"matches {len(matches)} memories"
            if len(prefix) < 6:
                problem = "is too short"
            raise SlmchatError(f"memory id {prefix!r} {problem}", "copy the id from `slmchat memory list`")
        found.append(matches[0])
    return found


@memory_group.command("export")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout)."
)
def export(output: Path | None) -> None:
    """Everything remembered, as JSON (to back up, or move to another machine)."""
    text = json.dumps(_store().export(), indent=2, ensure_ascii=False)
    if output is None:
        click.echo(text)
        return
    try:
        output.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise SlmchatError(f"cannot write {output}: {exc.strerror or exc}", "choose another file") from exc
    click.echo(f"wrote {output}", err=True)


@memory_group.command("import")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
def import_memories(source: Path) -> None:
    """Add memories from a file made by `slmchat memory export` ("-" for stdin); ids are kept."""
    try:
        text = sys.stdin.read() if str(source) == "-" else source.read_text(encoding="utf-8")
    except OSError as exc:
        raise SlmchatError(f"cannot read {source}: {exc.strerror or exc}", "check the path") from exc
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SlmchatError(f"{source} is not JSON: {exc}", "give a file made by `slmchat memory export`") from exc
    if not isinstance(rows, list):
        raise SlmchatError(f"{source} holds no list of memories", "give a file made by `slmchat memory export`")
    click.echo(f"imported {_store().import_items(rows)}")
