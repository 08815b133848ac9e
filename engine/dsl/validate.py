"""Third stage of reading a playbook: canonical data -> the `Playbook` model, errors as located issues.

pydantic's errors are rewritten into the spec's voice: the unknown key with the valid ones, the
unknown tool kind with the known ones, one message per place even when a union has many branches.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from engine.dsl.diagnostics import Issue, Path, did_you_mean, format_path, quote_list
from engine.dsl.model import KEYCHAIN_KINDS, TOOL_KINDS, Playbook

_TYPE_WORDS = {
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "list_type": "a list", "tuple_type": "a list",
    "string_type": "a string", "int_type": "an integer", "int_parsing": "an integer",
    "int_from_float": "an integer", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false", "none_required": "null",
}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    return tp


def _members(tp: Any) -> list[Any]:
    tp = _unwrap(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return [_unwrap(a) for a in get_args(tp)]
    return [tp]


def _field(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def _keys(model: type[BaseModel]) -> list[str]:
    keys = [info.alias or name for name, info in model.model_fields.items()]
    return sorted(keys, key=lambda k: k != "kind")


def _kind_of(model: type[BaseModel]) -> tuple[str, ...]:
    ann = _field(model, "kind")
    if ann is not None and get_origin(ann) is Literal:
        return tuple(get_args(ann))
    return ()


def _model_at(path: Sequence[str | int], data: Any) -> type[BaseModel] | None:
    """The model class whose instance sits at `path` of the canonical document, if any."""
    current: Any = Playbook
    node = data
    for seg in path:
        candidates = _members(current)
        nxt: Any = None
        for cand in candidates:
            origin = get_origin(cand)
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                if isinstance(seg, str):
                    ann = _field(cand, seg)
                    if ann is not None:
                        nxt = ann
                        break
            elif origin in (list, tuple) and isinstance(seg, int):
                nxt = get_args(cand)[0]
                break
            elif origin is dict and isinstance(seg, str):
                nxt = get_args(cand)[1]
                break
        if nxt is None:
            return None
        current = nxt
        node = node.get(seg) if isinstance(node, dict) else (
            node[seg] if isinstance(node, list) and isinstance(seg, int) and seg < len(node) else None)
    models = [m for m in _members(current) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) == 1:
        return models[0]
    kind = node.get("kind") if isinstance(node, dict) else None
    for model in models:
        if kind in _kind_of(model):
            return model
    return None


def _strip(loc: Sequence[str | int], data: Any, keep_last: bool) -> Path:
    """Drop pydantic's union labels (segments that are not keys of the data) from an error loc."""
    out: list[str | int] = []
    node = data
    for i, seg in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and seg in node:
            out.append(seg)
            node = node[seg]
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            out.append(seg)
            node = node[seg]
        elif last and keep_last:
            out.append(seg)
        # else: a union member label; skip it
    return tuple(out)


def _value_at(data: Any, path: Path) -> Any:
    node = data
    for seg in path:
        if isinstance(node, dict) and seg in node:
            node = node[seg]
        elif isinstance(node, list) and isinstance(seg, int) and seg < len(node):
            node = node[seg]
        else:
            return None
    return node


def _translate(err: Mapping[str, Any], data: Any) -> Issue | None:
    etype: str = err["type"]
    loc = err["loc"]
    ctx = err.get("ctx") or {}
    if etype == "missing":
        path = _strip(loc, data, keep_last=True)
        key = path[-1] if path else "?"
        parent = path[:-1]
        if key == "tool" and parent[:1] == ("workflow",):
            return None  # a step without a tool runs as noop; only one with `retry` is left here (reported)
        if key == "tool" and parent[:1] == ("workbook",):
            return Issue(parent, "this workbook task has no 'tool'; every workbook task needs one",
                         "missing_tool")
        if key == "in" and parent[-1:] == ("loop",):
            return Issue(parent, "'loop' has no 'in'; give the list to iterate over, e.g. "
                                 "in: \"{{ workload.items }}\"", "loop_without_in")
        if key == "claim" and parent[-1:] == ("cursor",):
            return Issue(parent, "the cursor has no 'claim'; give the SQL that claims and returns the next "
                                 "rows atomically, e.g. UPDATE work SET status = 'claimed' WHERE id = "
                                 "(SELECT id ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id", "missing_key")
        return Issue(parent, f"missing required key '{key}'", "missing_key")
    if etype == "extra_forbidden":
        path = _strip(loc, data, keep_last=True)
        key = str(path[-1]) if path else "?"
        model = _model_at(path[:-1], data)
        valid = _keys(model) if model else []
        where = "" if model is not Playbook else " at the top level"
        hint = did_you_mean(key, valid)
        return Issue(path, f"unknown key '{key}'{where}{hint or ';'} valid keys: {quote_list(valid)}",
                     "unknown_key", on_key=True)
    path = _strip(loc, data, keep_last=False)
    if etype == "union_tag_invalid":
        tag = ctx.get("tag")
        if path[-1:] == ("kind",) or ctx.get("discriminator") == "'kind'":
            kind_path = path if path[-1:] == ("kind",) else path + ("kind",)
            is_keychain = "keychain" in path
            known = KEYCHAIN_KINDS if is_keychain else TOOL_KINDS
            what = "keychain kind" if is_keychain else "tool kind"
            hint = did_you_mean(str(tag), known) or ";"
            return Issue(kind_path, f"unknown {what} '{tag}'{hint} supported kinds: {quote_list(known)}",
                         "unknown_keychain_kind" if is_keychain else "unknown_tool_kind")
    if etype == "union_tag_not_found":
        return Issue(path, "missing required key 'kind'", "missing_key")
    value = _value_at(data, path)
    if etype == "literal_error":
        expected = ctx.get("expected", "")
        return Issue(path, f"invalid value {_describe(value)}; expected one of {expected}",
                     "invalid_value")
    if etype in _TYPE_WORDS:
        return Issue(path, f"expected {_TYPE_WORDS[etype]}, got {_describe(value)}", "invalid_type")
    if etype == "too_short":
        return Issue(path, "must not be empty", "invalid_value")
    if etype == "string_pattern_mismatch":
        return Issue(path, f"invalid value {_describe(value)}; use only letters, digits, '_', '.' "
                           "and '-'", "invalid_value")
    if etype in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        word = {"greater_than_equal": "at least", "greater_than": "more than",
                "less_than_equal": "at most", "less_than": "less than"}[etype]
        bound = next(iter(ctx.values()), "?")
        return Issue(path, f"must be {word} {bound}, got {_describe(value)}", "invalid_value")
    if etype == "value_error":
        message = str(err.get("msg", "")).removeprefix("Value error, ")
        return Issue(path, message, "invalid_value")
    return Issue(path, str(err.get("msg", etype)), "invalid_value")


def _merge_type_errors(issues: list[Issue]) -> list[Issue]:
    """A union's branches each complain about the same value: keep one message per place."""
    merged: list[Issue] = []
    seen: dict[Path, int] = {}
    for issue in issues:
        if issue.code == "invalid_type" and issue.path in seen:
            first = merged[seen[issue.path]]
            expected = issue.message.split(", got ")[0].removeprefix("expected ")
            head, _, got = first.message.partition(", got ")
            if expected not in head:
                merged[seen[issue.path]] = Issue(first.path, f"{head} or {expected}, got {got}",
                                                 first.code)
            continue
        if issue.code == "invalid_type":
            seen[issue.path] = len(merged)
        merged.append(issue)
    # a place with a precise message, at it or inside it, needs no generic type complaint from another
    # union branch (`libs: {x: {from: m}}` is a mapping missing `import`, not "expected a list")
    precise = {i.path for i in merged if i.code != "invalid_type"}
    return [i for i in merged if i.code != "invalid_type"
            or not any(p[:len(i.path)] == i.path for p in precise)]


def validate_model(data: Any) -> tuple[Playbook | None, list[Issue]]:
    """Build the model; on failure return every problem as an issue at its canonical path."""
    if not isinstance(data, dict):
        return None, [Issue((), f"a playbook must be a YAML mapping, got {_describe(data)}",
                            "invalid_type")]
    try:
        return Playbook.model_validate(data), []
    except ValidationError as exc:
        issues = [i for i in (_translate(e, data) for e in exc.errors(include_url=False)) if i]
        unique: dict[tuple[Path, str], Issue] = {}
        for issue in issues:
            unique.setdefault((issue.path, issue.message), issue)
        return None, _merge_type_errors(list(unique.values()))


__all__ = ["validate_model", "format_path"]
