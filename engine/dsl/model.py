"""The canonical playbook grammar (spec sections 1-11, 16) as one frozen pydantic model.

Short forms are rewritten into this shape by `engine.dsl.normalize` before validation, so a step's
`tool` is always a list of tasks (a single tool is a pipeline of one task).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.dsl.triggers import TriggerSpec

TOOL_KINDS: tuple[str, ...] = (
    "python", "http", "postgres", "duckdb", "clickhouse", "qdrant", "shell", "workbook", "playbook",
    "noop", "snowflake", "nats",
)
CURSOR_KINDS: tuple[str, ...] = ("postgres",)
KEYCHAIN_KINDS: tuple[str, ...] = (
    "credential", "static", "bearer", "oauth2", "secrets", "secret_manager", "google_id_token",
)
NATS_OPERATIONS: tuple[str, ...] = ("kv_put", "kv_get", "kv_delete", "publish", "object_put", "object_get")
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

Condition = bool | str


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def parse_duration(value: object) -> float | str:
    """`30s`, `500ms`, `2m`, `1h`, or a number of seconds -> seconds; a template is kept for later."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, 500ms or 2m, got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"a duration must be positive, got {value}")
        return float(value)
    if isinstance(value, str):
        if is_template(value):
            return value
        match = _DURATION.match(value)
        if match:
            seconds = float(match.group(1)) * _UNITS[match.group(2)]
            if seconds <= 0:
                raise ValueError(f"a duration must be positive, got '{value}'")
            return seconds
    raise ValueError(f"'{value}' is not a duration; write a number of seconds or 30s, 500ms, 2m, 1h")


Duration = Annotated[float | str, Field(json_schema_extra={"examples": ["30s", "500ms", 5]})]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_set_keys(value: dict[str, Any] | None, *, scoped: bool) -> dict[str, Any] | None:
    if value is None:
        return value
    for key in value:
        parts = key.split(".")
        if not all(IDENTIFIER.match(p) for p in parts):
            raise ValueError(f"set key '{key}' is not a dotted name such as ctx.total")
        if scoped and (len(parts) < 2 or parts[0] not in ("ctx", "iter")):
            raise ValueError(f"set key '{key}' needs a scope: write 'ctx.{parts[-1]}' "
                             f"(execution-wide) or 'iter.{parts[-1]}' (this loop iteration)")
    return value


# ---------------------------------------------------------------- task pipelines and policy rules

class RuleThen(Model):
    do: Literal["continue", "retry", "jump", "break", "fail"]
    attempts: int | None = Field(default=None, ge=1, le=1000)
    backoff: Literal["none", "fixed", "linear", "exponential"] = "none"
    delay: float = Field(default=0.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_delay: float | None = Field(default=None, ge=0)
    jitter: bool = True
    to: str | None = None
    set: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _needs(self) -> RuleThen:
        if self.do == "jump" and not self.to:
            raise ValueError("'do: jump' needs 'to: <task name>'")
        if self.do != "jump" and self.to is not None:
            raise ValueError(f"'to' only goes with 'do: jump', not 'do: {self.do}'")
        return self

    @field_validator("set")
    @classmethod
    def _set_keys(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_set_keys(v, scoped=False)


class RuleElse(Model):
    then: RuleThen


class Rule(Model):
    when: Condition | None = None
    else_: RuleElse | None = Field(default=None, alias="else")
    then: RuleThen | None = None

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        if self.else_ is not None:
            if self.when is not None or self.then is not None:
                raise ValueError("an 'else' rule stands alone: {else: {then: {...}}}")
        elif self.when is None or self.then is None:
            raise ValueError("a rule needs 'when' and 'then' (or is {else: {then: ...}})")
        return self

    @property
    def action(self) -> RuleThen:
        if self.then is not None:
            return self.then
        assert self.else_ is not None
        return self.else_.then


class TaskPolicy(Model):
    rules: list[Rule] = Field(default_factory=list)


class TaskSpec(Model):
    policy: TaskPolicy | None = None


# `output.store.kind` (spec 16): the ones this engine stores by (`kv` and `object`: the NATS object store),
# and NoETL's others, which fall back to the default store with a validation warning
STORE_KINDS = ("auto", "memory", "disk", "kv", "object")
FALLBACK_STORE_KINDS = ("s3", "gcs", "db", "duckdb", "eventlog")


class OutputSelectStrategy(Model):
    """`output_select: {strategy: size_threshold, threshold_kb}`: results above the threshold go by
    reference (spec 16)."""

    strategy: Literal["size_threshold"]
    threshold_kb: float = Field(ge=0)


class OutputSpec(Model):
    store: dict[str, Any] | None = None
    select: list[str] | None = None
    output_select: list[str] | OutputSelectStrategy | None = None
    inline_max_bytes: int | None = Field(default=None, ge=0)

    @field_validator("store")
    @classmethod
    def _store(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            kind = v.get("kind", "auto")
            if kind not in STORE_KINDS + FALLBACK_STORE_KINDS:
                raise ValueError(f"output.store.kind '{kind}' is not one of "
                                 + ", ".join(f"'{k}'" for k in STORE_KINDS + FALLBACK_STORE_KINDS))
        return v


class ScriptSource(Model):
    """Where a script's text is (spec 16): inline `code`, a local file `path`; remote types are refused
    when the step runs."""

    type: str = "inline"
    code: str | None = None
    path: str | None = None
    bucket: str | None = None
    url: str | None = None


class ScriptRef(Model):
    uri: str | None = None
    source: ScriptSource | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> ScriptRef:
        if self.uri is None and self.source is None:
            raise ValueError("script needs 'uri' (a local path or file:// URI) or 'source' "
                             "({type: inline, code: ...} or {type: file, path: ...})")
        return self


class LibImport(Model):
    """`{from: module, import: name}`: `from module import name`, bound to the lib's alias."""

    from_: str = Field(alias="from")
    import_: str = Field(alias="import")


class Contract(Model):
    """`assert: {expects, returns}` (spec 3): names the input must hold (present, not null) before the
    tool runs, and keys its result must have after."""

    expects: list[str] = Field(default_factory=list)
    returns: list[str] = Field(default_factory=list)

    @field_validator("expects", "returns")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name.strip():
                raise ValueError("a contract name must not be empty")
        return v


class ToolBase(Model):
    name: str | None = None
    desc: str | None = None
    input: dict[str, Any] | str | None = None
    spec: TaskSpec | None = None
    set: dict[str, Any] | None = None
    output: OutputSpec | None = None
    assert_: Contract | None = Field(default=None, alias="assert")

    @field_validator("set")
    @classmethod
    def _set_keys(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_set_keys(v, scoped=False)

    @field_validator("timeout", mode="before", check_fields=False)
    @classmethod
    def _timeout(cls, v: object) -> object:
        return None if v is None else parse_duration(v)

    @property
    def rules(self) -> list[Rule]:
        return self.spec.policy.rules if self.spec and self.spec.policy else []


Auth = str | dict[str, Any]
Sql = str | list[str]


class PythonTool(ToolBase):
    kind: Literal["python"]
    code: str | None = None
    script: ScriptRef | None = None
    libs: dict[str, str | LibImport] | list[str] | None = None
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _source(self) -> PythonTool:
        if (self.code is None) == (self.script is None):
            raise ValueError("a python tool needs exactly one of 'code' or 'script: {uri}'")
        return self


class HttpTool(ToolBase):
    kind: Literal["http"]
    method: str = "GET"
    url: str
    headers: dict[str, Any] | str | None = None
    params: dict[str, Any] | str | None = None
    json_: Any = Field(default=None, alias="json")
    payload: Any = None
    data: Any = None
    body: Any = None
    form: dict[str, Any] | str | None = None
    timeout: Duration | None = None
    verify: bool | str = True
    follow_redirects: bool | str = True
    auth: Auth | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS") or is_template(v):
            return v.upper() if not is_template(v) else v
        raise ValueError(f"http method '{v}' is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS")

    @model_validator(mode="after")
    def _one_body(self) -> HttpTool:
        given = [k for k in ("json", "payload", "data", "body", "form")
                 if getattr(self, "json_" if k == "json" else k) is not None]
        if len(given) > 1:
            raise ValueError(f"an http request has one body; pick one of {', '.join(given)}")
        return self


class SqlTool(ToolBase):
    command: Sql | None = None
    params: dict[str, Any] | list[Any] | str | None = None
    auth: Auth | None = None
    script: ScriptRef | None = None

    @model_validator(mode="after")
    def _source(self) -> SqlTool:
        if (self.command is None) == (self.script is None):
            raise ValueError("a SQL tool needs exactly one of 'command' (or 'commands'/'query') "
                             "or 'script: {uri}'")
        return self


class PostgresTool(SqlTool):
    kind: Literal["postgres"]
    connection_string: str | None = None
    pool: dict[str, Any] | None = None


class DuckdbTool(SqlTool):
    kind: Literal["duckdb"]
    database: str = ":memory:"


class ClickhouseTool(SqlTool):
    kind: Literal["clickhouse"]
    url: str | None = None


class SnowflakeTool(SqlTool):
    kind: Literal["snowflake"]


class QdrantTool(ToolBase):
    kind: Literal["qdrant"]
    operation: str
    collection: str
    points: list[Any] | str | None = None
    vector: list[float] | str | None = None
    query: Any = None
    limit: int | str = 10
    ids: list[Any] | str | None = None
    filter: dict[str, Any] | str | None = None
    vector_size: int | str | None = None
    distance: str = "Cosine"
    with_payload: bool = True
    auth: Auth | None = None
    url: str | None = None

    @field_validator("operation")
    @classmethod
    def _operation(cls, v: str) -> str:
        ops = ("upsert", "search", "delete", "create_collection")
        if v in ops or is_template(v):
            return v
        raise ValueError(f"qdrant operation '{v}' is not one of {', '.join(ops)}")


class ShellTool(ToolBase):
    kind: Literal["shell"]
    cmds: str | list[str]
    env: dict[str, Any] | None = None
    cwd: str | None = None
    timeout: Duration | None = None


class WorkbookTool(ToolBase):
    kind: Literal["workbook"]
    name: str  # the workbook task to call (in a pipeline, also the task's name)


class PlaybookTool(ToolBase):
    kind: Literal["playbook"]
    path: str
    version: int | str | None = None
    return_step: str | None = None
    timeout: Duration | None = None
    task: Any = None  # NoETL's name for the call: informational, recorded with the call (spec 16)


class NoopTool(ToolBase):
    kind: Literal["noop"]
    result: Any = None


class NatsTool(ToolBase):
    """KV, object store and publishing on NATS (spec 3); `auth` names a credential with `url`, else the
    deployment's own NATS is used."""

    kind: Literal["nats"]
    operation: str
    bucket: str | None = None
    key: str | None = None
    value: Any = None
    subject: str | None = None
    data: Any = None
    headers: dict[str, Any] | str | None = None
    name: str | None = None  # object_put / object_get: the object's name (not a task name here)
    auth: Auth | None = None
    timeout: Duration | None = None

    @field_validator("operation")
    @classmethod
    def _operation(cls, v: str) -> str:
        if v in NATS_OPERATIONS or is_template(v):
            return v
        raise ValueError(f"nats operation '{v}' is not one of {', '.join(NATS_OPERATIONS)}")

    @model_validator(mode="after")
    def _needs(self) -> NatsTool:
        if is_template(self.operation):
            return self
        needed = {"kv_put": ("bucket", "key"), "kv_get": ("bucket", "key"), "kv_delete": ("bucket", "key"),
                  "publish": ("subject",), "object_put": ("bucket", "name"),
                  "object_get": ("bucket", "name")}[self.operation]
        missing = [k for k in needed if getattr(self, k) in (None, "")]
        if missing:
            raise ValueError(f"nats {self.operation} needs {' and '.join(repr(k) for k in missing)}")
        return self


Tool = Annotated[
    PythonTool | HttpTool | PostgresTool | DuckdbTool | ClickhouseTool | QdrantTool | ShellTool
    | WorkbookTool | PlaybookTool | NoopTool | SnowflakeTool | NatsTool,
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------- loops, routing, step spec

class LoopResultsPolicy(Model):
    preserve_order: bool | None = None  # a hint: results are always in input order (spec 6)


class LoopPolicy(Model):
    exec: Literal["local", "distributed"] = "local"
    results: LoopResultsPolicy | None = None


class LoopFrame(Model):
    """A cursor loop's frame (spec 6.1): rows per claim, and the heartbeat of a long-running claimer."""

    max_rows: int = Field(default=1, ge=1, le=10_000)
    lease_seconds: float = Field(default=120.0, gt=0)
    heartbeat_seconds: float = Field(default=30.0, gt=0)


class LoopCursor(Model):
    """A work queue in a database (spec 6.1): `claim` claims and returns the next rows atomically."""

    kind: str
    auth: Auth | None = None
    connection_string: str | None = None
    claim: str

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in CURSOR_KINDS:
            raise ValueError(f"cursor kind '{v}' is not supported; the cursor kinds are "
                             + ", ".join(f"'{k}'" for k in CURSOR_KINDS)
                             + " (a work queue in a PostgreSQL table)")
        return v

    @field_validator("claim")
    @classmethod
    def _claim(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the cursor's 'claim' is empty; give the SQL that claims and returns the "
                             "next rows, e.g. UPDATE work SET status = 'claimed' ... RETURNING id")
        return v

    @model_validator(mode="after")
    def _connection(self) -> LoopCursor:
        if self.auth is None and self.connection_string is None:
            raise ValueError("the cursor needs 'auth' (a stored postgres credential) or "
                             "'connection_string' to reach its work queue")
        return self


class LoopSpec(Model):
    mode: Literal["sequential", "parallel", "cursor"] = "sequential"
    # a number, or a template rendered when the loop starts (it must yield a positive integer)
    max_in_flight: int | str | None = None
    frame: LoopFrame | None = None
    policy: LoopPolicy | None = None

    @field_validator("max_in_flight")
    @classmethod
    def _max_in_flight(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, bool) or (isinstance(v, int) and v < 1):
            raise ValueError(f"max_in_flight must be a positive integer, got {v!r}")
        if isinstance(v, str) and "{{" not in v and "{%" not in v:
            raise ValueError(f"max_in_flight must be a positive integer or a template, got {v!r}")
        return v


class Loop(Model):
    in_: str | list[Any] | None = Field(default=None, alias="in")
    cursor: LoopCursor | None = None
    iterator: str
    spec: LoopSpec = Field(default_factory=LoopSpec)

    @property
    def is_cursor(self) -> bool:
        return self.cursor is not None

    @field_validator("in_")
    @classmethod
    def _in(cls, v: str | list[Any] | None) -> str | list[Any] | None:
        if isinstance(v, str) and not is_template(v):
            raise ValueError(f"loop 'in' must be a list or a template that yields one, such as "
                             f"\"{{{{ workload.{v} }}}}\"; got the plain string '{v}'")
        return v

    @field_validator("iterator")
    @classmethod
    def _iterator(cls, v: str) -> str:
        if not IDENTIFIER.match(v):
            raise ValueError(f"iterator '{v}' must be a plain name such as 'user' "
                             "(letters, digits, underscore)")
        return v


class Arc(Model):
    step: str
    when: Condition | None = None
    set: dict[str, Any] | None = None

    @field_validator("set")
    @classmethod
    def _set_keys(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_set_keys(v, scoped=True)


class NextSpec(Model):
    mode: Literal["exclusive", "inclusive"] = "exclusive"
    on_no_match: Literal["complete", "quiet"] | None = None


class Next(Model):
    spec: NextSpec = Field(default_factory=NextSpec)
    arcs: list[Arc] = Field(default_factory=list)


class Resources(Model):
    model_config = ConfigDict(extra="allow", frozen=True)
    pool: str | None = None
    cpu: float | None = Field(default=None, ge=0)
    gpu: float | None = Field(default=None, ge=0)
    memory_mb: float | None = Field(default=None, ge=0)
    prefer: list[str] | None = None
    require: list[str] | None = None

    @model_validator(mode="after")
    def _named_amounts(self) -> Resources:
        for key, value in (self.model_extra or {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"resource '{key}' must be a non-negative number of units, "
                                 f"got {value!r}")
        return self


class FailurePolicy(Model):
    mode: Literal["fail_fast", "best_effort"] = "fail_fast"


class AdmitThen(Model):
    allow: bool | str


class AdmitElse(Model):
    then: AdmitThen


class AdmitRule(Model):
    when: Condition | None = None
    else_: AdmitElse | None = Field(default=None, alias="else")
    then: AdmitThen | None = None

    @model_validator(mode="after")
    def _shape(self) -> AdmitRule:
        if self.else_ is None and (self.when is None or self.then is None):
            raise ValueError("an admit rule needs 'when' and 'then: {allow: ...}' "
                             "(or is {else: {then: {allow: ...}}})")
        return self


class AdmitPolicy(Model):
    mode: Literal["exclusive"] = "exclusive"  # the first rule that holds decides (the only mode)
    rules: list[AdmitRule]


class StepPolicy(Model):
    failure: FailurePolicy = Field(default_factory=FailurePolicy)
    admit: AdmitPolicy | None = None


class StepSpec(Model):
    timeout: Duration | None = None
    resources: Resources | None = None
    policy: StepPolicy = Field(default_factory=StepPolicy)
    max_runs: int = Field(default=1000, ge=1)
    max_iterations: int = Field(default=1000, ge=1)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v: object) -> object:
        return None if v is None else parse_duration(v)


class Step(Model):
    step: str = Field(min_length=1)
    desc: str | None = None
    input: dict[str, Any] | None = None
    loop: Loop | None = None
    tool: list[Tool] = Field(min_length=1)
    set: dict[str, Any] | None = None
    next: Next | None = None
    spec: StepSpec = Field(default_factory=StepSpec)
    output: OutputSpec | None = None

    @field_validator("set")
    @classmethod
    def _set_keys(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_set_keys(v, scoped=True)

    @property
    def is_pipeline(self) -> bool:
        return len(self.tool) > 1 or any(t.name for t in self.tool if t.kind != "workbook")

    def task_name(self, index: int) -> str:
        task = self.tool[index]
        return task.name or (self.step if len(self.tool) == 1 else f"task_{index}")


class WorkbookTask(Model):
    name: str = Field(min_length=1)
    desc: str | None = None
    tool: list[Tool] = Field(min_length=1)
    assert_: Contract | None = Field(default=None, alias="assert")


# ---------------------------------------------------------------- keychain

class KeychainBase(Model):
    name: str = Field(min_length=1)
    scope: Literal["local", "global", "shared"] = "local"
    auto_renew: bool = False


class CredentialKey(KeychainBase):
    kind: Literal["credential"]
    ref: str | None = None
    credential: str | None = None

    @model_validator(mode="after")
    def _ref(self) -> CredentialKey:
        if not (self.ref or self.credential):
            raise ValueError("a credential keychain entry needs 'ref' (the stored credential's name)")
        return self


class StaticKey(KeychainBase):
    kind: Literal["static"]
    map: dict[str, Any]


class BearerKey(KeychainBase):
    kind: Literal["bearer"]
    token: str


class OAuth2Key(KeychainBase):
    kind: Literal["oauth2"]
    endpoint: str
    method: str = "POST"
    headers: dict[str, Any] | None = None
    data: dict[str, Any] | str | None = None


class SecretsKey(KeychainBase):
    kind: Literal["secrets", "secret_manager"]
    provider: str
    map: dict[str, str]
    auth: str | None = None  # the credential used to reach the provider


class GoogleIdTokenKey(KeychainBase):
    """A Google ID token for `target_audience`, minted at execution start from a service account key:
    the stored credential `auth` names, or `service_account_secret` (the key's JSON, or a credential's
    name)."""

    kind: Literal["google_id_token"]
    target_audience: str = Field(min_length=1)
    auth: str | None = None
    service_account_secret: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _source(self) -> GoogleIdTokenKey:
        if (self.auth is None) == (self.service_account_secret is None):
            raise ValueError("a google_id_token keychain entry needs exactly one of 'auth' (a stored "
                             "credential holding a service account key) or 'service_account_secret'")
        return self


KeychainEntry = Annotated[
    CredentialKey | StaticKey | BearerKey | OAuth2Key | SecretsKey | GoogleIdTokenKey,
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------- the document

class ExecutorRequires(Model):
    model_config = ConfigDict(extra="allow", frozen=True)
    tools: list[str] | None = None


class ExecutorDefaults(Model):
    timeout_s: float | None = Field(default=None, gt=0)  # every step's spec.timeout unless it sets one


class ExecutorResults(Model):
    reference_first: bool | None = None  # a hint (spec 16): large results already go by reference


class ExecutorPolicy(Model):
    defaults: ExecutorDefaults | None = None
    results: ExecutorResults | None = None


class ExecutorSpec(Model):
    entry_step: str | None = None
    final_step: str | None = None
    no_next_is_error: bool = False
    policy: ExecutorPolicy | None = None


class Executor(Model):
    profile: str | None = None
    version: str | int | float | None = None
    requires: ExecutorRequires | None = None
    spec: ExecutorSpec = Field(default_factory=ExecutorSpec)


class Metadata(Model):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(pattern=NAME_PATTERN)
    path: str | None = None
    version: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, Any] = Field(default_factory=dict)
    triggers: list[TriggerSpec] = Field(default_factory=list)  # as the root's `triggers:` (docs/triggers.md)

    @property
    def catalog_path(self) -> str:
        return self.path or self.name


class Playbook(Model):
    api_version: Literal["noetl.io/v2", "noetl.io/v10"] = Field(alias="apiVersion")
    kind: Literal["Playbook"]
    metadata: Metadata
    workload: dict[str, Any] = Field(default_factory=dict)
    keychain: list[KeychainEntry] = Field(default_factory=list)
    executor: Executor = Field(default_factory=Executor)
    workbook: list[WorkbookTask] = Field(default_factory=list)
    workflow: list[Step] = Field(min_length=1)
    tracing: Any = None
    triggers: list[TriggerSpec] = Field(default_factory=list)  # what starts it besides a request

    @property
    def declared_triggers(self) -> list[TriggerSpec]:
        """The root's `triggers:` and `metadata.triggers`, in that order."""
        return [*self.triggers, *self.metadata.triggers]

    def step(self, name: str) -> Step:
        index = self.__dict__.get("_step_index")
        if index is None or index[0] is not self.workflow:  # none yet, or copied with another workflow
            steps: dict[str, Step] = {}
            for step in self.workflow:
                steps.setdefault(step.step, step)  # a duplicate name (an error) finds the first
            index = self.__dict__["_step_index"] = (self.workflow, steps)
        return index[1][name]

    @property
    def entry_step(self) -> str:
        return self.executor.spec.entry_step or self.workflow[0].step
