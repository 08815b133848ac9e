"""A trigger's declaration (docs/triggers.md): the shape a playbook's `triggers:` and the API share.

One of `cron`, `every`, `after`, `subject`, `webhook` says what starts a run; the rest says how (payload
template, catch-up, concurrency, jitter). The schedule arithmetic and the firing rules live in
control_plane/triggers; this module only checks the shape, so a playbook with a misspelt key is refused
at validation with the key's location.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TriggerKind = Literal["cron", "interval", "after", "subject", "webhook"]
KIND_KEYS: dict[str, TriggerKind] = {"cron": "cron", "every": "interval", "after": "after",
                                     "subject": "subject", "webhook": "webhook"}
TIMED_KINDS = ("cron", "interval")
CATCHUP_POLICIES = ("skip", "latest", "all")
CONCURRENCY_POLICIES = ("allow", "skip", "queue")
AFTER_STATUSES = ("completed", "failed", "any")
DEFAULT_CATCHUP_LIMIT = 10


NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"  # as a step's (engine.dsl.model imports this module, not the reverse)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AfterSpec(Model):
    """The end of another playbook's execution: `{path, on}`."""

    path: str = Field(min_length=1, max_length=500)
    on: Literal["completed", "failed", "any"] = "completed"


class TriggerSpec(Model):
    name: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=200)
    cron: str | None = Field(default=None, min_length=1, max_length=200)
    tz: str | None = Field(default=None, min_length=1, max_length=100)
    every: str | int | float | None = None
    after: AfterSpec | None = None
    subject: str | None = Field(default=None, min_length=1, max_length=500)
    webhook: bool | None = None
    version: int | None = Field(default=None, ge=1)
    payload: dict[str, Any] = Field(default_factory=dict)
    catchup: Literal["skip", "latest", "all"] = "latest"
    catchup_limit: int = Field(default=DEFAULT_CATCHUP_LIMIT, ge=1, le=1000)
    concurrency: Literal["allow", "skip", "queue"] = "allow"
    jitter: str | int | float | None = None
    paused: bool = False

    @field_validator("after", mode="before")
    @classmethod
    def _after_short_form(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value  # `after: etl/load`

    @field_validator("subject")
    @classmethod
    def _subject_tokens(cls, value: str | None) -> str | None:
        if value is None:
            return value
        tokens = value.split(".")
        if any(not t or any(c.isspace() for c in t) for t in tokens) or \
                any(t == ">" for t in tokens[:-1]) or \
                any(("*" in t or ">" in t) and len(t) > 1 for t in tokens):
            raise ValueError(f"'{value}' is not a NATS subject: dot-separated tokens without spaces, `*` "
                             "for one token, `>` only at the end (e.g. orders.created or orders.>)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> TriggerSpec:
        given = [key for key in KIND_KEYS if getattr(self, key) not in (None, False)]
        if len(given) != 1:
            found = f"got {', '.join(given)}" if given else "got none"
            raise ValueError(f"a trigger needs exactly one of cron, every, after, subject, webhook: true "
                             f"({found})")
        kind = KIND_KEYS[given[0]]
        if self.tz is not None and kind != "cron":
            raise ValueError("`tz` applies to a cron trigger only")
        if kind not in TIMED_KINDS and ("catchup" in self.model_fields_set
                                        or "catchup_limit" in self.model_fields_set):
            raise ValueError(f"`catchup` applies to cron and every triggers only (this one is {kind})")
        return self

    @property
    def kind(self) -> TriggerKind:
        return next(KIND_KEYS[key] for key in KIND_KEYS if getattr(self, key) not in (None, False))

    def as_json(self) -> dict[str, Any]:
        """What is stored: the fields given, defaults left out (so a later default applies)."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={"name", "paused"})
