"""One redaction step for every text that is shown, logged or stored and may hold a secret.

Text that came from a server (an error body), an exception message, a traceback: any of them
can carry an API key, because servers echo what they were sent ("Incorrect API key provided:
sk-..."). ``redact`` replaces the keys this process uses (registered when a key is resolved,
and the values of secret-looking environment variables) and common key shapes with
``[redacted]``. It is cheap and idempotent; call it at the boundary, not deep inside.
"""

from __future__ import annotations

import logging
import os
import re
import threading

MASK = "[redacted]"

#: Key shapes from the providers we talk to, and bearer tokens in echoed headers.
_SHAPES = re.compile(
    r"""
    (?<![A-Za-z0-9])(?:
        sk-(?:ant-|proj-|or-v1-)?[A-Za-z0-9_\-]{16,}   # OpenAI, Anthropic, OpenRouter
      | gsk_[A-Za-z0-9]{16,}                           # Groq
      | hf_[A-Za-z0-9]{16,}                            # Hugging Face
      | xai-[A-Za-z0-9]{16,}                           # xAI
      | AIza[A-Za-z0-9_\-]{30,}                        # Google
      | gh[pousr]_[A-Za-z0-9]{20,}                     # GitHub
      | (?:pplx|nvapi|fw|r8)[-_][A-Za-z0-9_\-]{16,}    # Perplexity, NVIDIA, Fireworks, Replicate
    )
    | (?<=Bearer\ )[A-Za-z0-9._~+/=\-]{8,}             # an Authorization header echoed back
    """,
    re.VERBOSE,
)

#: Environment variables whose values are secrets (OPENAI_API_KEY, MY_LARGE_KEY, HF_TOKEN, ...).
_SECRET_VAR = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSPHRASE)(_|$)", re.IGNORECASE)
_MIN_SECRET = 8  # shorter values would mask ordinary words

_known: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a key this process uses, so ``redact`` masks it wherever it shows up."""
    if value and len(value) >= _MIN_SECRET:
        with _lock:
            _known.add(value)


def _secrets() -> list[str]:
    from_env = {v for k, v in os.environ.items() if _SECRET_VAR.search(k) and v and len(v) >= _MIN_SECRET}
    with _lock:
        values = _known | from_env
    return sorted(values, key=len, reverse=True)  # a longer secret first, in case one contains another


def redact(text: str) -> str:
    """``text`` with known keys and key-shaped strings replaced by ``[redacted]``."""
    if not text:
        return text
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    return _SHAPES.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (and its formatted traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            import traceback

            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        return True
