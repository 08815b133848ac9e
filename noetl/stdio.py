"""How the command line writes: stdout and stderr through a buffered layer, so that a document the
kernel accepts only in part is written to its end, never cut.

With PYTHONUNBUFFERED (or `python -u`) Python writes text straight to the raw file, and a short write
(a pipe may take less than it was given, e.g. 128 KiB of a 400 KiB `--json` document) silently loses
the rest. A BufferedWriter writes again until everything is out."""

from __future__ import annotations

import io
import sys
from typing import TextIO


def whole_writes(stream: TextIO, raw: io.RawIOBase | None = None) -> TextIO:
    """`stream` itself when it already writes through a buffered layer; else a text stream on a
    BufferedWriter over `raw` (a new raw file on the same descriptor unless given) that flushes at
    every newline, as an unbuffered stream shows each line at once."""
    if not isinstance(getattr(stream, "buffer", None), io.RawIOBase):
        return stream
    target = raw if raw is not None else io.FileIO(stream.fileno(), "w", closefd=False)
    return io.TextIOWrapper(io.BufferedWriter(target), encoding=stream.encoding, errors=stream.errors,
                            line_buffering=True)


def use_whole_writes() -> None:
    """Give the process's stdout and stderr `whole_writes` (the originals stay in sys.__stdout__ and
    sys.__stderr__, which keep their raw files open)."""
    sys.stdout = whole_writes(sys.stdout)
    sys.stderr = whole_writes(sys.stderr)
