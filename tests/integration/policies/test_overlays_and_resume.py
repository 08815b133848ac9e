"""Overlays reach new executions only; the approval wait is resumed from another process; the one door
refuses what the guardrails refuse and records who did what."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from control_plane.errors import ConflictError, ForbiddenError
from control_plane.services.policies import PolicyService, ProposalRefusedError
from policies.model import Actor
from tests.harness.polling import poll
from tests.integration.policies.conftest import Loop

pytestmark = pytest.mark.anyio

ALICE = Actor(id="local:alice", name="alice")
BOB = Actor(id="local:bob", name="bob")

TWO_STEPS = """\
workload: {release: ''}
workflow:
  - step: wait
    tool:
      kind: python
      input: {release: "{{ workload.release }}"}
      code: |
        import os, time
        deadline = time.time() + 60
        while not os.path.exists(release) and time.time() < deadline:
            time.sleep(0.05)
        result = "released"
    next: sleepy
  - step: sleepy
    tool:
      kind: python
      code: |
        import time
        time.sleep(1.5)
        result = "awake"
"""


async def started(loop: Loop, execution_id: str, step: str) -> bool:
    """`step` of the execution has started (its `step.started` event is in the log)."""
    return any(e.type == "step.started" and e.step == step for e in await loop.events(execution_id))


async def test_a_running_execution_keeps_its_overlays_and_the_next_one_gets_the_new_version(
        loop: Loop, tmp_path: Path) -> None:
    path = await loop.register(f"midrun_{uuid.uuid4().hex[:8]}", TWO_STEPS)
    assert loop.stack.executions is not None
    release = tmp_path / "release"
    running = await loop.stack.executions.start(path, payload={"release": str(release)})
    await poll(lambda: started(loop, running, "wait"), timeout_s=30,
               what="the execution to be running its first step")

    proposal = await loop.policies.propose({"target": {"path": path, "step": "sleepy"},
                                            "change": {"timeout_s": 1}, "rationale": "cap it at 1 s"}, ALICE)
    applied = await loop.policies.approve(proposal.id, BOB, "let us try")
    assert applied.state == "applied" and applied.applied_version == 1

    release.write_text("go")
    first = await loop.stack.executions.wait(running, timeout_s=60)
    second = await loop.run(path, {"release": str(release)})
    assert first["status"] == "completed"  # started before the change: no overlay, no 1 s limit
    assert second["status"] == "failed" and second["steps"]["sleepy"]["error"]["kind"] == "timeout"
    assert "overlays" not in (await loop.events(running))[0].payload
    assert (await loop.events(second["execution_id"]))[0].payload["overlays"]["steps"] == {
        "sleepy": {"timeout_s": 1.0}}


async def test_the_approval_wait_is_resumed_by_another_process(loop: Loop, tmp_path: Path) -> None:
    path = await loop.register(f"resume_{uuid.uuid4().hex[:8]}", TWO_STEPS)
    proposal = await loop.policies.propose({"target": {"path": path, "step": "sleepy"},
                                            "change": {"timeout_s": 30}, "rationale": "more room"}, ALICE)
    assert await loop.agent.start(proposal.id) == "decision"
    await loop.policies.approve(proposal.id, BOB, "approved from the command line")

    # another process, with its own connection to the checkpoints: the CLI's agent, one pass
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "noetl.cli", "proposals", "watch", "--once", "--no-diagnose"],
        env=loop.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert proposal.id in result.stdout
    assert await loop.agent.waiting_for(proposal.id) == "executions"  # this process sees where it went
    assert (await loop.agent.state_of(proposal.id))["state"] == "applied"


async def test_every_transition_is_recorded_and_the_one_door_refuses_what_it_must(loop: Loop) -> None:
    path = await loop.register(f"door_{uuid.uuid4().hex[:8]}", TWO_STEPS)
    draft = {"target": {"path": path, "step": "sleepy"}, "change": {"timeout_s": 30},
             "rationale": "more time"}
    first = await loop.policies.propose(draft, ALICE)
    with pytest.raises(ProposalRefusedError, match="open proposal"):  # one open proposal per step
        await loop.policies.propose({**draft, "change": {"timeout_s": 40}}, BOB)
    with pytest.raises(ProposalRefusedError, match="not a field"):  # only overlay fields
        await loop.policies.propose({**draft, "change": {"code": "print('pwned')"}}, BOB)
    with pytest.raises(ForbiddenError, match="four eyes"):
        await loop.policies.approve(first.id, ALICE, "my own")
    with pytest.raises(ForbiddenError, match="four eyes"):
        await loop.policies.reject(first.id, Actor(id="token:other", name="alice"), "same name, same person")
    rejected = await loop.policies.reject(first.id, BOB, "not now")
    with pytest.raises(ConflictError, match="cannot become approved"):
        await loop.policies.approve(first.id, BOB, "changed my mind")
    assert [(t.to_state, t.who, t.why) for t in rejected.transitions] == [
        ("proposed", "local:alice", "more time"), ("rejected", "local:bob", "not now")]

    second = await loop.policies.propose(draft, ALICE)  # the step is free again
    await loop.policies.reject(second.id, BOB, "no")
    third = await loop.policies.propose(draft, ALICE)
    await loop.policies.reject(third.id, BOB, "no")
    with pytest.raises(ProposalRefusedError, match="already had 3 proposals"):  # rate limit per step
        await loop.policies.propose(draft, ALICE)
    with pytest.raises(ProposalRefusedError, match="no step 'nope'"):
        await loop.policies.propose({**draft, "target": {"path": path, "step": "nope"}}, ALICE)
    with pytest.raises(ProposalRefusedError, match="not a pool"):
        await loop.policies.propose({**draft, "target": {"path": path, "step": "wait"},
                                     "change": {"pool": "gpu-xl"}}, ALICE)


async def test_the_proposals_api_lists_shows_and_refuses_with_problem_answers(loop: Loop) -> None:
    path = await loop.register(f"api_{uuid.uuid4().hex[:8]}", TWO_STEPS)
    async with loop.client("agent") as operator:
        created = await operator.post("/api/proposals", json={
            "target": {"path": path, "step": "sleepy"},
            "change": {"retry": {"when": "{{ output.status == 'error' }}",
                                 "then": {"do": "retry", "attempts": 3, "backoff": "exponential",
                                          "delay": 0.5}}},
            "rationale": "sleepy fails now and then", "transience": "intermittent"})
        assert created.status_code == 201, created.text
        proposal = created.json()
        refused = await operator.post("/api/proposals", json={
            "target": {"path": path, "step": "wait"}, "change": {"retry": {
                "when": "{{ output.status == 'error' }}", "then": {"do": "retry", "attempts": 50}}},
            "rationale": "retry a lot", "transience": "permanent"})
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert problem["code"] == "guardrail_refused"
        assert "permanent" in problem["detail"] and "50 attempts" in problem["detail"]
        malformed = await operator.post("/api/proposals", json={
            "target": {"path": path, "step": "wait"}, "change": {"command": "rm -rf /"}, "rationale": "x"})
        assert malformed.status_code == 422
    async with loop.client("viewer") as viewer:
        listed = (await viewer.get("/api/proposals", params={"state": "proposed"})).json()["items"]
        assert [p["id"] for p in listed] == [proposal["id"]]
        assert (await viewer.get("/api/proposals", params={"state": "bogus"})).status_code == 400
        shown = (await viewer.get(f"/api/proposals/{proposal['id']}")).json()
        assert shown["author_name"] == "ops-agent" and shown["transitions"][0]["who_name"] == "ops-agent"
        assert (await viewer.get("/api/proposals/nope")).status_code == 404
        assert (await viewer.get("/api/policies", params={"path": "no/such"})).status_code == 404
        assert (await viewer.get("/api/policies", params={"path": path})).json()["steps"] == []
        assert (await viewer.post(f"/api/proposals/{proposal['id']}/reject",
                                  json={"reason": "x"})).status_code == 403
    async with loop.client("alice") as alice:
        rejected = await alice.post(f"/api/proposals/{proposal['id']}/reject", json={"reason": "not needed"})
        assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
        again = await alice.post(f"/api/proposals/{proposal['id']}/approve", json={"reason": "oops"})
        assert again.status_code == 409
        undo = await alice.post(f"/api/proposals/{proposal['id']}/rollback")
        assert undo.status_code == 409  # only an applied change can be rolled back


async def test_a_proposal_not_decided_in_time_expires(loop: Loop) -> None:
    path = await loop.register(f"expire_{uuid.uuid4().hex[:8]}", TWO_STEPS)
    proposal = await loop.policies.propose({"target": {"path": path, "step": "sleepy"},
                                            "change": {"timeout_s": 30}, "rationale": "more room"}, ALICE)
    later = PolicyService(loop.policies.store, loop.policies.settings,
                          clock=lambda: datetime.now(UTC) + timedelta(days=8))
    [expired] = await later.list(path=path)
    assert expired.id == proposal.id and expired.state == "expired"
    last = expired.transitions[-1]
    assert (last.who, last.why) == ("system:noetl", "not decided within 168 h")
    with pytest.raises(ConflictError, match="expired: it cannot become approved"):
        await loop.policies.approve(proposal.id, BOB, "too late")
