"""The options `ask` and the chat share, spelled as `llm` spells them, and the session they open.

``-m/--model``, ``-s/--system``, ``-c/--continue`` and ``--cid``; the older ``--new`` and
``--conversation`` still work.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from slmchat.infra.config import load_config
from slmchat.infra.errors import SlmchatError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SessionChoice:
    """What the user asked of the session: its small model, system prompt and conversation."""

    model: str | None = None
    system: str | None = None
    resume: bool | None = None  # True: -c/--continue, False: --new, None: neither given
    cid: str | None = None

    @property
    def given(self) -> bool:
        return any(value is not None for value in (self.model, self.system, self.resume, self.cid))


def session_options(function: F) -> F:
    """Add the shared options; the command receives them as one ``choice: SessionChoice``."""

    @functools.wraps(function)
    def wrapped(*args: Any, model: str | None, system: str | None, resume: bool | None, cid: str | None, **kw: Any):
        return function(*args, choice=SessionChoice(model, system, resume, cid), **kw)

    options = [
        click.option("-m", "--model", help="Model for the small tier on this run: backend:model or an alias."),
        click.option("-s", "--system", help="System prompt for this run (instead of the config's system_prompt)."),
        click.option(
            "-c",
            "--continue/--new",
            "resume",
            default=None,
            help="Continue the latest conversation, or start a new one (the default).",
        ),
        click.option(
            "--cid", "--conversation", "cid", metavar="ID", help="Continue the conversation with this id (or prefix)."
        ),
    ]
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[return-value]


def open_session(ctx: click.Context, choice: SessionChoice, **kwargs: Any) -> Any:
    """A ``Session`` for ``choice``: the config with this run's system prompt, the asked-for model.

    ``--cid`` wins over ``-c``; ``--new`` with ``--cid`` is refused.
    """
    from slmchat.engine.session import Session

    if choice.cid is not None and choice.resume is False:
        raise SlmchatError("--new and --cid contradict each other", "give --cid ID to continue that conversation")
    if choice.cid is not None and not choice.cid.strip():
        raise SlmchatError("--cid is empty", "copy an id from `slmchat history list`")
    config = load_config()
    if choice.system is not None:
        config = config.model_copy(update={"system_prompt": choice.system})
    session = Session(
        config,
        debug=ctx.obj["debug"],
        conversation_id=choice.cid,
        resume_latest=bool(choice.resume) and choice.cid is None,
        **kwargs,
    )
    if choice.model is not None:  # -m "" reaches set_model and is refused there
        try:
            session.set_model("small", choice.model)
        except Exception:
            session.close()
            raise
    return session
