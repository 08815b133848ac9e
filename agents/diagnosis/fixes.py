"""Concrete changes for a classified failure: PURE.

Every fix's `change` is either a merge patch of one step in the playbook language's own keys
(`{"step": NAME, "set": {...}}`: `retry`, `spec.timeout`, `spec.resources.pool`, `loop.spec.max_in_flight`,
`tool.url`, `next.arcs`), an edit of a step's text with what to change located (`{"step", "edit", ...}`),
or a command to run (`{"command": "noetl credential set ..."}`).
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from agents.diagnosis.data import payload_path
from agents.diagnosis.model import SuggestedFix

if TYPE_CHECKING:
    from agents.diagnosis.data import DataProblem
    from agents.diagnosis.facts import ErrorFact, Facts, StepFacts

_WITHIN = re.compile(r"within ([0-9.]+) ?s")
_ADDRESS = re.compile(r'(?:server at "?|//)([\w.-]+)"?(?:,? port |:)(\d{2,5})')
_HTTP_CODE = re.compile(r"HTTP Error (\d{3})|returned (\d{3})|status(?: code)? (\d{3})")
_NEAR = re.compile(r'at or near "([^"]*)"')
_STATEMENT = re.compile(r"statement (\d+)")
_CARET_LINE = re.compile(r"LINE (\d+): (.*)\n(\s*)\^")
_CREDENTIAL = re.compile(r"credential '([^']+)'")
_CONSTRAINT = re.compile(r'constraint "([^"]+)"')
_DETAIL_KEY = re.compile(r"Key \(([^)]+)\)=")
_EXPRESSION = re.compile(r"`([^`]+)`")
_TRACE_LINE = re.compile(r'File "<python step>", line (\d+)')
_LACKS = re.compile(r"(input|result) lacks (?:each of )?((?:`[^`]+`(?:, )?)+)")
_NAMED = re.compile(r"`([^`]+)`")
_WORKBOOK_TASK = re.compile(r"^workbook task '([^']+)'")
_PIPELINE_TASK = re.compile(r"^task '([^']+)' of step")
_EXPECT = {"empty": "a non-empty result", "null": "a value, not null", "error": "data, not an error object",
           "text": "JSON (structured data), not text", "nulls": "no null values in the fields read",
           "missing_key": "the keys its readers use", "inconsistent": "every record with the same keys",
           "other": "values its readers can parse"}
_CREDENTIAL_DATA = {
    "postgres": {"db_host": "...", "db_port": 5432, "db_user": "...", "db_password": "...", "db_name": "..."},
    "http": {"token": "..."},
    "clickhouse": {"url": "...", "username": "...", "password": "..."},
    "snowflake": {"account": "...", "user": "...", "password": "..."},
    "qdrant": {"url": "...", "api_key": "..."},
}


def suggest(facts: Facts, *, failed: StepFacts, error: ErrorFact | None, root: StepFacts, kind: str | None,
            transience: str | None, upstream: DataProblem | None,
            recovered: bool = False) -> list[SuggestedFix]:
    """The fixes for one diagnosis, most useful first. A failure a retry already recovered from only gets
    a retry rule (enough attempts, with backoff)."""
    if kind is None:
        return _slow(root)
    if recovered:
        return [_retry(root, attempts=max(4, root.attempts + 1), delay=1.0,
                       why=f"it needed {root.attempts} attempts to pass")]
    fixes: list[SuggestedFix] = []
    if upstream is not None:
        fixes.extend(_upstream(facts, failed, root, upstream))
    elif error is not None:
        maker = _BY_KIND.get(kind)
        if maker is not None:
            fixes.extend(maker(facts, root, error))
    if transience in ("transient", "intermittent") and not any(f.kind == "retry_rule" for f in fixes):
        fixes.append(_retry(root, attempts=4 if transience == "intermittent" else 3, delay=1.0,
                            why="the failure is " + transience))
    if transience == "intermittent":  # it passes on another try: retrying is the first thing to change
        fixes.sort(key=lambda f: f.kind != "retry_rule")
    return fixes


# --------------------------------------------------------------------------------------------- helpers
def _task(step: StepFacts) -> dict[str, Any]:
    tasks = step.tasks
    return tasks[0] if tasks else {}


def _has_retry(step: StepFacts) -> bool:
    for task in step.tasks:
        for rule in ((task.get("spec") or {}).get("policy") or {}).get("rules") or []:
            if isinstance(rule, dict) and (rule.get("then") or {}).get("do") == "retry":
                return True
    return False


def _retry(step: StepFacts, *, attempts: int, delay: float, why: str,
           statuses: list[int] | None = None) -> SuggestedFix:
    retry: dict[str, Any] = {"max_attempts": attempts, "initial_delay": delay, "backoff_multiplier": 2}
    if statuses and "http" in step.kinds:
        retry["retry_on_status"] = statuses
    verb = "Raise the retries of" if _has_retry(step) else "Add a retry with exponential backoff to"
    return SuggestedFix(kind="retry_rule", description=f"{verb} step '{step.name}' ({why}).",
                        change={"step": step.name, "set": {"retry": retry}})


def _seconds(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m|h)?\s*", value)
        if match:
            scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
            return float(match.group(1)) * scale
    return None


def _limit(step: StepFacts, error: ErrorFact) -> tuple[float | None, str]:
    """(the time limit that stopped the step, where it is set: "spec" or "tool"): the smaller one."""
    spec = _seconds(((step.definition or {}).get("spec") or {}).get("timeout"))
    tool = _seconds(_task(step).get("timeout"))
    if tool is not None and (spec is None or tool <= spec):
        return tool, "tool"
    if spec is not None:
        return spec, "spec"
    match = _WITHIN.search(error.message)
    return (float(match.group(1)) if match else None), "spec"


def _duration(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds >= 1 and seconds == int(seconds) else f"{seconds:g}s"


# ------------------------------------------------------------------------------------- per error kind
def _rate_limit(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    after = error.retry_after
    if after is None:  # recorded before errors carried it
        after = _seconds((error.http or {}).get("retry_after"))
    why = "the server answered 429 Too Many Requests" + (f", Retry-After {after:g} s" if after else "")
    fixes = [_retry(step, attempts=5, delay=max(after or 1.0, 1.0), statuses=[429], why=why)]
    loop = (step.definition or {}).get("loop")
    if isinstance(loop, dict) and ((loop.get("spec") or {}).get("mode") == "parallel"):
        fixes.append(SuggestedFix(
            kind="concurrency",
            description=f"Send fewer requests at once from the parallel loop of '{step.name}'.",
            change={"step": step.name, "set": {"loop": {"spec": {"max_in_flight": 2}}}}))
    return fixes


def _timeout(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    limit, where = _limit(step, error)
    new = float(math.ceil(2 * limit)) if limit else 60.0
    patch = {"tool" if where == "tool" else "spec": {"timeout": _duration(new)}}
    fixes = [SuggestedFix(kind="timeout", description=(
        f"Give step '{step.name}' more time: it did not finish within {limit:g} s"
        f"{' (the tool timeout)' if where == 'tool' else ''}." if limit else
        f"Give step '{step.name}' an explicit, longer time limit."),
        change={"step": step.name, "set": patch})]
    fixes.append(_retry(step, attempts=3, delay=2.0, why="a slow dependency may answer on a later attempt"))
    return fixes


def _connection(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    task = _task(step)
    where = _ADDRESS.search(error.message)
    address = f"{where.group(1)}:{where.group(2)}" if where else None
    check = (f"Check that the service step '{step.name}' connects to is up and listening"
             f"{' at ' + address if address else ''}: nothing accepted the connection.")
    change: dict[str, Any]
    for field in ("url", "endpoint", "connection_string"):
        if isinstance(task.get(field), str):
            change = {"step": step.name, "set": {"tool": {field: "<a reachable address>"}},
                      "was": task[field]}
            break
    else:
        auth = task.get("auth")
        if isinstance(auth, str) and "{{" not in auth:
            change = {"command": f"noetl credential set {auth} --type {next(iter(step.kinds), 'http')} "
                                 "--data '{...the reachable host and port...}'"}
        else:
            change = {"step": step.name, "edit": "tool.code" if "python" in step.kinds else "tool"}
        if address:
            change["address"] = address
    fixes = [SuggestedFix(kind="input", description=check, change=change)]
    fixes.append(_retry(step, attempts=4, delay=2.0, why="a restarting service accepts connections again"))
    return fixes


def _http_error(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    """not_found, client_error, server_error: a retry for a server failing, else the request is wrong."""
    code = error.status_code
    if code is None:
        match = _HTTP_CODE.search(error.message)
        code = int(next(g for g in match.groups() if g)) if match else None
    url = (error.http or {}).get("url") or _task(step).get("url")
    if (code is not None and code >= 500) or (code is None and error.kind == "server_error"):
        return [_retry(step, attempts=4, delay=1.0, statuses=[500, 502, 503, 504],
                       why=f"the server failed with {code or 'a 5xx status'}")]
    missing = " (no such resource: check the path and the ids in it)" if code in (404, 410) else ""
    change: dict[str, Any] = {"step": step.name, "set": {"tool": {"url": "<the correct URL>"}}, "was": url}
    if not url:
        change = {"step": step.name, "edit": "tool.code" if "python" in step.kinds else "tool"}
    return [SuggestedFix(kind="input", change=change, description=(
        f"The request of step '{step.name}' is wrong: {url or 'the server'} answered "
        f"{code or 'an error status'}{missing}."))]


def _auth(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    name = _task(step).get("auth")
    name = name if isinstance(name, str) and "{{" not in name else "NAME"
    kind = next((k for k in step.kinds if k in _CREDENTIAL_DATA), "http")
    return [SuggestedFix(kind="credential", description=(
        f"The credentials step '{step.name}' sends were refused: store valid ones under '{name}' (and check "
        "that this account may do what the step asks)."),
        change={"command": f"noetl credential set {name} --type {kind} --data "
                           f"'{json.dumps(_CREDENTIAL_DATA[kind])}'"})]


def _missing_credential(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    match = _CREDENTIAL.search(error.message)
    name = match.group(1) if match else "NAME"
    if isinstance(error.code, str) and error.code:
        name = error.code
    kind = next((k for k in step.kinds if k in _CREDENTIAL_DATA), "http")
    return [SuggestedFix(kind="credential", description=(
        f"Create the credential '{name}' that step '{step.name}' names (or correct the name in the step)."),
        change={"command": f"noetl credential set {name} --type {kind} --data "
                           f"'{json.dumps(_CREDENTIAL_DATA[kind])}'"})]


def _statements(step: StepFacts) -> list[str]:
    command = _task(step).get("command") or _task(step).get("query")
    if isinstance(command, list):
        return [str(c).strip() for c in command]
    if isinstance(command, str):
        return [s.strip() for s in command.split(";") if s.strip()]
    return []


def _sql_syntax(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    number = _STATEMENT.search(error.message)
    near = _NEAR.search(error.message)
    caret = _CARET_LINE.search(error.message)
    statements = _statements(step)
    index = int(number.group(1)) if number else 1
    shown = caret.group(2).strip().rstrip(";").strip() if caret else ""
    if not number and shown and not shown.startswith("..."):  # the statement that holds the line shown
        index = next((i for i, s in enumerate(statements, 1) if shown in s), index)
    sql = statements[index - 1] if 0 < index <= len(statements) else None
    change: dict[str, Any] = {"step": step.name, "edit": "tool.command", "statement": index}
    if near:
        change["near"] = near.group(1)
    if caret:
        change["line"] = int(caret.group(1))
        if not caret.group(2).startswith("..."):  # a shortened line: its column would mislead
            change["column"] = len(caret.group(3)) - len(f"LINE {caret.group(1)}: ") + 1
    if sql:
        change["sql"] = sql
    where = f" near \"{near.group(1)}\"" if near else ""
    return [SuggestedFix(kind="query", description=(
        f"Correct statement {index} of step '{step.name}'{where}: "
        f"{_first_line(error.message)}"), change=change)]


def _db_constraint(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    constraint = _CONSTRAINT.search(error.message)
    key = _DETAIL_KEY.search(error.message)
    change: dict[str, Any] = {"step": step.name, "edit": "tool.command"}
    if constraint:
        change["constraint"] = constraint.group(1)
    text = error.message.lower()
    if "unique" in text or "duplicate" in text or "primary key" in text:
        columns = key.group(1) if key else "the key columns"
        change["append"] = f"ON CONFLICT ({columns}) DO NOTHING"
        description = (f"Step '{step.name}' inserts a row whose key already exists: make the insert "
                       f"idempotent (ON CONFLICT ({columns}) DO NOTHING / DO UPDATE) or skip existing keys.")
    elif "not-null" in text or "not null" in text:
        description = (f"Step '{step.name}' writes a null into a NOT NULL column: filter or default those "
                       "rows.")
        change["filter"] = "WHERE <column> IS NOT NULL"
    else:
        description = f"Step '{step.name}' breaks a table constraint: {_first_line(error.message)}"
    return [SuggestedFix(kind="query", description=description, change=change)]


def _undefined_variable(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    match = _EXPRESSION.search(error.message)
    expression = match.group(1) if match else None
    if expression is None:
        return [SuggestedFix(kind="input", description=f"A template of step '{step.name}' reads a value that "
                             "is not set: set it first or guard it with `| default(...)`.",
                             change={"step": step.name})]
    parent = expression.rsplit(".", 1)[0] if "." in expression else expression
    fixes = [SuggestedFix(kind="input", description=(
        f"Guard `{expression}` in step '{step.name}': `{parent}` is not set when it runs."),
        change={"step": step.name, "replace": {"from": "{{ " + expression + " }}",
                                               "to": "{{ " + f"{expression} if {parent} else none" + " }}"}})]
    parts = expression.split(".")
    if parts[0] == "workload" and len(parts) > 1:
        fixes.append(SuggestedFix(kind="input", description=(
            f"Pass `{'.'.join(parts[1:-1]) or parts[1]}` in the payload (or give it a default under "
            "workload)."),
            change={"payload": _nested(parts[1:], "...")}))
    return fixes


def _nested(parts: list[str], leaf: Any) -> dict[str, Any]:
    value: Any = leaf
    for part in reversed(parts):
        value = {part: value}
    return value  # type: ignore[no-any-return]


def _python_exception(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    lines = _TRACE_LINE.findall(error.traceback or "")
    line = int(lines[-1]) if lines else None
    code = _task(step).get("code")
    source = code.splitlines()[line - 1].strip() if isinstance(code, str) and line and \
        0 < line <= len(code.splitlines()) else None
    change: dict[str, Any] = {"step": step.name, "edit": "tool.code",
                              "exception": f"{error.type}: {error.message}"}
    if line:
        change["line"] = line
    if source:
        change["source"] = source
    return [SuggestedFix(kind="code", description=(
        f"Fix the code of step '{step.name}'" + (f" at line {line} (`{source}`)" if source else "")
        + f": it raised {error.type or 'an exception'}: {_first_line(error.message)}"), change=change)]


def _resource_exhausted(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    resources = ((step.definition or {}).get("spec") or {}).get("resources") or {}
    memory = resources.get("memory_mb")
    new = int(memory) * 2 if isinstance(memory, (int, float)) and memory else 8192
    pool = step.pool or "default"
    return [SuggestedFix(kind="pool", description=(
        f"Run step '{step.name}' on a pool with more memory (it ran out on pool '{pool}')."),
        change={"step": step.name, "set": {"spec": {"resources": {"pool": "large", "memory_mb": new}}}}),
        SuggestedFix(kind="code", change={"step": step.name, "edit": "tool.code"},
                     description=f"Process the data of step '{step.name}' in chunks instead of all at once.")]


def _validation(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    return [SuggestedFix(kind="input", change={"step": step.name}, description=(
        f"Correct the configuration or input of step '{step.name}': {_first_line(error.message)}"))]


def _contract(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    """A breached `assert` (spec 3): name what is missing and where it should come from."""
    match = _LACKS.search(error.message)
    if match is None:
        return _validation(facts, step, error)
    side = "expects" if (error.code == "CONTRACT_EXPECTS" or match.group(1) == "input") else "returns"
    names = _NAMED.findall(match.group(2))
    listed = ", ".join(f"`{n}`" for n in names)
    workbook = _WORKBOOK_TASK.search(error.message)
    task = _PIPELINE_TASK.search(error.message)
    who = (f"workbook task '{workbook.group(1)}'" if workbook else
           f"task '{task.group(1)}' of step '{step.name}'" if task else f"step '{step.name}'")
    if side == "expects":
        given = (step.definition or {}).get("input") or {}
        sources = {n: given[n] for n in names if isinstance(given, dict) and isinstance(given.get(n), str)}
        change: dict[str, Any] = {"step": step.name,
                                  "set": {"input": {n: sources.get(n, "...") for n in names}}}
        text = (f"{who[0].upper()}{who[1:]}'s input lacks {listed}: pass "
                f"{'it' if len(names) == 1 else 'them'} in `input:` of step '{step.name}'")
        if sources:  # given, but rendered to null: the value it reads is where the problem is
            shown = "; ".join(f"`{n}` is `{v}`" for n, v in sources.items())
            text += f" ({shown}, which was null when the step ran: check what it reads)"
            change = {"step": step.name, "edit": "input", "fields": sorted(sources), "was": sources}
        fixes = [SuggestedFix(kind="input", change=change, description=text + ".")]
        fixes.append(SuggestedFix(kind="input", change={"step": step.name, "edit": "assert.expects",
                                                        "remove": names}, description=(
            f"Or, if {who} can do without {listed}, drop {'it' if len(names) == 1 else 'them'} from "
            "its assert.expects.")))
        return fixes
    python = "python" in step.kinds
    change = {"step": step.name, "edit": "tool.code" if python and not workbook else "tool",
              "returns": names}
    if workbook:
        change["workbook"] = workbook.group(1)
    elif task:
        change["task"] = task.group(1)
    how = (f"make its code return a mapping with {listed}" if python else
           f"make it produce {listed} (or correct the name in assert.returns)")
    return [SuggestedFix(kind="code" if python else "input", change=change, description=(
        f"{who[0].upper()}{who[1:]}'s result lacks {listed}: {how}."))]


def _internal(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    return [SuggestedFix(kind="code", description=f"Step '{step.name}' failed inside its tool: "
                                                  f"{_first_line(error.message)}",
                         change={"step": step.name, "edit": "tool"})]


def _db_deadlock(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    return [_retry(step, attempts=4, delay=0.5, why="the database rolled the transaction back because of a "
                                                     "conflicting one; it passes when run again"),
            SuggestedFix(kind="query", change={"step": step.name, "edit": "tool.command"}, description=(
                f"Have step '{step.name}' and the writers it conflicts with lock rows in one order (or keep "
                "its transaction short) so that they stop waiting on each other."))]


def _parse(facts: Facts, step: StepFacts, error: ErrorFact) -> list[SuggestedFix]:
    return [SuggestedFix(kind="input", change={"step": step.name}, description=(
        f"Step '{step.name}' read a body or file it cannot parse: check its source and format "
        f"({_first_line(error.message)})."))]


_BY_KIND = {"rate_limit": _rate_limit, "timeout": _timeout, "db_timeout": _timeout, "connection": _connection,
            "db_connection": _connection, "not_found": _http_error, "client_error": _http_error,
            "server_error": _http_error, "auth": _auth, "missing_credential": _missing_credential,
            "sql_syntax": _sql_syntax, "db_constraint": _db_constraint, "db_deadlock": _db_deadlock,
            "parse": _parse, "undefined_variable": _undefined_variable, "python_exception": _python_exception,
            "resource_exhausted": _resource_exhausted, "validation": _validation, "contract": _contract,
            "internal": _internal}


def _upstream(facts: Facts, failed: StepFacts, root: StepFacts, problem: DataProblem) -> list[SuggestedFix]:
    path = payload_path(root.result)  # a SQL result is judged by its rows
    guard = {"empty": f"{{{{ {root.name}{path} | length > 0 }}}}",
             "null": f"{{{{ {root.name} is not none }}}}"}
    direct = "http" not in root.kinds and problem.shape in ("empty", "null")
    change: dict[str, Any] = {"step": root.name, "edit": "tool", "expect": _EXPECT.get(problem.shape, "")}
    if direct:  # a rule that fails the producing step itself, where the problem is
        rule = {"when": f"{{{{ output.status == 'ok' and not output.data{path} }}}}", "then": {"do": "fail"}}
        change = {"step": root.name, "set": {"tool": {"spec": {"policy": {"rules": [rule]}}}}}
    fixes = [SuggestedFix(kind="upstream_data", change=change, description=(
        f"Make step '{root.name}' produce what '{failed.name}' reads (it {problem.problem}): check its "
        "query, URL or filter" + (", and fail it there when it returns nothing." if direct else ".")))]
    when = guard.get(problem.shape) if "http" not in root.kinds else None
    if when is not None and root.name != failed.name:
        fixes.append(SuggestedFix(kind="upstream_data", description=(
            f"Only run '{failed.name}' when '{root.name}' returned data."),
            change={"step": root.name, "set": {"next": {"arcs": [{"step": failed.name, "when": when}]}}}))
    fixes.append(SuggestedFix(kind="code", description=(
        f"Make step '{failed.name}' check its input before using it (empty lists, nulls, missing keys)."),
        change={"step": failed.name, "edit": "tool.code" if "python" in failed.kinds else "tool"}))
    return fixes


def _slow(step: StepFacts) -> list[SuggestedFix]:
    loop = (step.definition or {}).get("loop")
    if isinstance(loop, dict) and (loop.get("spec") or {}).get("mode", "sequential") == "sequential":
        return [SuggestedFix(kind="concurrency", description=f"Run the loop of '{step.name}' in parallel.",
                             change={"step": step.name, "set": {"loop": {"spec": {"mode": "parallel",
                                                                                  "max_in_flight": 4}}}})]
    return [SuggestedFix(kind="pool", description=f"Give step '{step.name}' a pool with more capacity.",
                         change={"step": step.name, "set": {"spec": {"resources": {"cpu": 2}}}})]


def _first_line(text: str) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= 240 else line[:239] + "…"
