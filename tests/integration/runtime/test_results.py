"""Results by reference (spec 9) and the `output` hints that choose what stays inline (spec 16)."""

from __future__ import annotations

import pytest

from control_plane.stack import Stack
from tests.integration.runtime.test_secrets_and_cancel import run

pytestmark = pytest.mark.anyio

BIG = "result = {'status': 'ok', 'rows': [{'i': i, 'pad': 'x' * 40} for i in range(3000)]}"


async def outcome_event(stack: Stack, execution_id: str, step: str):  # type: ignore[no-untyped-def]
    events = await stack.store.events.events(execution_id)  # type: ignore[union-attr]
    return next(e for e in events if e.type == "step.succeeded" and e.step == step)


async def test_a_large_result_travels_by_reference_and_templates_read_it_whole(stack: Stack) -> None:
    summary = await run(stack, f"""\
        workflow:
          - step: make
            tool: {{kind: python, code: "{BIG}"}}
            next: count
          - step: count
            tool: {{kind: python, input: {{rows: "{{{{ make.rows }}}}"}}, code: "result = len(rows)"}}
        """)
    assert summary["status"] == "completed"
    assert summary["steps"]["count"]["result"] == 3000
    event = await outcome_event(stack, summary["execution_id"], "make")
    assert event.result.data is None and event.result.ref is not None
    assert event.result.ref.size > 65536


async def test_output_select_keeps_the_listed_fields_inline_and_the_rest_by_reference(stack: Stack) -> None:
    summary = await run(stack, f"""\
        workflow:
          - step: make
            output: {{select: [status]}}
            tool: {{kind: python, code: "{BIG}"}}
        """)
    event = await outcome_event(stack, summary["execution_id"], "make")
    assert event.result.data == {"status": "ok"}
    assert event.result.ref is not None
    assert len(summary["steps"]["make"]["result"]["rows"]) == 3000


async def test_output_store_memory_keeps_a_large_result_inline(stack: Stack) -> None:
    summary = await run(stack, f"""\
        workflow:
          - step: make
            output: {{store: {{kind: memory}}}}
            tool: {{kind: python, code: "{BIG}"}}
        """)
    event = await outcome_event(stack, summary["execution_id"], "make")
    assert event.result.ref is None and len(event.result.data["rows"]) == 3000
