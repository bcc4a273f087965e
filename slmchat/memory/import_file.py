"""Reading an import file one row at a time: a JSON list (what export writes) or JSON lines.

A 25,000-row export is 55 MB; reading it whole and parsing it into one list took 844 MB. Here the
file is decoded in 64 KB pieces and each row is parsed as soon as it is complete, so memory stays at
about one piece plus one row, and every problem names the line it is on: bytes that are not UTF-8,
text that is not JSON, a row that never ends.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import BinaryIO

from slmchat.infra.errors import SlmchatError

CHUNK = 64 * 1024
#: a row longer than this is not one export wrote (2,000 characters of text, escaped, plus metadata)
MAX_ROW_CHARS = 256 * 1024
FORMAT_HINT = "give a file made by `slmchat memory export` (a JSON list) or one JSON object per line"
_SPACE = " \t\r\n"


class RowReader:
    """Yields ``(line, row)`` for each top-level value of a JSON list, or of JSON lines, in ``stream``.

    ``name`` is how messages call the file. Raises SlmchatError at the first problem.
    """

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self._stream = stream
        self.name = name
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._buffer = ""
        self._pos = 0
        self._line = 1  # the line of self._pos
        self._bytes_lines = 1  # lines in the bytes decoded so far, for a decoding error
        self._eof = False

    def __iter__(self) -> Iterator[tuple[int, object]]:
        first = self._skip_space()
        if first is None:
            return
        in_list = first == "["
        if in_list:
            self._pos += 1
        elif first != "{":
            raise self._error("is not JSON", "does not start with [ or {")
        expect_comma = False
        while True:
            char = self._skip_space()
            if char is None:
                if in_list:
                    raise self._error("is not JSON", "the list is not closed with ]")
                return
            if in_list and char == "]":
                self._pos += 1
                if self._skip_space() is not None:
                    raise self._error("is not JSON", "something follows the closing ]")
                return
            if in_list and expect_comma:
                if char != ",":
                    raise self._error("is not JSON", "expected , between rows")
                self._pos += 1
                if self._skip_space() is None:
                    raise self._error("is not JSON", "the list is not closed with ]")
            yield self._line, self._value()
            expect_comma = True

    # -- reading ----------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Decode the next piece of the file into the buffer; False at the end."""
        if self._eof:
            return False
        data = self._stream.read(CHUNK)
        final = not data
        pending = len(self._decoder.getstate()[0])  # bytes of a character cut at the last piece's end
        try:
            text = self._decoder.decode(data, final=final)
        except UnicodeDecodeError as exc:
            line = self._bytes_lines + data.count(b"\n", 0, max(0, exc.start - pending))
            raise SlmchatError(
                f"{self.name} line {line} is not UTF-8 text",
                "save the file as UTF-8 (export writes UTF-8); nothing was imported",
            ) from None
        self._bytes_lines += data.count(b"\n")
        self._buffer = self._buffer[self._pos :] + text
        self._pos = 0
        self._eof = final
        return bool(text) or not final

    def _skip_space(self) -> str | None:
        """Move past whitespace; the next character, or None at the end of the file."""
        while True:
            buffer, pos = self._buffer, self._pos
            while pos < len(buffer) and buffer[pos] in _SPACE:
                if buffer[pos] == "\n":
                    self._line += 1
                pos += 1
            self._pos = pos
            if pos < len(buffer):
                return buffer[pos]
            if not self._fill():
                return None

    def _value(self) -> object:
        """Parse the value at the current position, reading more of the file until it is complete."""
        decoder = json.JSONDecoder()
        while True:
            try:
                value, end = decoder.raw_decode(self._buffer, self._pos)
            except json.JSONDecodeError as exc:
                if len(self._buffer) - self._pos > MAX_ROW_CHARS:
                    raise self._error("is not JSON", "a row never ends or is far too long") from None
                if self._fill():
                    continue
                line = self._line + self._buffer.count("\n", self._pos, exc.pos)
                raise SlmchatError(f"{self.name} line {line} is not JSON: {exc.msg}", FORMAT_HINT) from None
            if end == len(self._buffer) and not self._eof and self._fill():
                continue  # a number cut at the piece's end: parse it again with what follows
            self._line += self._buffer.count("\n", self._pos, end)
            self._pos = end
            return value

    def _error(self, what: str, detail: str) -> SlmchatError:
        return SlmchatError(f"{self.name} line {self._line} {what}: {detail}", FORMAT_HINT)
