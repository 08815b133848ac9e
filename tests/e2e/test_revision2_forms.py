"""Language revision 2 (spec sections 2, 3.1, 7, 13 and 16) as NoETL users write it: a step without a
tool, a loop step's input rendered per item, python's `context`, `input_data` and `libs` forms, inline
script sources, guarded reads of missing values, conditions that read into null, and a task-level
`set` of `"{{ output }}"`, output store kinds and section 16's hints (a postgres `pool`, `exec: local`,
`inline_max_bytes`), and a `google_id_token` whose endpoint cannot be reached — each a small playbook run
through the real stack with `noetl run --json`."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import nats
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.helpers import Batch, Case, Noetl, completed, failed, inline, peak_in_flight_by_order

SUFFIX = uuid.uuid4().hex[:8]
PG, GCP = f"r2_pg_{SUFFIX}", f"r2_gcp_{SUFFIX}"  # credentials the `credentials` fixture stores
CASES = {
    "routing_steps": Case(inline("routing_steps", """\
        workflow:
          - step: start
            next: [{step: work}]
          - step: work
            tool: {kind: python, code: "result = {'done': True}"}
            next: [{step: end}]
          - step: end
        """)),
    "loop_input_per_item": Case(inline("loop_input_per_item", """\
        workload: {nums: [1, 2, 3], base: 100}
        workflow:
          - step: double
            loop: {in: "{{ workload.nums }}", iterator: num, spec: {mode: parallel}}
            input: {num: "{{ num }}", idx: "{{ iter._index }}", base: "{{ workload.base }}"}
            tool:
              kind: python
              code: |
                result = num * 2 + base + idx
        """)),
    "python_context_and_input_data": Case(inline("python_context_and_input_data", """\
        workflow:
          - step: use_vars
            tool: {kind: python, code: "result = {'limit': 5}"}
            next: [{step: other}]
          - step: other
            tool: {kind: noop, result: {x: 1}}
            next: [{step: read}]
          - step: read
            input: {input_data: {table: users}}
            tool:
              kind: python
              code: |
                result = {'limit': context.get('use_vars')['limit'],
                          'other': context.get('other'),
                          'later': context.get('never_runs'),
                          'table': input_data.get('table')}
            next:
              - step: never_runs
                when: "{{ false }}"
          - step: never_runs
            tool: {kind: noop}
        """)),
    "libs_and_inline_script": Case(inline("libs_and_inline_script", """\
        workflow:
          - step: libs
            tool:
              kind: python
              libs: {root: {from: math, import: sqrt}, j: json}
              code: "result = {'root': root(16), 'dumped': j.dumps([1, 2])}"
            next: [{step: listed}]
          - step: listed
            tool:
              kind: python
              libs: [math, os.path]
              code: "result = {'pi': round(math.pi, 2), 'join': os.path.join('a', 'b')}"
            next: [{step: inline_source}]
          - step: inline_source
            tool:
              kind: python
              script: {uri: inline, source: {type: inline, code: "result = {'inline': context.get('libs')}"}}
        """)),
    "remote_script_refused": Case(inline("remote_script_refused", """\
        workflow:
          - step: remote
            tool:
              kind: python
              script: {uri: "gs://bucket/code.py", source: {type: gcs, bucket: bucket}}
        """)),
    "guarded_reads": Case(inline("guarded_reads", """\
        workload: {team: {name: core}}
        workflow:
          - step: guard
            tool:
              kind: noop
              result:
                from_default: "{{ input.key | default('x') }}"
                deep_default: "{{ workload.team.slack.id | d('none') }}"
                defined: "{{ workload.team.slack.id is defined }}"
                inline_if: "{{ workload.team.slack.id if workload.team.slack.id else 'no slack' }}"
                block_if: "{% if workload.team.slack.id %}yes{% else %}no{% endif %}"
                not_run: "{{ later.x if later else 'later has not run' }}"
            next: [{step: later}]
          - step: later
            tool: {kind: noop}
        """)),
    "unguarded_read_fails": Case(inline("unguarded_read_fails", """\
        workload: {team: {name: core}}
        workflow:
          - step: read
            tool: {kind: noop, result: "{{ workload.team.slack.id }}"}
        """)),
    "conditions_read_into_null": Case(inline("conditions_read_into_null", """\
        workflow:
          - step: fetch
            tool:
              kind: python
              code: "result = {'n': 1}"
              spec:
                policy:
                  rules:
                    - when: "{{ output.error.retryable }}"
                      then: {do: retry, attempts: 3}
                    - when: "{{ output.error.status in [500, 503] }}"
                      then: {do: fail}
                    - else:
                        then: {do: continue}
            next:
              - step: missing_branch
                when: "{{ fetch.error.kind == 'timeout' }}"
              - step: ok_branch
          - step: missing_branch
            tool: {kind: noop, result: wrong}
          - step: ok_branch
            tool: {kind: noop, result: right}
        """)),
    "task_set_of_output": Case(inline("task_set_of_output", """\
        workflow:
          - step: pipe
            tool:
              - name: make
                kind: python
                code: "result = {'item_name': 'widget', 'qty': 3}"
                set: {transformed: "{{ output }}", status_seen: "{{ output.status }}"}
              - name: use
                kind: python
                input:
                  name: "{{ transformed.item_name }}"
                  qty: "{{ transformed.qty }}"
                  seen: "{{ status_seen }}"
                  via_fallback: "{{ results.make.item_name }}"
                code: "result = {'name': name, 'qty': qty, 'seen': seen, 'via_fallback': via_fallback}"
        """)),
    "output_reads_fall_back_to_data": Case(inline("output_reads_fall_back_to_data", """\
        workflow:
          - step: pipe
            tool:
              - name: make
                kind: python
                code: "result = {'has_more': False, 'page': 2}"
                spec:
                  policy:
                    rules:
                      - when: "{{ output.has_more }}"
                        then: {do: fail}
                      - else:
                          do: continue
                          set: {page: "{{ output.page }}", response_page: "{{ output.response.page }}"}
              - name: report
                kind: noop
                result: {page: "{{ page }}", response_page: "{{ response_page }}"}
            next: [{step: read_data}]
          - step: read_data
            tool: {kind: noop, result: {via_data: "{{ pipe.data.page }}", direct: "{{ pipe.page }}"}}
        """)),
    "else_forms_and_fixed_backoff": Case(inline("else_forms_and_fixed_backoff", """\
        workflow:
          - step: flaky
            tool:
              kind: python
              code: |
                raise ConnectionError("the first attempts fail")
              spec:
                policy:
                  rules:
                    - when: "{{ output.error.kind == 'connection' }}"
                      then: {do: retry, attempts: 3, backoff: fixed, delay: 0.05}
                    - else:
                      then: {do: fail}
        """), events=True),
    "tool_retry_on": Case(inline("tool_retry_on", """\
        workflow:
          - step: start
            next: {spec: {mode: inclusive}, arcs: [{step: on_connection}, {step: on_timeout_only}]}
          - step: on_connection
            spec: {policy: {failure: {mode: best_effort}}}
            tool:
              kind: python
              code: "raise ConnectionError('refused')"
              retry: {max_attempts: 3, retry_on: [connection_error], backoff: 0.05}
          - step: on_timeout_only
            spec: {policy: {failure: {mode: best_effort}}}
            tool:
              kind: python
              code: "raise ConnectionError('refused')"
              retry: {max_attempts: 3, retry_on: [timeout], backoff: 0.05}
        """), events=True),
    "executor_default_timeout": Case(inline("executor_default_timeout", """\
        executor:
          spec:
            policy: {defaults: {timeout_s: 1}, results: {reference_first: true}}
        workflow:
          - step: start
            spec:
              policy:
                admit:
                  mode: exclusive
                  rules:
                    - when: "{{ workload.skip | default(false) }}"
                      then: {allow: false}
                    - else:
                        then: {allow: true}
            next: {spec: {mode: inclusive}, arcs: [{step: slow}, {step: own_timeout}]}
          - step: slow
            spec: {policy: {failure: {mode: best_effort}}}
            tool: {kind: python, code: "import time; time.sleep(20)"}
          - step: own_timeout
            spec: {timeout: 20}
            tool: {kind: python, code: "import time; time.sleep(1.5); result = 'finished'"}
        """)),
    "output_select_threshold": Case(inline("output_select_threshold", """\
        workflow:
          - step: start
            next: {spec: {mode: inclusive}, arcs: [{step: big}, {step: small}]}
          - step: big
            output: {output_select: {strategy: size_threshold, threshold_kb: 1}, store: {kind: s3}}
            tool: {kind: python, code: "result = {'blob': 'x' * 4000}"}
            next: [{step: read}]
          - step: small
            output: {output_select: {strategy: size_threshold, threshold_kb: 1}}
            tool: {kind: python, code: "result = {'blob': 'x' * 10}"}
            next: [{step: read}]
          - step: read
            tool: {kind: python, input: {n: "{{ big.blob | length }}", m: "{{ small.blob | length }}"},
                   code: "result = {'big': n, 'small': m}"}
        """), events=True),
    "store_in_nats": Case(inline("store_in_nats", """\
        workflow:
          - step: rows
            output: {store: {kind: object}}
            tool: {kind: python, code: "result = [{'id': i, 'name': 'n' * 100} for i in range(2000)]"}
            next: [{step: doc}]
          - step: doc
            output: {store: {kind: kv}, select: [count]}
            tool: {kind: python, code: "result = {'count': 3, 'blob': 'y' * 100000}"}
            next: [{step: read}]
          - step: read
            tool:
              kind: python
              input: {n: "{{ rows | length }}", last: "{{ rows[-1].id }}", c: "{{ doc.count }}",
                      b: "{{ doc.blob | length }}"}
              code: "result = {'rows': n, 'last': last, 'count': c, 'blob': b}"
        """), events=True),
    "hints_that_run": Case(inline("hints_that_run", f"""\
        workflow:
          - step: query
            tool:
              kind: postgres
              auth: {PG}
              pool: {{min_size: 1, max_size: 2, timeout: 10}}
              command: "SELECT g AS n FROM generate_series(1, 3) g"
            output: {{inline_max_bytes: 16}}
            next: [{{step: each}}]
          - step: each
            loop:
              in: "{{{{ query.rows }}}}"
              iterator: row
              spec: {{mode: parallel, policy: {{exec: local, results: {{preserve_order: true}}}}}}
            tool: {{kind: python, input: {{n: "{{{{ row.n }}}}"}}, code: "result = n * 10"}}
        """), events=True),
    "google_unreachable": Case(inline("google_unreachable", f"""\
        keychain:
          - {{name: scorer, kind: google_id_token, auth: {GCP}, target_audience: https://scorer.example}}
        workflow:
          - step: first
            tool: {{kind: python, code: "result = 'ran'"}}
        """)),
    "max_in_flight_template": Case(inline("max_in_flight_template", """\
        workload: {width: 2, items: [1, 2, 3, 4, 5, 6]}
        workflow:
          - step: each
            loop:
              in: "{{ workload.items }}"
              iterator: n
              spec:
                mode: parallel
                max_in_flight: "{{ workload.width }}"
                policy: {exec: distributed, results: {preserve_order: true}}
            tool: {kind: python, input: {n: "{{ n }}"}, code: "import time; time.sleep(0.2); result = n * 10"}
        """), events=True),
    "max_in_flight_not_a_number": Case(inline("max_in_flight_not_a_number", """\
        workflow:
          - step: each
            loop: {in: [1, 2], iterator: n, spec: {mode: parallel, max_in_flight: "{{ 'many' }}"}}
            tool: {kind: noop}
        """)),
}


@pytest.fixture(scope="module")
def credentials(e2e_stack: Noetl) -> None:
    """`PG` for the stack's own database; `GCP` a service account key whose token endpoint is a closed
    local port (Google unreachable)."""
    dsn = json.loads((e2e_stack.home / "dev.json").read_text())["pg_dsn"]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    account = {"type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": pem,
               "client_email": "runner@p.iam.gserviceaccount.com",
               "token_uri": f"http://127.0.0.1:{closed}/token"}
    for name, type_, data in ((PG, "postgres", {"dsn": dsn}), (GCP, "gcp", account)):
        stored = e2e_stack("credential", "set", name, "--type", type_, "--data", json.dumps(data))
        assert stored.returncode == 0, stored.stderr


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl, credentials: None) -> Iterator[Batch]:
    batch = e2e_stack.batch(CASES)
    yield batch
    batch.close()


def test_steps_without_a_tool_are_routing_steps_that_run_as_noop(runs: Batch) -> None:
    run = runs["routing_steps"]
    completed(run)
    assert run.step("start")["result"] == {}
    assert run.step("work")["result"] == {"done": True}
    assert run.step("end")["status"] == "succeeded"


def test_a_loop_steps_input_is_rendered_for_each_item_with_the_iterator_bound(runs: Batch) -> None:
    run = runs["loop_input_per_item"]
    completed(run)
    assert run.step("double")["result"] == [102, 105, 108]


def test_python_context_holds_every_step_result_and_input_data_can_be_an_input(runs: Batch) -> None:
    run = runs["python_context_and_input_data"]
    completed(run)
    assert run.step("read")["result"] == {"limit": 5, "other": {"x": 1}, "later": None, "table": "users"}


def test_python_libs_take_from_import_and_lists_and_scripts_can_be_inline(runs: Batch) -> None:
    run = runs["libs_and_inline_script"]
    completed(run)
    assert run.step("libs")["result"] == {"root": 4.0, "dumped": "[1, 2]"}
    assert run.step("listed")["result"] == {"pi": 3.14, "join": "a/b"}
    assert run.step("inline_source")["result"] == {"inline": {"root": 4.0, "dumped": "[1, 2]"}}


def test_a_remote_script_source_fails_the_step_saying_it_is_not_supported(runs: Batch) -> None:
    run = runs["remote_script_refused"]
    failed(run)
    error = run.step("remote")["error"]
    assert error["kind"] == "validation"
    assert "'gcs' is not supported" in error["message"]


def test_guarded_reads_of_missing_values_yield_the_fallback_instead_of_an_error(runs: Batch) -> None:
    run = runs["guarded_reads"]
    completed(run)
    assert run.step("guard")["result"] == {
        "from_default": "x", "deep_default": "none", "defined": False, "inline_if": "no slack",
        "block_if": "no", "not_run": "later has not run"}


def test_an_unguarded_read_into_a_missing_value_is_an_undefined_variable_error(runs: Batch) -> None:
    run = runs["unguarded_read_fails"]
    failed(run)
    error = run.step("read")["error"]
    assert error["kind"] == "undefined_variable"
    assert "workload.team.slack.id" in error["message"]


def test_conditions_that_read_into_a_null_error_are_false_not_failures(runs: Batch) -> None:
    run = runs["conditions_read_into_null"]
    completed(run)
    assert run.step("fetch")["result"] == {"n": 1}
    assert run.step("fetch")["attempts"] == 1
    assert run.step("ok_branch")["result"] == "right"
    assert not run.ran("missing_branch")


def test_a_task_level_set_of_output_stores_the_tasks_result_not_its_envelope(runs: Batch) -> None:
    run = runs["task_set_of_output"]
    completed(run)
    assert run.step("pipe")["result"] == {"name": "widget", "qty": 3, "seen": "ok", "via_fallback": "widget"}


def test_rule_conditions_and_sets_read_output_keys_from_its_data(runs: Batch) -> None:
    run = runs["output_reads_fall_back_to_data"]
    completed(run)
    assert run.step("pipe")["result"] == {"page": 2, "response_page": 2}
    assert run.step("read_data")["result"] == {"via_data": 2, "direct": 2}


def test_else_rules_in_noetls_spellings_and_a_fixed_backoff_retry_with_constant_delays(runs: Batch) -> None:
    run = runs["else_forms_and_fixed_backoff"]
    failed(run)
    assert run.step("flaky")["error"]["kind"] == "connection"
    assert run.step("flaky")["attempts"] == 3
    delays = [e["payload"]["delay_s"] for e in run.log if e["type"] == "step.retrying"]
    assert delays == [0.05, 0.05]


def test_tool_level_retry_on_retries_only_the_listed_error_kinds_with_a_constant_backoff(runs: Batch) -> None:
    run = runs["tool_retry_on"]
    assert run.step("on_connection")["attempts"] == 3
    assert run.step("on_timeout_only")["attempts"] == 1
    delays = [e["payload"]["delay_s"] for e in run.log
              if e["type"] == "step.retrying" and e["step"] == "on_connection"]
    assert delays == [0.05, 0.05]


def test_the_executors_default_timeout_limits_every_step_that_sets_none(runs: Batch) -> None:
    run = runs["executor_default_timeout"]
    assert run.step("start")["status"] == "succeeded"  # admitted: `mode: exclusive` is accepted
    assert run.step("slow")["status"] == "failed"
    assert run.step("slow")["error"]["kind"] == "timeout"
    assert run.step("own_timeout")["result"] == "finished"


def test_output_select_size_threshold_sends_larger_results_by_reference_and_keeps_small_ones_inline(
        runs: Batch) -> None:
    run = runs["output_select_threshold"]
    completed(run)
    assert run.step("read")["result"] == {"big": 4000, "small": 10}
    [big] = [e for e in run.log if e["type"] == "step.succeeded" and e["step"] == "big"]
    [small] = [e for e in run.log if e["type"] == "step.succeeded" and e["step"] == "small"]
    assert big["result"]["ref"] is not None
    assert small["result"]["ref"] is None and small["result"]["data"] == {"blob": "x" * 10}


def test_store_kinds_kv_and_object_keep_large_results_in_the_nats_object_store(
        runs: Batch, e2e_stack: Noetl) -> None:
    run = runs["store_in_nats"]
    completed(run)
    assert run.step("read")["result"] == {"rows": 2000, "last": 1999, "count": 3, "blob": 100000}
    assert len(run.step("rows")["result"]) == 2000  # read back by the CLI's process
    refs = {e["step"]: e["result"] for e in run.log if e["type"] == "step.succeeded"}
    assert refs["doc"]["data"] == {"count": 3}  # the selected field stays inline
    nats_url = json.loads((e2e_stack.home / "dev.json").read_text())["nats_url"]
    for step, format_ in (("rows", "arrow"), ("doc", "json")):
        ref = refs[step]["ref"]
        assert ref["uri"].startswith("nats-object://") and ref["format"] == format_, ref
        bucket, name = urlsplit(ref["uri"]).path.strip("/").split("/", 1)
        assert len(asyncio.run(object_bytes(nats_url, bucket, name))) == ref["size"]


async def object_bytes(url: str, bucket: str, name: str) -> bytes:
    """The object as NATS holds it, read with nats-py itself."""
    nc = await nats.connect(url)
    try:
        store = await nc.jetstream().object_store(bucket)
        return (await store.get(name)).data or b""
    finally:
        await nc.close()


def test_postgres_pool_exec_local_and_inline_max_bytes_are_honoured_hints(runs: Batch) -> None:
    run = runs["hints_that_run"]
    completed(run)
    assert run.step("each")["result"] == [10, 20, 30]
    [query] = [e for e in run.log if e["type"] == "step.succeeded" and e["step"] == "query"]
    assert query["result"]["ref"] is not None  # larger than inline_max_bytes: stored by reference


def test_an_unreachable_google_token_endpoint_fails_the_run_naming_the_keychain_entry(runs: Batch) -> None:
    run = runs["google_unreachable"]
    failed(run)
    error = run.step("first")["error"]
    assert error["kind"] == "connection" and error["retryable"] is True
    assert "keychain 'scorer'" in error["message"] and "could not be reached" in error["message"]
    assert "PRIVATE KEY" not in json.dumps(run.doc)


def test_max_in_flight_may_be_a_template_rendered_when_the_loop_starts(runs: Batch) -> None:
    run = runs["max_in_flight_template"]
    completed(run)
    assert run.step("each")["result"] == [10, 20, 30, 40, 50, 60]
    assert peak_in_flight_by_order(run.log, "each") == 2


def test_a_max_in_flight_template_that_is_not_a_positive_integer_fails_the_step_saying_so(
        runs: Batch) -> None:
    run = runs["max_in_flight_not_a_number"]
    failed(run)
    error = run.step("each")["error"]
    assert error["kind"] == "validation"
    assert "max_in_flight must yield a positive integer, got 'many'" in error["message"]
