"""Live progress of one execution on the terminal: a line per step (and loop counts), from its events."""

from __future__ import annotations

import json
import os
import re
import sys

TYPE_CHECKING = False  # not typing's: `noetl run --json` through noetl.fastrun does not import typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, Protocol

    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    class StepEvent(Protocol):
        """What progress reads of an event: engine.protocol.events.Event, or its JSON as the API
        streams it (noetl.fastrun, which does not import the engine)."""

        @property
        def type(self) -> str: ...

        @property
        def step(self) -> str | None: ...

        @property
        def attempt(self) -> int | None: ...

        @property
        def loop_index(self) -> int | None: ...

        @property
        def payload(self) -> dict[str, Any]: ...

_EMOJI_LIKE = re.compile(r":\S*:")  # what rich's emoji codes (`:name:`, `:name-text:`) could match
_ICONS = {"scheduled": "…", "running": "▶", "succeeded": "✔", "failed": "✖", "skipped": "↷",
          "cancelled": "■"}


PLAIN_WIDTH = 80  # rich's width when no standard stream is a terminal and COLUMNS is unset
# variables rich reads to choose its width, colours or terminal handling
RICH_ENVIRONMENT = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "JUPYTER_COLUMNS",
                    "JUPYTER_LINES")
_ICON_CHARS = frozenset("".join(_ICONS.values()))


def plain_possible(environ: Mapping[str, str], ttys: Iterable[bool], encoding: str | None) -> bool:
    """Whether rich would print a plain line as it is, here: no standard stream is a terminal (rich would
    take its width), none of RICH_ENVIRONMENT is set, and stderr writes UTF-8."""
    return (not any(ttys) and not any(name in environ for name in RICH_ENVIRONMENT)
            and (encoding or "").lower().replace("-", "") == "utf8")


def plain_here() -> bool:
    """plain_possible for this process."""
    encoding = getattr(sys.stderr, "encoding", None)
    return plain_possible(os.environ, (os.isatty(fd) for fd in (0, 1, 2)), encoding)


def plain_line(text: str, *, markup: bool = True, soft_wrap: bool = False) -> bool:
    """Whether rich.console.Console.print(text) writes `text` and a newline unchanged, where
    plain_possible: printable ASCII and the icons only (one cell each, no control characters), no
    `[` when markup is on, no `:name:` rich could take for an emoji, and (unless soft-wrapped) one line of
    at most PLAIN_WIDTH characters, without the leading, trailing or doubled spaces rich's wrapping could
    touch."""
    if not all(" " <= ch <= "~" or ch in _ICON_CHARS for ch in text):
        return False
    if markup and "[" in text:
        return False
    if _EMOJI_LIKE.search(text):
        return False
    return soft_wrap or (len(text) <= PLAIN_WIDTH and text == text.strip() and "  " not in text)


class PlainConsole:
    """The part of rich's Console that Progress uses off a terminal: a line rich would print unchanged
    (plain_line) is written as it is; any other goes through rich (imported then)."""

    is_terminal = False

    def __init__(self) -> None:
        self._rich: Console | None = None

    def print(self, text: str, *, markup: bool = True, highlight: bool = True,
              soft_wrap: bool = False) -> None:
        if plain_line(text, markup=markup, soft_wrap=soft_wrap):
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            return
        if self._rich is None:
            from rich.console import Console

            self._rich = Console(stderr=True)
        self._rich.print(text, markup=markup, highlight=highlight, soft_wrap=soft_wrap)


def warm_up() -> None:
    """Import rich's console and render a line into a string, which loads the tables rich reads on its
    first print (emoji, character widths): noetl.fastrun does it on a thread while it waits on the API."""
    import io

    from rich.console import Console

    Console(file=io.StringIO(), stderr=True).print("execution ✔ :warm:")


class Progress:
    def __init__(self, execution_id: str, *, quiet: bool = False) -> None:

        self.execution_id = execution_id
        self.quiet = quiet
        self.steps: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None
        self.console: Console | PlainConsole | None = None  # rich only when needed (never with --json)
        if not quiet and plain_here():
            self.console = PlainConsole()
        elif not quiet:
            from rich.console import Console

            self.console = Console(stderr=True)
        self.interactive = self.console is not None and self.console.is_terminal

    def __enter__(self) -> Progress:
        if self.console is not None:
            self.console.print(f"execution {self.execution_id}")
        if self.interactive:  # the live table only on a terminal (rich.live and rich.table only then)
            from rich.console import Console
            from rich.live import Live

            assert isinstance(self.console, Console)  # a PlainConsole is never a terminal
            self.live = Live(self._table(), console=self.console, refresh_per_second=8, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, event: StepEvent) -> None:
        if not event.step:
            return
        entry = self.steps.setdefault(event.step, {"status": "scheduled", "attempts": 0, "done": 0,
                                                   "total": None, "failed": 0})
        if event.attempt:
            entry["attempts"] = max(entry["attempts"], event.attempt)
        kind = event.type
        if kind == "loop.started":
            entry["total"] = event.payload.get("count")
            entry["status"] = "running"
        elif kind in ("loop.item.succeeded", "loop.item.failed"):
            entry["done"] += 1
            entry["failed"] += kind == "loop.item.failed"
        elif kind == "step.started" and entry["status"] == "scheduled":
            entry["status"] = "running"
        elif kind in ("step.succeeded", "step.failed", "step.skipped") and event.loop_index is None:
            entry["status"] = kind.split(".")[1]
            if not self.interactive and self.console is not None:
                self.console.print(self._line(event.step, entry))
        if self.live is not None:
            self.live.update(self._table())

    def _line(self, name: str, entry: dict[str, Any]) -> str:
        text = f"{_ICONS.get(entry['status'], '?')} {name} {entry['status']}"
        if entry["total"] is not None:
            text += f" ({entry['done']}/{entry['total']} items, {entry['failed']} failed)"
        if entry["attempts"] > 1:
            text += f" after {entry['attempts']} attempts"
        return text

    def _table(self) -> Table:
        from rich.table import Table

        table = Table(show_header=False, box=None)
        for name, entry in self.steps.items():
            table.add_row(self._line(name, entry))
        return table

    def finish(self, summary: dict[str, Any]) -> None:
        if self.console is None:
            return
        status = summary["status"]
        self.console.print(f"execution {self.execution_id} {status}")
        if summary.get("error"):
            self.console.print(f"error: {summary['error']}", markup=False, soft_wrap=True)
        elif summary.get("result") is not None:
            self.console.print(f"result: {preview(summary['result'])}", markup=False, highlight=False,
                               soft_wrap=True)  # one line, never folded at the terminal's width
        sys.stderr.flush()


PREVIEW_ITEMS = 10  # a list result: how many of its items the terminal shows
PREVIEW_CHARS = 2000  # any result: how much of its JSON text


def preview(result: Any, *, items: int = PREVIEW_ITEMS, chars: int = PREVIEW_CHARS) -> str:
    """A result as a person reads it on the terminal: a long list's first items, a long text's start,
    and what was left out, with where to get all of it (`--json`)."""
    more = ""
    if isinstance(result, list) and len(result) > items:
        more = f" … {len(result) - items} more items; use --json for all of them"
        result = result[:items]
    text = json.dumps(result, default=str)
    if len(text) > chars:
        return f"{text[:chars]} … {len(text) - chars} more characters; use --json for all of it"
    return text + more
