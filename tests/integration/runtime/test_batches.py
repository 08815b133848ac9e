"""Commands packed into shared messages for wide workers: results, exactly-once outcomes, a SIGKILL."""

from __future__ import annotations

import os
import signal
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from control_plane.stack import Stack
from engine.protocol.commands import RunStep
from tests.harness.polling import poll
from tests.harness.runtime import stack_config_of

pytestmark = pytest.mark.anyio


def loop_playbook(name: str, items: int, tool: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {{name: {name}, path: tests/{name}}}
        workload: {{items: {items}, marker: '', release: ''}}
        workflow:
          - step: fan_out
            loop: {{in: "{{{{ range(workload.items) | list }}}}", iterator: item, spec: {{mode: parallel}}}}
        """) + textwrap.indent(textwrap.dedent(tool), "    ")


def outcomes(events: list[Any], index: int) -> int:
    return sum(1 for e in events if e.type == "loop.item.succeeded" and e.loop_index == index)


async def test_a_wide_worker_gets_loop_items_in_shared_messages_and_every_item_is_recorded_once(
        runtime_env: dict[str, str]) -> None:
    async with Stack(stack_config_of(runtime_env, workers={"default": 16})) as stack:
        assert stack.executions is not None and stack.bus is not None and stack.store is not None
        name = f"batched_{uuid.uuid4().hex[:8]}"
        registered = await stack.executions.register(loop_playbook(name, 60, """\
            tool: {kind: noop, result: "{{ item * 2 }}"}
            """))
        before = await stack.bus.commands_published()
        execution_id = await stack.executions.start(registered.path)
        summary = await stack.executions.wait(execution_id, timeout_s=60)
        assert summary["status"] == "completed"
        assert summary["steps"]["fan_out"]["result"] == [2 * i for i in range(60)]  # input order
        published = await stack.bus.commands_published() - before
        assert published < 60  # a worker of concurrency 16 takes up to 4 commands per message
        events = await stack.store.events.events(execution_id)
        assert all(outcomes(events, i) == 1 for i in range(60))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_worker_killed_with_a_batch_in_hand_has_it_rerun_and_each_outcome_recorded_once(
        client: Stack, spawn: Any, tmp_path: Path) -> None:
    name = f"batch_kill_{uuid.uuid4().hex[:8]}"
    text = loop_playbook(name, 4, """\
        tool:
          kind: python
          input: {marker: "{{ workload.marker }}", release: "{{ workload.release }}"}
          code: |
            import os, time
            with open(f"{marker}.{item}", "a") as f:
                f.write("x")
            deadline = time.time() + 60
            while not os.path.exists(release) and time.time() < deadline:
                time.sleep(0.05)
            result = len(open(f"{marker}.{item}").read())
        """)
    spawn("server", "start")
    first = spawn("worker", "start", "--concurrency", "8")  # up to 2 commands per message
    marker, release = tmp_path / "marker", tmp_path / "release"
    assert client.executions is not None and client.store is not None
    registered = await client.executions.register(text)
    execution_id = await client.executions.start(registered.path,
                                                 payload={"marker": str(marker), "release": str(release)})
    await poll(lambda: all(Path(f"{marker}.{i}").exists() for i in range(4)), timeout_s=60,
               what="the first worker to start every item")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    release.touch()
    spawn("worker", "start", "--concurrency", "8")
    summary = await client.executions.wait(execution_id, timeout_s=90)
    assert summary["status"] == "completed"
    assert summary["steps"]["fan_out"]["result"] == [2, 2, 2, 2]  # every item ran again, once more
    events = await client.store.events.events(execution_id)
    assert all(outcomes(events, i) == 1 for i in range(4))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_command_sent_again_after_its_outcome_was_published_is_acked_without_running_again(
        runtime_env: dict[str, str], tmp_path: Path) -> None:
    # as after an orchestrator rebuild: the same command in another message (another message id), so
    # JetStream cannot drop it; the worker that published its outcome does not run it a second time
    marker = tmp_path / "runs"
    code = "with open(marker, 'a') as f:\n    f.write(step + ' ')\nresult = step"

    def command(step: str) -> RunStep:
        task = {"kind": "python", "code": code, "input": {"marker": str(marker), "step": step}}
        return RunStep(command_id=f"cmd-{uuid.uuid4().hex}" if step != "twice" else twice_id,
                       execution_id=execution_id, step=step, run=1, pool="default", tasks=[task])

    execution_id, twice_id = f"ex-{uuid.uuid4().hex[:12]}", f"cmd-{uuid.uuid4().hex}"
    async with Stack(stack_config_of(runtime_env, orchestrator=False, workers={"default": 1})) as stack:
        assert stack.bus is not None
        first = command("twice")
        await stack.bus.publish_command("default", "first-send", first.model_dump_json().encode())
        await poll(lambda: marker.exists() and marker.read_text() == "twice ", timeout_s=30,
                   what="the command to run once")
        await stack.bus.publish_command("default", "sent-again", first.model_dump_json().encode())
        await stack.bus.publish_command("default", "sentinel", command("after").model_dump_json().encode())
        await poll(lambda: "after" in marker.read_text(), timeout_s=30, what="the command behind it to run")
        assert marker.read_text() == "twice after "  # one worker slot: the repeat came (and went) first
        await poll(lambda: _nothing_pending(stack), timeout_s=30, what="every command message to be acked")


async def _nothing_pending(stack: Stack) -> bool:
    assert stack.bus is not None
    return (await stack.bus.command_queue_depths()).get("default", 0) == 0
