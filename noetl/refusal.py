"""A backend's refusal in the command line's words: the lines for stderr and the exit code."""

from __future__ import annotations


class Refusal(Exception):
    """Raised by a backend (noetl.local, noetl.remote) when it cannot do what a command asked; the
    command prints `lines` on stderr and exits with `code` (noetl.backend.call)."""

    def __init__(self, lines: list[str], code: int) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines
        self.code = code
