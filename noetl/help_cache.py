"""`noetl ... --help` from a cache: the text the Typer app printed last time for the same words, the
same sources and the same terminal, without importing Typer, rich or any command module.

Typer with rich costs about six times a bare interpreter start to print a help page, more than the
command line's goal of three (docs/performance.md, "Command line"); a cached page costs one file read.
The key holds everything the page depends on: the command words, how the program was started (its
name in `Usage:`), the size and kind of the terminal and the environment variables rich and Typer read,
and the path, size and mtime of every module whose text makes up the pages (noetl/, the constants they
show) and of Typer and rich themselves. A page is stored only when the help exited 0 with nothing on
stderr. NOETL_HELP_CACHE=0 turns the cache off.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any, TextIO

# what rich and Typer read from the environment to decide colours, width and the help's layout
TERMINAL_ENV = ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "PY_COLORS", "TERM", "COLORTERM",
                "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERMINAL_WIDTH", "GITHUB_ACTIONS", "TYPER_USE_RICH",
                "_TYPER_FORCE_DISABLE_TERMINAL", "JUPYTER_COLUMNS", "JUPYTER_LINES",
                "DATABRICKS_RUNTIME_VERSION")
_WORD = re.compile(r"[a-z][a-z0-9-]*")
ROOT = Path(__file__).resolve().parent.parent
# the modules whose text the help pages show (besides noetl/ itself)
SHOWN = ("control_plane/roles.py", "policies/states.py")


def enabled() -> bool:
    return os.environ.get("NOETL_HELP_CACHE", "").strip() not in ("0", "false", "no", "off")


def wanted(args: list[str]) -> bool:
    """`noetl [COMMAND ...] --help`: command words, then --help, nothing else."""
    return bool(args) and args[-1] == "--help" and all(_WORD.fullmatch(a) for a in args[:-1])


def _sources() -> list[str]:
    found = [p for p in (ROOT / "noetl").rglob("*.py")] + [ROOT / p for p in SHOWN]
    from importlib.util import find_spec

    for name in ("typer", "rich"):
        spec = find_spec(name)
        if spec is not None and spec.origin:
            found.append(Path(spec.origin))
    stamps = []
    for path in sorted(found):
        try:
            st = path.stat()
        except OSError:
            continue
        stamps.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return stamps


def _terminal() -> list[str]:
    sizes = []
    for fd in (0, 1, 2):
        try:
            sizes.append(str(tuple(os.get_terminal_size(fd))))
        except (OSError, ValueError):
            sizes.append("-")
    ttys = [str(getattr(s, "isatty", lambda: False)()) for s in (sys.stdout, sys.stderr)]
    return sizes + ttys + [f"{k}={os.environ.get(k)}" for k in TERMINAL_ENV]


def _program() -> list[str]:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return [sys.executable, sys.argv[0], str(getattr(spec, "name", None))]


def cache_file(args: list[str]) -> Path:
    key = "\n".join(["noetl-help-1", *args, *_program(), *_terminal(), *_sources()])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "noetl" / "help" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".txt")


def serve(path: Path) -> bool:
    """Print the cached page at `path`; False when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    sys.stdout.write(text)
    sys.stdout.flush()
    return True


class Recorder:
    """Stands in for stdout (or stderr) while the help prints: passes everything on, keeps a copy."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        written = self.stream.write(text)  # first: click probes with bytes, which a text stream refuses
        self.parts.append(text)
        return written

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, flush ... of the stream
        return getattr(self.stream, name)


def store(path: Path, text: str) -> None:
    """Keep a page (written whole or not at all: a temporary file renamed into place)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(text, encoding="utf-8")
        temp.replace(path)
    except OSError:
        pass  # a read-only home: the help is printed anyway, only not cached
