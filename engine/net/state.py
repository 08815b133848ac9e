"""The state of one execution as the firing function sees it: tokens (results), runs, loops, joins.

Rebuilt from nothing by folding the execution's input events through `fire`; never read from a
database row. Plain mutable dataclasses owned by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from engine.dsl.results import wrap_result
from engine.protocol.results import ToolError

ExecutionStatus = Literal["running", "completed", "failed", "cancelled"]
StepStatus = Literal["scheduled", "running", "succeeded", "failed", "skipped", "cancelled"]


@dataclass
class StepResult:
    """A finished step's value and the handles templates get on it (spec section 5)."""

    data: Any = None
    ref: dict[str, Any] | None = None
    columns: list[str] | None = None
    statement_count: int | None = None
    task_results: dict[str, Any] | None = None
    stats: dict[str, int] | None = None
    item_refs: dict[int, dict[str, Any]] | None = None  # loop items stored by reference

    def handle(self, resolve_ref: Any = None) -> Any:
        data = self.data
        if self.ref is not None and resolve_ref is not None:
            data = resolve_ref(self.ref)
        if self.item_refs and resolve_ref is not None and isinstance(data, list):
            data = list(data)
            for index, ref in self.item_refs.items():
                data[index] = resolve_ref(ref)
        elif self.item_refs and resolve_ref is not None and isinstance(data, dict) \
                and isinstance(data.get("results"), list):  # a cursor loop's {stats, results}
            results = list(data["results"])
            for index, ref in self.item_refs.items():
                results[index] = resolve_ref(ref)
            data = {**data, "results": results}
        return wrap_result(data, columns=self.columns, statement_count=self.statement_count,
                           task_results=self.task_results, stats=self.stats)


@dataclass
class StepRecord:
    status: StepStatus = "scheduled"
    runs: int = 0
    attempts: int = 0
    result: StepResult | None = None
    error: ToolError | None = None


@dataclass
class Dispatch:
    """A command issued and not yet finished."""

    command_id: str
    step: str
    run: int
    loop_index: int | None = None
    claimer: int | None = None  # a cursor loop's claimer (spec 6.1)


ClaimKey = tuple[float, int, int, str, int, int]  # claimed at, claimer, delivery, claimer run, claim, row


@dataclass
class CursorProgress:
    """A cursor loop's rows (spec 6.1), keyed by when and by whom they were claimed: claim order."""

    commands: dict[str, int] = field(default_factory=dict)  # claimer command id -> claimer number
    results: dict[ClaimKey, Any] = field(default_factory=dict)
    refs: dict[ClaimKey, dict[str, Any]] = field(default_factory=dict)
    failed: dict[ClaimKey, ToolError] = field(default_factory=dict)
    reported: dict[tuple[str, str], int] = field(default_factory=dict)  # (command, claimer run) -> rows
    draining: dict[str, tuple[str, int]] = field(default_factory=dict)  # stopped, rows still on the way
    error: ToolError | None = None  # a claim that failed: the loop's error


@dataclass
class LoopProgress:
    run: int
    items: list[Any]
    arc_args: dict[str, Any]
    step_input: dict[str, Any]
    next_index: int = 0
    in_flight: set[int] = field(default_factory=set)  # item indices (a cursor loop: claimer numbers)
    results: dict[int, Any] = field(default_factory=dict)
    refs: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: dict[int, ToolError] = field(default_factory=dict)
    stopping: bool = False  # fail_fast: a failed item stops the loop
    cursor: CursorProgress | None = None
    max_in_flight: int | None = None  # spec.max_in_flight, rendered when the loop started

    @property
    def done(self) -> bool:
        return (self.stopping or self.next_index >= len(self.items)) and not self.in_flight


@dataclass
class ExecutionState:
    execution_id: str
    status: ExecutionStatus = "running"
    started: bool = False
    workload: dict[str, Any] = field(default_factory=dict)
    ctx: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    pending: dict[str, Dispatch] = field(default_factory=dict)
    loops: dict[str, LoopProgress] = field(default_factory=dict)
    arrivals: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # join -> source -> args
    unhandled: list[str] = field(default_factory=list)  # steps that failed with no handler
    cancelling: bool = False
    final_dispatched: bool = False
    last_finished: str | None = None
    last_child_id: int = 0  # the id of the last child execution started (engine.protocol.ids)
    error: ToolError | None = None  # what failed or cancelled the execution (with the step, if one)
    warnings: list[str] = field(default_factory=list)

    def record(self, step: str) -> StepRecord:
        return self.steps.setdefault(step, StepRecord())

    @property
    def result(self) -> Any:
        if self.last_finished is None:
            return None
        record = self.steps.get(self.last_finished)
        return record.result.data if record and record.result else None

    def active_steps(self) -> set[str]:
        """Steps that may still produce an arrival: running commands and unfinished loops."""
        return {d.step for d in self.pending.values()} | set(self.loops)
