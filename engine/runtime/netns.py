"""Network namespaces joined to this host by veth pairs: the simulated hosts of a local cluster (Linux)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.runtime.processes import file_lock

logger = logging.getLogger(__name__)

__all__ = ["HostLink", "NetnsError", "Network", "allocate_block", "cut", "exec_prefix", "link_state",
           "remove_all", "require_netns", "restore", "setup"]

POOL = ipaddress.IPv4Network("10.213.0.0/16")  # where a cluster's /24 is taken from, unless taken already
BLOCK_PREFIX = 24  # one /24 per cluster: .1 the service address, then one /30 per simulated host
MAX_HOSTS = 63  # /30s 1..63 of the /24 (the first /30 holds the service address)
_CAP_NET_ADMIN = 12


class NetnsError(EngineError):
    """A network namespace or veth link could not be made, changed or removed."""

    code = "netns"


@dataclass(frozen=True, slots=True)
class HostLink:
    """One simulated host: its namespace, the veth pair to it, and the /30 the pair's two ends share."""

    namespace: str  # noetl-<cluster id>-<host>
    host_if: str  # the pair's end on this host (taken down to cut the host off)
    ns_if: str  # the end inside the namespace
    host_address: str  # the host's end: the namespace's gateway to the service address
    ns_address: str  # the simulated host's own address

    def as_json(self) -> dict[str, str]:
        return {"namespace": self.namespace, "host_if": self.host_if, "ns_if": self.ns_if,
                "host_address": self.host_address, "ns_address": self.ns_address}


@dataclass(frozen=True, slots=True)
class Network:
    """A cluster's addresses: its /24, the service address (on this host's loopback, where the shared
    servers listen) and each simulated host's link."""

    cluster_id: str
    block: ipaddress.IPv4Network
    links: tuple[HostLink, ...]

    @property
    def service_address(self) -> str:
        return str(self.block.network_address + 1)

    @property
    def service_label(self) -> str:
        """The label of the service address on `lo` (how `remove_all` finds it again)."""
        return f"lo:nl{self.cluster_id}"

    @classmethod
    def plan(cls, cluster_id: str, block: ipaddress.IPv4Network, hosts: Iterable[str]) -> Network:
        """The names and addresses of `hosts` (their short names, e.g. w0) in `block`, a /24."""
        check_cluster_id(cluster_id)
        links = []
        for index, host in enumerate(hosts):
            if index >= MAX_HOSTS:
                raise NetnsError(f"a cluster has at most {MAX_HOSTS} isolated hosts", where="--workers",
                                 fix=f"start at most {MAX_HOSTS} worker hosts with --isolate")
            base = block.network_address + 4 * (index + 1)
            links.append(HostLink(namespace=f"noetl-{cluster_id}-{host}", host_if=f"nl{cluster_id}h{index}",
                                  ns_if=f"nl{cluster_id}n{index}", host_address=str(base + 1),
                                  ns_address=str(base + 2)))
        return cls(cluster_id, block, tuple(links))


def check_cluster_id(cluster_id: str) -> None:
    """6 lower-case hex digits: interface names stay within Linux's 15 characters (nl<id>h<index>)."""
    if len(cluster_id) != 6 or any(c not in "0123456789abcdef" for c in cluster_id):
        raise NetnsError(f"cluster id '{cluster_id}' is not 6 lower-case hex digits", where="netns",
                         fix="use secrets.token_hex(3)")


def allocate_block(taken: Iterable[ipaddress.IPv4Network], seed: int,
                   pool: ipaddress.IPv4Network = POOL) -> ipaddress.IPv4Network:
    """A /24 of `pool` that overlaps none of `taken` (this machine's routes and addresses); the search
    starts at the /24 `seed` picks, so clusters started at once try different blocks first."""
    blocks = list(pool.subnets(new_prefix=BLOCK_PREFIX))
    taken = [net for net in taken if net.prefixlen > 0]  # a default route overlaps everything
    for offset in range(len(blocks)):
        block = blocks[(seed + offset) % len(blocks)]
        if not any(block.overlaps(net) for net in taken):
            return block
    raise NetnsError(f"every /{BLOCK_PREFIX} of {pool} is in use by a route or an address", where="ip route",
                     fix="stop other clusters (`noetl dev cluster down`) or remove stale routes")


def require_netns() -> None:
    """Raise NetnsError saying what is missing when network namespaces cannot be made here."""
    if not sys.platform.startswith("linux"):
        raise NetnsError(f"--isolate needs Linux network namespaces; this is {sys.platform}",
                         where="--isolate", fix="run without --isolate")
    if shutil.which("ip") is None:
        raise NetnsError("--isolate needs the `ip` command (iproute2), which is not on PATH",
                         where="--isolate", fix="install iproute2 (apt-get install iproute2)")
    if not _has_net_admin():
        raise NetnsError("--isolate needs root or the CAP_NET_ADMIN capability to make network namespaces "
                         "and veth links", where="--isolate",
                         fix="run as root (sudo -E noetl dev cluster up --isolate ...), or without --isolate")


def _has_net_admin() -> bool:
    if os.geteuid() == 0:
        return True
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        caps = next(line for line in status if line.startswith("CapEff:")).split()[1]
        return bool(int(caps, 16) >> _CAP_NET_ADMIN & 1)
    return False


def _ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}", where="ip",
                         fix="run as root; `noetl dev cluster down` removes a half-made cluster network")
    return result.stdout


def taken_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 route's destination (all tables) and every address's network on this machine."""
    found: list[ipaddress.IPv4Network] = []
    routes: list[dict[str, Any]] = json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]")
    for route in routes:
        dst = str(route.get("dst", ""))
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                found.append(ipaddress.IPv4Network(dst, strict=False))
    links: list[dict[str, Any]] = json.loads(_ip("-j", "-4", "addr") or "[]")
    for link in links:
        for info in link.get("addr_info", []):
            with contextlib.suppress(ValueError, KeyError):
                found.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return found


MACHINE_LOCK = Path(tempfile.gettempdir()) / "noetl-netns.lock"  # one cluster at a time takes addresses


def setup(cluster_id: str, hosts: Iterable[str], seed: int) -> Network:
    """Choose a free /24, put its service address on `lo`, and make a namespace and a veth pair for each
    of `hosts`; the namespace reaches the service address (only) through its link."""
    require_netns()
    with file_lock(MACHINE_LOCK):  # two parallel `up`s never take the same addresses
        network = Network.plan(cluster_id, allocate_block(taken_networks(), seed), hosts)
        _ip("addr", "add", f"{network.service_address}/32", "dev", "lo", "label", network.service_label)
        for link in network.links:
            _ip("netns", "add", link.namespace)
            _ip("link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if,
                "netns", link.namespace)
            _ip("addr", "add", f"{link.host_address}/30", "dev", link.host_if)
            _ip("link", "set", link.host_if, "up")
            _ip("-n", link.namespace, "link", "set", "lo", "up")
            _ip("-n", link.namespace, "addr", "add", f"{link.ns_address}/30", "dev", link.ns_if)
            _ip("-n", link.namespace, "link", "set", link.ns_if, "up")
            _ip("-n", link.namespace, "route", "add", f"{network.service_address}/32",
                "via", link.host_address)
    logger.info("cluster %s: service address %s, %d namespaces in %s", cluster_id, network.service_address,
                len(network.links), network.block)
    return network


def exec_prefix(namespace: str) -> list[str]:
    """The argv prefix that runs a command inside `namespace`."""
    return ["ip", "netns", "exec", namespace]


def cut(link: HostLink) -> None:
    """Take the host's end of the link down: the namespace keeps its address and routes (its end only loses
    carrier), so what it sends is dropped: its TCP connections time out rather than being reset."""
    _ip("link", "set", link.host_if, "down")


def restore(link: HostLink) -> None:
    """Bring the host's end up again (the kernel puts its /30 route back)."""
    _ip("link", "set", link.host_if, "up")


def link_state(link: HostLink) -> str:
    """'up', 'cut' (the host's end is down) or 'missing'."""
    found = _ip("-j", "link", "show", "dev", link.host_if, check=False)
    if not found.strip():
        return "missing"
    info: list[dict[str, Any]] = json.loads(found)
    return "up" if info and "UP" in info[0].get("flags", []) else "cut"


def remove_all(cluster_id: str) -> list[str]:
    """Remove every namespace, veth link and service address of cluster `cluster_id` (whatever its state
    file says); what was removed. Idempotent. Processes still inside a namespace keep it alive: stop them
    first."""
    check_cluster_id(cluster_id)
    removed: list[str] = []
    links: list[dict[str, Any]] = json.loads(_ip("-j", "link", "show", check=False) or "[]")
    for link in links:
        name = str(link.get("ifname", ""))
        if name.startswith(f"nl{cluster_id}h"):
            _ip("link", "del", name, check=False)
            removed.append(name)
    for line in _ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"noetl-{cluster_id}-"):
            _ip("netns", "del", name)
            removed.append(name)
    addresses: list[dict[str, Any]] = json.loads(_ip("-j", "-4", "addr", "show", "dev", "lo", check=False)
                                                 or "[]")
    for entry in addresses:
        for info in entry.get("addr_info", []):
            if info.get("label") == f"lo:nl{cluster_id}":
                _ip("addr", "del", f"{info['local']}/{info['prefixlen']}", "dev", "lo", check=False)
                removed.append(f"{info['local']} on lo")
    return removed
