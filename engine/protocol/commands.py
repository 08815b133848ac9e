"""Commands the orchestrator sends to worker pools: run a step (or one loop item), cancel one."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    TypeAdapter,
    field_serializer,
    field_validator,
)

from engine.protocol.results import WireModel, fold_body_alias, unfold_body_alias


class ResultEntry(WireModel):
    """An earlier step's result as a command carries it (the fields of engine.net.state.StepResult);
    an http result's body travels once, as `data`, and is restored as `body` when read."""

    data: Any = None
    ref: dict[str, Any] | None = None  # stored elsewhere (a file, an object): `data` is its inline part
    columns: list[str] | None = None
    statement_count: int | None = None
    task_results: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    item_refs: dict[str, dict[str, Any]] | None = None  # a loop's items stored by reference, by index

    @field_validator("data", mode="before")
    @classmethod
    def _unfold_data(cls, value: Any) -> Any:
        return unfold_body_alias(value)

    @field_validator("task_results", mode="before")
    @classmethod
    def _unfold_tasks(cls, value: Any) -> Any:
        return {k: unfold_body_alias(v) for k, v in value.items()} if isinstance(value, dict) else value

    @field_serializer("data", when_used="json")
    def _fold_data(self, value: Any) -> Any:
        return fold_body_alias(value)

    @field_serializer("task_results", when_used="json")
    def _fold_tasks(self, value: Any) -> Any:
        return {k: fold_body_alias(v) for k, v in value.items()} if isinstance(value, dict) else value


class StepContext(WireModel):
    """What a step's templates may read, as fire sends it with the command."""

    workload: dict[str, Any] = Field(default_factory=dict)
    ctx: dict[str, Any] = Field(default_factory=dict)
    results: dict[str, ResultEntry] = Field(default_factory=dict)  # only the steps the templates name
    step_names: list[str] = Field(default_factory=list)
    arc_args: dict[str, Any] = Field(default_factory=dict)  # what the arc that led here passed
    iter: dict[str, Any] | None = None  # a loop item: {<iterator>: item, _index, _first, _last}


class CursorClaim(WireModel):
    """A cursor loop's claimer (spec 6.1): it claims rows and runs the pipeline on each until a claim
    returns none."""

    claimer: int
    kind: str  # the database tool that runs the claim
    auth: str | dict[str, Any] | None = None
    connection_string: str | None = None
    claim: str  # the claim statement (a template)
    max_rows: int = 1
    heartbeat_s: float = 0.0  # how often the claimer's message is kept in progress


class RunStep(WireModel):
    """Run the task pipeline of one step (or of one item of a loop step) on a worker of `pool`."""

    type: Literal["run_step"] = "run_step"
    command_id: str
    execution_id: str
    step: str
    run: int
    loop_index: int | None = None
    pool: str
    # the step's tool list in the DSL's canonical form (model_dump by alias of engine.dsl's tool models,
    # validated when the playbook was registered; the worker reads each by its `kind`)
    tasks: list[dict[str, Any]]
    input: dict[str, Any] = Field(default_factory=dict)  # the step input, rendered at dispatch
    render_input: bool = False  # a loop item: `input` is the step's template, rendered by the worker per item
    context: StepContext = Field(default_factory=StepContext)
    iterator: str | None = None
    timeout_s: float | None = None
    max_iterations: int = 1000
    playbook_path: str | None = None
    workbook: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)  # name -> tasks
    workbook_contracts: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> its `assert`
    keychain: list[dict[str, Any]] = Field(default_factory=list)  # entries, resolved by the worker
    output: dict[str, Any] | None = None  # the step's `output` hints (spec 16): store, select, size
    cursor: CursorClaim | None = None
    # W3C trace context (engine.protocol.tracecontext): the command's span, parent of its tool calls; set
    # only when tracing exports. Absent from older messages, and left out of the JSON when None: with
    # tracing off a command is byte for byte what it was, so a worker that predates the field reads it
    traceparent: str | None = Field(default=None, exclude_if=lambda value: value is None)


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
