"""The stored conversations as a face sees them: list, rename, delete, export, resume.

Faces never touch the history store; they call these. Every function here reads or writes
SQLite (and ``export`` a file), so async code calls them off its event loop, e.g.
``await asyncio.to_thread(resume, session, cid)``. A conversation is named by its id or an
unambiguous prefix of it; an unknown one is a ``SlmchatError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from slmchat.engine.events import Event, TurnDone, TurnStats, event_from_dict
from slmchat.engine.transcript import conversation_json, conversation_markdown, dumps
from slmchat.infra import paths
from slmchat.infra.errors import SlmchatError

if TYPE_CHECKING:  # only annotations: the session's modules load in the thread that builds it
    from slmchat.engine.session import Session

#: titles longer than this are cut: a title is a line in a list, not a summary
TITLE_MAX_CHARS = 80

ExportFormat = Literal["markdown", "json"]
_SUFFIXES: dict[str, str] = {"markdown": "md", "json": "json"}


@dataclass(frozen=True)
class ConversationSummary:
    """One line of the conversations list; ``current`` is the one the session has open."""

    id: str
    title: str
    updated_at: float
    turns: int
    current: bool


@dataclass(frozen=True)
class PastTurn:
    """A stored turn, as a face redraws it: the texts, how it ended and the events it yielded."""

    turn_id: int
    created_at: float
    user_text: str
    answer: str
    status: str  # ok | interrupted | failed
    error: str | None
    events: tuple[Event, ...]

    @property
    def stats(self) -> TurnStats | None:
        """The turn's figures from its ``TurnDone`` (None for a failed turn)."""
        return next((e.stats for e in self.events if isinstance(e, TurnDone)), None)


def list_conversations(session: Session, limit: int = 200) -> list[ConversationSummary]:
    """The most recently updated conversations first. A new session's conversation is not in it
    until its first turn is stored."""
    return [
        ConversationSummary(row.id, row.title, row.updated_at, row.turns, row.id == session.conversation_id)
        for row in session.store.conversations(limit)
    ]


def rename(session: Session, cid: str, title: str) -> str:
    """Give a conversation the user's title (one line, at most ``TITLE_MAX_CHARS``); returns it."""
    clean = " ".join(title.split())[:TITLE_MAX_CHARS].rstrip()
    if not clean:
        raise SlmchatError("a title cannot be empty", "type a few words, or press Esc to keep the old title")
    session.store.rename_conversation(session.store.find_conversation(cid), clean)
    return clean


def delete(session: Session, cid: str) -> int:
    """Delete a conversation with its turns; returns how many turns went.

    Deleting the open conversation starts a new one in the session; other conversations are untouched.
    """
    cid = session.store.find_conversation(cid)
    current = cid == session.conversation_id
    if current:
        _refuse_during_turn(session, "delete the open conversation")
    deleted = session.store.delete_conversation(cid)
    if current:
        session.new_conversation()
    return deleted


def export(session: Session, cid: str, fmt: ExportFormat, path: Path | None = None) -> Path:
    """Write a conversation as Markdown or JSON; returns the file written.

    Default: ``<data dir>/exports/<first 8 of the id>.md|json``. An existing file is never
    replaced: the name gets ``-1``, ``-2``, ... instead.
    """
    if fmt not in _SUFFIXES:
        raise SlmchatError(f"unknown export format {fmt!r}", "use markdown or json")
    cid = session.store.find_conversation(cid)
    if fmt == "markdown":
        text = conversation_markdown(session.store, cid)
    else:
        text = dumps(conversation_json(session.store, cid)) + "\n"
    target = path or paths.data_dir() / "exports" / f"{cid[:8]}.{_SUFFIXES[fmt]}"
    return _write_new(target, text)


def resume(session: Session, cid: str) -> list[PastTurn]:
    """Make ``cid`` the session's conversation (its history goes with the next turn) and return
    its turns, oldest first, for the face to redraw. Turns set aside are left out, as they are
    from the history; stored events this version cannot rebuild are left out of ``events``.
    """
    _refuse_during_turn(session, "switch conversations")
    cid = session.switch_conversation(cid)
    past = []
    for row in session.store.turns(cid):
        if row["superseded"]:
            continue
        events = []
        for data in session.store.events(row["id"]):
            try:
                events.append(event_from_dict(data))
            except (ValueError, TypeError, KeyError):
                continue  # written by another version of slmchat: the texts still show
        past.append(
            PastTurn(
                row["id"],
                row["created_at"],
                row["user_text"],
                row["answer"],
                row["status"],
                row["error"],
                tuple(events),
            )
        )
    return past


def _refuse_during_turn(session: Session, what: str) -> None:
    if session.turn_running:
        raise SlmchatError(f"cannot {what} while an answer is coming", "wait for it or cancel it first")


def _write_new(target: Path, text: str) -> Path:
    """Create ``target`` (or ``name-1.ext``, ``name-2.ext``, ... if it exists) without a race."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            candidate = target if n == 0 else target.with_name(f"{target.stem}-{n}{target.suffix}")
            try:
                with candidate.open("x", encoding="utf-8") as out:
                    out.write(text)
            except FileExistsError:
                continue
            return candidate
    except OSError as exc:
        raise SlmchatError(f"cannot write {target}: {exc.strerror or exc}", "choose a folder you can write to") from exc
    raise SlmchatError(f"{target} and 999 numbered copies exist already", "move old exports aside")
