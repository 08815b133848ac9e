"""Second stage of reading a playbook: short forms and aliases (spec sections 12 and 16) -> canonical shape.

Works on plain data, before the model is validated, and records for every moved node where it came
from, so that an error found later on the canonical shape still points at the line the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.dsl.diagnostics import Issue, Path, did_you_mean, quote_list

STEP_KEYS = ("step", "desc", "input", "loop", "tool", "set", "next", "spec", "output", "retry")
WORKBOOK_KEYS = ("name", "desc", "tool", "assert", "retry")
TOOL_SPEC_KEYS = ("policy",)  # everything else under a tool's `spec` is tool configuration
RETRY_KEYS = ("max_attempts", "initial_delay", "backoff_seconds", "backoff_multiplier", "max_delay",
              "retry_on_status", "retry_on", "backoff")
RETRY_BACKOFFS = ("none", "fixed", "linear", "exponential")
# NoETL's names for error kinds in `retry_on` (spec 16) -> this engine's kinds (spec 9)
RETRY_ON_ALIASES = {"connection_error": "connection", "timeout_error": "timeout",
                    "rate_limited": "rate_limit", "http_5xx": "server_error", "http_4xx": "client_error"}
# alias -> canonical key, per tool kind (None = every kind)
TOOL_ALIASES: dict[str, dict[str, str]] = {
    "*": {"credential": "auth"},
    "http": {"endpoint": "url", "verify_ssl": "verify", "timeout_seconds": "timeout"},
    "playbook": {"payload": "input"},
    "postgres": {"query": "command", "commands": "command"},
    "duckdb": {"query": "command", "commands": "command"},
    "clickhouse": {"query": "command", "commands": "command"},
    "snowflake": {"query": "command", "commands": "command"},
}


@dataclass
class PathMap:
    """Canonical path prefix -> the path the user wrote it at."""

    moves: dict[Path, Path] = field(default_factory=dict)

    def add(self, canonical: Path, original: Path) -> None:
        if canonical != original:
            self.moves[canonical] = original

    def original(self, path: Path) -> Path:
        for cut in range(len(path), 0, -1):
            hit = self.moves.get(path[:cut])
            if hit is not None:
                return hit + tuple(path[cut:])
        return tuple(path)


@dataclass
class Normalized:
    data: Any
    paths: PathMap
    issues: list[Issue]  # located at ORIGINAL paths


class _Normalizer:
    def __init__(self) -> None:
        self.paths = PathMap()
        self.issues: list[Issue] = []

    def error(self, path: Path, message: str, code: str, *, on_key: bool = True) -> None:
        self.issues.append(Issue(path, message, code, on_key=on_key))

    # ------------------------------------------------------------------ document
    def document(self, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        doc = dict(raw)
        meta = doc.get("metadata")
        if isinstance(meta, dict):
            meta = dict(meta)
            if isinstance(meta.get("tags"), str):
                meta["tags"] = [meta["tags"]]
                self.paths.add(("metadata", "tags", 0), ("metadata", "tags"))
            if isinstance(meta.get("version"), (int, float)) and not isinstance(meta["version"], bool):
                meta["version"] = str(meta["version"])
            doc["metadata"] = meta
        if isinstance(doc.get("workflow"), list):
            doc["workflow"] = [self.step(s, ("workflow", i), STEP_KEYS)
                               for i, s in enumerate(doc["workflow"])]
        if isinstance(doc.get("workbook"), list):
            doc["workbook"] = [self.step(s, ("workbook", i), WORKBOOK_KEYS)
                               for i, s in enumerate(doc["workbook"])]
        return doc

    # ------------------------------------------------------------------ steps and workbook tasks
    def step(self, raw: Any, path: Path, own_keys: tuple[str, ...]) -> Any:
        if not isinstance(raw, dict):
            return raw
        step = {k: v for k, v in raw.items()}
        tool = step.get("tool")
        tasks: list[tuple[dict[str, Any], dict[str, Path]]] = []
        if isinstance(tool, str):
            task: dict[str, Any] = {"kind": tool}
            origin: dict[str, Path] = {"kind": path + ("tool",)}
            for key in list(step):
                if key not in own_keys:
                    task[key] = step.pop(key)
                    origin[key] = path + (key,)
            tasks.append((task, origin))
            self.paths.add(path + ("tool", 0), path + ("tool",))
        elif isinstance(tool, dict):
            tasks.append((dict(tool), {k: path + ("tool", k) for k in tool}))
            self.paths.add(path + ("tool", 0), path + ("tool",))
        elif isinstance(tool, list):
            for j, item in enumerate(tool):
                if isinstance(item, dict):
                    tasks.append((dict(item), {k: path + ("tool", j, k) for k in item}))
                else:
                    tasks.append((item, {}))
        elif tool is None and own_keys is STEP_KEYS and "tool" not in step and "retry" not in step:
            # spec 2: a workflow step without a tool is a routing step that runs as noop
            tasks.append(({"kind": "noop"}, {"kind": path}))
            tool = step["tool"] = {"kind": "noop"}
            self.paths.add(path + ("tool", 0), path)
            self.paths.add(path + ("tool",), path)
        retry = step.pop("retry", None)
        if tool is not None:
            step["tool"] = [self.task(t, o, path + ("tool", j), path + ("retry",), retry)
                            for j, (t, o) in enumerate(tasks)]
        elif retry is not None:
            self.error(path + ("retry",), "'retry' needs a tool to retry; add 'tool'", "invalid_value")
        if "next" in step:
            step["next"] = self.next(step["next"], path + ("next",))
        if isinstance(step.get("loop"), dict):
            step["loop"] = self.loop(step["loop"], path + ("loop",))
        if isinstance(step.get("spec"), dict):
            step["spec"] = self.step_spec(step["spec"], path + ("spec",))
        return step

    def task(self, task: Any, origin: dict[str, Path], path: Path, retry_path: Path,
             step_retry: Any) -> Any:
        if not isinstance(task, dict):
            return task
        spec = task.get("spec")
        if isinstance(spec, dict):
            spec_origin = origin.get("spec", path + ("spec",))
            kept = {}
            for key, value in spec.items():
                if key in TOOL_SPEC_KEYS:
                    kept[key] = value
                elif key in task:
                    self.error(spec_origin + (key,),
                               f"'{key}' is given both in the tool and in its spec; keep one",
                               "duplicate_key")
                else:
                    task[key] = value
                    origin[key] = spec_origin + (key,)
            if kept:
                task["spec"] = kept
            else:
                task.pop("spec")
        given_kind = task.get("kind")
        kind = given_kind if isinstance(given_kind, str) else ""
        aliases = {**TOOL_ALIASES["*"], **TOOL_ALIASES.get(kind, {})}
        for alias, canonical in aliases.items():
            if alias not in task:
                continue
            if canonical in task:
                given = [k for k, c in aliases.items() if c == canonical and k in task]
                self.error(origin.get(alias, path + (alias,)),
                           f"'{alias}' is another name for '{canonical}'; give only one of "
                           f"{quote_list([canonical] + given)}", "duplicate_key")
                task.pop(alias)
                continue
            task[canonical] = task.pop(alias)
            origin[canonical] = origin.get(alias, path + (alias,))
        if kind == "python" and isinstance(task.get("libs"), list):
            libs = task["libs"]
            if all(isinstance(m, str) for m in libs):
                task["libs"] = {m.split(".")[0]: m for m in libs}
        policy = (task.get("spec") or {}).get("policy") if isinstance(task.get("spec"), dict) else None
        if isinstance(policy, dict) and isinstance(policy.get("rules"), list):
            task["spec"] = {**task["spec"], "policy": {**policy, "rules": [_rule_form(r) for r in
                                                                           policy["rules"]]}}
        rules: list[tuple[dict[str, Any], Path]] = []
        if "retry" in task:
            rule = self.retry_rule(task.pop("retry"), origin.get("retry", path + ("retry",)), kind)
            if rule:
                rules.append((rule, origin.get("retry", path + ("retry",))))
        if step_retry is not None:
            rule = self.retry_rule(step_retry, retry_path, kind)
            if rule:
                rules.append((rule, retry_path))
        # a `spec` that is not a mapping is an error the model's validation reports at its place
        if rules and isinstance(task.get("spec") or {}, dict):
            spec = dict(task.get("spec") or {})
            policy = dict(spec.get("policy") or {}) if isinstance(spec.get("policy"), dict) else {}
            existing = list(policy.get("rules") or []) if isinstance(policy.get("rules"), list) else []
            for rule, source in rules:
                self.paths.add(path + ("spec", "policy", "rules", len(existing)), source)
                existing.append(rule)
            policy["rules"] = existing
            spec["policy"] = policy
            task["spec"] = spec
            origin.setdefault("spec", path + ("spec",))
        for key, source in origin.items():
            if key in task:
                self.paths.add(path + (key,), source)
        return task

    def retry_rule(self, retry: Any, path: Path, kind: str) -> dict[str, Any] | None:
        """`retry: {max_attempts, initial_delay|backoff_seconds, backoff_multiplier, ...}` -> one rule."""
        if not isinstance(retry, dict):
            self.error(path, "'retry' must be a mapping such as {max_attempts: 3, initial_delay: 1}",
                       "invalid_type", on_key=False)
            return None
        ok = True
        for key, value in retry.items():
            if key not in RETRY_KEYS:
                hint = did_you_mean(key, RETRY_KEYS) or ";"
                self.error(path + (key,), f"unknown key '{key}' in retry{hint} "
                                          f"valid keys: {quote_list(RETRY_KEYS)}", "unknown_key")
                ok = False
            elif key == "retry_on_status":
                if not (isinstance(value, list) and all(isinstance(s, int) for s in value)):
                    self.error(path + (key,), "retry_on_status must be a list of HTTP status codes",
                               "invalid_type", on_key=False)
                    ok = False
            elif key == "retry_on":
                if not (isinstance(value, list) and value and all(isinstance(k, str) for k in value)):
                    self.error(path + (key,), "retry_on must be a list of error kinds, e.g. "
                                              "[timeout, connection]", "invalid_type", on_key=False)
                    ok = False
            elif key == "backoff" and isinstance(value, str):
                if value not in RETRY_BACKOFFS:
                    self.error(path + (key,), f"retry.backoff must be a number of seconds or one of "
                                              f"{quote_list(RETRY_BACKOFFS)}, got {value!r}",
                               "invalid_value", on_key=False)
                    ok = False
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                self.error(path + (key,), f"retry.{key} must be a non-negative number, got {value!r}",
                           "invalid_type", on_key=False)
                ok = False
        if not ok:
            return None
        attempts = int(retry.get("max_attempts", 3))
        if attempts < 1:
            self.error(path + ("max_attempts",), "max_attempts must be at least 1", "invalid_value",
                       on_key=False)
            return None
        multiplier = float(retry.get("backoff_multiplier", 2.0))
        if multiplier < 1:
            self.error(path + ("backoff_multiplier",), "backoff_multiplier must be at least 1",
                       "invalid_value", on_key=False)
            return None
        delay = float(retry["initial_delay"] if "initial_delay" in retry
                      else retry.get("backoff_seconds", 1.0))
        backoff = retry.get("backoff")
        if isinstance(backoff, (int, float)):  # `backoff: 5`: a constant delay in seconds (NoETL)
            delay, backoff = float(backoff), "fixed"
        elif backoff is None:
            backoff = "none" if multiplier == 1 else "exponential"
        conditions = ["output.status == 'error'", "output.error.kind != 'contract'"]  # never retryable
        kinds = [RETRY_ON_ALIASES.get(k, k) for k in retry.get("retry_on") or []]
        statuses = retry.get("retry_on_status")
        if kinds and statuses:
            conditions.append(f"(output.error.kind in {kinds} or output.http.status in {list(statuses)})")
        elif kinds:
            conditions.append(f"output.error.kind in {kinds}")
        elif statuses:
            conditions.append(f"output.http.status in {list(statuses)}")
        when = "{{ " + " and ".join(conditions) + " }}"
        then: dict[str, Any] = {"do": "retry", "attempts": attempts, "delay": delay, "backoff": backoff,
                                "multiplier": multiplier}
        if "max_delay" in retry:
            then["max_delay"] = float(retry["max_delay"])
        return {"when": when, "then": then}

    # ------------------------------------------------------------------ routing
    def next(self, raw: Any, path: Path) -> Any:
        if isinstance(raw, str):
            self.paths.add(path + ("arcs", 0, "step"), path)
            return {"arcs": [{"step": raw}]}
        if isinstance(raw, list):
            arcs = []
            for j, item in enumerate(raw):
                self.paths.add(path + ("arcs", j), path + (j,))
                arcs.append(self.arc(item, path + (j,)))
            return {"spec": {"mode": "exclusive"}, "arcs": arcs}
        if isinstance(raw, dict):
            out = dict(raw)
            if isinstance(out.get("arcs"), list):
                out["arcs"] = [self.arc(a, path + ("arcs", j)) for j, a in enumerate(out["arcs"])]
            return out
        return raw

    def arc(self, raw: Any, path: Path) -> Any:
        if isinstance(raw, str):
            self.paths.add(path + ("step",), path)
            return {"step": raw}
        if not isinstance(raw, dict):
            return raw
        arc = dict(raw)
        if "cond" in arc:
            if "when" in arc:
                self.error(path + ("cond",), "'cond' is another name for 'when'; give only one",
                           "duplicate_key")
                arc.pop("cond")
            else:
                arc["when"] = arc.pop("cond")
                self.paths.add(path + ("when",), path + ("cond",))
        if "args" in arc:
            args = arc.pop("args")
            if not isinstance(args, dict):
                self.error(path + ("args",), "'args' must be a mapping of names to values",
                           "invalid_type", on_key=False)
                return arc
            writes = dict(arc.get("set") or {}) if isinstance(arc.get("set"), dict) else {}
            for name, value in args.items():
                key = f"ctx.{name}"
                if key in writes:
                    self.error(path + ("args", name), f"'{name}' is set both by 'args' and by "
                                                      f"'set: {{{key}: ...}}'; keep one", "duplicate_key")
                    continue
                writes[key] = value
                self.paths.add(path + ("set", key), path + ("args", name))
            arc["set"] = writes
        return arc

    # ------------------------------------------------------------------ loops and step spec
    def loop(self, raw: dict[str, Any], path: Path) -> dict[str, Any]:
        """A cursor loop (spec 6.1) whose spec names no mode runs in mode: cursor."""
        loop = dict(raw)
        if isinstance(loop.get("cursor"), dict):
            spec = loop.get("spec")
            if spec is None:
                loop["spec"] = {"mode": "cursor"}
            elif isinstance(spec, dict) and "mode" not in spec:
                loop["spec"] = {**spec, "mode": "cursor"}
        return loop

    def step_spec(self, raw: dict[str, Any], path: Path) -> dict[str, Any]:
        spec = dict(raw)
        lifecycle = spec.pop("lifecycle", None)
        if lifecycle is None:
            return spec
        if not isinstance(lifecycle, dict) or set(lifecycle) - {"timeout_s"}:
            self.error(path + ("lifecycle",), "lifecycle takes only 'timeout_s' (seconds); "
                                              "or write spec.timeout: 30s", "unknown_key")
            return spec
        if "timeout_s" in lifecycle:
            if "timeout" in spec:
                self.error(path + ("lifecycle", "timeout_s"),
                           "'lifecycle.timeout_s' and 'timeout' both set the step timeout; keep one",
                           "duplicate_key")
            else:
                spec["timeout"] = lifecycle["timeout_s"]
                self.paths.add(path + ("timeout",), path + ("lifecycle", "timeout_s"))
        return spec


def _rule_form(rule: Any) -> Any:
    """NoETL's spellings of an `else` rule (spec 7) as `{else: {then: {...}}}`: the action directly
    under `else`, or `else:` left empty by indentation beside `then`."""
    if not isinstance(rule, dict) or "else" not in rule:
        return rule
    otherwise = rule["else"]
    if otherwise is None and "then" in rule and "when" not in rule:
        return {"else": {"then": rule["then"]}}
    if isinstance(otherwise, dict) and "then" not in otherwise and "do" in otherwise:
        return {**rule, "else": {"then": otherwise}}
    return rule


def normalize(raw: Any) -> Normalized:
    """Rewrite short forms and aliases into the canonical shape; never raises on user data."""
    normalizer = _Normalizer()
    data = normalizer.document(raw)
    return Normalized(data=data, paths=normalizer.paths, issues=normalizer.issues)
