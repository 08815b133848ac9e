"""The closed loop end to end: a flaky step's failures -> a diagnosis -> a proposed retry (through the
guardrails) -> approved by a second person's token over REST -> the next executions carry the overlay and
succeed -> the effect is measured -> verified. And a bad change: measured worse -> a rollback proposed ->
rolled back -> the previous overlay version is active again."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from agents.diagnosis.model import Diagnosis
from tests.integration.policies.conftest import MEASURE_AFTER, Loop

pytestmark = pytest.mark.anyio

FLAKY = """\
workload: {counter: ''}
workflow:
  - step: fetch
    tool:
      kind: python
      input: {counter: "{{ workload.counter }}"}
      code: |
        import pathlib
        path = pathlib.Path(counter)
        n = int(path.read_text()) if path.exists() else 0
        path.write_text(str(n + 1))
        if n % 2 == 0:
            raise ConnectionError(f"connection reset by the upstream (call {n})")
        result = {"call": n}
    next: done
  - step: done
    tool: {kind: noop, result: ok}
"""

SLOW = """\
workflow:
  - step: work
    tool:
      kind: python
      code: |
        import time
        time.sleep(1.6)
        result = "slow but fine"
"""


async def diagnosis_of(loop: Loop, execution_id: str, path: str) -> Any:
    """The diagnosis agent's answer (agents.diagnosis), or the one it gives for a flaky connection."""
    try:
        from agents.diagnosis.graph import diagnose
    except ImportError:  # the diagnosis agent is optional here: the loop is what this test checks
        diagnose = None
    if diagnose is not None:
        assert loop.stack.executions is not None
        found = await diagnose(execution_id, executions=loop.stack.executions)
        if found.root_cause_type is not None and found.transience in ("transient", "intermittent"):
            return found
    return Diagnosis(execution_id=execution_id, playbook_path=path, status="failed", failed_step="fetch",
                     root_cause_step="fetch", root_cause_type="connection", transience="intermittent",
                     confidence=0.8, summary="Step 'fetch' fails every other run: the upstream resets "
                                            "connections now and then.")


async def test_a_flaky_step_gets_a_retry_that_is_approved_applied_measured_and_verified(
        loop: Loop, tmp_path: Path) -> None:
    path = await loop.register(f"flaky_{uuid.uuid4().hex[:8]}", FLAKY)
    counter = tmp_path / "counter"
    before = [await loop.run(path, {"counter": str(counter)}) for _ in range(4)]
    assert [s["status"] for s in before] == ["failed", "completed", "failed", "completed"]

    # the agent diagnoses the failure and proposes a retry through the guardrails
    diagnosis = await diagnosis_of(loop, before[2]["execution_id"], path)
    submitted = await loop.agent.submit(diagnosis)
    assert len(submitted) == 1 and submitted[0].proposal is not None, submitted
    proposal = submitted[0].proposal
    assert proposal.state == "proposed" and proposal.author == "agent:proposals"
    assert proposal.change is not None and proposal.change.retry is not None
    assert proposal.change.retry.then is not None and proposal.change.retry.then.do == "retry"
    assert await loop.agent.waiting_for(proposal.id) == "decision"  # the LangGraph interrupt, checkpointed

    # nothing changes before the approval
    assert "overlays" not in (await loop.events((await loop.run(path, {"counter": str(counter)}))
                                                ["execution_id"]))[0].payload
    counter.write_text("4")  # the next call fails again: the retry must absorb it

    async with loop.client("agent") as operator:  # an operator cannot approve
        refused = await operator.post(f"/api/proposals/{proposal.id}/approve", json={"reason": "ship it"})
        assert refused.status_code == 403
    async with loop.client("bob") as bob:
        answer = await bob.post(f"/api/proposals/{proposal.id}/approve",
                                json={"reason": "a retry with backoff is the usual fix for resets"})
        assert answer.status_code == 200, answer.text
        approved = answer.json()
        assert approved["state"] == "applied" and approved["applied_version"] == 1
        assert [t["to_state"] for t in approved["transitions"]] == ["proposed", "approved", "applied"]
        assert approved["transitions"][1]["who_name"] == "bob"
        view = (await bob.get("/api/policies", params={"path": path})).json()
    assert view["steps"][0]["step"] == "fetch" and view["steps"][0]["active_version"] == 1
    assert view["steps"][0]["overlay"]["retry"]["then"]["do"] == "retry"
    assert loop.stack.store is not None
    catalog = await loop.stack.store.catalog.get(path)
    assert "retry" not in catalog.text  # the playbook in the catalog is untouched

    assert await loop.agent.tick() == [proposal.id]  # the approval resumes the interrupt
    assert await loop.agent.waiting_for(proposal.id) == "executions"

    after = [await loop.run(path, {"counter": str(counter)}) for _ in range(MEASURE_AFTER)]
    assert [s["status"] for s in after] == ["completed"] * MEASURE_AFTER
    events = await loop.events(after[0]["execution_id"])
    started = events[0]
    assert started.type == "execution.started"
    assert started.payload["overlays"]["versions"] == {"fetch": 1}
    assert started.payload["overlays"]["proposals"] == {"fetch": proposal.id}
    assert any(e.type == "policy.applied" for e in events)
    assert any(e.type == "step.retrying" and e.step == "fetch" for e in events)  # the overlay's retry ran

    assert await loop.agent.tick() == [proposal.id]  # N executions later: measured
    verified = await loop.policies.get(proposal.id)
    assert verified.state == "verified", verified
    assert verified.measurement is not None and verified.measurement.verdict == "improved"
    assert verified.measurement.before.runs == 5 and verified.measurement.before.failure_rate == 0.6
    assert verified.measurement.after.failure_rate == 0.0
    assert verified.measurement.after.runs == MEASURE_AFTER
    assert [t.to_state for t in verified.transitions] == ["proposed", "approved", "applied", "verified"]
    assert await loop.agent.waiting_for(proposal.id) is None  # the thread ended
    assert (await loop.agent.state_of(proposal.id))["verdict"] == "improved"


async def test_a_change_that_makes_things_worse_is_rolled_back_to_the_previous_version(loop: Loop) -> None:
    path = await loop.register(f"slow_{uuid.uuid4().hex[:8]}", SLOW)
    baseline = [await loop.run(path) for _ in range(3)]
    assert all(s["status"] == "completed" for s in baseline)

    async with loop.client("alice") as alice:  # an approver may propose, but not approve her own
        answer = await alice.post("/api/proposals", json={
            "target": {"path": path, "step": "work"}, "change": {"timeout_s": 1},
            "rationale": "work should never take more than a second"})
        assert answer.status_code == 201, answer.text
        proposal_id = answer.json()["id"]
        assert answer.json()["risk"] == "low"
        own = await alice.post(f"/api/proposals/{proposal_id}/approve", json={"reason": "mine"})
        assert own.status_code == 403
        assert "four eyes" in own.json()["detail"] and "alice" in own.json()["detail"]
    async with loop.client("bob") as bob:
        answer = await bob.post(f"/api/proposals/{proposal_id}/approve", json={"reason": "fine by me"})
        assert answer.status_code == 200, answer.text
    await loop.agent.tick()  # starts the thread of a proposal made elsewhere, resumes it: applied

    after = [await loop.run(path) for _ in range(MEASURE_AFTER)]
    assert [s["status"] for s in after] == ["failed"] * MEASURE_AFTER
    assert after[0]["steps"]["work"]["error"]["kind"] == "timeout"

    await loop.agent.tick()  # measured: worse -> a rollback is proposed
    worse = await loop.policies.get(proposal_id)
    assert worse.state == "applied" and worse.measurement is not None
    assert worse.measurement.verdict == "worse" and worse.rollback_id is not None
    rollback = await loop.policies.get(worse.rollback_id)
    assert (rollback.kind, rollback.state, rollback.rollback_of) == ("rollback", "proposed", proposal_id)
    await loop.agent.tick()
    assert await loop.agent.waiting_for(rollback.id) == "decision"

    async with loop.client("alice") as alice:
        answer = await alice.post(f"/api/proposals/{proposal_id}/rollback",
                                  json={"reason": "it fails every run"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "rolled_back"
        view = (await alice.get("/api/policies", params={"path": path, "step": "work"})).json()
    versions = view["steps"][0]["versions"]
    assert [(v["version"], v["overlay"], v["restores"]) for v in versions] == [
        (1, {"timeout_s": 1.0}, None), (2, {}, 0)]
    assert view["steps"][0]["active_version"] == 2 and view["steps"][0]["overlay"] == {}
    done = await loop.policies.get(rollback.id)
    assert done.state == "applied" and [t.to_state for t in done.transitions] == ["proposed", "approved",
                                                                                    "applied"]
    assert done.transitions[1].who_name == "alice"  # the agent proposed the rollback, a person approved it

    again = await loop.run(path)  # the previous overlay (none) is active: the step succeeds again
    assert again["status"] == "completed"
    await loop.agent.tick()
    assert await loop.agent.waiting_for(proposal_id) is None  # the change's thread saw the rollback and ended
