"""Commands the orchestrator sends to worker pools: run a step (or one loop item), cancel one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import (
    Field,
    TypeAdapter,
    field_serializer,
    field_validator,
)

from engine.protocol.results import WireModel, fold_body_alias, unfold_body_alias


class RunStep(WireModel):
    """Run the task pipeline of one step (or of one item of a loop step) on a worker of `pool`."""

    type: Literal["run_step"] = "run_step"
    command_id: str
    execution_id: str
    step: str
    run: int
    loop_index: int | None = None
    pool: str
    tasks: list[dict[str, Any]]  # the step's canonical tool list (model_dump by alias)
    input: dict[str, Any] = Field(default_factory=dict)  # the step input, rendered at dispatch
    render_input: bool = False  # a loop item: `input` is the step's template, rendered by the worker per item
    context: dict[str, Any] = Field(default_factory=dict)  # what the step's templates may read
    iterator: str | None = None
    timeout_s: float | None = None
    max_iterations: int = 1000
    playbook_path: str | None = None
    workbook: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)  # name -> tasks
    workbook_contracts: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> its `assert`
    keychain: list[dict[str, Any]] = Field(default_factory=list)  # entries, resolved by the worker
    output: dict[str, Any] | None = None  # the step's `output` hints (spec 16): store, select, size
    # a cursor loop's claimer (spec 6.1): {claimer, kind, auth, connection_string, claim, max_rows,
    # heartbeat_s}; it claims rows and runs the pipeline on each until a claim returns none
    cursor: dict[str, Any] | None = None

    @field_validator("context", mode="before")
    @classmethod
    def _unfold(cls, value: Any) -> Any:
        return _map_results(value, unfold_body_alias)

    @field_serializer("context", when_used="json")
    def _fold(self, value: Any) -> Any:
        # an http result's body travels once (as `data`); reading the command restores `body`
        return _map_results(value, fold_body_alias)


def _map_results(context: Any, change: Callable[[Any], Any]) -> Any:
    """`context` with `change` applied to the value (and the task results) of every step result."""
    results = context.get("results") if isinstance(context, dict) else None
    if not isinstance(results, dict) or not results:
        return context
    changed: dict[str, Any] = {}
    for name, entry in results.items():
        if isinstance(entry, dict):
            entry = {**entry, "data": change(entry.get("data"))}
            if isinstance(entry.get("task_results"), dict):
                entry["task_results"] = {k: change(v) for k, v in entry["task_results"].items()}
        changed[name] = entry
    return {**context, "results": changed}


class CancelStep(WireModel):
    type: Literal["cancel_step"] = "cancel_step"
    command_id: str
    execution_id: str
    reason: str = "cancelled"


class StartChild(WireModel):
    """Start a child execution for a `kind: playbook` step (or loop item); its end is the step's outcome."""

    type: Literal["start_child"] = "start_child"
    command_id: str
    execution_id: str  # the parent
    child_execution_id: str
    step: str
    run: int
    loop_index: int | None = None
    path: str
    version: int | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    return_step: str | None = None
    timeout_s: float | None = None
    keychain: list[dict[str, Any]] = Field(default_factory=list)  # the parent's shared entries (spec 10)


def encode_runs(encoded: list[bytes]) -> bytes:
    """One bus message for several RunStep commands of one pool (each already JSON-encoded): an array.
    A single command stays a plain object, as every worker has always read it."""
    if len(encoded) == 1:
        return encoded[0]
    return b"[" + b",".join(encoded) + b"]"


def decode_runs(data: bytes) -> list[RunStep]:
    """The RunStep commands of one bus message (see `encode_runs`); ValueError when it is not one."""
    if data[:1] == b"[":
        commands = _RUN_LIST.validate_json(data)
        if not commands:
            raise ValueError("an empty command batch")
        return commands
    return [RunStep.model_validate_json(data)]


_RUN_LIST: TypeAdapter[list[RunStep]] = TypeAdapter(list[RunStep])
