"""noetl.outage on its own: which errors are outages, one notice per outage, a bounded wait, one error.
(tests/e2e/test_outages.py drives the same through the command line against real servers.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from control_plane.client import ClientError, ServerUnreachableError
from control_plane.errors import DatabaseUnavailableError, NotFoundError
from engine.bus.jetstream import BusError
from noetl.outage import Rider, UnreachableError, outage_of

WHERE = "user=postgres dbname=noetl host=/tmp/pg port=5432"


def refused() -> DatabaseUnavailableError:
    return DatabaseUnavailableError("could not connect to Postgres within 3s: Connection refused",
                                    where=WHERE, fix="check that the server is running",
                                    reason="Connection refused")


def failing(times: int, error: Callable[[], Exception],
            value: Any = "answer") -> Callable[[], Awaitable[Any]]:
    """A call that fails `times` times with `error()`, then returns `value`; `.calls` counts the calls."""
    async def call() -> Any:
        call.calls += 1  # type: ignore[attr-defined]
        if call.calls <= times:  # type: ignore[attr-defined]
            raise error()
        return value

    call.calls = 0  # type: ignore[attr-defined]
    return call


def ride(call: Callable[[], Awaitable[Any]], wait_s: float = 5.0, **kwargs: Any) -> tuple[Any, list[str]]:
    notices: list[str] = []
    rider = Rider(wait_s, notice=notices.append, pause_s=0.001)
    return asyncio.run(rider(call, **kwargs)), notices


def test_a_call_that_succeeds_returns_its_value_without_a_notice() -> None:
    assert ride(failing(0, refused)) == ("answer", [])


def test_an_outage_that_ends_within_the_wait_prints_one_notice_naming_what_where_and_why() -> None:
    value, notices = ride(failing(3, refused), wait_s=60)
    assert value == "answer"
    assert notices == [f"waiting for Postgres at {WHERE}: Connection refused (up to 60 s)"]


def test_an_outage_longer_than_the_wait_is_one_unreachable_error_with_the_fix() -> None:
    call = failing(10**9, refused)
    with pytest.raises(UnreachableError) as info:
        ride(call, wait_s=0.05)
    assert str(info.value) == (
        f"Postgres at {WHERE} is still unreachable after 0.05 s: Connection refused (check that the server "
        "is running; NOETL_OUTAGE_WAIT_S sets how long commands wait for a server)")
    assert call.calls > 1  # type: ignore[attr-defined]


def test_a_call_that_hangs_during_an_outage_is_cut_at_the_deadline() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise refused()
        await asyncio.Event().wait()  # never answers

    with pytest.raises(UnreachableError):
        ride(call, wait_s=0.05)


def test_zero_wait_fails_at_once_without_a_notice() -> None:
    call = failing(1, refused)
    with pytest.raises(UnreachableError):
        ride(call, wait_s=0)
    assert call.calls == 1  # type: ignore[attr-defined]


def test_an_error_that_is_no_outage_is_raised_at_once() -> None:
    call = failing(1, lambda: NotFoundError("no execution '1'"))
    with pytest.raises(NotFoundError):
        ride(call)
    assert call.calls == 1  # type: ignore[attr-defined]


def test_postgres_refusing_a_wrong_password_is_no_outage() -> None:
    assert outage_of(DatabaseUnavailableError("password authentication failed", transient=False)) is None


def test_a_call_not_safe_to_repeat_is_repeated_only_when_it_never_reached_the_server() -> None:
    def unreachable(reached: bool) -> Callable[[], Exception]:
        return lambda: ServerUnreachableError("cannot reach the NoETL server", url="http://h:1",
                                              reason="All connection attempts failed", reached=reached)

    assert ride(failing(2, unreachable(False)), repeatable=False)[0] == "answer"
    with pytest.raises(ServerUnreachableError):
        ride(failing(1, unreachable(True)), repeatable=False)


def test_a_long_call_goes_on_after_its_probe_answers_and_is_not_cut_by_the_wait() -> None:
    calls = 0

    async def long_call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise refused()
        await asyncio.sleep(0.2)  # longer than the wait: the outage is over, nothing cuts it
        return "ended"

    probe = failing(2, refused, value=None)
    value, notices = ride(long_call, wait_s=0.1, probe=probe)
    assert (value, len(notices), probe.calls) == ("ended", 1, 3)  # type: ignore[attr-defined]


def test_the_servers_503_and_its_absence_are_outages_of_the_noetl_server_and_nats_too() -> None:
    away = outage_of(ClientError(503, title="Service Unavailable", detail="Postgres is unreachable",
                                 url="http://127.0.0.1:8082/api/executions/1"))
    assert away is not None and (away.what, away.where) == ("the NoETL server", "http://127.0.0.1:8082")
    assert outage_of(ClientError(404, title="Not Found", detail="no execution")) is None
    assert outage_of(BusError("publish was not acknowledged", transient=True)).what == "NATS"  # type: ignore[union-attr]
    assert outage_of(BusError("the message is too large")) is None
