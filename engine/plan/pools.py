"""Worker pools as the deployment declares them: names, hardware labels and capacity per resource.

A pools file (`pools.yaml` in NOETL_HOME, a file given with `--pools`, or the text of NOETL_POOLS; the
CLI decides which, this module only reads the text it is given):

```yaml
pools:
  - name: default                  # [A-Za-z0-9_-]+ (a pool is a NATS subject token)
    labels: [cpu]                  # hardware labels that `prefer` / `require` name
    capacity: {cpu: 16, memory_mb: 65536, pg_connections: 8, http_slots: 32}
  - name: gpu
    labels: [gpu, h100]
    capacity: {cpu: 8, gpu: 2, memory_mb: 131072}
defaults:                          # optional: the demand of a step by tool kind (see engine.plan.demands)
  duckdb: {cpu: 2, memory_mb: 4096}
  shell: {cpu: 1, pool: default}   # a kind default may also name the pool its steps go to
```

`pools` may also be a mapping `{name: {labels, capacity}}`. JSON is accepted (it is YAML). Capacities
are whole non-negative numbers of units; a resource a pool does not list has capacity 0 there.

With nothing configured the deployment has ONE pool, `default`, with `cpu: 4` (`PoolSet.default()`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.dsl.diagnostics import Path as DataPath
from engine.dsl.diagnostics import did_you_mean, format_path, quote_list
from engine.dsl.model import TOOL_KINDS
from engine.dsl.source import SourceDoc, YamlSyntaxError, load_yaml
from engine.errors import EngineError

DEFAULT_POOL = "default"
DEFAULT_CAPACITY: Mapping[str, int] = {"cpu": 4}
POOL_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
RESOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL = re.compile(r"^[A-Za-z0-9_.:-]+$")
_POOL_KEYS = ("name", "labels", "capacity")
_ROOT_KEYS = ("pools", "defaults")
RESERVED_DEMAND_KEYS = ("pool", "prefer", "require")


class PoolConfigError(EngineError):
    """A pools file that cannot be used; `problems` lists every one as `FILE:LINE:COL PATH: MESSAGE`."""

    code = "invalid_pools"

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        head = f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in the pools " \
               f"configuration {source}"
        super().__init__(head + ":\n  " + "\n  ".join(problems), where=None,
                         fix=None, source=source)


@dataclass(frozen=True, slots=True)
class Pool:
    """One worker pool: what it is (labels) and how much it can hold at once (capacity)."""

    name: str
    labels: frozenset[str] = frozenset()
    capacity: Mapping[str, int] = field(default_factory=dict)

    def units(self, resource: str) -> int:
        return int(self.capacity.get(resource, 0))

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "labels": sorted(self.labels), "capacity": dict(self.capacity)}


@dataclass(frozen=True, slots=True)
class PoolSet:
    """The pools of a deployment, in declaration order, with the per-kind demand table it configures.

    `kind_defaults` overrides entries of `engine.plan.demands.KIND_DEFAULTS` (kind -> resource -> units,
    plus an optional `pool`). `source` says where the set came from, for messages.
    """

    pools: tuple[Pool, ...]
    kind_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = "built-in default"

    def __post_init__(self) -> None:
        if not self.pools:
            raise ValueError("a PoolSet needs at least one pool")
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pool names must be unique, got {names}")

    @classmethod
    def default(cls) -> PoolSet:
        """What a deployment with no pools configured has: one pool `default` with `cpu: 4`."""
        return cls((Pool(DEFAULT_POOL, frozenset(), dict(DEFAULT_CAPACITY)),))

    def __iter__(self) -> Iterator[Pool]:
        return iter(self.pools)

    def __len__(self) -> int:
        return len(self.pools)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.pools)

    def get(self, name: str) -> Pool | None:
        for pool in self.pools:
            if pool.name == name:
                return pool
        return None

    def index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def resources(self) -> tuple[str, ...]:
        """Every resource some pool declares, in first-seen order."""
        seen: dict[str, None] = {}
        for pool in self.pools:
            for resource in pool.capacity:
                seen.setdefault(resource)
        return tuple(seen)

    @property
    def labels(self) -> frozenset[str]:
        return frozenset().union(*(p.labels for p in self.pools))

    @property
    def default_pool(self) -> Pool:
        """The pool named `default`, else the first one declared."""
        return self.get(DEFAULT_POOL) or self.pools[0]

    def with_capacity(self, overrides: Mapping[str, int], pool: str | None = None) -> PoolSet:
        """A copy where `pool` (default: the default pool) has these capacities added or replaced."""
        target = pool or self.default_pool.name
        if self.get(target) is None:
            hint = did_you_mean(target, self.names) or ";"
            raise PoolConfigError(self.source,
                                  [f"unknown pool '{target}'{hint} pools: {quote_list(self.names)}"])
        pools = tuple(Pool(p.name, p.labels, {**p.capacity, **overrides}) if p.name == target else p
                      for p in self.pools)
        return PoolSet(pools, self.kind_defaults, f"{self.source} (with overrides on '{target}')")

    def as_json(self) -> dict[str, Any]:
        return {"pools": [p.as_json() for p in self.pools],
                "defaults": {k: dict(v) for k, v in self.kind_defaults.items()}}


# ---------------------------------------------------------------------------------------- reading

class _Reader:
    def __init__(self, doc: SourceDoc, source: str) -> None:
        self.doc = doc
        self.source = source
        self.problems: list[str] = []

    def problem(self, path: DataPath, message: str, *, on_key: bool = False) -> None:
        line, column = self.doc.mark_of(path, on_key=on_key)
        self.problems.append(f"{self.source}:{line}:{column} {format_path(path)}: {message}")

    def read(self) -> PoolSet | None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.problem((), "a pools file is a mapping with a 'pools' list, e.g. "
                             "pools: [{name: default, capacity: {cpu: 4}}]")
            return None
        for key in data:
            if key not in _ROOT_KEYS:
                self.problem((key,), f"unknown key '{key}'{did_you_mean(key, _ROOT_KEYS) or ';'} valid "
                                     f"keys: {quote_list(_ROOT_KEYS)}", on_key=True)
        pools = self.pools(data.get("pools"))
        defaults = self.defaults(data.get("defaults"), {p.name for p in pools})
        if self.problems or not pools:
            return None
        return PoolSet(tuple(pools), defaults, self.source)

    def pools(self, raw: Any) -> list[Pool]:
        entries: list[tuple[DataPath, str | None, Any]] = []
        if raw is None:
            self.problem(("pools",), "missing required key 'pools' (a list of {name, labels, capacity})")
            return []
        if isinstance(raw, list):
            entries = [(("pools", i), None, item) for i, item in enumerate(raw)]
        elif isinstance(raw, dict):
            entries = [(("pools", name), str(name), item) for name, item in raw.items()]
        else:
            self.problem(("pools",), "expected a list of pools (or a mapping name -> pool)")
            return []
        if not entries:
            self.problem(("pools",), "no pools declared; declare at least one, e.g. "
                                     "{name: default, capacity: {cpu: 4}}")
        out: list[Pool] = []
        seen: dict[str, DataPath] = {}
        for path, given_name, item in entries:
            pool = self.pool(path, given_name, item)
            if pool is None:
                continue
            if pool.name in seen:
                self.problem(path, f"duplicate pool name '{pool.name}' (also {format_path(seen[pool.name])})")
                continue
            seen[pool.name] = path
            out.append(pool)
        return out

    def pool(self, path: DataPath, given_name: str | None, item: Any) -> Pool | None:
        if not isinstance(item, dict):
            self.problem(path, "a pool is a mapping: {name, labels, capacity}")
            return None
        ok = True
        for key in item:
            if key not in _POOL_KEYS or (given_name is not None and key == "name"):
                valid = [k for k in _POOL_KEYS if given_name is None or k != "name"]
                self.problem(path + (key,), f"unknown key '{key}'{did_you_mean(key, valid) or ';'} "
                                            f"valid keys: {quote_list(valid)}", on_key=True)
                ok = False
        name = given_name if given_name is not None else item.get("name")
        if name is None:
            self.problem(path, "missing required key 'name'")
            return None
        if not isinstance(name, str) or not POOL_NAME.match(name):
            where = path + ("name",) if given_name is None else path
            self.problem(where, f"pool name {name!r} may use only letters, digits, '_' and '-' (it names the "
                                "pool's work queue)", on_key=given_name is not None)
            return None
        labels = self.labels(path + ("labels",), item.get("labels"))
        capacity = self.capacity(path + ("capacity",), item.get("capacity"))
        if labels is None or capacity is None or not ok:
            return None
        return Pool(name, labels, capacity)

    def labels(self, path: DataPath, raw: Any) -> frozenset[str] | None:
        if raw is None:
            return frozenset()
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            self.problem(path, "labels are a list of words such as [gpu, h100]")
            return None
        out: set[str] = set()
        for i, label in enumerate(raw):
            if not isinstance(label, str) or not LABEL.match(label):
                self.problem(path + (i,), f"label {label!r} may use only letters, digits, '_', '.', ':' "
                                          "and '-'")
                return None
            out.add(label)
        return frozenset(out)

    def capacity(self, path: DataPath, raw: Any) -> dict[str, int] | None:
        if raw is None:
            self.problem(path[:-1], "missing required key 'capacity' (units per resource, e.g. "
                                    "{cpu: 8, memory_mb: 16384})")
            return None
        if not isinstance(raw, dict):
            self.problem(path, "capacity is a mapping resource -> units, e.g. {cpu: 8, gpu: 1}")
            return None
        out: dict[str, int] = {}
        for resource, units in raw.items():
            if not isinstance(resource, str) or not RESOURCE_NAME.match(resource) \
                    or resource in RESERVED_DEMAND_KEYS:
                self.problem(path + (resource,), f"resource name {resource!r} must be a plain name such as "
                                                 "'cpu' or 'pg_connections' (not pool, prefer, require)",
                             on_key=True)
                continue
            if isinstance(units, bool) or not isinstance(units, int) or units < 0:
                if isinstance(units, float) and units.is_integer() and units >= 0:
                    out[resource] = int(units)
                    continue
                self.problem(path + (resource,), f"capacity of '{resource}' must be a whole number of units "
                                                 f"(0 or more), got {units!r}")
                continue
            out[resource] = units
        return out

    def defaults(self, raw: Any, pool_names: set[str]) -> dict[str, dict[str, Any]]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(("defaults",), "defaults is a mapping tool kind -> demand, e.g. "
                                        "{duckdb: {cpu: 2, memory_mb: 4096}}")
            return {}
        out: dict[str, dict[str, Any]] = {}
        for kind, demand in raw.items():
            path: DataPath = ("defaults", kind)
            if kind not in TOOL_KINDS:
                self.problem(path, f"unknown tool kind '{kind}'{did_you_mean(str(kind), TOOL_KINDS) or ';'} "
                                   f"kinds: {quote_list(TOOL_KINDS)}", on_key=True)
                continue
            if demand is None:
                out[kind] = {}
                continue
            if not isinstance(demand, dict):
                self.problem(path, "a kind's default demand is a mapping resource -> units, e.g. {cpu: 1}")
                continue
            entry: dict[str, Any] = {}
            for key, value in demand.items():
                if key == "pool":
                    if value not in pool_names:
                        self.problem(path + (key,), f"unknown pool {value!r}"
                                     f"{did_you_mean(str(value), pool_names) or ';'} pools: "
                                     f"{quote_list(sorted(pool_names))}")
                        continue
                    entry[key] = value
                elif key in ("prefer", "require"):
                    labels = self.labels(path + (key,), value)
                    if labels is not None:
                        entry[key] = sorted(labels) if key == "require" else (
                            [value] if isinstance(value, str) else list(value))
                elif not isinstance(key, str) or not RESOURCE_NAME.match(key):
                    self.problem(path + (key,), f"resource name {key!r} must be a plain name such as 'cpu'",
                                 on_key=True)
                elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    self.problem(path + (key,), f"'{key}' must be a non-negative number of units, "
                                                f"got {value!r}")
                else:
                    entry[key] = value
            out[kind] = entry
        return out


def parse_pools(text: str, source: str = "<pools>") -> PoolSet:
    """A PoolSet from the text of a pools file (YAML or JSON); PoolConfigError lists every problem."""
    try:
        doc = load_yaml(text)
    except YamlSyntaxError as exc:
        raise PoolConfigError(source, [f"{source}:{exc.line}:{exc.column} (document): {exc.message}"]) \
            from None
    reader = _Reader(doc, source)
    for issue in doc.issues:
        reader.problem(issue.path, issue.message, on_key=issue.on_key)
    pools = reader.read()
    if reader.problems or pools is None:
        raise PoolConfigError(source, reader.problems)
    return pools


def load_pools_file(path: str | Path) -> PoolSet:
    """A PoolSet from a file; PoolConfigError when it cannot be read or is not valid."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PoolConfigError(str(path), [f"{path}: no such file (check the path)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PoolConfigError(str(path), [f"{path}: cannot read it: {exc}"]) from None
    return parse_pools(text, str(path))


def parse_capacity_overrides(text: str) -> dict[str, int]:
    """`cpu=4,gpu=1` -> {'cpu': 4, 'gpu': 1} (the CLI's `--resources`); ValueError saying what is wrong."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not RESOURCE_NAME.match(name) or name in RESERVED_DEMAND_KEYS:
            raise ValueError(f"'{part}' is not RESOURCE=UNITS (for example cpu=4,gpu=1)")
        try:
            units = int(value.strip())
        except ValueError:
            raise ValueError(f"'{part}': units must be a whole number, got '{value.strip()}'") from None
        if units < 0:
            raise ValueError(f"'{part}': units must be 0 or more")
        out[name] = units
    if not out:
        raise ValueError(f"'{text}' names no resource; write RESOURCE=UNITS[,...] such as cpu=4,gpu=1")
    return out


def pools_from(pools: Iterable[Pool]) -> PoolSet:
    """A PoolSet from pools built in code (tests, benchmarks)."""
    return PoolSet(tuple(pools), {}, "code")
