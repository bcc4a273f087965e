"""`slmchat memory`: see, search, forget, export and import what slmchat remembers."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click

from slmchat.faces.terminal_text import json_text, printable
from slmchat.infra.errors import SlmchatError


def _store() -> Any:
    """The configured memory store (a context manager that closes it)."""
    from slmchat.infra.config import load_config
    from slmchat.memory.store import MemoryStore

    config = load_config().memory
    return MemoryStore.open(config.path, config.url)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _line(row: dict[str, Any]) -> str:
    """One table row; stored text is data, so control characters and newlines are shown, not obeyed."""
    source = f"turn {row['turn_id']}" if row.get("turn_id") is not None else str(row.get("source", ""))
    score = f"  ({row['similarity']:.2f})" if "similarity" in row else ""
    cells = [printable(str(cell), one_line=True) for cell in (row["id"][:12], row["kind"], source, row["text"])]
    return f"{cells[0]}  {cells[1]:<8} {_when(row['updated_at'])}  {cells[2]:<10} {cells[3]}{score}"


def _json(data: Any) -> str:
    """JSON that is safe on a terminal and encodable: json escapes C0 controls, this the rest."""
    return json_text(data, indent=2)


def _echo(rows: list[dict[str, Any]], as_json: bool, empty: str) -> None:
    if as_json:
        click.echo(_json(rows))
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
    store = _store()
    rows = [item.to_dict() for item in store.items(kind, limit)]
    _echo(rows, as_json, "" if rows else _nothing(store, kind))  # counting the other kind only when empty


def _nothing(store: Any, kind: str | None) -> str:
    """What an empty list means: nothing at all, or nothing of this kind while the other kind exists."""
    other = {"fact": "exchange", "exchange": "fact"}.get(kind or "")
    if other is None:
        return "nothing remembered yet"
    if count := store.count(other):
        return f"no {kind}s remembered ({count} {other}{'' if count == 1 else 's'}: see `slmchat memory list`)"
    return f"no {kind}s remembered yet"


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
    text = _json(_store().export())
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
@click.pass_context
def import_memories(ctx: click.Context, source: Path) -> None:
    """Add memories from a file made by `slmchat memory export`, or JSON lines ("-" for stdin); ids are kept.

    Every row is checked before any is written. Stopped half way (Ctrl-C), the same command run
    again goes on where it stopped: rows already stored are skipped.
    """
    from slmchat.memory.importer import FileImport

    job: FileImport | None = None
    try:
        with _opener(source) as (open_file, name):
            job = FileImport(open_file, name)
            rows = job.check()
            with _store() as store:
                with _progress(rows) as advance:
                    report = job.write(store, advance)
    except KeyboardInterrupt:
        if job is not None and job.done:
            said = f"{job.done} of {job.rows} rows written; run the same command again to add the rest"
        else:
            said = "nothing was written"
        click.echo(f"import interrupted: {said}", err=True)
        ctx.exit(130)
    already = f" ({report.unchanged} were already there)" if report.unchanged else ""
    click.echo(f"imported {report.rows}{already}")


@contextmanager
def _opener(source: Path) -> Iterator[tuple[Callable[[], IO[bytes]], str]]:
    """A function that opens ``source`` for reading bytes, and its name; stdin is copied to a temporary file."""
    if str(source) == "-":
        with tempfile.TemporaryFile() as copy:
            shutil.copyfileobj(sys.stdin.buffer, copy, 1 << 20)

            def reopen() -> IO[bytes]:
                copy.seek(0)
                return _Unclosed(copy)  # type: ignore[return-value]

            yield reopen, "stdin"
        return

    def open_file() -> IO[bytes]:
        try:
            return source.open("rb")
        except OSError as exc:
            raise SlmchatError(f"cannot read {source}: {exc.strerror or exc}", "check the path") from exc

    yield open_file, str(source)


class _Unclosed:
    """The stdin copy for one pass: closing it (the end of a pass) leaves the copy open for the next."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def __enter__(self) -> _Unclosed:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@contextmanager
def _progress(rows: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for an import of more than one batch, when stderr is a terminal."""
    from slmchat.memory.store_writes import IMPORT_BATCH

    if rows <= IMPORT_BATCH or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=rows, label="importing", file=sys.stderr, show_pos=True) as bar:
        yield bar.update
