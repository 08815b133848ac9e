"""Classifying a failure from its facts: PURE (no I/O, no clock, never raises on user data).

`classify(facts) -> Diagnosis` (without similar failures; the graph adds them). The decisions:

- root-cause TYPE: the error's `kind` (spec section 9, NoETL's names); a generic kind (`internal`,
  `python_exception`) is refined by message patterns (a refused connection raised in Python code is
  `connection`, `HTTP Error 429` is `rate_limit`, `HTTP Error 503` is `server_error`, a deadlock is
  `db_deadlock`, exit 137 is `resource_exhausted`...).
- root-cause STEP: the failed step, unless its failure is a data error on something an upstream step
  produced: an undefined template value rooted at another step's result (or at a `ctx` key another step
  set), a Python KeyError/IndexError/TypeError/AttributeError/ValueError/ZeroDivisionError, or a NOT NULL
  violation, while that step's result is null, empty, an error object, text, or lacks the key read.
  Then the root cause is the upstream step (walking further up while its own input was just as bad)
  with type `validation` (its output did not have the shape its readers need), or, when the upstream
  step itself failed or never ran, that step's own error.
- TRANSIENCE of the root-cause step: `intermittent` when, under the same conditions (the same playbook
  version and payload), the step has both failed and succeeded (another run, or another run/item in
  this one); `transient` when a retry in this execution succeeded, or the kind is retryable (timeout,
  connection, rate limit, server error, a database connection, deadlock or timeout, or the tool said
  `retryable`) and it did not already fail the same way
  on 3 attempts or in 2 other runs (a rate limit stays transient: it clears with time); else
  `permanent`.
- CONFIDENCE: how directly the facts name the cause (a tool's own classification > a message pattern
  > a guess), less for each gap in the evidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agents.diagnosis.data import (
    DATA_ERRORS,
    DataProblem,
    data_problem,
    degenerate,
    describe_result,
    expression_of,
    has_none,
    payload_of,
)
from agents.diagnosis.facts import ErrorFact, Facts, StepFacts
from agents.diagnosis.fixes import suggest
from agents.diagnosis.model import Diagnosis, Evidence
from engine.dsl.templates import TemplateRenderer, is_template
from engine.protocol.results import ERROR_KINDS, RETRYABLE_BY_DEFAULT, http_error_kind

GENERIC_KINDS = frozenset({"internal", "python_exception"})
# (kind, pattern) in order: the first that matches a generic error's type + message names its kind
_PATTERN_TEXTS = (
    ("rate_limit", r"\b429\b|too many requests|rate[ _-]?limit"),
    ("missing_credential", r"credential '[^']*' is not stored|no such credential"),
    ("undefined_variable", r"is not set, so it cannot be used|cannot be read: .*(is not set|has not run)"
                           r"|UndefinedError"),
    ("resource_exhausted", r"MemoryError|out of memory|cannot allocate memory|OOM|exit code (137|-9)\b"),
    ("sql_syntax", r"syntax error at or near|Parser Error|SyntaxException|ParserException"),
    ("db_constraint", r"violates (unique|not-null|foreign key|check) constraint|duplicate key|"
                      r"Constraint Error|IntegrityError"),
    ("db_deadlock", r"deadlock detected|DeadlockDetected|could not serialize access"),
    ("db_timeout", r"canceling statement due to (statement|lock) timeout|QueryCanceled"),
    ("timeout", r"timed out|did not finish within|deadline exceeded|TimeoutError|ReadTimeout"),
    ("db_connection", r"could not connect to server|connection to server at .* failed|"
                      r"server closed the connection unexpectedly"),
    ("connection", r"connection refused|could not be reached|name or service not known|connection reset|"
                   r"ConnectionError|ConnectionRefused|Errno 111|nodename nor servname|"
                   r"temporary failure in name resolution|network is unreachable"),
    ("auth", r"\b40[13]\b|unauthori[sz]ed|forbidden|password authentication failed|permission denied"),
    ("client_error", r"HTTP Error [45]\d\d|HTTPError|status code [45]\d\d"),  # refined by its status
)
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in _PATTERN_TEXTS)
_HTTP_CODE = re.compile(r"HTTP Error (\d{3})|status(?: code)? (\d{3})|returned (\d{3})")
_CTX_KEY = re.compile(r"\bctx\.([A-Za-z_]\w*)")
_QUOTED_TEMPLATE = re.compile(r" in '(.*?\}\}.*?)'")
_RENDERER = TemplateRenderer()


# ---------------------------------------------------------------------------------------- the kind
def refine_kind(error: ErrorFact) -> tuple[str, bool]:
    """(root-cause type, whether a message pattern decided it rather than the tool's own kind)."""
    kind = error.kind if error.kind in ERROR_KINDS else "internal"
    if kind not in GENERIC_KINDS:
        return kind, False
    if kind == "python_exception" and (error.type or "").split(".")[-1] in DATA_ERRORS:
        return kind, False  # a data error is what it says; its cause is looked for upstream
    text = f"{error.type or ''}: {error.message}"
    if kind == "internal" and error.code in (137, -9, "137", "-9"):
        return "resource_exhausted", True
    for candidate, pattern in PATTERNS:
        if pattern.search(text):
            if candidate == "client_error":
                code = _http_code(text)
                if code is None:
                    continue
                return http_error_kind(code)[0], True
            return candidate, True
    return kind, False


def _http_code(text: str) -> int | None:
    match = _HTTP_CODE.search(text)
    if not match:
        return None
    return int(next(g for g in match.groups() if g))


def retryable(kind: str, error: ErrorFact | None) -> bool:
    if kind in RETRYABLE_BY_DEFAULT:
        return True
    return bool(error is not None and error.retryable and kind not in ("validation", "undefined_variable"))


# ------------------------------------------------------------------------------- upstream detection
def references(facts: Facts, step: StepFacts) -> list[str]:
    """Steps whose results `step` reads through its templates (inputs, tool config, loop), directly or
    through a `ctx` key they set, in playbook order."""
    definition = step.definition or {}
    readable: dict[str, Any] = {"input": definition.get("input"), "loop": definition.get("loop")}
    for index, task in enumerate(step.tasks):
        readable[f"task{index}"] = {k: v for k, v in task.items() if k not in ("code", "spec")}
    names = _RENDERER.referenced_names(readable)
    found = [n for n in facts.step_order if n in names and n != step.name]
    for key in _ctx_keys(readable):
        for writer in _ctx_writers(facts, key):
            if writer != step.name and writer not in found:
                found.append(writer)
    return found


def _ctx_keys(value: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(value, str) and is_template(value):
        keys.update(_CTX_KEY.findall(value))
    elif isinstance(value, dict):
        for item in value.values():
            keys |= _ctx_keys(item)
    elif isinstance(value, list):
        for item in value:
            keys |= _ctx_keys(item)
    return keys


def _ctx_writers(facts: Facts, key: str) -> list[str]:
    writers = [s.name for s in facts.steps.values() if f"ctx.{key}" in s.ctx_writes]
    for name, step in facts.steps.items():  # declared writes (a step that failed wrote nothing)
        sets = (step.definition or {}).get("set") or {}
        if f"ctx.{key}" in sets and name not in writers:
            writers.append(name)
    return writers


@dataclass(frozen=True, slots=True)
class RootCause:
    step: str
    type: str
    upstream: DataProblem | None = None  # why an upstream step is blamed
    chain: tuple[DataProblem, ...] = ()  # further-upstream steps whose output was just as bad
    via_failed_step: bool = False  # the upstream step had itself failed or not run
    pattern: bool = False  # a message pattern decided the type


def root_cause(facts: Facts, failed: StepFacts, error: ErrorFact) -> RootCause:
    kind, by_pattern = refine_kind(error)
    refs = references(facts, failed)
    if kind == "undefined_variable":
        expression = expression_of(error.message) or ""
        head = re.split(r"[.\[]", expression, maxsplit=1)[0]
        target: str | None = head if head in facts.steps and head != failed.name else None
        if target is None and head not in ("ctx", "workload", "iter", "input", "keychain"):
            target = _template_step(facts, failed, error.message)
        if head == "ctx":
            key = expression.split(".")[1] if "." in expression else ""
            writers = [w for w in _ctx_writers(facts, key) if w != failed.name]
            target = writers[-1] if writers else None
        if target is not None:
            upstream = facts.steps[target]
            if upstream.status == "failed" and upstream.error is not None:
                return RootCause(target, refine_kind(upstream.error)[0], via_failed_step=True)
            problem = data_problem(upstream, error, kind)
            if problem is not None:
                return _walk(facts, RootCause(target, "validation", upstream=problem))
        return RootCause(failed.name, kind, pattern=by_pattern)
    if kind in ("python_exception", "db_constraint"):
        found = (data_problem(facts.steps[r], error, kind) for r in refs if r in facts.steps)
        problems = [p for p in found if p is not None]
        problems.sort(key=lambda p: not p.strong)
        if problems:
            return _walk(facts, RootCause(problems[0].step, "validation", upstream=problems[0]))
        broken = [r for r in refs if r in facts.steps and facts.steps[r].status == "failed"
                  and facts.steps[r].error is not None]
        if broken and etype_of(error) in DATA_ERRORS:
            upstream_error = facts.steps[broken[0]].error
            assert upstream_error is not None
            return RootCause(broken[0], refine_kind(upstream_error)[0], via_failed_step=True)
    return RootCause(failed.name, kind, pattern=by_pattern)


def _template_step(facts: Facts, failed: StepFacts, message: str) -> str | None:
    """The one other step the failing template (quoted in the message) reads, if there is exactly one."""
    match = _QUOTED_TEMPLATE.search(message)
    if not match:
        return None
    names = _RENDERER.referenced_names(match.group(1))
    steps = [n for n in facts.step_order if n in names and n != failed.name]
    return steps[0] if len(steps) == 1 else None


def etype_of(error: ErrorFact) -> str:
    return (error.type or "").split(".")[-1]


def _walk(facts: Facts, cause: RootCause) -> RootCause:
    """Move the blame further up while the blamed step's own input was bad in the same way."""
    chain: list[DataProblem] = []
    current = cause.upstream
    seen = {cause.step}
    while current is not None and current.shape in ("null", "empty", "error", "nulls"):
        step = facts.steps[current.step]
        nxt = None
        for ref in references(facts, step):
            other = facts.steps.get(ref)
            if ref in seen or other is None or other.status != "succeeded":
                continue
            value = payload_of(other.result)
            shape = degenerate(value)
            if shape == current.shape or (current.shape == "nulls" and has_none(value)):
                nxt = DataProblem(ref, f"returned {describe_result(other.result)}", strong=True,
                                  shape=current.shape)
                break
        if nxt is None:
            break
        chain.append(current)
        seen.add(nxt.step)
        current = nxt
    if not chain:
        return cause
    assert current is not None
    return RootCause(current.step, cause.type, upstream=current, chain=tuple(chain))


# ------------------------------------------------------------------------------------- transience
@dataclass(frozen=True, slots=True)
class Transience:
    value: str
    reason: str
    evidence: tuple[Evidence, ...] = ()
    from_history: bool = False


def transience(facts: Facts, root: StepFacts, kind: str, error: ErrorFact | None,
               also: Iterable[StepFacts] = ()) -> Transience:
    for step in (root, *also):
        passed = [(run, run.steps[step.name]) for run in facts.history
                  if run.same_conditions and step.name in run.steps
                  and run.steps[step.name].status == "succeeded"]
        failed_here = step.status == "failed" or bool(step.attempt_failures)
        if passed and failed_here:
            run, outcome = passed[0]
            ev = (Evidence(event_id=outcome.event_id,
                           fact=f"step '{step.name}' succeeded in execution {run.execution_id} (the same "
                                "playbook version and payload)"),)
            return Transience("intermittent", f"'{step.name}' has failed and passed under the same "
                                              "conditions", ev, from_history=True)
        if step.status == "failed" and step.runs_succeeded > 0:
            return Transience("intermittent", f"'{step.name}' failed in one run of this execution and "
                                              "succeeded in another")
    failures = root.attempt_failures
    if root.recovered or (facts.status == "completed" and failures):
        return Transience("transient", f"a retry of '{root.name}' in this execution succeeded")
    if retryable(kind, error):
        observed = error.kind if error else kind
        same_kind = [f for f in failures if f.kind == observed and f.loop_index is None]
        past = [run.steps[root.name] for run in facts.history
                if run.same_conditions and root.name in run.steps and run.steps[root.name].status == "failed"]
        if kind != "rate_limit" and len(same_kind) >= 3:
            return Transience("permanent", f"'{root.name}' failed the same way on {len(same_kind)} attempts "
                                           "in a row: retrying does not clear it")
        if kind != "rate_limit" and len(past) >= 2:
            ev = tuple(Evidence(event_id=p.event_id,
                                fact=f"step '{root.name}' also failed ({p.error_kind}) in another run "
                                     "with the same version and payload") for p in past[:2])
            return Transience("permanent", f"'{root.name}' failed the same way in {len(past)} other runs",
                              ev, from_history=True)
        return Transience("transient", f"{kind} errors are usually temporary (the tool marked it retryable)")
    return Transience("permanent", f"{_a(kind)} error recurs until the playbook, its input or its "
                                   "environment changes")


# ------------------------------------------------------------------------------------- the verdict
def classify(facts: Facts) -> Diagnosis:
    """The rule-based diagnosis of the execution the facts describe."""
    gaps = list(facts.gaps)
    if facts.status == "completed":
        return _completed(facts, gaps)
    if facts.status in ("running", "pending", "unknown"):
        gaps.append(f"the execution has not ended (status {facts.status}): this is a diagnosis so far")
    failed = facts.steps.get(facts.failed_step) if facts.failed_step else None
    error = failed.error if failed is not None else None
    if error is None and failed is not None and failed.attempt_failures:
        error = failed.attempt_failures[-1]
    if error is None and facts.execution_error:
        raw = facts.execution_error
        error = ErrorFact(event_id=facts.terminal_event_id or facts.execution_id,
                          kind=str(raw.get("kind") or "internal"), message=str(raw.get("message") or ""),
                          retryable=bool(raw.get("retryable")), code=raw.get("code"), type=raw.get("type"),
                          traceback=raw.get("traceback"), source=raw.get("source"),
                          http_status=raw.get("http_status"), retry_after=raw.get("retry_after"),
                          pg_code=raw.get("pg_code"))
    if facts.status == "cancelled" and (error is None or error.kind == "cancelled"):
        return _cancelled(facts, failed, gaps)
    if error is None:
        gaps.append("no step failure and no execution error were recorded")
        return Diagnosis(execution_id=facts.execution_id, playbook_path=facts.path, status=facts.status,
                         failed_step=facts.failed_step, confidence=0.1, summary=(
                             f"Execution {facts.execution_id} is {facts.status}, but its events record no "
                             "error to explain it."), evidence_gaps=gaps)
    if failed is None:  # the execution failed outside any step (e.g. at its start)
        return Diagnosis(execution_id=facts.execution_id, playbook_path=facts.path, status=facts.status,
                         root_cause_type=refine_kind(error)[0],  # type: ignore[arg-type]
                         transience="permanent", confidence=0.5, error_message=_clip(error.message, 1000),
                         summary=f"Execution {facts.execution_id} failed outside its steps ({error.kind}): "
                                 f"{_clip(error.message, 200)}.",
                         evidence=[Evidence(event_id=error.event_id, fact=f"the execution failed: "
                                                                          f"{_clip(error.message, 300)}")],
                         evidence_gaps=gaps)
    cause = root_cause(facts, failed, error)
    root = facts.steps.get(cause.step) or failed
    root_error = root.error if cause.via_failed_step else error
    trans = transience(facts, root, cause.type, root_error, also=() if root is failed else (failed,))
    evidence = _evidence(facts, failed, error, cause, root, trans)
    if not any(run.same_conditions for run in facts.history):
        gaps.append(f"no other run of '{facts.path}' with the same version and payload: transience is "
                    "judged from this execution alone")
    if root.result_by_ref:
        gaps.append(f"the result of '{root.name}' is stored by reference and could not be read")
    confidence = _confidence(cause, error, trans, gaps)
    fixes = suggest(facts, failed=failed, error=error, root=root, kind=cause.type, transience=trans.value,
                    upstream=cause.upstream)
    return Diagnosis(
        execution_id=facts.execution_id, playbook_path=facts.path, status=facts.status,
        failed_step=failed.name if failed.status != "not run" else facts.failed_step,
        root_cause_step=root.name, root_cause_type=cause.type,  # type: ignore[arg-type]
        transience=trans.value,  # type: ignore[arg-type]
        confidence=confidence, summary=_summary(facts, failed, error, cause, trans),
        error_message=_clip(error.message, 1000), evidence=evidence, suggested_fixes=fixes,
        evidence_gaps=gaps)


def _confidence(cause: RootCause, error: ErrorFact, trans: Transience, gaps: list[str]) -> float:
    if cause.upstream is not None:
        score = 0.8 if cause.upstream.strong else 0.6
    elif cause.via_failed_step:
        score = 0.8
    elif cause.type == "internal":
        score = 0.4
    elif cause.pattern:
        score = 0.7
    else:
        score = 0.85
    if trans.from_history:
        score += 0.05
    if not error.message:
        score -= 0.2
    score -= min(0.2, 0.05 * len(gaps))
    return round(max(0.05, min(0.99, score)), 2)


def _evidence(facts: Facts, failed: StepFacts, error: ErrorFact, cause: RootCause, root: StepFacts,
              trans: Transience) -> list[Evidence]:
    items: list[Evidence] = []
    where = f" (HTTP {error.status_code})" if error.status_code else ""
    items.append(Evidence(event_id=failed.outcome_event_id or error.event_id,
                          fact=f"step '{failed.name}' failed with {error.kind}{where}: "
                               f"{_clip(error.message, 300)}"))
    same = [f for f in failed.attempt_failures if f.kind == error.kind]
    if len(same) > 1:
        items.append(Evidence(event_id=same[0].event_id,
                              fact=f"step '{failed.name}' failed {len(same)} attempts with {error.kind} "
                                   f"({failed.retries} retries)"))
    if cause.upstream is not None:
        for problem in (*cause.chain, cause.upstream):
            step = facts.steps[problem.step]
            items.append(Evidence(event_id=step.result_event_id or step.outcome_event_id or error.event_id,
                                  fact=f"step '{problem.step}' {problem.problem}"))
        items.append(Evidence(event_id=facts.started_event_id or error.event_id,
                              fact=f"step '{failed.name}' reads the output of "
                                   f"{', '.join(repr(r) for r in references(facts, failed))} (playbook)"))
    elif cause.via_failed_step and root.error is not None:
        items.append(Evidence(event_id=root.outcome_event_id or root.error.event_id,
                              fact=f"step '{root.name}' failed first with {root.error.kind}: "
                                   f"{_clip(root.error.message, 200)}"))
    items.extend(trans.evidence)
    if root.recovered:
        ok = root.result_event_id or root.outcome_event_id
        if ok:
            items.append(Evidence(event_id=ok, fact=f"step '{root.name}' succeeded after a failed attempt"))
    if facts.trigger and facts.started_event_id:
        items.append(Evidence(event_id=facts.started_event_id, fact=_started_by(facts.trigger)))
    return items


def _started_by(trigger: dict[str, Any]) -> str:
    """Which trigger started the run (its payload came from the firing, not from a person)."""
    name = f" '{trigger['name']}'" if trigger.get("name") else ""
    when = f", the firing scheduled for {trigger['scheduled_at']}" if trigger.get("scheduled_at") else ""
    return (f"the run was started by the {trigger.get('kind', '')} trigger{name} ({trigger.get('id')}"
            f"{when}); its payload came from that firing")


def _summary(facts: Facts, failed: StepFacts, error: ErrorFact, cause: RootCause, trans: Transience) -> str:
    prefix = f"{error.type}: " if error.type and error.type not in error.message else ""
    first = (error.message or "").strip().splitlines()[0] if (error.message or "").strip() else ""
    what = f"{prefix}{_clip(first, 200)}"
    text = f"Step '{failed.name}' failed ({error.kind}): {what}."
    if cause.upstream is not None:
        text += (f" The root cause is upstream: step '{cause.step}' {cause.upstream.problem}, which "
                 f"'{failed.name}' cannot use (validation).")
    elif cause.via_failed_step:
        text += f" It read the result of step '{cause.step}', which had itself failed ({cause.type})."
    elif cause.type != error.kind:
        text += f" The cause is {_a(cause.type.replace('_', ' '))} error."
    text += f" It is {trans.value}: {trans.reason}."
    return text


def _cancelled(facts: Facts, failed: StepFacts | None, gaps: list[str]) -> Diagnosis:
    name = failed.name if failed else None
    return Diagnosis(execution_id=facts.execution_id, playbook_path=facts.path, status=facts.status,
                     failed_step=name, root_cause_step=name,
                     root_cause_type="cancelled", transience="permanent", confidence=0.9,
                     summary=f"Execution {facts.execution_id} was cancelled on request; nothing failed on "
                             "its own.",
                     evidence=[Evidence(event_id=facts.terminal_event_id or facts.execution_id,
                                        fact="the execution ended with execution.cancelled")],
                     evidence_gaps=gaps)


def _completed(facts: Facts, gaps: list[str]) -> Diagnosis:
    """A completed execution: what slowed it down (retries first, else the longest step)."""
    retried = [s for s in facts.steps.values() if s.attempt_failures]
    if retried:
        step = max(retried, key=lambda s: (len(s.attempt_failures), s.span_ms or 0))
        error = step.attempt_failures[-1]
        kind, _ = refine_kind(error)
        trans = transience(facts, step, kind, error)
        fixes = suggest(facts, failed=step, error=error, root=step, kind=kind, transience=trans.value,
                        upstream=None, recovered=True)
        evidence = [Evidence(event_id=error.event_id,
                             fact=f"step '{step.name}' failed {len(step.attempt_failures)} attempt(s) with "
                                  f"{error.kind}: {_clip(error.message, 200)}")]
        if step.outcome_event_id:
            evidence.append(Evidence(event_id=step.outcome_event_id,
                                     fact=f"step '{step.name}' then succeeded (attempt {step.attempts})"))
        evidence.extend(trans.evidence)
        return Diagnosis(
            execution_id=facts.execution_id, playbook_path=facts.path, status=facts.status,
            root_cause_step=step.name, root_cause_type=kind,  # type: ignore[arg-type]
            transience=trans.value, confidence=0.75,  # type: ignore[arg-type]
            summary=(f"The execution completed, but step '{step.name}' needed {step.attempts} attempts: "
                     f"{len(step.attempt_failures)} failed with {kind} ({_clip(error.message, 120)}). "
                     f"It is {trans.value}: {trans.reason}."),
            error_message=_clip(error.message, 1000), evidence=evidence, suggested_fixes=fixes,
            evidence_gaps=gaps)
    spans = [(s.span_ms or 0.0, s) for s in facts.steps.values() if s.span_ms is not None]
    if not spans:
        return Diagnosis(execution_id=facts.execution_id, playbook_path=facts.path, status=facts.status,
                         confidence=0.9, summary="The execution completed without failures.",
                         evidence_gaps=gaps)
    span, step = max(spans, key=lambda item: item[0])
    total = facts.duration_ms or sum(s for s, _ in spans) or 1.0
    share = min(1.0, span / total)
    fixes = suggest(facts, failed=step, error=None, root=step, kind=None, transience=None, upstream=None)
    return Diagnosis(
        execution_id=facts.execution_id, playbook_path=facts.path, status=facts.status,
        root_cause_step=step.name, confidence=round(0.4 + 0.5 * share, 2),
        summary=(f"The execution completed without failures in {total / 1000:.2f} s; the slowest step is "
                 f"'{step.name}' ({span / 1000:.2f} s, {share:.0%} of the time)."),
        evidence=[Evidence(event_id=step.outcome_event_id or facts.terminal_event_id or facts.execution_id,
                           fact=f"step '{step.name}' ran from {step.first_at} to {step.last_at}")],
        suggested_fixes=fixes, evidence_gaps=gaps)


def _a(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _clip(text: str | None, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"
