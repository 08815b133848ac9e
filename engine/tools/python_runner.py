"""The child side of the python tool (spec 3.1): a long-lived interpreter running one snippet per request.

Started by `engine.tools.python_pool` as `python -m engine.tools.python_runner --memory-limit N`.
Frames are a 4-byte big-endian length and UTF-8 JSON, both ways, over the process's original
stdin/stdout; at start those descriptors are duplicated for the channel, fd 0 is pointed at /dev/null
and fd 1 at stderr, so neither user code nor a C library can read or corrupt the channel.

Per request: `libs` are imported and bound; the inputs become globals, `input_data` and, when `main`
is defined, its keyword arguments (only the names it declares, or all of them for `**kwargs`);
`context` is a read-only copy (mappings → mappingproxy, lists → tuples); an input named `input_data`
replaces the `input_data` dict (NoETL compatibility), one named `context` is only in `input_data`.
The result is main()'s return value, else the value of a top-level `return` (such code runs as a
function body, whose local `result` counts when it falls off the end), else the global `result`, else null —
each `None` falls through to the next.
`async def main` and top-level `await` run under `asyncio.run`.
`sys.exit(0)`/`sys.exit()` ends the code normally (main is then not called; the global `result` is
the result); any other exit code is an error of type SystemExit. The result is made JSON-friendly by
`engine.tools.values` (datetimes, decimals, sets, bytes... converted; anything else is a
`python_exception` naming the place). `sys.stdout` and `sys.stderr` are captured (the last
`--output-limit` characters). After each request the working directory, `sys.path`, `os.environ`
and the standard streams are restored; a MemoryError asks the parent to replace this process
(`recycle`). Imported modules stay imported between requests (that is the speed of reuse), and each
code text is compiled once per interpreter (an LRU of `COMPILED_CACHE_SIZE` texts; every request still
runs it in a fresh namespace, so nothing else carries over); the pool
replaces a process after `max_runs_per_process` requests. When the worker that started it dies (even
by kill -9) the interpreter notices within a quarter second (`engine.tools.lifeline`) and kills its
process group — itself and anything its code started — so no orphan outlives the worker.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import gc
import importlib
import inspect
import io
import json
import keyword
import linecache
import os
import signal
import socket
import struct
import sys
import time
import traceback
import types
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from engine.tools.lifeline import watch_parent
from engine.tools.values import UnserialisableValue, to_json_value

HEADER = struct.Struct(">I")
_RUNNER_FILE = __file__
_STEP_FUNCTION = "__noetl_step__"
_memory_limit = 0


class _Capture(io.TextIOBase):
    """A text stream that keeps the last `limit` characters written to it."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._parts: list[str] = []
        self._size = 0
        self.truncated = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._parts.append(text)
        self._size += len(text)
        if self._size > 2 * self.limit:
            self._compact()
        return len(text)

    def _compact(self) -> None:
        text = "".join(self._parts)
        if len(text) > self.limit:
            text = text[-self.limit:]
            self.truncated = True
        self._parts = [text]
        self._size = len(text)

    def getvalue(self) -> str:
        self._compact()
        return self._parts[0] if self._parts else ""

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


# ------------------------------------------------------------------------------------------ channel

def _take_channel() -> tuple[BinaryIO, BinaryIO]:
    chan_in = os.fdopen(os.dup(0), "rb", buffering=0)
    # buffered: a pipe may take part of a large reply, and a raw write would drop the rest unseen
    chan_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, encoding="utf-8")
    return chan_in, chan_out


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def receive(stream: BinaryIO) -> dict[str, Any] | None:
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    body = _read_exactly(stream, HEADER.unpack(header)[0])
    return None if body is None else json.loads(body)


def send(stream: BinaryIO, message: Mapping[str, Any]) -> None:
    body = json.dumps(message, ensure_ascii=False, allow_nan=False).encode("utf-8")
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


# ------------------------------------------------------------------------------------------ running

def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _has_top_level_return(tree: ast.AST) -> bool:
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return False


def _has_top_level_await(tree: ast.AST) -> bool:
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return False


def _as_function(tree: ast.Module) -> ast.Module:
    """The module's statements as the body of a function that returns its local `result` at the end."""
    head = "async def" if _has_top_level_await(tree) else "def"
    wrapper = ast.parse(f"{head} {_STEP_FUNCTION}():\n    return locals().get('result')\n")
    function = wrapper.body[0]
    assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
    function.body = [*tree.body, *function.body]
    return ast.fix_missing_locations(wrapper)


def _await(value: Any) -> Any:
    if inspect.iscoroutine(value):
        import asyncio

        return asyncio.run(value)
    return value


def _call_main(main: Any, inputs: Mapping[str, Any]) -> Any:
    params = inspect.signature(main).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        kwargs = dict(inputs)
    else:
        names = {p.name for p in params
                 if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
        kwargs = {k: v for k, v in inputs.items() if k in names}
    return _await(main(**kwargs))


def _import(module: str, name: str | None, alias: str) -> Any:
    """`import module` (bound as its top package when `alias` is that package), or `from module import
    name` (an attribute, else a submodule)."""
    if name is None:
        imported = importlib.import_module(module)
        return importlib.import_module(alias) if module.startswith(alias + ".") else imported
    parent = importlib.import_module(module)
    try:
        return getattr(parent, name)
    except AttributeError:
        return importlib.import_module(f"{module}.{name}")


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A code text compiled once: the code object, whether it runs as a function body (a top-level
    `return`), and its linecache entry (so tracebacks show the user's lines)."""

    code: types.CodeType
    as_function: bool
    lines: tuple[int, None, list[str], str]


_compiled: OrderedDict[tuple[str, str], _Compiled] = OrderedDict()
COMPILED_CACHE_SIZE = 256  # distinct (code text, filename) pairs kept compiled in one interpreter


def compiled(code: str, filename: str) -> _Compiled:
    """The code text compiled (from the cache when the same text ran here before; least recently used
    entries are dropped past COMPILED_CACHE_SIZE). A SyntaxError is not cached."""
    key = (code, filename)
    entry = _compiled.get(key)
    if entry is not None:
        _compiled.move_to_end(key)
        return entry
    lines = (len(code), None, code.splitlines(True), filename)
    linecache.cache[filename] = lines  # before parsing: a SyntaxError's traceback shows the line
    tree = ast.parse(code, filename)
    if _has_top_level_return(tree):
        entry = _Compiled(compile(_as_function(tree), filename, "exec"), True, lines)
    else:
        entry = _Compiled(compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), False, lines)
    _compiled[key] = entry
    if len(_compiled) > COMPILED_CACHE_SIZE:
        _compiled.popitem(last=False)
    return entry


def execute(request: Mapping[str, Any]) -> Any:
    """Run one snippet and return its result (not yet JSON-converted); user exceptions propagate."""
    code: str = request["code"]
    filename: str = request.get("filename") or "<python step>"
    inputs: Mapping[str, Any] = request.get("input") or {}  # a fresh dict from the channel: not copied
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, "__file__": filename}
    for alias, module, name in request.get("libs") or ():
        namespace[alias] = _import(module, name, alias)
    namespace["input_data"] = dict(inputs)  # before the inputs: an input named input_data replaces it
    for name, value in inputs.items():
        if name.isidentifier() and not keyword.iskeyword(name) and name != "context":
            namespace[name] = value
    namespace["context"] = _freeze(request.get("context") or {})
    entry = compiled(code, filename)
    if linecache.cache.get(filename) is not entry.lines:  # another text of the same name ran meanwhile
        linecache.cache[filename] = entry.lines
    body_value = None
    try:
        if entry.as_function:
            exec(entry.code, namespace)
            body_value = _await(namespace.pop(_STEP_FUNCTION)())
        else:
            _await(eval(entry.code, namespace))
        main = namespace.get("main")
        if inspect.isfunction(main):
            value = _call_main(main, inputs)
            if value is not None:
                return value
    except SystemExit as exc:  # sys.exit(0) ends the code normally; other codes are errors
        if exc.code not in (None, 0):
            raise
    if body_value is not None:
        return body_value
    return namespace.get("result")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify(exc: BaseException) -> tuple[str, bool]:
    """(error kind, retryable) of an exception raised by user code (spec 3.1)."""
    if isinstance(exc, MemoryError):
        return "resource_exhausted", False
    for link in _chain(exc):
        if isinstance(link, TimeoutError):
            return "timeout", True
        if isinstance(link, (ConnectionError, socket.gaierror, socket.herror)):
            return "connection", True
        reason = getattr(link, "reason", None)  # urllib.error.URLError wraps the socket error
        if isinstance(reason, (ConnectionError, socket.gaierror, socket.herror)):
            return "connection", True
        if isinstance(reason, TimeoutError):
            return "timeout", True
    return "python_exception", False


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _user_traceback(exc: BaseException) -> str:
    frames = exc.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename in (_RUNNER_FILE, ast.__file__):
        frames = frames.tb_next
    return "".join(traceback.format_exception(type(exc), exc, frames))


def _error(exc: BaseException) -> dict[str, Any]:
    kind, retryable = classify(exc)
    message = str(exc) or _type_name(exc)
    if isinstance(exc, MemoryError):
        limit = f" (the limit is {_memory_limit // 2**20} MiB of address space)" if _memory_limit else ""
        message = f"the code ran out of memory{limit}: {message}"
    return {"status": "error", "kind": kind, "retryable": retryable, "type": _type_name(exc),
            "message": message, "traceback": _user_traceback(exc), "recycle": kind == "resource_exhausted"}


def serve(request: Mapping[str, Any], output_limit: int) -> dict[str, Any]:
    """One request → one reply; never raises (except for the process being killed)."""
    started = time.perf_counter()
    out, err = _Capture(output_limit), _Capture(output_limit)
    saved = (sys.stdout, sys.stderr, _cwd(), list(sys.path), _environ_snapshot(), list(sys.argv))
    sys.stdout, sys.stderr = out, err
    reply: dict[str, Any]
    try:
        if request.get("cwd"):
            os.chdir(request["cwd"])
        value = execute(request)
        reply = {"status": "ok", "data": to_json_value(value)}
    except SystemExit as exc:  # a non-zero code (execute() lets sys.exit(0) end normally)
        reply = {"status": "error", "kind": "python_exception", "retryable": False,
                 "type": "SystemExit", "message": f"the code called sys.exit({exc.code!r})",
                 "traceback": _user_traceback(exc)}
    except UnserialisableValue as exc:
        reply = {"status": "error", "kind": "python_exception", "retryable": False,
                 "type": "TypeError", "message": f"the result cannot be sent as JSON: {exc}"}
    except BaseException as exc:
        reply = _error(exc)
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        _restore(saved[2], saved[3], saved[4], saved[5])
    if reply.get("recycle"):
        gc.collect()
    reply["stdout"] = out.getvalue()
    reply["stderr"] = err.getvalue()
    reply["output_truncated"] = out.truncated or err.truncated
    reply["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return reply


_home: str | None = None  # the working directory between requests, once known


def _cwd() -> str:
    """The working directory between requests: read once (every request ends by restoring it)."""
    global _home
    if _home is None:
        _home = os.getcwd()
    return _home


def _environ_data() -> dict[Any, Any] | None:
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else None


def _environ_snapshot() -> dict[Any, Any]:
    """A copy of the environment as os.environ keeps it (encoded, bytes on POSIX: a plain dict copy,
    ~100x cheaper than decoding every variable); compared and restored by `_restore_environ`."""
    data = _environ_data()
    return dict(data) if data is not None else dict(os.environ)


def _restore_environ(snapshot: dict[Any, Any]) -> None:
    if _environ_snapshot() == snapshot:
        return
    if _environ_data() is not None:  # the snapshot is encoded: decode it as os.environ does
        snapshot = {os.environ.decodekey(k): os.environ.decodevalue(v) for k, v in snapshot.items()}
    os.environ.clear()
    os.environ.update(snapshot)


def _restore(cwd: str, path: list[str], environ: dict[Any, Any], argv: list[str]) -> None:
    global _home
    try:
        if os.getcwd() != cwd:
            os.chdir(cwd)
    except OSError:  # the current directory was removed, or the saved one was
        try:
            os.chdir(cwd)
        except OSError:
            _home = None  # read again next time
    if sys.path != path:
        sys.path[:] = path
    if sys.argv != argv:
        sys.argv[:] = argv
    _restore_environ(environ)


def _limit_memory(limit: int) -> None:
    global _memory_limit
    if limit <= 0:
        return
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    _memory_limit = limit


def _orphaned() -> None:
    """The worker that started this interpreter died: end it, and whatever its code started."""
    if os.getpgid(0) == os.getpid():  # the pool starts each interpreter as its own process group
        os.killpg(0, signal.SIGKILL)
    os._exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.tools.python_runner")
    parser.add_argument("--memory-limit", type=int, default=0, help="address-space limit in bytes")
    parser.add_argument("--output-limit", type=int, default=64 * 1024, help="characters of output kept")
    parser.add_argument("--parent-pid", type=int, default=0,
                        help="exit when this process (the worker) dies; default: the parent at start")
    args = parser.parse_args(argv)
    watch_parent(args.parent_pid or os.getppid(), _orphaned)
    _limit_memory(args.memory_limit)
    chan_in, chan_out = _take_channel()
    send(chan_out, {"ready": True, "pid": os.getpid()})
    while True:
        request = receive(chan_in)
        if request is None:
            return 0
        reply = serve(request, args.output_limit)
        try:
            send(chan_out, reply)
        except (TypeError, ValueError) as exc:  # a stdout/stderr capture that is not valid text
            send(chan_out, {"status": "error", "kind": "internal", "retryable": False,
                            "type": type(exc).__name__, "message": f"the reply cannot be sent: {exc}"})


if __name__ == "__main__":
    sys.exit(main())
