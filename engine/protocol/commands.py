"""Commands the orchestrator sends to worker pools: run a step (or one loop item), cancel one."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, TypeAdapter

from engine.protocol.results import WireModel


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
    context: dict[str, Any] = Field(default_factory=dict)  # what the step's templates may read
    iterator: str | None = None
    timeout_s: float | None = None
    max_iterations: int = 1000
    playbook_path: str | None = None
    workbook: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)  # name -> tasks
    keychain: list[dict[str, Any]] = Field(default_factory=list)  # entries, resolved by the worker
    output: dict[str, Any] | None = None  # the step's `output` hints (spec 16): store, select, size


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
