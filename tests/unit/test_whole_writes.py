"""The command line's output is written to its end even when the pipe takes each write only in part."""

from __future__ import annotations

import io
import json

from noetl.stdio import whole_writes


class ShortWritingFile(io.RawIOBase):
    """A raw file that takes at most `limit` bytes per write, as a pipe may."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        piece = bytes(data[: self.limit])
        self.taken += piece
        return len(piece)


def unbuffered_text(raw: io.RawIOBase) -> io.TextIOWrapper:
    """What Python gives as sys.stdout under PYTHONUNBUFFERED: text written straight to a raw file."""
    return io.TextIOWrapper(raw, encoding="utf-8", write_through=True)  # type: ignore[arg-type]


def test_an_unbuffered_stream_loses_what_a_short_write_left_over() -> None:
    raw = ShortWritingFile(limit=65536)
    unbuffered_text(raw).write("x" * 200_000)
    assert len(raw.taken) == 65536  # the loss the command line must not suffer


def test_a_large_json_document_arrives_whole_through_short_writes() -> None:
    raw = ShortWritingFile(limit=65536)
    document = {"rows": [{"id": i, "name": "n" * 100} for i in range(2000)]}
    out = whole_writes(unbuffered_text(ShortWritingFile(limit=1)), raw=raw)
    out.write(json.dumps(document, indent=2) + "\n")
    out.flush()
    assert json.loads(raw.taken) == document


def test_each_line_is_shown_at_once_as_an_unbuffered_stream_would() -> None:
    raw = ShortWritingFile(limit=3)
    out = whole_writes(unbuffered_text(ShortWritingFile(limit=1)), raw=raw)
    out.write("progress: 1 of 2\n")
    assert raw.taken == b"progress: 1 of 2\n"


def test_a_stream_that_is_already_buffered_is_kept() -> None:
    buffered = io.TextIOWrapper(io.BufferedWriter(ShortWritingFile(limit=10)), encoding="utf-8")
    assert whole_writes(buffered) is buffered
