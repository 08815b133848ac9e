"""The pure parts of `noetl dev cluster`: address blocks, names, the state file, who a recorded pid is."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from engine.runtime import netns
from engine.runtime.embedded import _pg_allow_tcp
from engine.runtime.local_cluster import (
    ClusterError,
    ClusterSpec,
    ClusterState,
    LocalCluster,
    Member,
    _forget_other_topology,
    start_ticks,
)
from engine.runtime.netns import HostLink, NetnsError, Network, allocate_block

net = ipaddress.IPv4Network


# ------------------------------------------------------------------------------------------- addresses
def test_a_block_is_the_seeds_slash_24_of_the_pool_when_nothing_overlaps_it() -> None:
    assert allocate_block([net("192.168.1.0/24"), net("0.0.0.0/0")], seed=5) == net("10.213.5.0/24")


def test_a_block_overlapping_a_route_or_an_address_is_skipped_and_the_search_wraps_around() -> None:
    taken = [net("10.213.255.0/24"), net("10.213.0.4/30"), net("10.213.1.1/32")]
    assert allocate_block(taken, seed=255) == net("10.213.2.0/24")
    assert allocate_block([net("10.213.7.0/24")], seed=7 + 256) == net("10.213.8.0/24")


def test_a_route_covering_the_whole_pool_leaves_no_block_and_the_error_says_how_to_fix_it() -> None:
    with pytest.raises(NetnsError, match="every /24 of 10.213.0.0/16 is in use") as caught:
        allocate_block([net("10.0.0.0/8")], seed=0)
    assert "noetl dev cluster down" in str(caught.value)


def test_each_host_gets_a_slash_30_of_the_block_after_the_service_address() -> None:
    network = Network.plan("0a1b2c", net("10.213.9.0/24"), ["w0", "w1"])
    assert network.service_address == "10.213.9.1" and network.service_label == "lo:nl0a1b2c"
    assert network.links == (
        HostLink("noetl-0a1b2c-w0", "nl0a1b2ch0", "nl0a1b2cn0", "10.213.9.5", "10.213.9.6"),
        HostLink("noetl-0a1b2c-w1", "nl0a1b2ch1", "nl0a1b2cn1", "10.213.9.9", "10.213.9.10"),
    )
    for link in network.links:  # the pair's two ends share a /30 that holds neither the service address
        pair = ipaddress.IPv4Interface(f"{link.host_address}/30").network
        assert ipaddress.IPv4Address(link.ns_address) in pair and pair.subnet_of(network.block)
        assert ipaddress.IPv4Address(network.service_address) not in pair


def test_link_names_fit_linux_interface_names_for_every_host_a_block_holds() -> None:
    network = Network.plan("ffffff", net("10.213.0.0/24"), [f"w{i}" for i in range(netns.MAX_HOSTS)])
    assert max(len(name) for link in network.links for name in (link.host_if, link.ns_if)) <= 15
    assert len({link.ns_address for link in network.links}) == netns.MAX_HOSTS
    assert network.links[-1].ns_address == "10.213.0.254"
    with pytest.raises(NetnsError, match="at most 63"):
        Network.plan("ffffff", net("10.213.0.0/24"), [f"w{i}" for i in range(netns.MAX_HOSTS + 1)])


@pytest.mark.parametrize("cluster_id", ["ABCDEF", "0a1b2", "0a1b2c3", "0a1b2g"])
def test_a_cluster_id_is_six_lower_case_hex_digits(cluster_id: str) -> None:
    with pytest.raises(NetnsError, match="6 lower-case hex digits"):
        Network.plan(cluster_id, net("10.213.0.0/24"), ["w0"])


# ------------------------------------------------------------------------------------------ the state
def test_the_state_file_round_trips_every_member(tmp_path: Path) -> None:
    link = HostLink("noetl-0a1b2c-w0", "nl0a1b2ch0", "nl0a1b2cn0", "10.213.9.5", "10.213.9.6")
    state = ClusterState(id="0a1b2c", home=str(tmp_path), isolate=True, nats_url="nats://10.213.9.1:4222",
                         block="10.213.9.0/24", service_address="10.213.9.1", members=[
                             Member(kind="server", name="server-0", pid=12, ticks=34, ports={"api": 8082},
                                    urls={"api": "http://127.0.0.1:8082"}),
                             Member(kind="worker", name="worker-0", pid=56, namespace=link.namespace,
                                    address=link.ns_address, link=link.as_json())])
    path = tmp_path / "cluster.json"
    state.save(path)
    loaded = ClusterState.load(path)
    assert loaded == state
    assert loaded.api_urls == ["http://127.0.0.1:8082"]
    assert loaded.member("worker-0").host_link() == link
    with pytest.raises(ClusterError, match="no member 'worker-9'.*server-0, worker-0"):
        loaded.member("worker-9")


def test_a_missing_state_file_is_no_cluster_and_an_unreadable_one_says_what_to_do(tmp_path: Path) -> None:
    assert ClusterState.load(tmp_path / "cluster.json") is None
    (tmp_path / "cluster.json").write_text("{not json")
    with pytest.raises(ClusterError, match="unreadable") as caught:
        ClusterState.load(tmp_path / "cluster.json")
    assert "kill its processes by hand" in str(caught.value)


def test_a_recorded_pid_is_ours_only_while_its_start_time_matches() -> None:
    me = os.getpid()
    assert Member(kind="server", name="s", pid=me, ticks=start_ticks(me)).alive()
    assert not Member(kind="server", name="s", pid=me, ticks=(start_ticks(me) or 0) + 1).alive()
    assert not Member(kind="server", name="s").alive()


def test_with_no_cluster_status_says_down_and_down_does_nothing_again_and_again(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path)
    assert cluster.status() == {"status": "down", "home": str(tmp_path), "components": []}
    assert cluster.down()["status"] == "down"
    assert cluster.down()["stopped"] == []


def test_cut_without_a_cluster_or_on_a_host_without_a_link_says_which_hosts_have_one(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path)
    with pytest.raises(ClusterError, match="no cluster runs"):
        cluster.cut("worker-0")
    ClusterState(id="0a1b2c", home=str(tmp_path), isolate=False,
                 members=[Member(kind="worker", name="worker-0")]).save(cluster.state_path)
    with pytest.raises(ClusterError, match="no network link of its own") as caught:
        cluster.cut("worker-0")
    assert "--isolate" in str(caught.value)


@pytest.mark.parametrize(("spec", "option"), [(ClusterSpec(nats=0), "--nats"),
                                              (ClusterSpec(servers=0), "--servers"),
                                              (ClusterSpec(workers=64), "--workers")])
def test_counts_out_of_range_name_their_option(spec: ClusterSpec, option: str) -> None:
    with pytest.raises(ClusterError, match=f"{option} .* out of range"):
        spec.check()


def test_the_nats_stores_are_kept_for_as_many_nodes_and_dropped_for_another_number(tmp_path: Path) -> None:
    data = tmp_path / "nats"
    _forget_other_topology(data, 3)
    (data / "node-0").mkdir()
    _forget_other_topology(data, 3)
    assert (data / "node-0").is_dir()
    _forget_other_topology(data, 1)
    assert not (data / "node-0").exists() and (data / "size").read_text() == "1"


def test_postgres_trusts_the_clusters_block_in_lines_rewritten_at_each_start(tmp_path: Path) -> None:
    hba = tmp_path / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    _pg_allow_tcp(tmp_path, "10.213.9.0/24")
    _pg_allow_tcp(tmp_path, "10.213.10.0/24")
    text = hba.read_text()
    assert "10.213.9.0/24" not in text and text.count("host all all 10.213.10.0/24 trust") == 1
    assert text.startswith("local all all trust\nhost all all 127.0.0.1/32 trust\n# noetl")


def test_isolate_without_root_or_cap_net_admin_says_what_is_missing_and_how_to_fix_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "_has_net_admin", lambda: False)
    monkeypatch.setattr(netns.sys, "platform", "linux")
    with pytest.raises(NetnsError, match="needs root or the CAP_NET_ADMIN capability") as caught:
        netns.require_netns()
    assert "sudo -E noetl dev cluster up --isolate" in str(caught.value)
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    with pytest.raises(NetnsError, match="needs the `ip` command"):
        netns.require_netns()
    monkeypatch.setattr(netns.sys, "platform", "darwin")
    with pytest.raises(NetnsError, match="Linux network namespaces; this is darwin"):
        netns.require_netns()


def test_a_process_without_cap_net_admin_is_told_so_by_its_effective_capabilities(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    status = tmp_path / "status"
    monkeypatch.setattr(netns, "Path", lambda _: status)
    status.write_text("Name:\tpython\nCapEff:\t0000000000000000\n")
    assert not netns._has_net_admin()
    status.write_text("Name:\tpython\nCapEff:\t0000000000001000\n")
    assert netns._has_net_admin()
