"""The static checks of spec section 14 that go beyond the schema, run on the canonical data.

They read the data defensively, so they run even when the model has other errors: every problem of
a document is reported at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from engine.dsl.diagnostics import Issue, Path, Severity, did_you_mean, quote_list
from engine.dsl.model import FALLBACK_STORE_KINDS, IDENTIFIER, TOOL_KINDS
from engine.dsl.templates import TemplateRenderer, is_template
from engine.net.compile import successors_of

_RENDERER = TemplateRenderer()
_NOT_TEMPLATES = {("code",), ("assert",)}  # python source and contracts (names) are not rendered
_REMOTE = ("gs://", "s3://", "https://", "http://", "ftp://", "az://", "abfs://")


def _dicts(items: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield i, item


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _tasks(holder: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return list(_dicts(holder.get("tool")))


def task_label(task: dict[str, Any], index: int, step_name: str, count: int) -> str:
    name = task.get("name")
    if isinstance(name, str) and name:
        return name
    return step_name if count == 1 else f"task_{index}"


class _Checker:
    def __init__(self, doc: dict[str, Any], available_kinds: Iterable[str]) -> None:
        self.doc = doc
        self.available = set(available_kinds)
        self.issues: list[Issue] = []
        self.steps: dict[str, int] = {}
        self.workbook: dict[str, int] = {}

    def add(self, path: Path, message: str, code: str, severity: Severity = "error",
            on_key: bool = False) -> None:
        self.issues.append(Issue(path, message, code, severity, on_key))

    def run(self) -> list[Issue]:
        workflow = list(_dicts(self.doc.get("workflow")))
        for i, step in workflow:
            name = step.get("step")
            if not isinstance(name, str):
                continue
            if name in self.steps:
                self.add(("workflow", i, "step"), f"duplicate step name '{name}' (also "
                         f"workflow[{self.steps[name]}]); step names must be unique", "duplicate_step")
            else:
                self.steps[name] = i
        for i, task in _dicts(self.doc.get("workbook")):
            name = task.get("name")
            if isinstance(name, str):
                if name in self.workbook:
                    self.add(("workbook", i, "name"), f"duplicate workbook task '{name}' (also "
                             f"workbook[{self.workbook[name]}])", "duplicate_task")
                else:
                    self.workbook[name] = i
        for i, step in workflow:
            self.step(step, ("workflow", i))
        for i, task in _dicts(self.doc.get("workbook")):
            self.pipeline(task, ("workbook", i), str(task.get("name", "")), in_workbook=True)
        self.executor()
        self.templates(self.doc, ())
        if not [i for i in self.issues if i.severity == "error"]:
            self.reachability(workflow)
        return self.issues

    # -------------------------------------------------------------------------------- steps
    def step(self, step: dict[str, Any], path: Path) -> None:
        name = str(step.get("step", ""))
        if name and not IDENTIFIER.match(name):
            self.add(path + ("step",), f"step name '{name}' is not a plain name, so templates "
                     "cannot read its result as {{ " + name + " }}; use letters, digits and '_'",
                     "step_name", "warning")
        nxt = step.get("next")
        if isinstance(nxt, dict):
            for k, arc in _dicts(nxt.get("arcs")):
                target = arc.get("step")
                if isinstance(target, str) and target not in self.steps:
                    self.add(path + ("next", "arcs", k, "step"),
                             f"unknown step '{target}'{did_you_mean(target, self.steps)}",
                             "unknown_step")
        self.loop(step, path)
        self.pipeline(step, path, name, in_workbook=False)
        outputs = [(path + ("output",), step.get("output"))] + [
            (path + ("tool", j, "output"), task.get("output")) for j, task in _dicts(step.get("tool"))]
        for opath, output in outputs:
            store = output.get("store") if isinstance(output, dict) else None
            kind = store.get("kind") if isinstance(store, dict) else None
            if kind in FALLBACK_STORE_KINDS:
                self.add(opath + ("store", "kind"), f"output.store.kind '{kind}' is not a store here: large "
                         "results go to the default store (files under the data directory)",
                         "store_fallback", "warning")

    def loop(self, step: dict[str, Any], path: Path) -> None:
        """A loop iterates `in`, or claims rows with a `cursor` (spec 6, 6.1): exactly one of them."""
        loop = step.get("loop")
        if not isinstance(loop, dict):
            return
        lpath = path + ("loop",)
        spec = _mapping(loop.get("spec"))
        mode = spec.get("mode")
        if loop.get("cursor") is None:
            if "in" not in loop:
                self.add(lpath, "'loop' has no 'in'; give the list to iterate over, e.g. "
                         "in: \"{{ workload.items }}\" (or a 'cursor' that claims rows from a work queue)",
                         "loop_without_in")
            if mode == "cursor":
                self.add(lpath + ("spec", "mode"), "mode: cursor needs 'loop.cursor': {kind: postgres, "
                         "auth: <credential>, claim: <SQL that claims and returns the next rows>}",
                         "loop_without_cursor")
            if "frame" in spec:
                self.add(lpath + ("spec", "frame"), "'frame' belongs to cursor loops (mode: cursor with "
                         "'loop.cursor'); remove it from this loop over 'in'", "frame_without_cursor",
                         on_key=True)
            return
        if "in" in loop:
            self.add(lpath + ("in",), "a cursor loop claims its rows with 'cursor.claim' and takes no 'in'; "
                     "remove 'in', or remove 'cursor' to iterate over a list", "cursor_with_in", on_key=True)
        for j, task in _tasks(step):
            if task.get("kind") == "playbook":
                self.add(path + ("tool", j, "kind"), "a cursor loop runs its rows on the claimer's worker; "
                         "a playbook call cannot be its tool (call the playbook from a step after the loop)",
                         "unsupported")
        if mode in ("sequential", "parallel"):
            self.add(lpath + ("spec", "mode"), f"a cursor loop runs in mode: cursor, not '{mode}'; its "
                     "max_in_flight says how many claimers work at once", "invalid_value")

    def pipeline(self, holder: dict[str, Any], path: Path, name: str, *, in_workbook: bool) -> None:
        tasks = _tasks(holder)
        labels: dict[str, int] = {}
        for j, task in tasks:
            label = task_label(task, j, name, len(tasks))
            if label in labels and task.get("kind") != "workbook":
                self.add(path + ("tool", j, "name"), f"duplicate task name '{label}' in this "
                         f"pipeline (also tool[{labels[label]}]); task names must be unique",
                         "duplicate_task")
            labels.setdefault(label, j)
        for j, task in tasks:
            tpath = path + ("tool", j)
            kind = task.get("kind")
            if kind == "workbook":
                target = task.get("name")
                if in_workbook:
                    self.add(tpath + ("kind",), "a workbook task cannot itself be a workbook call; "
                             "give it a tool of its own", "workbook_in_workbook")
                elif isinstance(target, str) and not is_template(target) \
                        and target not in self.workbook:
                    known = f"workbook tasks: {quote_list(self.workbook)}" if self.workbook else \
                        "this playbook has no workbook section"
                    self.add(tpath + ("name",), f"unknown workbook task '{target}'"
                             f"{did_you_mean(target, self.workbook) or ';'} {known}",
                             "unknown_workbook_task")
            elif isinstance(kind, str) and kind in TOOL_KINDS and kind not in self.available:
                self.add(tpath + ("kind",), f"tool kind '{kind}' is not installed here; "
                         f"install its extra (pip install 'noetl[{kind}]')", "tool_not_installed",
                         "warning")
            script = task.get("script")
            if isinstance(script, dict) and isinstance(script.get("uri"), str):
                uri = script["uri"]
                if uri.startswith(_REMOTE):
                    self.add(tpath + ("script", "uri"), f"remote script '{uri}' is not supported: the "
                             "step fails when it runs; use a local path, a file:// URI or an inline "
                             "source", "unsupported", "warning")
            spec = task.get("spec")
            policy = spec.get("policy") if isinstance(spec, dict) else None
            rules = policy.get("rules") if isinstance(policy, dict) else None
            for r, rule in _dicts(rules):
                then = rule.get("then")
                if not isinstance(then, dict) and isinstance(rule.get("else"), dict):
                    then = rule["else"].get("then")
                    rpath = tpath + ("spec", "policy", "rules", r, "else", "then", "to")
                else:
                    rpath = tpath + ("spec", "policy", "rules", r, "then", "to")
                if isinstance(then, dict) and then.get("do") == "jump":
                    to = then.get("to")
                    if isinstance(to, str) and to not in labels:
                        self.add(rpath, f"unknown jump target '{to}'{did_you_mean(to, labels) or ';'} "
                                 f"tasks of this pipeline: {quote_list(labels)}", "unknown_jump_target")

    # -------------------------------------------------------------------------------- executor
    def executor(self) -> None:
        executor = self.doc.get("executor")
        if not isinstance(executor, dict):
            return
        spec = executor.get("spec")
        if isinstance(spec, dict):
            for key in ("entry_step", "final_step"):
                target = spec.get(key)
                if isinstance(target, str) and target not in self.steps:
                    self.add(("executor", "spec", key), f"unknown step '{target}'"
                             f"{did_you_mean(target, self.steps)}", "unknown_step")
        requires = executor.get("requires")
        if isinstance(requires, dict) and isinstance(requires.get("tools"), list):
            for k, kind in enumerate(requires["tools"]):
                if not isinstance(kind, str) or kind not in self.available:
                    self.add(("executor", "requires", "tools", k),
                             f"required tool '{kind}' is not installed here; installed tools: "
                             f"{quote_list(sorted(self.available))}", "tool_not_installed")

    # -------------------------------------------------------------------------------- templates
    def templates(self, node: Any, path: Path) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if (key,) in _NOT_TEMPLATES and path[:1] in (("workflow",), ("workbook",)):
                    continue
                if path == () and key in ("metadata", "tracing"):
                    continue
                self.templates(value, path + (key,))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                self.templates(value, path + (i,))
        elif is_template(node):
            error = _RENDERER.syntax_error(node)
            if error:
                self.add(path, error, "template_syntax")

    # -------------------------------------------------------------------------------- graph
    def reachability(self, workflow: list[tuple[int, dict[str, Any]]]) -> None:
        edges: dict[str, list[str]] = {}
        for _, step in workflow:
            nxt = step.get("next")
            arcs = nxt.get("arcs") if isinstance(nxt, dict) else None
            edges[str(step.get("step"))] = [str(a.get("step")) for _, a in _dicts(arcs)]
        if not workflow:
            return
        executor = _mapping(self.doc.get("executor"))
        spec = _mapping(executor.get("spec"))
        entry = spec.get("entry_step")
        if not isinstance(entry, str):
            entry = str(workflow[0][1].get("step"))
        final = spec.get("final_step")
        starts = [entry] + ([final] if isinstance(final, str) else [])
        reachable = successors_of(edges, starts)
        for i, step in workflow:
            name = str(step.get("step"))
            if name not in reachable:
                self.add(("workflow", i, "step"), f"step '{name}' is unreachable: no arc from "
                         f"'{entry}' leads to it", "unreachable_step", "warning")
        for i, step in workflow:
            nxt = step.get("next")
            if not (isinstance(nxt, dict) and isinstance(nxt.get("spec"), dict)
                    and nxt["spec"].get("mode") == "inclusive"):
                continue
            targets = sorted({t for t in edges.get(str(step.get("step")), [])})
            if len(targets) < 2:
                continue
            common = set.intersection(*(successors_of(edges, [t]) for t in targets))
            if not common:
                self.add(("workflow", i, "next"), f"fan-out to {quote_list(targets)} has no join: "
                         "the branches never meet again, so no step sees all their results",
                         "fan_out_without_join", "warning")


def check_document(doc: Any, *, available_kinds: Iterable[str] = TOOL_KINDS) -> list[Issue]:
    """Static problems of a canonical document (errors and warnings), at canonical paths."""
    if not isinstance(doc, dict):
        return []
    return _Checker(doc, available_kinds).run()
