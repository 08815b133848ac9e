"""The one door for configuration changes: propose (through the guardrails), approve or reject (four eyes),
apply (a new overlay version of the step), roll back (the previous version again), measure (the step
over the executions after the change against those before it) and verify.

Agents, the MCP server and people all come through here; nothing else writes proposals or overlays.
New executions carry the active overlays in their `execution.started` event (`active_overlays`, called by
ExecutionService.start) and the engine lays them over the catalog's playbook: running executions keep the
overlays they started with. docs/policies.md tells the whole story.
"""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from control_plane.errors import ConflictError, ForbiddenError, InvalidArgumentError, NotFoundError
from control_plane.store import Store
from control_plane.store.policies import NewOverlay
from engine.net.validate import validate_text
from policies import effect
from policies.apply import merged, step_info
from policies.errors import FourEyesError, WorkflowError
from policies.guards import (
    GuardInput,
    GuardrailConfig,
    OpenProposal,
    Violation,
    allowed_fields,
    check,
    risk_of,
)
from policies.model import (
    OPEN_STATES,
    PROPOSAL_STATES,
    Actor,
    Measurement,
    OverlayChange,
    Proposal,
    ProposalDraft,
    StepInfo,
    Target,
    Transition,
)
from policies.workflow import transition

log = logging.getLogger(__name__)

AGENT = Actor(id="agent:proposals", name="proposals agent")
SYSTEM = Actor(id="system:noetl", name="noetl")
_ENDED = ("completed", "failed")  # a cancelled run says nothing about the step


class ProposalRefusedError(ConflictError):
    """The guardrails refused the change (409); `violations` lists every rule it broke."""

    code = "guardrail_refused"

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        first = violations[0]
        text = "; ".join(v.message for v in violations)
        super().__init__(f"the guardrails refuse this change: {text}", where=first.field, fix=first.fix)


async def active_overlays(store: Store, path: str) -> dict[str, Any] | None:
    """What `execution.started` carries: {"steps": {step: overlay}, "versions": {step: n},
    "proposals": {step: id}}; None when no step of the path has an overlay."""
    active = await store.policies.active(path)
    if not active:
        return None
    return {"steps": {step: v.overlay for step, v in active.items() if v.overlay},
            "versions": {step: v.version for step, v in active.items()},
            "proposals": {step: v.proposal_id for step, v in active.items()}}


@dataclass(frozen=True)
class PolicySettings:
    guardrails: GuardrailConfig = field(default_factory=GuardrailConfig)
    effect: effect.EffectConfig = field(default_factory=effect.EffectConfig)
    measure_after: int = 5  # executions after the change before its effect is measured
    baseline: int = 10  # executions before the change it is compared with (at most)
    expire_after_s: float = 7 * 86400.0  # a proposal not decided within this expires
    pools: tuple[str, ...] = ()  # the deployment's worker pools (known pools besides those seen serving)
    scan: int = 200  # executions read at most on either side of a change


class PolicyService:
    def __init__(self, store: Store, settings: PolicySettings | None = None, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.settings = settings or PolicySettings()
        self.clock = clock

    # ------------------------------------------------------------------ reading
    async def get(self, proposal_id: str) -> Proposal:
        return await self.store.policies.get(proposal_id)

    async def list(self, *, state: str | Iterable[str] | None = None, path: str | None = None,
                   step: str | None = None, limit: int = 100) -> list[Proposal]:
        """Newest first (proposals past their deadline are expired first)."""
        states = [state] if isinstance(state, str) else list(state) if state is not None else None
        for value in states or []:
            if value not in PROPOSAL_STATES:
                raise InvalidArgumentError(f"unknown proposal state '{value}'", where="state",
                                           fix=f"one of {', '.join(PROPOSAL_STATES)}")
        if not 1 <= limit <= 1000:
            raise InvalidArgumentError(f"limit {limit} is out of range", where="limit", fix="1 to 1000")
        await self.expire_stale()
        return await self.store.policies.list(states=states, path=path, step=step, limit=limit)

    async def policies(self, path: str, step: str | None = None) -> dict[str, Any]:
        """The active overlay of each step of `path` (or one step) and all its versions."""
        await self.store.catalog.get(path)  # NotFoundError for a path that is not in the catalog
        steps: dict[str, Any] = {}
        for version in await self.store.policies.versions(path, step):
            entry = steps.setdefault(version.step, {"step": version.step, "active_version": None,
                                                    "overlay": {}, "proposal_id": None, "versions": []})
            entry["versions"].append({
                "version": version.version, "overlay": version.overlay, "proposal_id": version.proposal_id,
                "restores": version.restores, "created_by": version.created_by, "reason": version.reason,
                "created_at": version.created_at})
            entry.update(active_version=version.version, overlay=version.overlay,
                         proposal_id=version.proposal_id)
        return {"path": path, "step": step, "steps": list(steps.values())}

    async def step_info(self, path: str, step: str, *, durations: bool = False) -> StepInfo:
        """The step as it runs now: the catalog's latest version with the step's active overlay."""
        try:
            entry = await self.store.catalog.get(path)
        except NotFoundError:
            return StepInfo(path=path, step=step, exists=False)
        playbook = validate_text(entry.text, path).playbook
        active = (await self.store.policies.active(path)).get(step)
        recent: list[float] = []
        if durations:
            runs = await self._runs(path, step, limit=self.settings.baseline)
            recent = [r.duration_ms for r in runs if r.outcome == "succeeded" and r.duration_ms is not None]
        return step_info(path, playbook, step, active.overlay if active else None,
                         active.version if active else None, recent)

    async def guardrails(self) -> GuardrailConfig:
        """The bounds, with the known pools: configured, declared by this deployment, or seen serving."""
        served = await self.store.policies.served_pools()
        return self.settings.guardrails.with_pools([*self.settings.pools, *served])

    # ------------------------------------------------------------------ proposing
    async def propose(self, draft: ProposalDraft | Mapping[str, Any], actor: Actor) -> Proposal:
        """Check the draft against every guardrail and store it as `proposed`; ProposalRefusedError (409)
        names every rule it breaks."""
        if not isinstance(draft, ProposalDraft):
            raw = draft.get("change") if isinstance(draft, Mapping) else None
            if isinstance(raw, Mapping):
                given = draft.get("target")
                target = given if isinstance(given, Mapping) else {}
                probe = ProposalDraft(target=Target(path=str(target.get("path") or "-"),
                                                    step=str(target.get("step") or "-")),
                                      change=OverlayChange(timeout_s=1), rationale="probe")
                violations = allowed_fields(GuardInput(draft=probe, step=None, raw_change=raw),
                                            self.settings.guardrails)
                if violations:
                    raise ProposalRefusedError(violations)
            try:
                draft = ProposalDraft.model_validate(draft)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(p) for p in error.get("loc", ())) or "proposal"
                raise InvalidArgumentError(f"the proposal is malformed: {where}: {error.get('msg')}",
                                           where=where, fix="see the proposal schema in docs/policies.md"
                                           ) from None
        await self.expire_stale()
        path, step = draft.target.path, draft.target.step
        info = await self.step_info(path, step)
        config = await self.guardrails()
        open_now = await self.store.policies.list(states=OPEN_STATES, path=path, step=step)
        blocking = [OpenProposal(p.id, p.kind, p.state, p.rollback_of) for p in open_now
                    if p.kind == "change" or p.state != "applied"]
        window = self.clock() - timedelta(seconds=config.rate_window_s)
        recent = await self.store.policies.count_since(path, step, window)
        undone = None
        if draft.rollback_of:
            try:
                undone = await self.store.policies.get(draft.rollback_of)
            except NotFoundError:
                undone = None
        violations = check(GuardInput(draft=draft, step=info, open_proposals=blocking,
                                      recent_proposals=recent, rolled_back=undone), config)
        if violations:
            log.info("proposal for %s step %s refused: %s", path, step, "; ".join(v.code for v in violations))
            raise ProposalRefusedError(violations)
        now = self.clock()
        first = Transition(from_state=None, to_state="proposed", who=actor.id, who_name=actor.name,
                           why=draft.rationale.strip().splitlines()[0][:500], at=now)
        proposal = Proposal(
            id=uuid.uuid4().hex, kind=draft.kind, target=draft.target, change=draft.change,
            rollback_of=draft.rollback_of, rationale=draft.rationale, diagnosis=draft.diagnosis,
            evidence=draft.evidence, transience=draft.effective_transience, author=actor.id,
            author_name=actor.name, risk=risk_of(draft.change, info), state="proposed", created_at=now,
            updated_at=now, transitions=[first])
        stored = await self.store.policies.insert(proposal)
        if undone is not None:
            await self._note(undone, rollback_id=stored.id)
        return stored

    async def propose_rollback(self, proposal_id: str, actor: Actor, why: str,
                               measurement: Measurement | None = None) -> Proposal:
        """Propose to undo an applied change (the agent does, when its effect was measured worse)."""
        undone = await self.get(proposal_id)
        draft = ProposalDraft(target=undone.target, kind="rollback", rollback_of=undone.id, rationale=why,
                              evidence=list(measurement.executions_after) if measurement else [])
        return await self.propose(draft, actor)

    # ------------------------------------------------------------------ deciding
    async def approve(self, proposal_id: str, actor: Actor, why: str) -> Proposal:
        """Approve (never the author's own proposal) and apply at once: new executions use the change."""
        proposal = await self.get(proposal_id)
        approved = await self._move(proposal, "approved", actor, why)
        return await self.apply(approved.id, actor, "applied on approval")

    async def reject(self, proposal_id: str, actor: Actor, why: str) -> Proposal:
        proposal = await self.get(proposal_id)
        rejected = await self._move(proposal, "rejected", actor, why)
        if rejected.kind == "rollback" and rejected.rollback_of:
            await self._note(await self.get(rejected.rollback_of), rollback_id=None)
        return rejected

    async def apply(self, proposal_id: str, actor: Actor, why: str = "applied") -> Proposal:
        """Make an approved proposal a new overlay version (idempotent: an applied one is returned)."""
        proposal = await self.get(proposal_id)
        if proposal.state != "approved":
            if proposal.state in ("applied", "verified", "rolled_back"):
                return proposal
            raise ConflictError(f"proposal {proposal.id} is {proposal.state}: only an approved proposal is "
                                "applied", where=f"proposal {proposal.id}", fix="approve it first")
        applied = self._transition(proposal, "applied", actor, why)
        path, step = proposal.target.path, proposal.target.step
        if proposal.kind == "change":
            assert proposal.change is not None
            active = (await self.store.policies.active(path)).get(step)
            content = merged(active.overlay if active else {}, proposal.change)
            return await self.store.policies.commit(proposal, applied, NewOverlay(content, actor.id, why))
        undone = await self.get(str(proposal.rollback_of))
        content = await self._overlay_of(path, step, undone.base_version)
        rolled = self._transition(undone, "rolled_back", actor,
                                  f"rolled back by proposal {proposal.id}: {why}")
        return await self.store.policies.commit(
            proposal, applied, NewOverlay(content, actor.id, f"rollback of {undone.id}",
                                          restores=undone.base_version or 0, check_active=True,
                                          expect_active=undone.applied_version),
            also=[(undone, rolled)])

    async def rollback(self, proposal_id: str, actor: Actor, why: str) -> Proposal:
        """Undo an applied (or verified) change now: the step's overlay version before it becomes active
        again. When a rollback of it was proposed, this approves that proposal (four eyes holds)."""
        proposal = await self.get(proposal_id)
        if proposal.kind == "rollback":
            raise ConflictError(f"proposal {proposal.id} is itself a rollback",
                                where=f"proposal {proposal.id}",
                                fix="roll back the change it undid by proposing that change again")
        pending = [p for p in await self.store.policies.list(states=("proposed",), path=proposal.target.path,
                                                               step=proposal.target.step, kind="rollback")
                   if p.rollback_of == proposal.id]
        if pending:
            await self.approve(pending[0].id, actor, why)
            return await self.get(proposal.id)
        if proposal.state not in ("applied", "verified"):
            raise ConflictError(f"proposal {proposal.id} is {proposal.state}: only an applied or verified "
                                "change can be rolled back", where=f"proposal {proposal.id}",
                                fix="reject a proposed change instead")
        path, step = proposal.target.path, proposal.target.step
        content = await self._overlay_of(path, step, proposal.base_version)
        rolled = self._transition(proposal, "rolled_back", actor, why)
        return await self.store.policies.commit(
            proposal, rolled, NewOverlay(content, actor.id, f"rollback of {proposal.id}: {why}",
                                         restores=proposal.base_version or 0, check_active=True,
                                         expect_active=proposal.applied_version, record=False))

    async def expire_stale(self) -> builtins.list[Proposal]:
        """Proposals not decided within `expire_after_s` become expired."""
        deadline = self.clock() - timedelta(seconds=self.settings.expire_after_s)
        expired = []
        for proposal in await self.store.policies.list(states=("proposed",), limit=1000):
            if proposal.created_at < deadline:
                try:
                    hours = self.settings.expire_after_s / 3600
                    expired.append(await self._move(proposal, "expired", SYSTEM,
                                                    f"not decided within {hours:g} h"))
                except ConflictError:
                    continue  # decided meanwhile
        return expired

    # ------------------------------------------------------------------ measuring
    async def ready_to_measure(self, proposal_id: str) -> bool:
        """Whether enough executions ended since the change was applied (a cheap count)."""
        proposal = await self.get(proposal_id)
        if proposal.state != "applied" or proposal.applied_at is None:
            return False
        page = await self.store.executions.list(path=proposal.target.path, status=_ENDED,
                                                created_after=proposal.applied_at,
                                                limit=self.settings.measure_after)
        return len(page.items) >= self.settings.measure_after

    async def measure(self, proposal_id: str, actor: Actor = AGENT) -> Proposal:
        """After N executions that ran the step with the change: verified when the step did not get worse
        (failure rate, median duration), else a rollback is proposed. Unchanged while there are fewer."""
        proposal = await self.get(proposal_id)
        if proposal.state != "applied" or proposal.applied_at is None:
            return proposal
        path, step, n = proposal.target.path, proposal.target.step, self.settings.measure_after
        after = await self._runs(path, step, created_after=proposal.applied_at,
                                 version=proposal.applied_version, limit=n, oldest_first=True)
        if len(after) < n:
            return proposal
        before = await self._runs(path, step, created_before=proposal.applied_at,
                                  version=proposal.base_version, limit=self.settings.baseline)
        measurement = effect.measure(before, after, at=self.clock(), config=self.settings.effect)
        reasons = "; ".join(measurement.reasons)
        if effect.verified(measurement.verdict) or proposal.kind == "rollback":
            verified = self._transition(
                proposal, "verified", actor,
                f"measured over {len(after)} executions: {measurement.verdict} ({reasons})")
            return await self.store.policies.commit(proposal, verified.model_copy(
                update={"measurement": measurement}))
        noted = await self._note(proposal, measurement=measurement)
        if proposal.rollback_id is None:
            try:
                await self.propose_rollback(proposal.id, actor,
                                            f"the change made step '{step}' worse: {reasons}", measurement)
            except ProposalRefusedError as exc:
                log.warning("a rollback of %s could not be proposed: %s", proposal.id, exc)
        return await self.get(noted.id)

    async def _runs(self, path: str, step: str, *, created_after: datetime | None = None,
                    created_before: datetime | None = None, version: int | None = None,
                    limit: int = 10, oldest_first: bool = False) -> builtins.list[effect.RunOutcome]:
        """The step's outcome in ended executions of `path` that started with its overlay `version`."""
        page = await self.store.executions.list(path=path, status=_ENDED, created_after=created_after,
                                                created_before=created_before, limit=self.settings.scan)
        items = list(reversed(page.items)) if oldest_first else page.items
        out: list[effect.RunOutcome] = []
        for execution in items:
            events = await self.store.events.events(execution.execution_id)
            run = effect.run_outcome(execution.execution_id, events, step)
            if run.outcome is None or run.overlay_version != version:
                continue
            out.append(run)
            if len(out) >= limit:
                break
        return out

    # ------------------------------------------------------------------ plumbing
    def _transition(self, proposal: Proposal, to_state: str, actor: Actor, why: str) -> Proposal:
        try:
            return transition(proposal, to_state, actor=actor, why=why, at=self.clock())
        except FourEyesError as exc:
            raise ForbiddenError(exc.message, where=exc.where, fix=exc.fix) from None
        except WorkflowError as exc:
            raise ConflictError(exc.message, where=exc.where, fix=exc.fix) from None

    async def _move(self, proposal: Proposal, to_state: str, actor: Actor, why: str) -> Proposal:
        return await self.store.policies.commit(proposal, self._transition(proposal, to_state, actor, why))

    async def _note(self, proposal: Proposal, **fields: Any) -> Proposal:
        """Record fields (measurement, rollback_id) without a transition."""
        return await self.store.policies.commit(proposal, proposal.model_copy(update=fields))

    async def _overlay_of(self, path: str, step: str, version: int | None) -> dict[str, Any]:
        if not version:
            return {}
        found = await self.store.policies.version(path, step, version)
        return dict(found.overlay) if found is not None else {}


__all__ = ["AGENT", "SYSTEM", "PolicyService", "PolicySettings", "ProposalRefusedError", "active_overlays"]
