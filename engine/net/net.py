"""The compiled form of a playbook that the engine fires: transitions, arcs, joins, loops, pipelines.

Plain frozen data, no behaviour beyond lookups: `compile_net` builds it, the firing function reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.dsl.model import Playbook
from engine.protocol.commands import CursorClaim


@dataclass(frozen=True, slots=True)
class ArcDef:
    source: str
    target: str
    index: int  # position in the source's arcs (YAML order decides exclusive routing)
    when: bool | str | None
    set: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class CursorDef:
    """A cursor loop's work queue (spec 6.1): what every claimer command carries."""

    kind: str
    auth: str | Mapping[str, Any] | None
    connection_string: str | None
    claim: str
    claimers: int  # max_in_flight: claimers working at once
    max_rows: int  # frame.max_rows: rows one claim may bind
    heartbeat_s: float  # the in_progress interval of a claimer's message (at most lease_seconds / 3)

    def command(self, claimer: int) -> CursorClaim:
        return CursorClaim(claimer=claimer, kind=self.kind,
                           auth=dict(self.auth) if isinstance(self.auth, Mapping) else self.auth,
                           connection_string=self.connection_string, claim=self.claim,
                           max_rows=self.max_rows, heartbeat_s=self.heartbeat_s)


@dataclass(frozen=True, slots=True)
class LoopDef:
    items: str | list[Any]  # a template yielding the list, or the list itself (a cursor loop: its claim)
    iterator: str
    mode: Literal["sequential", "parallel", "cursor"]
    max_in_flight: int | str | None  # a template is rendered when the loop starts
    cursor: CursorDef | None = None


@dataclass(frozen=True, slots=True)
class CommandParts:
    """What every RunStep of a step carries whatever the state: dumped once, when the net is compiled."""

    tasks: tuple[dict[str, Any], ...]  # the step's canonical tool list (model_dump by alias)
    workbook: Mapping[str, tuple[dict[str, Any], ...]]  # the workbook tasks its tools name
    workbook_contracts: Mapping[str, dict[str, Any]]  # their `assert` (spec 3), for those that have one
    output: Mapping[str, Any] | None  # the step's `output` hints
    keychain: tuple[dict[str, Any], ...]
    step_names: tuple[str, ...]  # the step names its worker-side templates read (null until they ran)
    timeout_s: float | None
    max_iterations: int
    child: bool  # a `kind: playbook` call: a child execution, not a RunStep


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of the playbook."""

    name: str
    index: int
    mode: Literal["exclusive", "inclusive"]
    arcs: tuple[ArcDef, ...]
    predecessors: frozenset[str]  # every step with an arc to this one
    forward_predecessors: frozenset[str]  # those not on a cycle through this step (back edges dropped)
    loop: LoopDef | None
    tasks: tuple[str, ...]  # task names of the pipeline, in order
    best_effort: bool
    command: CommandParts  # what its RunStep commands carry whatever the state
    reads: frozenset[str] = frozenset()  # names the worker-side templates of the step read

    @property
    def is_join(self) -> bool:
        """More than one step routes here: it fires once per arrival wave (spec 4.1)."""
        return len(self.predecessors) > 1


@dataclass(frozen=True, slots=True)
class Net:
    playbook: Playbook
    entry: str
    final: str | None
    transitions: Mapping[str, Transition]
    order: tuple[str, ...]  # YAML order
    reachable: frozenset[str]  # from the entry step (and the final step)
    ancestors: Mapping[str, frozenset[str]] = field(default_factory=dict)  # steps that can reach it
    components: Mapping[str, int] = field(default_factory=dict)  # strongly connected component id

    def transition(self, name: str) -> Transition:
        return self.transitions[name]

    @property
    def joins(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if self.transitions[n].is_join)

    def on_cycle(self, a: str, b: str) -> bool:
        return self.components.get(a) == self.components.get(b)
