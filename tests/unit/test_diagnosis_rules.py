"""The diagnosis rules on in-memory events (pure: no stack): kinds, root-cause steps, transience, fixes,
scrubbing and the validation of an LLM's answer."""

from __future__ import annotations

import textwrap
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.diagnosis.facts import ErrorFact, PastRun, StepOutcome, collect
from agents.diagnosis.llm import parse
from agents.diagnosis.model import Diagnosis, Refinement, SimilarFailure
from agents.diagnosis.rules import classify, refine_kind
from agents.diagnosis.scrub import scrub_diagnosis, scrub_text
from engine.protocol.events import Event
from engine.protocol.results import ResultEnvelope
from engine.protocol.sql_result import StatementResult, sql_result

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Log:
    """Builds one execution's events in order."""

    playbook: str
    execution_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        text = "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: t, path: t/t}\n" + \
            textwrap.dedent(self.playbook)
        self.add("execution.started", payload={"playbook": text, "path": "t/t", "version": 1})

    def add(self, type_: str, step: str | None = None, result: ResultEnvelope | None = None,
            **fields: Any) -> Event:
        event = Event(event_id=uuid.uuid4().hex, idempotency_key=uuid.uuid4().hex,
                      execution_id=self.execution_id,
                      type=type_, step=step, result=result,  # type: ignore[arg-type]
                      timestamp=T0 + timedelta(milliseconds=10 * len(self.events)), **fields)
        self.events.append(event)
        return event

    def ok(self, step: str, data: Any, **fields: Any) -> Event:
        self.add("step.scheduled", step)
        return self.add("step.succeeded", step, ResultEnvelope.ok(data), attempt=1, **fields)

    def fail(self, step: str, kind: str, message: str, *, attempts: int = 1, type_: str | None = None,
             code: Any = None, meta: dict[str, Any] | None = None, terminal: bool = True) -> Event:
        self.add("step.scheduled", step)
        envelope = ResultEnvelope.fail(kind, message, type=type_, code=code, **(meta or {}))
        for attempt in range(1, attempts + 1):
            self.add("task.attempt.failed", step, envelope, attempt=attempt, payload={"task": step})
            if attempt < attempts:
                self.add("step.retrying", step, attempt=attempt + 1)
        outcome = self.add("step.failed", step, envelope, attempt=attempts)
        if terminal:
            self.add("execution.failed", payload={"error": {"kind": kind, "message": message, "step": step}})
        return outcome

    def facts(self, history: list[PastRun] | None = None) -> Any:
        status = "failed" if any(e.type == "execution.failed" for e in self.events) else "completed"
        return collect(self.execution_id, self.events, status=status, history=history or [])

    def diagnose(self, history: list[PastRun] | None = None) -> Diagnosis:
        return classify(self.facts(history))


UPSTREAM = """\
workflow:
  - step: fetch
    tool: {kind: duckdb, command: "SELECT 1"}
    next: use
  - step: use
    tool: {kind: python, input: {rows: "{{ fetch.rows }}"}, code: "result = rows[0]['amount']"}
"""


def rows(*items: dict[str, Any]) -> dict[str, Any]:
    """A SQL tool's result (spec 3.2) whose last statement returned `items`."""
    return sql_result([StatementResult(["id", "amount"], list(items))])


def single(kind: str = "python", extra: str = "") -> str:
    return f"workflow:\n  - step: work\n    tool: {{kind: {kind}{extra}}}\n"


# ------------------------------------------------------------------------------------------- kinds
def err(kind: str, message: str, **fields: Any) -> ErrorFact:
    return ErrorFact(event_id="e", kind=kind, message=message, **fields)


def test_generic_errors_are_refined_by_their_messages() -> None:
    assert refine_kind(err("internal", "ConnectionRefusedError: [Errno 111] Connection refused")) \
        == ("connection", True)
    assert refine_kind(err("python_exception", "HTTP Error 429: Too Many Requests", type="HTTPError"))[0] \
        == "rate_limit"
    assert refine_kind(err("python_exception", "HTTP Error 403: Forbidden", type="HTTPError"))[0] == "auth"
    assert refine_kind(err("python_exception", "HTTP Error 503: Service Unavailable", type="HTTPError"))[0] \
        == "server_error"
    assert refine_kind(err("python_exception", "HTTP Error 404: Not Found", type="HTTPError"))[0] \
        == "not_found"
    assert refine_kind(err("python_exception", "deadlock detected", type="DeadlockDetected"))[0] \
        == "db_deadlock"
    assert refine_kind(err("internal", "exited", code=137))[0] == "resource_exhausted"


def test_a_tools_own_kind_and_a_data_error_are_kept() -> None:
    assert refine_kind(err("sql_syntax", "connection refused in a comment")) == ("sql_syntax", False)
    assert refine_kind(err("python_exception", "'timeout'", type="KeyError")) == ("python_exception", False)


# ---------------------------------------------------------------------------------- root-cause step
def test_a_query_that_returned_no_rows_is_the_root_cause_of_an_index_error() -> None:
    log = Log(UPSTREAM)
    produced = log.ok("fetch", rows())
    log.fail("use", "python_exception", "list index out of range", type_="IndexError")
    d = log.diagnose()
    assert (d.failed_step, d.root_cause_step, d.root_cause_type, d.transience) == \
        ("use", "fetch", "validation", "permanent")
    assert any(e.event_id == produced.event_id and "returned no rows" in e.fact for e in d.evidence)
    kinds = [f.kind for f in d.suggested_fixes]
    assert kinds[0] == "upstream_data" and "code" in kinds
    rule = d.suggested_fixes[0].change["set"]["tool"]["spec"]["policy"]["rules"][0]
    assert rule == {"when": "{{ output.status == 'ok' and not output.data.rows }}", "then": {"do": "fail"}}
    guard = d.suggested_fixes[1].change["set"]["next"]["arcs"][0]
    assert guard == {"step": "use", "when": "{{ fetch.rows | length > 0 }}"}


def test_an_empty_python_result_is_guarded_by_its_own_length() -> None:
    log = Log(UPSTREAM.replace('{kind: duckdb, command: "SELECT 1"}', '{kind: python, code: "result = []"}'))
    log.ok("fetch", [])
    log.fail("use", "python_exception", "list index out of range", type_="IndexError")
    d = log.diagnose()
    assert d.root_cause_step == "fetch"
    assert any("returned an empty list" in e.fact for e in d.evidence)
    rule = d.suggested_fixes[0].change["set"]["tool"]["spec"]["policy"]["rules"][0]
    assert rule["when"] == "{{ output.status == 'ok' and not output.data }}"
    assert d.suggested_fixes[1].change["set"]["next"]["arcs"][0]["when"] == "{{ fetch | length > 0 }}"


def test_records_missing_a_key_blame_the_step_that_produced_them() -> None:
    log = Log(UPSTREAM)
    log.ok("fetch", rows({"id": 1, "amount": 3}, {"id": 2}))
    log.fail("use", "python_exception", "'amount'", type_="KeyError")
    d = log.diagnose()
    assert (d.root_cause_step, d.root_cause_type) == ("fetch", "validation")
    assert "lack the key 'amount'" in d.summary


def test_a_bug_with_good_upstream_data_stays_on_the_failed_step() -> None:
    log = Log(UPSTREAM)
    log.ok("fetch", rows({"id": 1, "amount": 3}))
    log.fail("use", "python_exception", "name 'amount' is not defined", type_="NameError")
    d = log.diagnose()
    assert (d.root_cause_step, d.root_cause_type, d.transience) == ("use", "python_exception", "permanent")
    assert d.suggested_fixes[0].kind == "code"


def test_an_empty_result_passed_along_is_traced_to_the_first_step_that_produced_it() -> None:
    log = Log("""\
        workflow:
          - step: fetch
            tool: {kind: python, code: "result = []"}
            next: enrich
          - step: enrich
            tool: {kind: python, input: {rows: "{{ fetch }}"}, code: "result = rows"}
            next: average
          - step: average
            tool: {kind: python, input: {rows: "{{ enrich }}"}, code: "result = 1 / len(rows)"}
        """)
    log.ok("fetch", [])
    log.ok("enrich", [])
    log.fail("average", "python_exception", "division by zero", type_="ZeroDivisionError")
    assert log.diagnose().root_cause_step == "fetch"


def test_a_query_that_returned_no_rows_passed_along_by_a_transform_is_the_root_cause() -> None:
    log = Log("""\
        workflow:
          - step: fetch
            tool: {kind: duckdb, command: "SELECT 1"}
            next: enrich
          - step: enrich
            tool: {kind: python, input: {rows: "{{ fetch.rows }}"}, code: "result = rows"}
            next: average
          - step: average
            tool: {kind: python, input: {rows: "{{ enrich }}"}, code: "result = 1 / len(rows)"}
        """)
    log.ok("fetch", rows())
    log.ok("enrich", [])
    log.fail("average", "python_exception", "division by zero", type_="ZeroDivisionError")
    d = log.diagnose()
    assert (d.root_cause_step, d.root_cause_type) == ("fetch", "validation")
    assert "step 'fetch' returned no rows" in d.summary


def test_an_undefined_value_of_the_workload_is_the_failed_steps_own_problem() -> None:
    log = Log(single(extra=", input: {n: '{{ workload.user.name }}'}, code: 'result = n'"))
    log.fail("work", "undefined_variable",
             "`workload.user.name` cannot be read: `workload.user` is not set in '{{ workload.user.name }}'")
    d = log.diagnose()
    assert (d.root_cause_step, d.root_cause_type, d.transience) == ("work", "undefined_variable", "permanent")
    assert any(f.change.get("payload") == {"user": {"name": "..."}} for f in d.suggested_fixes)


def test_a_null_upstream_read_by_a_template_blames_the_upstream_step() -> None:
    log = Log("""\
        workflow:
          - step: lookup
            tool: {kind: python, code: "result = None"}
            next: mail
          - step: mail
            tool: {kind: python, input: {to: "{{ lookup.email }}"}, code: "result = to"}
        """)
    log.ok("lookup", None)
    log.fail("mail", "undefined_variable", "step 'mail' task 'mail': `email` cannot be read: the value is "
                                           "null in '{{ lookup.email }}'")
    assert (log.diagnose().root_cause_step, log.diagnose().root_cause_type) == ("lookup", "validation")


# -------------------------------------------------------------------------------------- transience
def test_one_refused_connection_is_transient_and_three_in_a_row_are_permanent() -> None:
    once = Log(single("http", ", url: 'http://127.0.0.1:9/x'"))
    once.fail("work", "connection", "GET http://127.0.0.1:9/x could not be reached: connection refused")
    assert once.diagnose().transience == "transient"
    thrice = Log(single("http", ", url: 'http://127.0.0.1:9/x'"))
    thrice.fail("work", "connection", "could not be reached", attempts=3)
    d = thrice.diagnose()
    assert (d.root_cause_type, d.transience) == ("connection", "permanent")
    assert any("3 attempts" in e.fact for e in d.evidence)


def test_a_rate_limit_stays_transient_after_retries() -> None:
    log = Log(single("http", ", url: 'http://x/y'"))
    log.fail("work", "rate_limit", "GET http://x/y returned 429", attempts=3, code="HTTP_429",
             meta={"http": {"status": 429}, "http_status": 429, "retry_after": 7.0})
    d = log.diagnose()
    assert (d.root_cause_type, d.transience) == ("rate_limit", "transient")
    retry = next(f for f in d.suggested_fixes if f.kind == "retry_rule").change["set"]["retry"]
    assert retry["retry_on_status"] == [429] and retry["initial_delay"] == 7.0


def test_a_server_error_is_transient_and_fixed_by_retrying_5xx_statuses() -> None:
    log = Log(single("http", ", url: 'http://x/y'"))
    log.fail("work", "server_error", "GET http://x/y returned 503 Service Unavailable", code="HTTP_503",
             meta={"http_status": 503})
    d = log.diagnose()
    assert (d.root_cause_type, d.transience) == ("server_error", "transient")
    retry = next(f for f in d.suggested_fixes if f.kind == "retry_rule").change["set"]["retry"]
    assert retry["retry_on_status"] == [500, 502, 503, 504]
    assert "HTTP 503" in d.evidence[0].fact


def test_a_not_found_is_permanent_and_fixed_in_the_request() -> None:
    log = Log(single("http", ", url: 'http://x/orders/9'"))
    log.fail("work", "not_found", "GET http://x/orders/9 returned 404 Not Found", code="HTTP_404",
             meta={"http_status": 404})
    d = log.diagnose()
    assert (d.root_cause_type, d.transience) == ("not_found", "permanent")
    [fix] = d.suggested_fixes
    assert fix.kind == "input" and "404" in fix.description and fix.change["was"] == "http://x/orders/9"


def test_a_deadlock_is_transient_and_retried() -> None:
    log = Log(single("postgres", ", command: 'UPDATE a SET x = 1'"))
    log.fail("work", "db_deadlock", "statement 1: deadlock detected", code="PG_40P01",
             meta={"pg_code": "40P01", "retryable": True})
    d = log.diagnose()
    assert (d.root_cause_type, d.transience) == ("db_deadlock", "transient")
    assert [f.kind for f in d.suggested_fixes] == ["retry_rule", "query"]


def test_a_step_that_passed_before_under_the_same_conditions_is_intermittent() -> None:
    log = Log(single(extra=", code: 'raise RuntimeError()'"))
    log.fail("work", "python_exception", "boom", type_="RuntimeError")
    passed = PastRun(execution_id="earlier", created_at=T0, status="completed", same_conditions=True,
                     steps={"work": StepOutcome(status="succeeded", event_id="ok-event")})
    other_payload = PastRun(execution_id="other", created_at=T0, status="completed", same_conditions=False,
                            steps={"work": StepOutcome(status="succeeded", event_id="x")})
    assert log.diagnose([other_payload]).transience == "permanent"
    d = log.diagnose([passed, other_payload])
    assert d.transience == "intermittent"
    assert any(e.event_id == "ok-event" for e in d.evidence)
    assert any(f.kind == "retry_rule" for f in d.suggested_fixes)


def test_a_completed_execution_with_a_recovered_retry_is_diagnosed_as_transient() -> None:
    log = Log(single(extra=", code: 'result = 1'"))
    log.add("step.scheduled", "work")
    log.add("task.attempt.failed", "work", ResultEnvelope.fail("connection", "connection reset by peer"),
            attempt=1)
    log.add("step.retrying", "work", attempt=2)
    log.add("step.succeeded", "work", ResultEnvelope.ok(1), attempt=2)
    log.add("execution.completed")
    d = log.diagnose()
    assert (d.status, d.failed_step, d.root_cause_step, d.root_cause_type, d.transience) == \
        ("completed", None, "work", "connection", "transient")


def test_a_completed_execution_without_failures_names_its_slowest_step() -> None:
    log = Log("workflow:\n  - step: a\n    tool: {kind: noop}\n    next: b\n"
              "  - step: b\n    tool: {kind: noop}\n")
    log.ok("a", {})
    log.add("step.scheduled", "b")
    log.add("step.started", "b")
    log.events.append(Event(event_id="late", idempotency_key="late", execution_id=log.execution_id,
                            type="step.succeeded", step="b", result=ResultEnvelope.ok({}),
                            timestamp=T0 + timedelta(seconds=5)))
    log.add("execution.completed")
    d = log.diagnose()
    assert d.root_cause_step == "b" and d.root_cause_type is None and "slowest step is 'b'" in d.summary


# -------------------------------------------------------------------------------------------- fixes
def test_fixes_name_the_credential_the_statement_and_the_new_timeout() -> None:
    log = Log(single("postgres", ", auth: crm, command: 'SELECT 1'"))
    log.fail("work", "missing_credential", "credential 'crm' is not stored; create it with ...", code="crm")
    fix = log.diagnose().suggested_fixes[0]
    assert fix.kind == "credential"
    assert fix.change["command"].startswith("noetl credential set crm --type postgres")

    log = Log(single("duckdb", ", command: 'SELECT 1; SELECT * FORM t'"))
    log.fail("work", "sql_syntax", 'statement 2: Parser Error: syntax error at or near "FORM"')
    change = log.diagnose().suggested_fixes[0].change
    assert change["statement"] == 2 and change["near"] == "FORM" and change["sql"] == "SELECT * FORM t"

    log = Log("workflow:\n  - step: work\n    spec: {timeout: 10s}\n    tool: {kind: python, code: 'x'}\n")
    log.fail("work", "timeout", "step 'work' task 'work' did not finish within 10.0 s")
    timeout = next(f for f in log.diagnose().suggested_fixes if f.kind == "timeout")
    assert timeout.change == {"step": "work", "set": {"spec": {"timeout": "20s"}}}


def test_memory_exhaustion_suggests_a_bigger_pool() -> None:
    log = Log(single(extra=", code: 'x = bytearray(10**12)'"))
    log.fail("work", "resource_exhausted", "the code ran out of memory", type_="MemoryError")
    d = log.diagnose()
    assert (d.root_cause_type, d.transience) == ("resource_exhausted", "permanent")
    assert d.suggested_fixes[0].change["set"]["spec"]["resources"]["memory_mb"] == 8192


def test_a_cancelled_execution_is_not_blamed_on_a_step() -> None:
    log = Log(single())
    log.add("execution.cancelled")
    facts = log.facts()
    facts.status = "cancelled"
    assert classify(facts).root_cause_type == "cancelled"


# ---------------------------------------------------------------------------------- secrets, LLM, similar
def test_secrets_are_masked_by_value_by_key_name_and_inside_urls() -> None:
    assert scrub_text("postgresql://etl:hunter22@db:5432/x") == "postgresql://etl:***@db:5432/x"
    log = Log(single("http", ", url: 'http://x/y', headers: {X-Trace: tok-CANARY-1}"))
    log.fail("work", "not_found", "GET http://x/y returned 404: tok-CANARY-1", code="HTTP_404",
             meta={"http_status": 404})
    d = scrub_diagnosis(log.diagnose(), ["tok-CANARY-1"])
    assert "tok-CANARY-1" not in d.model_dump_json()


def test_an_llm_answer_is_used_only_when_it_validates() -> None:
    good = parse('```json\n{"summary": "s", "suggested_fixes": [{"kind": "timeout", "description": "d", '
                 '"change": {"step": "a"}}]}\n```')
    assert isinstance(good, Refinement) and good.suggested_fixes[0].kind == "timeout"
    assert "not JSON" in str(parse("The step failed because..."))
    assert "problem" in str(parse('{"summary": "s", "suggested_fixes": [{"kind": "reboot"}]}'))
    assert "problem" in str(parse('{"summary": "s", "root_cause_type": "timeout"}'))  # not its to change
    assert parse("") == "it was empty"


def test_similar_failures_are_read_from_the_embeddings_results() -> None:
    @dataclass(frozen=True)
    class Next:
        retried_and_succeeded: bool = True
        later_run_succeeded: bool | None = None
        later_execution_id: str | None = None
        later_run_status: str | None = None
        later_step_succeeded: bool | None = None

    @dataclass(frozen=True)
    class Result:
        execution_id: str = "e1"
        step: str | None = "fetch"
        playbook_path: str | None = "p"
        error_kind: str | None = "timeout"
        error_message: str | None = "slow"
        score: float = 0.9
        occurred_at: str | None = "2026-01-01T00:00:00+00:00"
        tool_kind: str | None = "http"
        event_type: str | None = "step.failed"
        next: Next = field(default_factory=Next)

    item = SimilarFailure.of(Result())
    assert item.next.retried_and_succeeded and item.occurred_at is not None and item.score == 0.9
    assert SimilarFailure.of({"execution_id": "e2", "score": 0.5, "extra": 1}).execution_id == "e2"


def test_a_run_started_by_a_trigger_cites_the_firing_as_evidence() -> None:
    log = Log(single("http", ", url: 'http://127.0.0.1:9/x'"))
    started = log.events[0]
    log.events[0] = started.model_copy(update={"payload": {**started.payload, "trigger": {
        "id": "t1", "name": "nightly", "kind": "cron", "firing_id": "f1",
        "scheduled_at": "2026-01-01T02:30:00+00:00"}}})
    log.fail("work", "connection", "could not be reached")
    cited = [e for e in log.diagnose().evidence if "trigger" in e.fact]
    assert [e.event_id for e in cited] == [started.event_id]
    assert "cron trigger 'nightly' (t1, the firing scheduled for 2026-01-01T02:30:00+00:00)" in cited[0].fact
    assert not any("trigger" in e.fact for e in Log(single("noop")).diagnose().evidence)
