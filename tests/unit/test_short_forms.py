"""Short forms (spec section 12) and NoETL aliases (section 16) parse to the same model as canonical forms."""

from __future__ import annotations

import textwrap

import pytest

from engine.dsl.load import load_playbook_text
from engine.dsl.model import Playbook
from tests.conftest import EXAMPLES
from tests.harness.playbooks import SHORT_FORMS_CANONICAL

HEAD = "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: t}\n"


def model(text: str) -> Playbook:
    loaded = load_playbook_text(textwrap.dedent(text))
    assert loaded.ok, [d.format() for d in loaded.diagnostics]
    assert loaded.playbook is not None
    return loaded.playbook


def assert_same(short: str, canonical: str) -> None:
    assert model(HEAD + textwrap.dedent(short)).model_dump() == \
        model(HEAD + textwrap.dedent(canonical)).model_dump()


def test_the_short_forms_example_equals_its_canonical_spelling() -> None:
    short = model((EXAMPLES / "10_short_forms.yaml").read_text())
    canonical = model(SHORT_FORMS_CANONICAL)
    assert short.model_dump() == canonical.model_dump()


def test_tool_as_a_kind_name_takes_the_step_level_keys_as_its_configuration() -> None:
    assert_same("""\
        workflow:
          - step: q
            tool: postgres
            command: SELECT 1
            auth: pg_main
        """, """\
        workflow:
          - step: q
            tool: {kind: postgres, command: SELECT 1, auth: pg_main}
        """)


def test_next_as_a_list_is_an_exclusive_next_with_those_arcs() -> None:
    assert_same("""\
        workflow:
          - step: a
            tool: {kind: noop}
            next: [{step: b}, {step: c, when: "{{ true }}"}]
          - {step: b, tool: {kind: noop}}
          - {step: c, tool: {kind: noop}}
        """, """\
        workflow:
          - step: a
            tool: {kind: noop}
            next: {spec: {mode: exclusive}, arcs: [{step: b}, {step: c, when: "{{ true }}"}]}
          - {step: b, tool: {kind: noop}}
          - {step: c, tool: {kind: noop}}
        """)


def test_next_as_a_step_name_is_one_unconditional_arc() -> None:
    assert_same("""\
        workflow:
          - {step: a, tool: {kind: noop}, next: b}
          - {step: b, tool: {kind: noop}}
        """, """\
        workflow:
          - {step: a, tool: {kind: noop}, next: {arcs: [{step: b}]}}
          - {step: b, tool: {kind: noop}}
        """)


def test_arc_args_become_ctx_writes_of_the_arc() -> None:
    assert_same("""\
        workflow:
          - {step: a, tool: {kind: noop}, next: [{step: b, args: {x: 1, y: "{{ a }}"}}]}
          - {step: b, tool: {kind: noop}}
        """, """\
        workflow:
          - {step: a, tool: {kind: noop}, next: [{step: b, set: {ctx.x: 1, ctx.y: "{{ a }}"}}]}
          - {step: b, tool: {kind: noop}}
        """)


def test_tool_workbook_with_a_step_level_name_is_a_workbook_call() -> None:
    assert_same("""\
        workbook: [{name: w, tool: {kind: noop}}]
        workflow:
          - {step: a, tool: workbook, name: w}
        """, """\
        workbook: [{name: w, tool: {kind: noop}}]
        workflow:
          - {step: a, tool: {kind: workbook, name: w}}
        """)


def test_step_retry_is_one_error_retry_rule() -> None:
    assert_same("""\
        workflow:
          - step: a
            retry: {max_attempts: 3, initial_delay: 1, backoff_multiplier: 2}
            tool: {kind: noop}
        """, """\
        workflow:
          - step: a
            tool:
              kind: noop
              spec:
                policy:
                  rules:
                    - when: "{{ output.status == 'error' and output.error.kind != 'contract' }}"
                      then: {do: retry, attempts: 3, delay: 1, backoff: exponential, multiplier: 2}
        """)


def test_tool_retry_with_statuses_retries_only_those_http_statuses() -> None:
    assert_same("""\
        workflow:
          - step: a
            tool:
              kind: http
              url: http://x
              retry: {max_attempts: 4, retry_on_status: [429, 503], backoff_seconds: 2}
        """, """\
        workflow:
          - step: a
            tool:
              kind: http
              url: http://x
              spec:
                policy:
                  rules:
                    - when: "{{ output.status == 'error' and output.error.kind != 'contract' and
                               output.http.status in [429, 503] }}"
                      then: {do: retry, attempts: 4, delay: 2, backoff: exponential, multiplier: 2}
        """)


@pytest.mark.parametrize(("alias", "canonical"), [
    ("{kind: http, endpoint: 'http://x', verify_ssl: false, timeout_seconds: 3}",
     "{kind: http, url: 'http://x', verify: false, timeout: 3}"),
    ("{kind: postgres, query: SELECT 1, credential: pg}", "{kind: postgres, command: SELECT 1, auth: pg}"),
    ("{kind: duckdb, commands: [SELECT 1, SELECT 2]}", "{kind: duckdb, command: [SELECT 1, SELECT 2]}"),
    ("{kind: playbook, path: p, payload: {x: 1}}", "{kind: playbook, path: p, input: {x: 1}}"),
    ("{kind: python, libs: [json, os.path], code: x = 1}",
     "{kind: python, libs: {json: json, os: os.path}, code: x = 1}"),
    ("{kind: python, spec: {code: x = 1, input: {a: 1}}}", "{kind: python, code: x = 1, input: {a: 1}}"),
])
def test_noetl_aliases_parse_to_the_canonical_keys(alias: str, canonical: str) -> None:
    assert_same(f"workflow:\n  - step: a\n    tool: {alias}\n",
                f"workflow:\n  - step: a\n    tool: {canonical}\n")


def test_arc_cond_is_when_and_lifecycle_timeout_is_spec_timeout() -> None:
    assert_same("""\
        workflow:
          - {step: a, tool: {kind: noop}, spec: {lifecycle: {timeout_s: 5}}, next: [{step: b, cond: x}]}
          - {step: b, tool: {kind: noop}}
        """, """\
        workflow:
          - {step: a, tool: {kind: noop}, spec: {timeout: 5s}, next: [{step: b, when: x}]}
          - {step: b, tool: {kind: noop}}
        """)


def test_a_single_tool_is_a_pipeline_of_one_task_named_after_the_step() -> None:
    pb = model(HEAD + "workflow:\n  - {step: a, tool: {kind: noop}}\n")
    assert len(pb.workflow[0].tool) == 1
    assert pb.workflow[0].task_name(0) == "a"


def test_durations_accept_seconds_and_units() -> None:
    pb = model(HEAD + textwrap.dedent("""\
        workflow:
          - {step: a, spec: {timeout: 500ms}, tool: {kind: python, code: x = 1, timeout: 2m}, next: b}
          - {step: b, spec: {timeout: 1.5}, tool: {kind: noop}, next: c}
          - {step: c, spec: {timeout: "{{ workload.t }}"}, tool: {kind: noop}}
        """))
    assert pb.workflow[0].spec.timeout == 0.5
    assert pb.workflow[0].tool[0].timeout == 120.0
    assert pb.workflow[1].spec.timeout == 1.5
    assert pb.workflow[2].spec.timeout == "{{ workload.t }}"


def test_a_retry_beside_a_spec_that_is_not_a_mapping_is_a_located_error_not_a_crash() -> None:
    text = textwrap.dedent("""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: s, path: t/s}
        workflow:
          - step: a
            tool:
              - {name: t1, kind: noop, spec: 5, retry: {max_attempts: 3}}
        """)
    loaded = load_playbook_text(text, "s.yaml")
    assert loaded.playbook is None
    [error] = [d for d in loaded.diagnostics if d.severity == "error"]
    assert (error.line, error.path) == (7, "workflow[0].tool[0].spec")
    assert "expected a mapping, got 5" in error.message
