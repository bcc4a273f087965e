"""``%%slm`` (a turn per cell, streamed in place, with its footer) and ``%slm`` (commands).

One ``Session`` per kernel, built on the first use from the config, like the CLI's; every cell
is a turn of the kernel's conversation in the same history store. Errors are one line with the
fix; ``%slm fix`` shows the last one's traceback.
"""

from __future__ import annotations

import atexit
import json
import re
import time
import traceback
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import JSON, Markdown, display

from slmchat.engine.commands import Command, Help, Prompt, parse_command, run_command
from slmchat.engine.events import ApprovalRequested, Escalated, Recovery, Token, TurnDone, TurnFailed, TurnStats
from slmchat.engine.transcript import code_blocks, footer_line, route_line
from slmchat.faces.notebook.cell_options import CellOptions, fill_in, parse_cell_line
from slmchat.faces.terminal_text import printable
from slmchat.infra.errors import SlmchatError
from slmchat.infra.redact import redact
from slmchat.memory.manager import question_of

if TYPE_CHECKING:
    from slmchat.engine.session import Session

REDRAW_S = 0.1  # the streaming display is updated at most this often (a frontend is not flooded)
LINE_HELP = """%slm COMMAND:
  models              the models you can use (what `slmchat models` lists)
  alias NAME MODEL    a short name for a model, for this kernel
  route [auto|small|large]   show or set where the following cells run
  history [N]         the last N exchanges of this kernel's conversation
  reset               a new conversation (the old one stays in the history)
  stats               this kernel's turns, spend and saving
  memory [on|off]     what is remembered, or use memory (or not)
  keys                which providers have a key, and where it comes from (never the key)
  fix                 the last error, with its traceback
  help                this text; %%slm --help lists the cell options"""


@magics_class
class SlmMagics(Magics):
    """The magics and the kernel's session."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._session: Session | None = None
        self.turns: list[TurnStats] = []
        self.last_error: tuple[str, str] | None = None  # the line shown, and the traceback

    # -- the session ----------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        if self._session is None:
            from slmchat.engine.session import Session

            self._session = Session()
            atexit.register(self.close)  # kernel shutdown: memory written, models and store closed
        return self._session

    def use(self, session: Session) -> None:
        """Run the cells on this session instead of one built from the config (tests, a custom setup)."""
        self.close()
        self._session = session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _fail(self, exc: BaseException) -> None:
        """One line with the fix; the traceback is kept for ``%slm fix``."""
        if isinstance(exc, SlmchatError):
            line = f"error: {exc.message}" + (f"\n  fix: {exc.hint}" if exc.hint else "")
        else:
            line = redact(f"unexpected error: {type(exc).__name__}: {exc}\n  fix: %slm fix shows the traceback")
        self.last_error = (line, redact("".join(traceback.format_exception(exc))))  # a server may echo a key
        print(line)

    # -- %%slm ------------------------------------------------------------------------------------

    @cell_magic("slm")
    def slm_cell(self, line: str, cell: str) -> Any:
        """Send the cell as one turn (``%%slm --help`` lists the options)."""
        try:
            options = parse_cell_line(line)
            if isinstance(options, str):
                print(options)
                return None
            return self._run_cell(options, cell)
        except Exception as exc:
            self._fail(exc)
            return None

    def _run_cell(self, options: CellOptions, cell: str) -> Any:
        from slmchat.engine.models import model_name

        text, filled = fill_in(cell.strip(), self.shell.user_ns if self.shell else {})
        if not text:
            raise SlmchatError("the cell is empty", "write the question under %%slm")
        session = self.session
        previous_model = session.model_name("small")
        if options.model:
            session.set_model("small", model_name(options.model))
        try:
            if options.dry_run:
                return self._dry_run(session, text, options)
            stats = self._stream(session, text, options, filled)
        finally:
            if options.model and previous_model:
                session.set_model("small", previous_model)
        if stats is None:
            return None
        return self._deliver(stats, options)

    def _dry_run(self, session: Session, text: str, options: CellOptions) -> None:
        from slmchat.accounting.pricing import price_for

        decision = session.call(session.preview_route(text, options.route))
        tokens = len(text) // 4 + 1
        price = price_for(decision.model, session.tier_config(decision.tier))
        where = session.tiers.destination(decision.tier)
        lines = [
            f"would run on the {decision.tier} tier: {decision.model} ({where.label if where else 'not configured'})",
            route_line(decision),
            f"prompt about {tokens} tokens (estimated); price: {_price_text(price)}",
        ]
        print("\n".join(lines))

    def _stream(self, session: Session, text: str, options: CellOptions, filled: list[str]) -> TurnStats | None:
        """Run the turn, updating one display in place; returns its stats (None if it failed or was stopped)."""
        handle = display(Markdown("…"), display_id=True)
        answer, notes, last_draw = "", [], 0.0
        saved_history = list(session.history) if not options.history else None
        if saved_history is not None:
            session.history = []
        stats: TurnStats | None = None
        try:
            events = session.stream(text, route=options.route, tools=options.tools, memory=options.memory)
            for event in events:
                if isinstance(event, Token):
                    answer += event.text
                    if time.monotonic() - last_draw >= REDRAW_S:
                        handle.update(Markdown(answer + " ▌"))
                        last_draw = time.monotonic()
                elif isinstance(event, ApprovalRequested):
                    session.approve(event.request_id, options.yes)
                    if not options.yes:
                        notes.append(f"the tool {event.name} asks for approval: rerun the cell with --yes to allow it")
                elif isinstance(event, Escalated | Recovery):
                    notes.append(event.note if isinstance(event, Escalated) else f"recovery: {event.message}")
                elif getattr(event, "kind", "") == "answer_reset":
                    answer = event.text  # type: ignore[attr-defined]
                elif isinstance(event, TurnDone):
                    stats = event.stats
                elif isinstance(event, TurnFailed):
                    handle.update(Markdown(event.partial or ""))
                    raise SlmchatError(event.error, event.hint)
        except KeyboardInterrupt:
            handle.update(Markdown(answer + "\n\n*[interrupted: the partial answer is kept in the history]*"))
            return None
        finally:
            if saved_history is not None:
                session.history = saved_history
        assert stats is not None
        self.turns.append(stats)
        where = session.tiers.destination(stats.answered_by or stats.route.tier)
        footer = footer_line(stats, where.short if where else None)
        if filled and where is not None and not where.local:
            notes.append(f"filled in from your variables and sent to {where.host}: {', '.join(filled)}")
        if options.explain:
            factors = ", ".join(f"{k} {v:+.2f}" for k, v in sorted(stats.route.factors.items()))
            notes.append(f"routing: {route_line(stats.route)}; factors: {factors or 'none'}")
        shown = stats.answer if options.format != "text" else f"```text\n{stats.answer}\n```"
        extra = "".join(f"\n\n*{note}*" for note in notes)
        handle.update(
            Markdown(f"{shown}{extra}\n\n<sub>{_escape(footer)}</sub>"), metadata={"slmchat": stats.to_dict()}
        )
        return stats

    def _deliver(self, stats: TurnStats, options: CellOptions) -> Any:
        """What ``-f code``, ``-f json`` and ``-o`` do with the answer."""
        value: Any = stats.answer
        if options.format == "code":
            code = _code_of(stats.answer)
            if code and self.shell is not None:
                self.shell.set_next_input(code, replace=False)
        elif options.format == "json":
            from json_repair import repair_json

            value = json.loads(repair_json(stats.answer)) if stats.answer.strip() else None
            display(JSON(value) if isinstance(value, dict | list) else value)
        if options.output and self.shell is not None:
            self.shell.user_ns[options.output] = value
        return None

    # -- %slm -------------------------------------------------------------------------------------

    @line_magic("slm")
    def slm_line(self, line: str) -> Any:
        """``%slm help`` lists the commands."""
        try:
            return self._line(line.strip())
        except Exception as exc:
            self._fail(exc)
            return None

    def _line(self, line: str) -> Any:
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word in ("", "help"):
            print(LINE_HELP)
        elif word == "fix":
            print(self.last_error[1] if self.last_error else "no error yet")
        elif word == "models":
            self._models()
        elif word == "alias":
            name, _, model = rest.partition(" ")
            if not name or not model.strip():
                raise SlmchatError("%slm alias needs NAME MODEL", "for example: %slm alias fast ollama/llama3.2:3b")
            from slmchat.engine.models import model_name

            self.session.config.aliases[name] = model_name(model.strip())
            print(f"{name} = {self.session.config.aliases[name]} (for this kernel)")
        elif word == "history":
            count = int(rest) if rest.isdigit() else 5
            pairs = self.session.history[-2 * count :]
            for message in pairs:  # a question is shown without the memories recalled for it
                text = question_of(message.content) if message.role == "user" else message.content
                print(f"{'you' if message.role == 'user' else 'slm'}: {printable(text)}")
            print(f"conversation {self.session.conversation_id}")
        elif word == "stats":
            self._stats()
        elif word == "keys":
            from slmchat.infra.keys import key_store_description, list_keys

            for provider, source, masked in list_keys():
                print(f"{provider}: {source} ({masked})")
            print(f"key store: {key_store_description()}")
        else:
            self._command(word, rest)
        return None

    def _command(self, word: str, rest: str) -> None:
        mapped = {"reset": "/new", "route": "/route", "memory": "/memory"}.get(word)
        if mapped is None:
            raise SlmchatError(f"unknown %slm command {word!r}", "%slm help lists them")
        parsed = parse_command(f"{mapped} {rest}".strip())
        if isinstance(parsed, Prompt):
            return
        result = self.session.call(run_command(self.session, parsed)) if isinstance(parsed, Command) else parsed
        if not result.ok:
            raise SlmchatError(result.message, result.hint)
        print(result.text if isinstance(result, Help) else result.message)
        for fact in getattr(result, "facts", ()):
            print(f"  {fact.text}")

    def _models(self) -> None:
        from slmchat.engine.models import list_models

        session = self.session
        listing = list_models(session.config, current={t: session.model_name(t) for t in ("small", "large")})
        for group in listing.backends:
            print(f"{group.backend} ({group.where or group.status})")
            for entry in group.models:
                tiers = f"  [{', '.join(entry.tiers)}]" if entry.tiers else ""
                print(f"  {entry.name}{tiers}")

    def _stats(self) -> None:
        """This kernel's turns as a table, with spend and saving (unknown prices counted, never $0)."""
        from slmchat.engine.transcript import usd

        rows = ["| turn | tier | tokens in/out | tok/s | cost | saved |", "|---|---|---|---|---|---|"]
        spent, saved, unknown = 0.0, 0.0, 0
        for stats in self.turns:
            cost = stats.cost
            if cost is None or cost.usd is None:
                unknown += 1
            else:
                spent += cost.usd
                saved += cost.saved_usd or 0.0
            rate = f"{stats.latency.tokens_per_s:.0f}" if stats.latency.tokens_per_s else "—"
            rows.append(
                f"| {stats.turn_id} | {stats.answered_by or stats.route.tier} | {stats.usage.prompt_tokens}/"
                f"{stats.usage.completion_tokens} | {rate} | {usd(cost.usd if cost else None)} | "
                f"{usd(cost.saved_usd if cost else None)} |"
            )
        total = f"{len(self.turns)} turns, spent {usd(spent)}, saved {usd(saved)}"
        if unknown:
            total += f" ({unknown} without a known price)"
        display(Markdown("\n".join([*rows, "", total])))


def _code_of(answer: str) -> str:
    """The code for a new cell: the fenced blocks with a language (else all fenced blocks, else the answer)."""
    tagged = re.findall(r"^```[ \t]*[\w+-]+[^\n]*\n(.*?)^```", answer, re.DOTALL | re.MULTILINE)
    blocks = [block.rstrip("\n") for block in tagged] or code_blocks(answer)
    return "\n\n".join(blocks) if blocks else answer.strip()


def _price_text(price: Any) -> str:
    """A model's price as the footer says it; unknown is unknown, never $0."""
    if price.usd_per_hour is not None:
        return f"${price.usd_per_hour:g} an hour of the machine ({price.source})"
    if price.usd_per_mtok_in is None or price.usd_per_mtok_out is None:
        return "unknown"
    return f"${price.usd_per_mtok_in:g} in, ${price.usd_per_mtok_out:g} out per million tokens ({price.source})"


def _escape(text: str) -> str:
    from html import escape

    return escape(text)
