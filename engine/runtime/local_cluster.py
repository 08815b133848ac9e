"""A multi-host NoETL on one machine: NATS cluster, Postgres, servers and worker hosts as detached processes.

    cluster = LocalCluster(home)
    state = cluster.up(ClusterSpec(nats=3, servers=2, workers=3, isolate=True), commands)
    cluster.cut("worker-1", for_s=10)      # its link down: its connections time out, as in a partition
    cluster.status()                       # every member with its pid, whether it is alive, its ports
    cluster.down()                         # everything stopped and removed; idempotent

The members outlive the process that starts them; what `status`, `cut` and `down` need (pids and their
start times, ports, namespaces) is in `home/cluster.json`, written before each member starts so that a
failed or killed `up` can still be taken down. The command lines of servers and workers come from the
caller (`MemberCommands`): the engine starts processes, it does not know the command line's commands.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.runtime import netns
from engine.runtime.embedded import _log_tail, start_postgres, stop_postgres
from engine.runtime.embedded_cluster import EmbeddedNatsCluster, free_ports
from engine.runtime.processes import pid_alive

logger = logging.getLogger(__name__)

__all__ = ["ClusterError", "ClusterSpec", "ClusterState", "LocalCluster", "Member", "MemberCommands"]

STATE_FILE = "cluster.json"
STOP_WAIT_S = 15.0  # how long a member may take to stop after SIGTERM before it is killed
_POLL_S = 0.1
_ENV_DROPPED = ("NOETL_HOME", "NOETL_NATS_URL", "NOETL_PG_DSN", "NOETL_SECRET_KEY", "NOETL_SERVER_URL",
                "NOETL_TOKEN", "NOETL_API_PORT")
_SERVING_LINE = b"serving: nats"  # what `serve` prints once its stack runs (noetl.serving)


class ClusterError(EngineError):
    """A local cluster could not be started, changed or stopped."""

    code = "local_cluster"


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    nats: int = 3
    servers: int = 2
    workers: int = 3
    isolate: bool = False

    def check(self) -> None:
        for what, count, least in (("--nats", self.nats, 1), ("--servers", self.servers, 1),
                                   ("--workers", self.workers, 0)):
            if count < least or count > 63:
                raise ClusterError(f"{what} {count} is out of range", where=what,
                                   fix=f"a number from {least} to 63")


@dataclass(frozen=True, slots=True)
class MemberCommands:
    """How the caller's servers and workers are started: argv of a server serving its API on a port,
    argv of a worker host, the environment both get on top of the cluster's (NOETL_HOME, NOETL_NATS_URL,
    NOETL_PG_DSN are set per member), and a hook run once Postgres answers, before any member starts
    (migrations, tokens), given the DSN this host reaches it at."""

    server: Callable[[int], list[str]]
    worker: Callable[[], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    on_store: Callable[[str], None] | None = None


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot, /proc/PID/stat field 22): with the pid, who it is
    (a pid reused by another program has another start time)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Member:
    """One process of the cluster."""

    kind: str  # nats | postgres | server | worker
    name: str
    pid: int | None = None
    ticks: int | None = None  # its start time (start_ticks): a pid of ours only while this matches
    ports: dict[str, int] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    address: str = "127.0.0.1"  # where it listens, or (a worker host) its own address
    namespace: str | None = None
    log: str | None = None
    home: str | None = None
    link: dict[str, str] | None = None  # an isolated host's veth pair (netns.HostLink.as_json)
    timer_pid: int | None = None  # the process that restores a link cut `--for` a while

    def alive(self) -> bool:
        return (self.pid is not None and pid_alive(self.pid)
                and (self.ticks is None or start_ticks(self.pid) == self.ticks))

    def host_link(self) -> netns.HostLink | None:
        return netns.HostLink(**self.link) if self.link else None

    def view(self) -> dict[str, Any]:
        """As `status --json` shows it: what was recorded, whether it is alive, its link's state now."""
        found = {k: v for k, v in asdict(self).items() if k not in ("ticks", "timer_pid")}
        found["alive"] = self.alive()
        link = self.host_link()
        if link is not None:
            found["link"] = {**link.as_json(), "state": netns.link_state(link)}
        return found


@dataclass
class ClusterState:
    """What `home/cluster.json` holds."""

    id: str
    home: str
    isolate: bool
    nats_url: str = ""
    pg_dsn: str = ""  # as this host's processes reach Postgres
    worker_pg_dsn: str = ""  # as the worker hosts reach it (through the service address when isolated)
    embedded_pg: bool = True
    block: str | None = None  # the cluster's /24 when isolated
    service_address: str | None = None
    created_at: float = field(default_factory=time.time)
    members: list[Member] = field(default_factory=list)

    @property
    def api_urls(self) -> list[str]:
        return [m.urls["api"] for m in self.members if m.kind == "server" and "api" in m.urls]

    def member(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        raise ClusterError(f"the cluster has no member '{name}'", where=self.home,
                           fix=f"one of: {', '.join(m.name for m in self.members)}")

    def save(self, path: Path) -> None:
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(asdict(self), indent=2))
        scratch.replace(path)

    @classmethod
    def load(cls, path: Path) -> ClusterState | None:
        try:
            raw = json.loads(path.read_text())
            members = [Member(**m) for m in raw.pop("members", [])]
            return cls(**raw, members=members)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise ClusterError(f"the cluster state file is unreadable: {exc}", where=str(path),
                               fix="kill its processes by hand and delete the file") from exc


class LocalCluster:
    """The cluster whose state lives in `home` (one cluster per home)."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home).expanduser().resolve()
        self.state_path = self.home / STATE_FILE

    def state(self) -> ClusterState | None:
        return ClusterState.load(self.state_path)

    # ------------------------------------------------------------------------------------------ up

    def up(self, spec: ClusterSpec, commands: MemberCommands, *, pg_dsn: str | None = None,
           wait_s: float = 90.0) -> ClusterState:
        """Start the cluster; return once every server's API answers and every worker host serves. On
        failure everything started is taken down again and ClusterError says which member failed."""
        spec.check()
        if spec.isolate:
            netns.require_netns()
        old = self.state()
        if old is not None:
            if any(m.alive() for m in old.members):
                raise ClusterError(f"cluster {old.id} already runs in {self.home}",
                                   where=str(self.state_path),
                                   fix="`noetl dev cluster down` first, or use another NOETL_HOME")
            self.down()  # what a crashed cluster left (namespaces, a state file)
        self.home.mkdir(parents=True, exist_ok=True)
        state = ClusterState(id=secrets.token_hex(3), home=str(self.home), isolate=spec.isolate,
                             embedded_pg=pg_dsn is None)
        state.save(self.state_path)
        try:
            self._start(state, spec, commands, pg_dsn, wait_s)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise
        return state

    def _start(self, state: ClusterState, spec: ClusterSpec, commands: MemberCommands, pg_dsn: str | None,
               wait_s: float) -> None:
        workers = [f"w{i}" for i in range(spec.workers)]
        network: netns.Network | None = None
        bind = "127.0.0.1"
        if spec.isolate:
            network = netns.setup(state.id, workers, seed=int(state.id, 16))
            bind = state.service_address = network.service_address
            state.block = str(network.block)
            state.save(self.state_path)
        self._start_nats(state, spec, bind)
        self._start_postgres(state, pg_dsn, network)
        if commands.on_store is not None:
            commands.on_store(state.pg_dsn)
        ports = free_ports(spec.servers)
        for index in range(spec.servers):
            member = Member(kind="server", name=f"server-{index}", ports={"api": ports[index]},
                            urls={"api": f"http://127.0.0.1:{ports[index]}"})
            self._spawn(state, member, commands.server(ports[index]), commands.env, state.pg_dsn)
        for index in range(spec.workers):
            link = network.links[index] if network is not None else None
            member = Member(kind="worker", name=f"worker-{index}",
                            address=link.ns_address if link else "127.0.0.1",
                            namespace=link.namespace if link else None, link=link.as_json() if link else None)
            argv = [*netns.exec_prefix(link.namespace), *commands.worker()] if link else commands.worker()
            self._spawn(state, member, argv, commands.env, state.worker_pg_dsn)
        self._wait_ready(state, wait_s)

    def _start_nats(self, state: ClusterState, spec: ClusterSpec, bind: str) -> None:
        data_dir = self.home / "nats"
        _forget_other_topology(data_dir, spec.nats)
        cluster = EmbeddedNatsCluster(data_dir, spec.nats, name="noetl", host=bind)
        for node in cluster.nodes:  # recorded before they start: a failed start is still taken down
            state.members.append(Member(kind="nats", name=f"nats-{node.index}", address=bind,
                                        ports={"client": node.port, "cluster": node.cluster_port,
                                               "monitor": node.monitor_port},
                                        urls={"client": node.url, "monitor": node.monitor_url},
                                        log=str(node.log_path)))
        try:
            cluster.start()
        finally:
            recorded = [m for m in state.members if m.kind == "nats"]
            for node, member in zip(cluster.nodes, recorded, strict=True):
                if node.server is not None:
                    member.pid, member.ticks = node.server.pid, start_ticks(node.server.pid)
            state.save(self.state_path)
        state.nats_url = cluster.url

    def _start_postgres(self, state: ClusterState, pg_dsn: str | None, network: netns.Network | None) -> None:
        if pg_dsn is not None:
            state.pg_dsn = state.worker_pg_dsn = pg_dsn
            state.save(self.state_path)
            return
        tcp = None
        if network is not None:  # the namespaces reach it by TCP on the service address; this host by socket
            tcp = (network.service_address, free_ports(1)[0], str(network.block))
        member = Member(kind="postgres", name="postgres", address=tcp[0] if tcp else "unix socket",
                        log=str(self.home / "postgres" / "log"))
        state.members.append(member)
        state.save(self.state_path)
        handle = start_postgres(self.home, tcp=tcp)
        member.pid, member.ticks = handle.pid, start_ticks(handle.pid)
        state.pg_dsn = handle.dsn
        state.worker_pg_dsn = handle.dsn
        if tcp is not None:
            member.ports = {"tcp": tcp[1]}
            state.worker_pg_dsn = f"postgresql://postgres@{tcp[0]}:{tcp[1]}/{handle.database}"
        member.urls = {"dsn": state.pg_dsn, "worker_dsn": state.worker_pg_dsn}
        state.save(self.state_path)

    def _spawn(self, state: ClusterState, member: Member, argv: list[str], extra_env: dict[str, str],
               pg_dsn: str) -> None:
        home = self.home / member.name
        home.mkdir(parents=True, exist_ok=True)
        member.home, member.log = str(home), str(home / f"{member.kind}.log")
        env = {k: v for k, v in os.environ.items() if k not in _ENV_DROPPED}
        env.update(extra_env)
        env.update({"NOETL_HOME": str(home), "NOETL_NATS_URL": state.nats_url, "NOETL_PG_DSN": pg_dsn,
                    "PYTHONUNBUFFERED": "1"})
        logger.info("starting %s: %s", member.name, " ".join(argv))
        with open(member.log, "ab") as log:  # the process has its own copy
            process = subprocess.Popen(argv, env=env, cwd=home, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        member.pid, member.ticks = process.pid, start_ticks(process.pid)
        state.members.append(member)
        state.save(self.state_path)

    def _wait_ready(self, state: ClusterState, wait_s: float) -> None:
        waiting = [m for m in state.members if m.kind in ("server", "worker")]
        deadline = time.monotonic() + wait_s
        while waiting:
            for member in list(waiting):
                if not member.alive():
                    raise ClusterError(f"{member.name} exited while the cluster was starting",
                                       where=str(member.log),
                                       fix=f"its log:\n{_log_tail(Path(str(member.log)))}")
                if _ready(member):
                    waiting.remove(member)
            if not waiting:
                break
            if time.monotonic() > deadline:
                first = waiting[0]
                raise ClusterError(f"{', '.join(m.name for m in waiting)} not ready within {wait_s:.0f} s",
                                   where=str(first.log), fix=f"log of {first.name}:\n"
                                                             f"{_log_tail(Path(str(first.log)))}")
            time.sleep(_POLL_S)
        logger.info("cluster %s ready: %d members", state.id, len(state.members))

    # ------------------------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """Every member as it is now; `status` is up (all alive), degraded (some not) or down (no cluster)."""
        state = self.state()
        if state is None:
            return {"status": "down", "home": str(self.home), "components": []}
        components = [m.view() for m in state.members]
        alive = all(c["alive"] for c in components)
        cut = [c["name"] for c in components if (c.get("link") or {}).get("state") == "cut"]
        return {"status": "up" if alive else "degraded", "id": state.id, "home": state.home,
                "isolate": state.isolate, "nats_url": state.nats_url, "pg_dsn": state.pg_dsn,
                "worker_pg_dsn": state.worker_pg_dsn, "block": state.block,
                "service_address": state.service_address, "api_urls": state.api_urls, "cut": cut,
                "components": components}

    # -------------------------------------------------------------------------------- cut, restore

    def _isolated(self, name: str) -> tuple[ClusterState, Member, netns.HostLink]:
        state = self.state()
        if state is None:
            raise ClusterError("no cluster runs", where=str(self.home),
                               fix="`noetl dev cluster up --isolate`")
        member = state.member(name)
        link = member.host_link()
        if link is None:
            hosts = [m.name for m in state.members if m.link] or ["none: start the cluster with --isolate"]
            raise ClusterError(f"{name} has no network link of its own to cut", where=str(self.state_path),
                               fix=f"an isolated worker host: {', '.join(hosts)}")
        return state, member, link

    def cut(self, name: str, for_s: float | None = None) -> None:
        """Take worker host `name`'s link down (for `for_s` seconds, then up again by itself)."""
        state, member, link = self._isolated(name)
        self._stop_timer(member)
        netns.cut(link)
        if for_s is not None:
            code = (f"import subprocess, time; time.sleep({float(for_s)!r}); "
                    f"subprocess.run(['ip', 'link', 'set', {link.host_if!r}, 'up'])")
            timer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
            member.timer_pid = timer.pid
        state.save(self.state_path)
        logger.info("cut %s (%s)%s", name, link.host_if, f" for {for_s} s" if for_s is not None else "")

    def restore(self, name: str) -> None:
        state, member, link = self._isolated(name)
        self._stop_timer(member)
        netns.restore(link)
        state.save(self.state_path)

    @staticmethod
    def _stop_timer(member: Member) -> None:
        if member.timer_pid is not None and pid_alive(member.timer_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.timer_pid, signal.SIGKILL)
        member.timer_pid = None

    # -------------------------------------------------------------------------------------- down

    def down(self) -> dict[str, Any]:
        """Stop every member (workers, servers, NATS, Postgres), remove the cluster's namespaces, links and
        service address, and its state file. Idempotent; also after members were killed."""
        state = self.state()
        if state is None:
            return {"status": "down", "home": str(self.home), "stopped": [], "removed": []}
        for member in state.members:
            self._stop_timer(member)
            link = member.host_link()
            if link is not None and netns.link_state(link) == "cut":  # reconnected, it can stop cleanly
                with contextlib.suppress(netns.NetnsError):
                    netns.restore(link)
        stopped: list[str] = []
        for kinds in (("worker", "server"), ("nats",)):
            group = [m for m in state.members if m.kind in kinds]
            stopped += _stop_all(group)
        if state.embedded_pg and any(m.kind == "postgres" for m in state.members):
            if stop_postgres(self.home):
                stopped.append("postgres")
            pg = state.member("postgres")
            if pg.alive():
                stopped += _stop_all([pg])
        strays = _processes_of(self.home)  # e.g. python runners of a killed worker (they would exit soon)
        for pid in strays:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while any(pid_alive(pid) for pid in strays) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        stopped += [f"stray pid {pid}" for pid in strays]
        removed = netns.remove_all(state.id) if state.isolate else []
        left = [m.name for m in state.members if m.alive()] + [f"pid {p}" for p in strays if pid_alive(p)]
        if left:
            raise ClusterError(f"{', '.join(left)} still run after being stopped", where=str(self.state_path),
                               fix="kill them by pid (`noetl dev cluster status --json`), then `down` again")
        self.state_path.unlink(missing_ok=True)
        return {"status": "down", "home": str(self.home), "id": state.id, "stopped": stopped,
                "removed": removed}


def _forget_other_topology(data_dir: Path, size: int) -> None:
    """The NATS stores of the last cluster in this home are kept (the streams and the result objects
    survive `down` and `up`, as they survive a restart) while the cluster has as many nodes; with another
    number of nodes its streams could not be recovered (their replicas live on nodes that are gone), so
    the stores are removed and the new cluster starts with empty streams (the executions' history is in
    Postgres)."""
    marker = data_dir / "size"
    with contextlib.suppress(OSError, ValueError):
        if int(marker.read_text()) != size:
            logger.warning("the NATS cluster in %s had %s nodes, now %d: starting with empty stores",
                           data_dir, marker.read_text().strip(), size)
            shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(size))


def _ready(member: Member) -> bool:
    if member.kind == "server":
        try:
            with urllib.request.urlopen(f"{member.urls['api']}/health", timeout=1.0) as response:
                return bool(response.status == 200)
        except (OSError, ValueError, urllib.error.URLError):
            return False
    try:
        with open(str(member.log), "rb") as log:
            return _SERVING_LINE in log.read()
    except OSError:
        return False


def _processes_of(home: Path) -> list[int]:
    """Live processes (other than this one) whose NOETL_HOME is in `home`: what the members started."""
    prefix = f"NOETL_HOME={home}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if any(var.startswith(prefix) for var in (entry / "environ").read_bytes().split(b"\0")) \
                        and pid_alive(int(entry.name)):
                    found.append(int(entry.name))
    return found


def _group_members(leader: int, ticks: int | None) -> list[int]:
    """Processes still in the process group `leader` started (its children, e.g. python runners), also
    after the leader died; only those started after it (a reused pid's group is not ours)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == leader and (ticks is None or int(fields[19]) >= ticks):
                found.append(int(entry.name))
    return found


def _signal(member: Member, sig: signal.Signals) -> None:
    pids = set(_group_members(member.pid, member.ticks)) if member.pid else set()
    if member.alive() and member.pid is not None:
        pids.add(member.pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _stop_all(members: Iterable[Member]) -> list[str]:
    """SIGTERM each member (and what it started), wait up to STOP_WAIT_S, then SIGKILL; their names."""
    members = [m for m in members if m.pid is not None]
    running = [m for m in members if m.alive() or _group_members(int(m.pid or 0), m.ticks)]
    for member in running:
        _signal(member, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S

    def gone(member: Member) -> bool:
        return not member.alive() and not _group_members(int(member.pid or 0), member.ticks)

    while not all(gone(m) for m in running) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    for member in running:
        if not gone(member):
            logger.warning("%s (pid %s) ignored SIGTERM for %.0f s; killing it", member.name, member.pid,
                           STOP_WAIT_S)
            _signal(member, signal.SIGKILL)
    kill_deadline = time.monotonic() + 5.0
    while not all(gone(m) for m in running) and time.monotonic() < kill_deadline:
        time.sleep(_POLL_S)
    return [m.name for m in running]
