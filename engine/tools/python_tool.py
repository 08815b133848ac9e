"""The python tool (spec 3.1): a rendered call → a request to a pooled child interpreter → an envelope.

The code runs in a separate process (see `python_runner` for the rules inside it and `python_pool` for
the processes); `print` output comes back in `meta.stdout` (and `meta.stderr` when there is any).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from engine.protocol.results import ResultEnvelope
from engine.tools.base import ToolCall
from engine.tools.python_pool import PoolClosedError, PythonPool
from engine.tools.support import Attempt, ToolFailure, guarded, script_text
from engine.tools.values import to_json_value

log = logging.getLogger(__name__)


class PythonTool:
    kind = "python"

    def __init__(self, pool: PythonPool) -> None:
        self.pool = pool

    async def run(self, call: ToolCall) -> ResultEnvelope:
        return await guarded(call, self._run)

    async def _run(self, attempt: Attempt) -> ResultEnvelope:
        config = attempt.config
        code, filename = _source(config)
        libs = _libs(config.get("libs"))
        request = {
            "code": code,
            "filename": filename,
            "input": to_json_value(dict(attempt.call.input), strict=False),
            "context": to_json_value(dict(attempt.call.context), strict=False),
            "libs": libs,
            "cwd": str(attempt.call.work_dir) if attempt.call.work_dir else None,
        }
        try:
            reply = await self.pool.run(request, attempt.timeout)
        except PoolClosedError as exc:
            raise ToolFailure("internal", f"the python tool cannot run: {exc}") from None
        meta = _output_meta(reply)
        if reply.get("status") == "ok":
            return ResultEnvelope.ok(reply.get("data"), **meta)
        return ResultEnvelope.fail(
            str(reply.get("kind") or "python_exception"), str(reply.get("message") or "the code failed"),
            retryable=reply.get("retryable"), type=reply.get("type"), traceback=reply.get("traceback"),
            **meta)


def _source(config: Mapping[str, Any]) -> tuple[str, str]:
    code = config.get("code")
    script = config.get("script")
    if code is not None and script is not None:
        raise ToolFailure("validation", "a python tool takes one of 'code' or 'script: {uri}', not both")
    if isinstance(code, str):
        return code, "<python step>"
    if script is not None:
        return script_text(script)
    raise ToolFailure("validation", "a python tool needs 'code' (source text) or 'script: {uri}'")


def _libs(libs: Any) -> list[list[str | None]]:
    """`libs` as [alias, module, name or None] (spec 16): `{alias: module}`, `{alias: {from: module,
    import: name}}` (from module import name as alias), or a list of modules (each under its own name)."""
    if not libs:
        return []
    if isinstance(libs, list) and all(isinstance(m, str) for m in libs):
        return [[m.split(".")[0], m, None] for m in libs]
    if isinstance(libs, Mapping):
        out: list[list[str | None]] = []
        for alias, lib in libs.items():
            if isinstance(lib, str):
                out.append([str(alias), lib, None])
            elif isinstance(lib, Mapping) and isinstance(lib.get("from"), str) \
                    and isinstance(lib.get("import"), str):
                out.append([str(alias), lib["from"], lib["import"]])
            else:
                raise ToolFailure("validation", f"libs.{alias}: give a module name or "
                                                "{from: module, import: name}")
        return out
    raise ToolFailure("validation", "libs must map an alias to a module (e.g. {pd: pandas}, "
                                    "{np_array: {from: numpy, import: array}}) or list module names")


def _output_meta(reply: Mapping[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"stdout": reply.get("stdout") or ""}
    if reply.get("stderr"):
        meta["stderr"] = reply["stderr"]
    if reply.get("output_truncated"):
        meta["output_truncated"] = True
    return meta
