"""A NATS URL naming several servers, and the replicas a cluster's streams get (engine/bus/cluster.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.bus.cluster import NatsUrlError, check_replicas, cluster_size, default_replicas, server_list


def test_a_comma_separated_url_lists_every_server_with_its_scheme_and_credentials() -> None:
    assert server_list("nats://a:4222, nats://u:p@b:4223,c:4224") == [
        "nats://a:4222", "nats://u:p@b:4223", "nats://c:4224"]


def test_a_single_url_is_a_list_of_one() -> None:
    assert server_list("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]


def test_a_sequence_of_urls_may_itself_hold_comma_separated_lists() -> None:
    assert server_list(["nats://a:1,nats://b:2", "tls://c:3"]) == ["nats://a:1", "nats://b:2", "tls://c:3"]


@pytest.mark.parametrize("url", ["", " , ", "http://a:4222", "nats://a:port"])
def test_a_url_that_names_no_nats_server_is_refused_with_the_expected_form(url: str) -> None:
    with pytest.raises(NatsUrlError) as raised:
        server_list(url)
    assert "NOETL_NATS_URL" in str(raised.value) and "nats://HOST:PORT" in str(raised.value)


def test_a_server_in_a_cluster_of_three_advertising_three_urls_gives_three_replicas() -> None:
    info = {"jetstream": True, "cluster": "c", "connect_urls": ["h:1", "h:2", "h:3"]}
    assert cluster_size(info) == 3 and default_replicas(info) == 3


def test_a_single_server_or_a_cluster_of_two_gives_one_replica() -> None:
    assert default_replicas({"jetstream": True}) == 1
    assert default_replicas({"jetstream": True, "cluster": "c", "connect_urls": ["h:1", "h:2"]}) == 1


def test_a_server_without_jetstream_gives_one_replica_whatever_its_cluster() -> None:
    assert default_replicas({"cluster": "c", "connect_urls": ["h:1", "h:2", "h:3"]}) == 1


def test_a_replica_count_outside_one_to_five_is_refused() -> None:
    assert check_replicas(3, "here") == 3
    with pytest.raises(NatsUrlError, match="1 to 5, not 7"):
        check_replicas(7, "here")


def test_noetl_nats_replicas_reaches_the_stack_config_and_unset_leaves_the_choice_to_the_cluster(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from noetl.settings import stack_config

    monkeypatch.setenv("NOETL_HOME", str(tmp_path))
    monkeypatch.setenv("NOETL_NATS_URL", "nats://a:4222,nats://b:4222,nats://c:4222")
    monkeypatch.delenv("NOETL_NATS_REPLICAS", raising=False)
    monkeypatch.delenv("NOETL_POOLS", raising=False)
    assert stack_config().nats_replicas is None
    monkeypatch.setenv("NOETL_NATS_REPLICAS", "3")
    config = stack_config()
    assert config.nats_replicas == 3 and config.nats_url == "nats://a:4222,nats://b:4222,nats://c:4222"


@pytest.mark.parametrize("value", ["0", "7", "three"])
def test_a_noetl_nats_replicas_that_is_not_1_to_5_is_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from control_plane.errors import InvalidArgumentError
    from noetl.settings import nats_replicas

    monkeypatch.setenv("NOETL_NATS_REPLICAS", value)
    with pytest.raises(InvalidArgumentError, match="NOETL_NATS_REPLICAS"):
        nats_replicas()
