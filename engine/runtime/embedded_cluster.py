"""A local NATS JetStream cluster: N nats-servers on loopback, routed to each other, each with its own
store (tests, `noetl dev cluster` later). The embedded stack stays single-node (engine/runtime/embedded.py,
whose process handling this reuses); a cluster is started only on purpose.

    with EmbeddedNatsCluster(data_dir, size=3) as cluster:   # formed, with a JetStream meta leader
        bus = await Bus.connect(cluster.url)                  # "nats://127.0.0.1:A,nats://127.0.0.1:B,..."
        cluster.kill(0)                                       # SIGKILL one node
        cluster.restart(0)                                    # same ports and store; waits for the rejoin
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from engine.runtime.embedded import EmbeddedError, EmbeddedNats, _log_size, _log_tail, find_nats_server
from engine.runtime.reaper import reap_when_done

logger = logging.getLogger(__name__)

__all__ = ["ClusterNode", "EmbeddedNatsCluster", "free_ports"]

_POLL_S = 0.05


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 now (held open together, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _get_json(url: str) -> dict[str, Any] | None:
    """The JSON a monitoring endpoint answers with (also on an error status, as /healthz does), or None
    when the server does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (OSError, ValueError):
        return None
    with contextlib.suppress(ValueError):
        found = json.loads(body)
        return found if isinstance(found, dict) else None
    return None


@dataclass
class ClusterNode:
    """One server of the cluster: fixed ports (a restart reuses them), its own store directory."""

    index: int
    name: str
    port: int
    cluster_port: int
    monitor_port: int
    state_dir: Path
    server: EmbeddedNats | None = field(default=None, repr=False)  # None while it is not running
    host: str = "127.0.0.1"  # the address it listens on (clients, routes, monitoring)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def route(self) -> str:
        return f"nats://{self.host}:{self.cluster_port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "nats-server.log"

    def is_running(self) -> bool:
        return self.server is not None and self.server.is_running()

    def health(self) -> dict[str, Any] | None:
        """/healthz: `{"status": "ok"}` once the server is in touch with the JetStream meta leader and its
        streams and consumers are current; None when it does not answer."""
        return _get_json(f"{self.monitor_url}/healthz")

    def meta(self) -> dict[str, Any] | None:
        """The JetStream meta group as this server sees it (/jsz `meta_cluster`: leader, cluster_size,
        replicas)."""
        found = _get_json(f"{self.monitor_url}/jsz")
        meta = found.get("meta_cluster") if found else None
        return meta if isinstance(meta, dict) else None


class EmbeddedNatsCluster:
    """`size` nats-servers with JetStream on `host` (127.0.0.1 unless told), one cluster (`name`), stores
    under `data_dir/node-<i>`. `start()` returns once every node is healthy and agrees on a meta leader."""

    def __init__(self, data_dir: Path, size: int = 3, *, name: str = "noetl",
                 binary: Path | str | None = None, host: str = "127.0.0.1") -> None:
        if size < 1:
            raise EmbeddedError(f"a cluster needs at least 1 server, not {size}", where="EmbeddedNatsCluster",
                                fix="use size=3 for a cluster that survives the loss of one server")
        self.name = name
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._binary = binary
        ports = free_ports(3 * size)
        self.nodes = [ClusterNode(index=i, name=f"{name}-{i}", port=ports[3 * i],
                                  cluster_port=ports[3 * i + 1], monitor_port=ports[3 * i + 2],
                                  state_dir=self.data_dir / f"node-{i}", host=host) for i in range(size)]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (what NOETL_NATS_URL takes)."""
        return ",".join(node.url for node in self.nodes)

    # ------------------------------------------------------------------------------------------ starting

    def start(self, timeout_s: float = 30.0) -> EmbeddedNatsCluster:
        """Start every node; return once the cluster has formed (each node healthy, one meta leader)."""
        exe = find_nats_server(self._binary)
        try:
            for node in self.nodes:
                self._launch(exe, node)
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        logger.info("nats cluster %s of %d servers ready at %s", self.name, len(self.nodes), self.url)
        return self

    def _launch(self, exe: Path, node: ClusterNode) -> None:
        node.state_dir.mkdir(parents=True, exist_ok=True)
        routes = ",".join(other.route for other in self.nodes if other is not node)
        args = [str(exe), "-js", "-a", node.host, "-p", str(node.port), "-m", str(node.monitor_port),
                "-n", node.name, "-sd", str(node.state_dir / "store")]
        if len(self.nodes) > 1:  # JetStream refuses a cluster of one (no routes): a lone server then
            args += ["--cluster_name", self.name, "--cluster", node.route, "--routes", routes]
        logger.info("starting %s", " ".join(args))
        with node.log_path.open("ab") as log:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        reap_when_done(process, f"nats-server-{node.name}")
        node.server = EmbeddedNats(url=node.url, port=node.port, monitor_url=node.monitor_url,
                                   pid=process.pid, state_dir=node.state_dir, started=True, _process=process)

    def healthy(self) -> bool:
        """Every node runs, answers /healthz with ok, sees a meta leader and all the cluster's peers, and
        advertises every server to its clients."""
        return all(self._node_healthy(node) for node in self.nodes)

    def _node_healthy(self, node: ClusterNode) -> bool:
        if not node.is_running():
            return False
        health = node.health()
        if health is None or health.get("status") != "ok":
            return False
        if len(self.nodes) == 1:
            return True
        meta = node.meta()
        if not (meta is not None and bool(meta.get("leader")) and meta.get("cluster_size") == len(self.nodes)
                and len(meta.get("replicas") or ()) == len(self.nodes) - 1):
            return False
        # what it tells a client connecting now (INFO connect_urls): every server, once routes are gossiped
        varz = _get_json(f"{node.monitor_url}/varz")
        return varz is not None and len(set(varz.get("connect_urls") or ())) == len(self.nodes)

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Return once `healthy()`; EmbeddedError naming the nodes that are not, after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            for node in self.nodes:
                if node.server is not None and not node.is_running():
                    raise self._error(node, "exited while the cluster was forming")
            if time.monotonic() >= deadline:
                sick = [n for n in self.nodes if not self._node_healthy(n)]
                raise self._error(sick[0], f"was not healthy within {timeout_s:.0f} s (also: "
                                           f"{', '.join(n.name for n in sick[1:]) or 'none'}); "
                                           f"its /healthz: {sick[0].health()}")
            time.sleep(_POLL_S)

    def _error(self, node: ClusterNode, what: str) -> EmbeddedError:
        return EmbeddedError(f"nats-server {node.name} (port {node.port}) {what}", where=str(node.state_dir),
                             fix=f"are ports {node.port}, {node.cluster_port}, {node.monitor_port} free? "
                                 f"log tail:\n{_log_tail(node.log_path)}")

    # ---------------------------------------------------------------------------------- faults, restarts

    def kill(self, index: int, timeout_s: float = 5.0) -> int:
        """SIGKILL node `index` (as a crash would) and wait until it is gone; returns its pid."""
        node = self.nodes[index]
        server = node.server
        if server is None or not server.is_running():
            raise EmbeddedError(f"nats-server {node.name} is not running", where="EmbeddedNatsCluster.kill",
                                fix="restart(index) it first")
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGKILL)
        if not server._wait_exit(timeout_s):
            raise EmbeddedError(f"nats-server {node.name} (pid {server.pid}) survived SIGKILL for "
                                f"{timeout_s:.0f} s", where=str(node.state_dir), fix="kill it by hand")
        node.server = None
        logger.info("killed nats-server %s (pid %s)", node.name, server.pid)
        return server.pid

    def restart(self, index: int, timeout_s: float = 30.0) -> None:
        """Start node `index` again on its ports and store; return once the whole cluster is healthy."""
        node = self.nodes[index]
        if node.is_running():
            raise EmbeddedError(f"nats-server {node.name} is already running", where="EmbeddedNatsCluster",
                                fix="kill(index) it first")
        since = _log_size(node.log_path)
        self._launch(find_nats_server(self._binary), node)
        try:
            self.wait_healthy(timeout_s)
        except EmbeddedError as exc:
            raise EmbeddedError(f"nats-server {node.name} did not rejoin the cluster: {exc.message}",
                                where=str(node.state_dir),
                                fix=f"log tail:\n{_log_tail(node.log_path, since=since)}") from exc

    # ----------------------------------------------------------------------------------------- stopping

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL). Idempotent."""
        errors = []
        for node in self.nodes:
            if node.server is not None:
                try:
                    node.server.stop()
                except EmbeddedError as exc:
                    errors.append(exc)
                node.server = None
        if errors:
            raise errors[0]

    def __enter__(self) -> EmbeddedNatsCluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
