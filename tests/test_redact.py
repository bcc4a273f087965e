"""The one redaction step and the one terminal-safe text rule that every face and the store use."""

from __future__ import annotations

import logging

import pytest

from slmchat.faces.terminal_text import printable
from slmchat.infra.errors import SlmchatError
from slmchat.infra.keys import resolve_key
from slmchat.infra.redact import MASK, RedactingFilter, redact, register_secret


@pytest.mark.parametrize(
    "key",
    [
        "sk-proj-Abc123def456ghi789jkl012",
        "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA",
        "sk-or-v1-0123456789abcdef0123456789",
        "gsk_0123456789abcdefABCDEF",
        "hf_abcdefghijklmnopqrstuvwx",
        "AIzaSyA-0123456789abcdefghijklmnopqrstu",
    ],
)
def test_key_shapes_are_masked_wherever_they_appear(key: str) -> None:
    echoed = f"Error code: 401 - {{'error': {{'message': 'Incorrect API key provided: {key}.'}}}}"
    assert key not in redact(echoed)
    assert MASK in redact(echoed)


def test_an_echoed_bearer_header_is_masked_whatever_its_shape() -> None:
    assert (
        redact("got header Authorization: Bearer tok.en-with/odd+chars=") == f"got header Authorization: Bearer {MASK}"
    )


def test_a_resolved_key_of_no_known_shape_is_masked_once_it_was_used(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "plainvalue-no-prefix-42"
    assert redact(f"server said {key}") == f"server said {key}"  # nothing knows it yet
    monkeypatch.setenv("LOCAL_SERVER_CREDENTIAL", key)  # a name redact does not treat as secret
    resolved = resolve_key("local", env_var="LOCAL_SERVER_CREDENTIAL")
    assert resolved is not None and resolved.value == key
    assert redact(f"server said {key}") == f"server said {MASK}"


def test_secret_looking_environment_variables_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LARGE_KEY", "custom-gateway-credential")
    monkeypatch.setenv("HOME_DIRECTORY", "/root")  # not a secret name: left alone
    assert redact("custom-gateway-credential at /root") == f"{MASK} at /root"


def test_short_and_ordinary_text_is_left_alone() -> None:
    register_secret("abc")  # too short to mask without mangling ordinary words
    text = "a basic question about sk-learn and the task-list"
    assert redact(text) == text


def test_every_user_error_is_redacted_at_construction() -> None:
    error = SlmchatError(
        "the server answered 401: Bearer sk-proj-Abc123def456ghi789jkl012", "key sk-proj-Abc123def456ghi789jkl012"
    )
    assert "sk-proj" not in error.message and "sk-proj" not in (error.hint or "") and "sk-proj" not in str(error)


def test_log_records_and_their_tracebacks_are_redacted() -> None:
    key = "sk-proj-Abc123def456ghi789jkl012"
    record = logging.LogRecord("slmchat", logging.ERROR, __file__, 1, "request failed: %s", (key,), None)
    try:
        raise RuntimeError(f"echo {key}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert (
        key not in formatted
        and "request failed: [redacted]" in formatted
        and "RuntimeError: echo [redacted]" in formatted
    )


def test_control_sequences_become_visible_and_inert() -> None:
    hostile = "ok\x1b]0;pwned\x07\x1b]52;c;aGk=\x07\x1b[2J\x9b31m\rend\n\tnext"
    shown = printable(hostile)
    assert not any(ch in shown for ch in "\x1b\x07\r\x9b")
    assert shown == "ok␛]0;pwned␇␛]52;c;aGk=␇␛[2J\\x9b31m␍end\n\tnext"  # newline and tab kept
    assert printable("a\nb\tc", one_line=True) == "a␊b␉c"


def test_undecodable_bytes_become_replacement_characters() -> None:
    question = b"Hi \xff there".decode("utf-8", "surrogateescape")
    assert printable(question) == "Hi \ufffd there"
    printable(question).encode("utf-8")  # writable to any UTF-8 stream
