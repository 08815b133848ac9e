"""`noetl run FILE` as a thin client of a running `noetl dev up` stack: its REST API over the standard
library, without building the Typer app or importing the engine (docs/performance.md, "Command line").

`attempt(args)` runs the command and returns its exit code, or returns None, having printed nothing,
when the full path (noetl.commands.run) must run it: NOETL_FAST_RUN=0, an option this path does not
take, no dev stack or no token for it, a playbook the server refused (the full path prints the same
diagnostics), or an API that could not be reached or answered unexpectedly. Once the execution may have
been started, what goes wrong is handed to the full path with its id (noetl.commands.run.resume), which
starts it once and follows it after the events already shown. Output and exit codes are the full path's.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from noetl.wire import Connection, WireError

TYPE_CHECKING = False  # not typing's: importing typing and dataclasses costs this path ~15 ms
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from noetl.progress import Progress

SWITCH = "NOETL_FAST_RUN"  # 0: always the full path (tests compare both)
TRACE = "NOETL_FAST_RUN_TRACE"  # 1: say on stderr which path ran, and why the fast one did not
EXIT_COMPLETED, EXIT_FAILED = 0, 1
ENDED = ("completed", "failed", "cancelled")
TERMINAL = frozenset(f"execution.{status}" for status in ENDED)
# settings the full path reads and checks even against a dev stack (an invalid one is its error to
# print), or that send its start elsewhere than the dev stack's API would (another bus prefix)
FULL_PATH_SETTINGS = ("NOETL_IDLE_STOP", "NOETL_OUTAGE_WAIT_S", "NOETL_BUS_PREFIX", "NOETL_SECRET_KEY",
                      "NOETL_ACK_WAIT_S", "NOETL_POOLS")
REQUEST_TIMEOUT_S = 30.0  # one request's answer
STREAM_IDLE_S = 60.0  # the event stream sends a keep-alive every 15 s: silence longer than this is a fault


class Unexpected(Exception):
    """The API answered in a way this path does not handle: the full path takes over."""


class Invocation:
    """What `noetl run` was asked, when this path can do it."""

    __slots__ = ("as_json", "file", "payload", "timeout")

    def __init__(self, file: Path, payload: dict[str, Any], as_json: bool,
                 timeout: float | None = None) -> None:
        self.file = file
        self.payload = payload
        self.as_json = as_json
        self.timeout = timeout


class DevApi:
    """Where the dev stack's API listens and the token this home's command line uses there."""

    __slots__ = ("host", "port", "token")

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host = host
        self.port = port
        self.token = token


def parse_args(args: list[str]) -> Invocation | None:
    """`run FILE [--json] [--payload JSON] [--merge] [--timeout S]` (options in any order); None for
    anything else, including a value the full path would refuse (it says why)."""
    if not args or args[0] != "run":
        return None
    file: str | None = None
    payload_text: str | None = None
    timeout_text: str | None = None
    as_json = False
    rest = args[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--json":
            as_json = True
        elif arg == "--merge":
            pass
        elif arg == "--payload" and i + 1 < len(rest):
            payload_text = rest[i + 1]
            i += 1
        elif arg.startswith("--payload="):
            payload_text = arg.split("=", 1)[1]
        elif arg == "--timeout" and i + 1 < len(rest):
            timeout_text = rest[i + 1]
            i += 1
        elif arg.startswith("--timeout="):
            timeout_text = arg.split("=", 1)[1]
        elif arg.startswith("-") or file is not None:
            return None
        else:
            file = arg
        i += 1
    if file is None:
        return None
    payload: Any = {}
    if payload_text:
        try:
            payload = json.loads(payload_text)
        except ValueError:
            return None
        if not isinstance(payload, dict):
            return None
    timeout: float | None = None
    if timeout_text is not None:
        try:
            timeout = float(timeout_text)
        except ValueError:
            return None
        if timeout != timeout:  # NaN: whatever the full path makes of it
            return None
    return Invocation(Path(file), payload, as_json, timeout)


def dev_api(home: Path) -> DevApi | None:
    """The running dev stack's API of `home` and its command-line token, else None."""
    from noetl.devstack import cli_token_file, running_dev_stack

    state = running_dev_stack(home)
    if state is None or not isinstance(state.get("api_url"), str):
        return None
    url = urlsplit(state["api_url"])
    try:
        token = cli_token_file(home).read_text().strip()
    except OSError:
        return None
    if url.scheme != "http" or not url.hostname or not url.port or not token:
        return None
    return DevApi(url.hostname, url.port, token)


def warning_lines(warnings: list[dict[str, Any]], file: str) -> list[str]:
    """A registration's warnings as the full path prints them (engine.dsl.diagnostics.Diagnostic.format)."""
    return [f"{file}:{w['line']}:{w['column']} {w['path']}: warning: {w['message']}" for w in warnings]


def summary_of(execution_id: str, detail: dict[str, Any]) -> dict[str, Any]:
    """The summary document of `noetl run --json` (engine.runtime.summary) from the API's execution:
    the same keys in the same order; a step's `stats` only when it has some."""
    steps: dict[str, dict[str, Any]] = {}
    for name, state in (detail.get("steps") or {}).items():
        entry = {"status": state["status"], "result": state.get("result"), "error": state.get("error"),
                 "attempts": state.get("attempts", 0)}
        if state.get("stats") is not None:
            entry["stats"] = state["stats"]
        steps[name] = entry
    return {"execution_id": execution_id, "trace_id": detail.get("trace_id"), "status": detail["status"],
            "result": detail.get("result"), "error": detail.get("error"), "steps": steps}


class StreamedEvent:
    """An event of the API's stream as noetl.progress reads it (noetl.progress.StepEvent)."""

    __slots__ = ("attempt", "loop_index", "payload", "step", "type")

    def __init__(self, item: dict[str, Any]) -> None:
        self.type: str = str(item["type"])
        self.step: str | None = item.get("step")
        self.attempt: int | None = item.get("attempt")
        self.loop_index: int | None = item.get("loop_index")
        self.payload: dict[str, Any] = item.get("payload") or {}


def sse_data(lines: list[bytes]) -> dict[str, Any] | None:
    """The JSON of one Server-Sent Event's `data:` lines, or None for a comment (a keep-alive)."""
    data = [line[5:].strip() for line in lines if line.startswith(b"data:")]
    return json.loads(b"\n".join(data)) if data else None


class Api:
    """The dev stack's API on one keep-alive connection."""

    def __init__(self, api: DevApi) -> None:
        self.headers = {"Authorization": f"Bearer {api.token}"}
        self.conn = Connection(api.host, api.port, REQUEST_TIMEOUT_S)

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        headers = {**self.headers, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        status, _ = self.conn.request(method, path, headers, body)
        return status, self.conn.json()

    def events(self, execution_id: str, after_seq: int) -> Iterator[bytes]:
        """The lines of the execution's event stream (Server-Sent Events)."""
        status, _ = self.conn.request("GET", f"/api/executions/{execution_id}/stream?after_seq={after_seq}",
                                      {**self.headers, "Accept": "text/event-stream"})
        if status != 200:
            self.conn.body()
            raise Unexpected(f"the event stream answered {status}")
        self.conn.settimeout(STREAM_IDLE_S)
        return self.conn.lines()

    def close(self) -> None:
        self.conn.close()


def _trace(message: str) -> None:
    if os.environ.get(TRACE) == "1":
        print(f"noetl run: {message}", file=sys.stderr, flush=True)


def attempt(args: list[str]) -> int | None:
    """The exit code of `noetl run` done through the dev stack's API, or None for the full path."""
    if os.environ.get(SWITCH) == "0":
        return _declined("NOETL_FAST_RUN=0")
    invocation = parse_args(args)
    if invocation is None:
        return _declined("options this path does not take")
    if any(os.environ.get(name) for name in FULL_PATH_SETTINGS):
        return _declined("settings the full path checks")
    from noetl.settings import noetl_home

    found = dev_api(noetl_home())
    if found is None:
        return _declined("no dev stack with an API and a command-line token")
    try:
        text = invocation.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return _declined("a file the full path reports")
    from noetl.progress import plain_here

    if not invocation.as_json and not plain_here():  # rich only when it shows the progress
        _prefetch()
    api = Api(found)
    try:
        return _run(api, invocation, text)
    finally:
        api.close()


def _prefetch() -> None:
    """Ready rich on a thread while this one waits on the API (noetl.progress.warm_up): rich's console
    takes about as long to import as the registration and the start take to answer. Importing it here
    later waits for that import to end (the import system's module lock), or imports it again if it
    failed."""
    import threading

    def run() -> None:
        with contextlib.suppress(Exception):  # the import here says why, with its traceback
            from noetl.progress import warm_up

            warm_up()

    threading.Thread(target=run, name="import rich", daemon=True).start()


def _declined(why: str) -> int | None:
    """None: the full path runs the command (`why` in the trace)."""
    _trace(f"full path ({why})")
    return None


def _run(api: Api, invocation: Invocation, text: str) -> int | None:
    file = str(invocation.file)
    try:
        status, registered = api.request("POST", "/api/catalog/register", text.encode(), "application/yaml")
    except (OSError, WireError, Unexpected) as exc:
        return _declined(f"the API did not register the playbook ({exc})")
    if status != 201 or not isinstance(registered, dict) or not isinstance(registered.get("path"), str) \
            or not isinstance(registered.get("version"), int):
        return _declined(f"the API answered {status} to the registration")
    from engine.protocol.ids import new_execution_id

    execution_id = new_execution_id()
    started = {"path": registered["path"], "version": registered["version"], "payload": invocation.payload,
               "execution_id": execution_id}
    handoff: dict[str, Any] = {"path": registered["path"], "version": registered["version"],
                               "execution_id": execution_id}
    try:
        status, _ = api.request("POST", "/api/execute", json.dumps(started).encode())
    except (OSError, WireError, Unexpected) as exc:
        status = 0  # it may have started: the full path starts it once, under its id
        _trace(f"the start went unanswered ({exc})")
    if 400 <= status < 500:  # refused: nothing started, and the full path says why
        return _declined(f"the API answered {status} to the start")
    for line in warning_lines(registered.get("warnings") or [], file):
        print(line, file=sys.stderr)
    if status != 201:
        return _finish(invocation, _resume(invocation, text, handoff, None, []), None)
    _trace("fast path")
    from noetl.progress import Progress

    deadline = None if invocation.timeout is None else time.monotonic() + invocation.timeout
    progress = Progress(execution_id, quiet=invocation.as_json)
    seen: list[dict[str, Any]] = []
    with progress:
        try:
            summary = _follow(api, execution_id, progress, seen, deadline)
        except (OSError, WireError, Unexpected, ValueError, KeyError, TypeError) as exc:
            _trace(f"the full path follows on ({exc})")
            if deadline is not None:  # the full path's --timeout: what is left of it
                handoff["timeout"] = deadline - time.monotonic()
            summary = _resume(invocation, text, handoff, progress, seen)
    return _finish(invocation, summary, progress)


def _follow(api: Api, execution_id: str, progress: Progress, seen: list[dict[str, Any]],
            deadline: float | None) -> dict[str, Any]:
    """The execution's events shown as they come, then its summary; when `deadline` (time.monotonic)
    comes first, the summary of the events seen (as the full path makes it)."""
    stream = api.events(execution_id, 0)
    lines: list[bytes] = []
    ended = False
    while not ended:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return _partial(execution_id, seen)
            api.conn.settimeout(min(STREAM_IDLE_S, left))
        try:
            line = next(stream, None)
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                return _partial(execution_id, seen)
            raise
        if line is None:
            break
        if line:
            lines.append(line)
            continue
        item, lines = sse_data(lines), []
        if item is None:
            continue
        seen.append(item)
        progress.update(StreamedEvent(item))
        ended = item.get("type") in TERMINAL
    if not ended:
        raise Unexpected("the event stream ended before the execution did")
    api.conn.settimeout(REQUEST_TIMEOUT_S)
    for _ in stream:  # the server ends it after the terminal event: the connection serves the next request
        pass
    status, detail = api.request("GET", f"/api/executions/{execution_id}")
    if status != 200 or not isinstance(detail, dict) or detail.get("status") not in ENDED:
        raise Unexpected(f"the execution answered {status}")
    return summary_of(execution_id, detail)


def _partial(execution_id: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    from engine.protocol.events import Event
    from noetl.follow import partial_summary

    return partial_summary(execution_id, [Event.model_validate(item) for item in seen])


def _resume(invocation: Invocation, text: str, handoff: dict[str, Any], progress: Progress | None,
            seen: list[dict[str, Any]]) -> dict[str, Any]:
    from noetl.commands.run import HandOff, resume

    timeout = handoff.get("timeout", invocation.timeout)
    return resume(text, str(invocation.file), invocation.payload, invocation.as_json, timeout,
                  HandOff(handoff["path"], int(handoff["version"]), handoff["execution_id"], progress, seen))


def _finish(invocation: Invocation, summary: dict[str, Any], progress: Progress | None) -> int:
    """What the full path does at the end: the summary line(s) on stderr, the document on stdout, and
    the line of a --timeout that ended first."""
    if progress is not None and summary["status"] in ENDED:
        progress.finish(summary)
    if invocation.as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        sys.stdout.flush()
    if summary["status"] not in ENDED:
        from noetl.follow import EXIT_RUNNING, report_timeout

        report_timeout(summary["execution_id"], invocation.timeout, summary["status"])
        return EXIT_RUNNING
    return EXIT_COMPLETED if summary["status"] == "completed" else EXIT_FAILED
