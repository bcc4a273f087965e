"""Whether a turn fits a tier's context window: the one size check before any model call.

llama.cpp refuses a prompt that fills its window ("Requested tokens (3031) exceed context
window of 2048") and silently cuts the answer to the room that is left; servers refuse in their
own words. So the engine measures first: at routing (a question that cannot fit the small tier
goes to the large one, or fails before anything is stored) and again just before the call, with
the prompt as built (history, memory, tool prompt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from slmchat.infra.errors import SlmchatError
from slmchat.routing.decision import Route, RouteDecision, Tier

#: the shortest answer worth a model call: a prompt that leaves less room than this does not fit
MIN_ANSWER_TOKENS = 64
#: tokens a chat template adds beyond each message's own overhead (start of text, the answer's role marker)
TEMPLATE_TOKENS = 8
#: an unloaded model's tokenizer is not at hand: bytes per token, cautious (routes large early) and
#: generous (fails only what surely cannot fit). SmolLM2 measures 3.4 on Markdown prose, 4.0 on code,
#: 1.0 on digits and 1.8 on Japanese; only runs of whitespace or repeated words pass 5.
CAUTIOUS_BYTES_PER_TOKEN = 3
GENEROUS_BYTES_PER_TOKEN = 6
#: the third way out when the user chose the small tier and a large one is configured
FORCED_SMALL = "let the large tier answer it (--route auto or --route large)"


@dataclass(frozen=True)
class Fit:
    """A prompt of ``prompt`` tokens against a tier's window (``None``: not known, so it fits).

    Counted without the model's tokenizer, ``prompt`` is the cautious estimate (it decides
    whether the answer fits) and ``least`` the generous one (it decides whether nothing fits).
    """

    tier: Tier
    prompt: int
    window: int | None
    max_tokens: int
    least: int | None = None
    what: str = "the question"  # what was measured, as the messages name it

    @property
    def estimated(self) -> bool:
        return self.least is not None

    @property
    def left(self) -> int | None:
        """Tokens the answer may use, or None when the window is not known."""
        return None if self.window is None else self.window - self.prompt

    @property
    def fits(self) -> bool:
        """The prompt and a full answer fit."""
        return self.left is None or self.left >= self.max_tokens

    @property
    def too_long(self) -> bool:
        """Not even a short answer fits: the model would refuse the prompt or answer nothing."""
        if self.window is None:
            return False
        least = self.prompt if self.least is None else self.least
        return self.window - least < min(self.max_tokens, MIN_ANSWER_TOKENS)

    @property
    def size(self) -> str:
        """The prompt's size in words ("about 3,100 tokens" when it was estimated)."""
        if self.least is None:
            return f"{self.prompt:,} tokens"
        return f"about {(self.prompt + self.least) // 2:,} tokens"  # about 4 bytes a token

    def why_not(self) -> str:
        """Why this tier cannot take the turn, in a clause: '... and the small model's window is 2,048'."""
        if self.too_long:
            return f"{self.what} is {self.size} and the {self.tier} model's window is {self.window:,}"
        return (
            f"{self.what} is {self.size} and with a {self.max_tokens:,}-token answer it does not fit "
            f"the {self.tier} model's window of {self.window:,}"
        )

    def limited(self) -> str:
        """The note for an answer cut to the room that is left."""
        return f"the answer is limited to {self.left:,} tokens to fit the {self.tier} model's window of {self.window:,}"


def cautious_tokens(text: str) -> int:
    """Tokens ``text`` may take when no tokenizer is at hand: rather too many than too few."""
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / CAUTIOUS_BYTES_PER_TOKEN)


def generous_tokens(text: str) -> int:
    """Tokens ``text`` takes at least, for all but whitespace and repetition (to refuse only the sure cases)."""
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / GENEROUS_BYTES_PER_TOKEN)


class ContextOverflow(SlmchatError):
    """The turn does not fit any tier it may run on. ``fit`` is the measurement that failed."""

    def __init__(self, fit: Fit, why: str = "", *, saved: bool = False, large: str | None = None) -> None:
        """``why`` says why no other tier takes it; ``saved`` whether the turn is stored anyway (failed).

        ``large`` is the third way out when it is not "configure a [large] tier".
        """
        self.fit = fit
        stored = "it is kept in the history as a failed turn" if saved else "nothing was saved"
        message = f"{fit.why_not()}{f' ({why})' if why else ''}; {stored}"
        needed = fit.prompt + fit.max_tokens
        n_ctx = max(8192, 1 << (needed - 1).bit_length())
        if large is None:
            large = "use a large tier with a longer window" if fit.tier == "large" else "configure a [large] tier"
        hint = f"shorten the question, raise n_ctx ([{fit.tier}] options = {{ n_ctx = {n_ctx} }}), or {large}"
        super().__init__(message, hint)


def refuse_early(route: Route, small: Fit, large: Fit | None, blocked: str | None = None) -> None:
    """Raise ``ContextOverflow`` when no tier the turn may use can take it, whatever the router would say.

    Checked before the router embeds the text: a pasted megabyte is refused at once.
    """
    if not small.too_long:
        return
    if route is Route.SMALL:
        raise ContextOverflow(small, "you chose the small tier", large=FORCED_SMALL if large is not None else None)
    if large is None:
        raise ContextOverflow(small, "no large tier is configured")
    if blocked:
        raise ContextOverflow(small, blocked)
    if large.too_long:
        raise ContextOverflow(large, small.why_not())


def place(
    decision: RouteDecision,
    small: Fit,
    large: Fit | None,
    models: dict[Tier, str | None],
    blocked: str | None = None,
) -> RouteDecision:
    """The decision once the question's size is known: moved to the large tier, limited, or refused.

    ``small`` and ``large`` measure the question against each tier (``large`` None when there is
    none). A question that does not fit the small tier goes large (also when the router chose
    small) unless the user chose small, there is no large tier, or the large tier is blocked or
    too small itself: then ``ContextOverflow``. An answer that only fits shortened stays small
    when the large tier is not an option, and the reason says so.
    """
    if decision.tier == "large" and large is not None and large.too_long:
        raise ContextOverflow(large)
    if small.fits:  # also when the small window is not known
        return decision
    moved = f"{small.why_not()}, so the large tier answers"
    if decision.tier == "large":  # the score agreed: say it had to (a user's choice needs no reason)
        return decision if decision.override is not None else replace(decision, reason=f"{decision.reason}; {moved}")
    forced = decision.override is Route.SMALL
    if forced or large is None or models.get("large") is None or blocked:
        if not small.too_long:  # the answer is cut to the room left (an estimate cannot say how much)
            return decision if small.estimated else replace(decision, reason=f"{decision.reason}; {small.limited()}")
        why = "you chose the small tier" if forced else blocked if blocked else "no large tier is configured"
        raise ContextOverflow(small, why, large=FORCED_SMALL if forced and large is not None else None)
    if large.too_long:
        raise ContextOverflow(large, small.why_not())
    return replace(
        decision,
        tier="large",
        model=models["large"] or "",
        reason=f"{decision.reason}; {moved}",
    )
