"""The error vocabulary and fields of spec section 9, and an http result's body carried once on the wire."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from engine.dsl.results import wrap_result
from engine.dsl.templates import TemplateRenderer
from engine.protocol.commands import RunStep
from engine.protocol.events import Event
from engine.protocol.results import (
    ERROR_KINDS,
    RETRYABLE_BY_DEFAULT,
    ResultEnvelope,
    ToolError,
    fold_body_alias,
    http_error_kind,
    unfold_body_alias,
)
from engine.runtime.step_runner import StepRunner
from engine.tools.base import Tool, ToolCall

pytestmark = pytest.mark.anyio

SPEC_KINDS = {"timeout", "connection", "rate_limit", "auth", "not_found", "client_error", "server_error",
              "db_connection", "db_constraint", "db_deadlock", "db_timeout", "parse", "missing_credential",
              "sql_syntax", "undefined_variable", "python_exception", "resource_exhausted", "cancelled",
              "validation", "contract", "internal"}
BODY = {"paging": {"hasMore": False}, "items": ["a" * 40]}



def http_result(**more: Any) -> dict[str, Any]:
    return {"status_code": 200, "headers": {"content-type": "application/json"}, "url": "http://x/y",
            "elapsed_ms": 3.5, "data": BODY, "body": BODY, **more}


def test_the_error_kinds_are_exactly_the_spec_vocabulary() -> None:
    assert set(ERROR_KINDS) == SPEC_KINDS and len(ERROR_KINDS) == len(SPEC_KINDS)
    assert RETRYABLE_BY_DEFAULT <= SPEC_KINDS
    retried = {"timeout", "connection", "rate_limit", "server_error", "db_connection", "db_deadlock"}
    assert retried <= RETRYABLE_BY_DEFAULT and "sql_syntax" not in RETRYABLE_BY_DEFAULT
    with pytest.raises(ValidationError):
        ToolError.model_validate({"kind": "no_such_kind", "message": "x"})


@pytest.mark.parametrize(("status", "kind", "retryable"), [
    (429, "rate_limit", True), (401, "auth", False), (403, "auth", False), (404, "not_found", False),
    (400, "client_error", False), (422, "client_error", False), (500, "server_error", True),
    (503, "server_error", True),
])
def test_each_http_status_has_its_kind_and_retryability(status: int, kind: str, retryable: bool) -> None:
    assert http_error_kind(status) == (kind, retryable)


def test_http_status_and_its_alias_status_are_one_value_whichever_is_given() -> None:
    assert ToolError(kind="rate_limit", message="x", http_status=429).status == 429
    assert ToolError.model_validate({"kind": "rate_limit", "message": "x", "status": 429}).http_status == 429
    error = ResultEnvelope.fail("server_error", "x", http_status=503).error
    assert error is not None and (error.http_status, error.status, error.retryable) == (503, 503, True)
    with pytest.raises(ValidationError, match="same HTTP status"):
        ToolError.model_validate({"kind": "server_error", "message": "x", "status": 500, "http_status": 503})


@pytest.mark.parametrize(("recorded", "kind", "http_status"), [
    ({"kind": "rate_limited", "code": 429}, "rate_limit", None),
    ({"kind": "sql_constraint", "code": "23505"}, "db_constraint", None),
    ({"kind": "http_status", "code": 404}, "not_found", 404),
    ({"kind": "http_status", "code": 502}, "server_error", 502),
])
def test_errors_recorded_with_revision_one_kinds_read_as_todays_kinds(recorded: dict[str, Any], kind: str,
                                                                      http_status: int | None) -> None:
    event = {"event_id": "e", "idempotency_key": "k", "execution_id": "x", "type": "step.failed",
             "result": {"status": "error", "error": {**recorded, "message": "old"}}}
    error = Event.model_validate(event).result.error  # type: ignore[union-attr]
    assert error is not None and error.kind == kind and error.http_status == http_status


def test_an_http_result_carries_its_body_once_in_json_and_reads_back_as_data_and_body() -> None:
    # the step runner folds a pipeline's task results itself (no per-envelope hook on the hot path)
    envelope = ResultEnvelope.ok(http_result(), task_results={"page": fold_body_alias(http_result())})
    wire = envelope.model_dump_json()
    assert wire.count('"hasMore"') == 2  # the step's result and its one task result, each once
    back = ResultEnvelope.model_validate_json(wire)
    assert back.data["body"] == BODY and back.data["data"] is back.data["body"]
    assert envelope.model_dump()["data"]["body"] == BODY  # only JSON folds it
    handle = wrap_result(back.data, task_results=(back.meta.model_extra or {})["task_results"])
    rendered = TemplateRenderer().render("{{ fetch.results.page.body.paging.hasMore == false }}",
                                         {"fetch": handle}).value
    assert rendered is True  # a task result's `body` is read as its `data`


def test_a_step_result_in_a_command_carries_its_body_once() -> None:
    command = RunStep(command_id="c", execution_id="x", step="s", run=1, pool="p", tasks=[],
                      context={"results": {"fetch": {"data": http_result(), "task_results": None}}})
    wire = command.model_dump_json()
    assert wire.count('"hasMore"') == 1
    back = RunStep.model_validate_json(wire)
    assert back.context.results["fetch"].data["body"] == BODY


def test_a_body_that_differs_from_data_and_other_results_are_left_alone() -> None:
    own = http_result(body="raw text")
    assert fold_body_alias(own) == own
    assert unfold_body_alias({"status_code": 200, "data": 1}) == {"status_code": 200, "data": 1}
    assert fold_body_alias([1, 2]) == [1, 2]


class _Crashes:
    kind = "crashy"

    async def run(self, call: ToolCall) -> ResultEnvelope:
        raise RuntimeError("a bug in the tool")


class _Tools:
    def get(self, kind: str) -> Tool:
        return _Crashes()


async def test_every_tool_error_names_its_tool_as_source_even_when_the_tool_crashes() -> None:
    command = RunStep(command_id="c", execution_id="x", step="s", run=1, pool="p", tasks=[{"kind": "crashy"}])

    async def report(event: Event) -> None:
        return None

    outcome = await StepRunner(_Tools(), started_delay_s=0).run(command, report)
    error = outcome.event.result.error  # type: ignore[union-attr]
    assert error is not None and (error.kind, error.source) == ("internal", "crashy")


class _SnowflakeErrors:
    """The exception classes of `snowflake.connector.errors` that classification looks at."""

    class Error(Exception):
        def __init__(self, message: str, errno: int | None = None, sqlstate: str | None = None) -> None:
            super().__init__(message)
            self.errno = errno
            self.sqlstate = sqlstate

    class ProgrammingError(Error):
        pass

    class IntegrityError(Error):
        pass

    class OperationalError(Error):
        pass

    class InterfaceError(Error):
        pass

    class DataError(Error):
        pass


@pytest.mark.parametrize(("error", "kind"), [
    (_SnowflakeErrors.ProgrammingError("SQL compilation error", errno=1003, sqlstate="42000"), "sql_syntax"),
    (_SnowflakeErrors.IntegrityError("NULL result in a non-nullable column", errno=100072, sqlstate="22000"),
     "db_constraint"),
    (_SnowflakeErrors.OperationalError("could not connect", errno=250003, sqlstate="08001"), "db_connection"),
    (_SnowflakeErrors.ProgrammingError("SQL execution canceled", errno=604, sqlstate="57014"), "db_timeout"),
    (_SnowflakeErrors.Error("Transaction was aborted because of a deadlock", errno=625, sqlstate="40001"),
     "db_deadlock"),
])
def test_snowflake_errors_have_the_database_kinds_and_their_sqlstate_as_pg_code(error: Exception,
                                                                                 kind: str) -> None:
    from engine.tools.snowflake_tool import _classify

    failure = _classify(error, 1, _SnowflakeErrors).envelope().error  # type: ignore[arg-type]
    assert failure is not None and failure.kind == kind
    assert failure.pg_code == error.sqlstate and failure.code == error.errno  # type: ignore[attr-defined]


def test_a_qdrant_rate_limit_carries_the_http_status_and_retry_after() -> None:
    import httpx
    from qdrant_client.http.exceptions import UnexpectedResponse

    from engine.tools.qdrant_tool import _classify

    answer = UnexpectedResponse(status_code=429, reason_phrase="Too Many Requests", content=b"slow down",
                                headers=httpx.Headers({"Retry-After": "3"}))
    failure = _classify(answer, "search", "docs").envelope().error
    assert failure is not None and failure.kind == "rate_limit" and failure.retryable is True
    assert failure.code == "HTTP_429"
    assert (failure.http_status, failure.status, failure.retry_after) == (429, 429, 3.0)
