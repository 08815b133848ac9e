"""The noop tool (spec section 3): returns its `result`, or `{}` when it has none."""

from __future__ import annotations

import logging

from engine.protocol.results import ResultEnvelope
from engine.tools.base import ToolCall
from engine.tools.support import Attempt, guarded
from engine.tools.values import to_json_value

log = logging.getLogger(__name__)


class NoopTool:
    kind = "noop"

    async def run(self, call: ToolCall) -> ResultEnvelope:
        return await guarded(call, self._run)

    async def _run(self, attempt: Attempt) -> ResultEnvelope:
        result = attempt.config.get("result")
        return ResultEnvelope.ok({} if result is None else to_json_value(result, strict=False))
