"""The JSON Schema of the playbook language for editors: the canonical model plus the short forms."""

from __future__ import annotations

import copy
from typing import Any

from engine.dsl.model import CURSOR_KINDS, TOOL_KINDS, Playbook
from engine.dsl.normalize import RETRY_BACKOFFS, RETRY_KEYS, TOOL_ALIASES

_RETRY = {
    "type": "object",
    "description": "Short form of one rule: error -> retry (spec sections 12 and 16).",
    "properties": {
        **{k: {"type": "number", "minimum": 0} for k in RETRY_KEYS},
        "retry_on_status": {"type": "array", "items": {"type": "integer"}},
        "retry_on": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "backoff": {"anyOf": [{"type": "number", "minimum": 0}, {"enum": list(RETRY_BACKOFFS)}]},
    },
    "additionalProperties": False,
}
_TOOL_MODELS = {
    "python": "PythonTool", "http": "HttpTool", "postgres": "PostgresTool", "duckdb": "DuckdbTool",
    "clickhouse": "ClickhouseTool", "qdrant": "QdrantTool", "shell": "ShellTool",
    "workbook": "WorkbookTool", "playbook": "PlaybookTool", "noop": "NoopTool",
    "snowflake": "SnowflakeTool", "nats": "NatsTool",
}


def playbook_json_schema() -> dict[str, Any]:
    schema = Playbook.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "NoETL playbook (noetl.io/v2)"
    defs = schema["$defs"]
    meta = defs["Metadata"]["properties"]
    meta["version"] = {"type": ["string", "number", "null"]}
    meta["tags"] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    defs["StepSpec"]["properties"]["lifecycle"] = {
        "type": "object", "properties": {"timeout_s": {"type": "number", "exclusiveMinimum": 0}},
        "additionalProperties": False}
    defs["PythonTool"]["properties"]["libs"] = {"anyOf": [
        {"type": "object", "additionalProperties": {"anyOf": [
            {"type": "string"},
            {"type": "object", "properties": {"from": {"type": "string"}, "import": {"type": "string"}},
             "required": ["from", "import"], "additionalProperties": False}]}},
        {"type": "array", "items": {"type": "string"}}]}
    # a loop iterates `in` or claims rows with a `cursor` (spec 6, 6.1): exactly one of them
    defs["Loop"]["properties"]["in"] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {}}]}
    defs["Loop"]["properties"]["cursor"] = {"$ref": "#/$defs/LoopCursor"}
    defs["Loop"]["oneOf"] = [{"required": ["in"]}, {"required": ["cursor"]}]
    defs["LoopCursor"]["properties"]["kind"] = {"type": "string", "enum": list(CURSOR_KINDS)}
    defs["LoopCursor"]["anyOf"] = [{"required": ["auth"]}, {"required": ["connection_string"]}]
    for kind, model in _TOOL_MODELS.items():
        props = defs[model]["properties"]
        props["retry"] = _RETRY
        required = defs[model].get("required", [])
        for alias, canonical in {**TOOL_ALIASES["*"], **TOOL_ALIASES.get(kind, {})}.items():
            if canonical in props:
                props[alias] = copy.deepcopy(props[canonical])
            if canonical in required:  # the alias satisfies the requirement too
                required.remove(canonical)
                defs[model].setdefault("allOf", []).append(
                    {"anyOf": [{"required": [canonical]}, {"required": [alias]}]})
        spec = props.get("spec")
        if spec is not None:  # tool configuration may also be nested under the tool's spec
            props["spec"] = {"type": "object", "properties": {"policy": {"$ref": "#/$defs/TaskPolicy"}},
                             "additionalProperties": True}
    # NoETL writes an else rule's action directly under `else` too (spec 7)
    defs["RuleElse"] = {"anyOf": [defs["RuleElse"], {"$ref": "#/$defs/RuleThen"}]}
    tool_ref = defs["Step"]["properties"]["tool"]["items"]
    tool_short = {"anyOf": [{"type": "string", "enum": list(TOOL_KINDS)}, tool_ref,
                            {"type": "array", "items": tool_ref, "minItems": 1}]}
    arc_short = {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/Arc"}]}
    defs["Arc"]["properties"]["cond"] = {"type": ["string", "boolean"]}
    defs["Arc"]["properties"]["args"] = {"type": "object"}
    for name in ("Step", "WorkbookTask"):
        canonical = defs[name]
        canonical["properties"]["tool"] = tool_short
        canonical["properties"]["retry"] = _RETRY
        if name == "Step":  # a step without a tool is a routing step (spec 2)
            canonical["required"] = [k for k in canonical.get("required", []) if k != "tool"]
            canonical["properties"]["next"] = {"anyOf": [
                {"type": "string"}, {"type": "array", "items": arc_short}, {"$ref": "#/$defs/Next"}]}
        short = copy.deepcopy(canonical)
        short["properties"]["tool"] = {"type": "string", "enum": list(TOOL_KINDS)}
        short["additionalProperties"] = True
        short["description"] = ("Short form: `tool: <kind>` with the tool's keys at this level "
                                "(spec section 12).")
        defs[name] = {"anyOf": [canonical, short]}
    return schema
