"""What the tool modules share: the output base model and the annotations of read-only and writing tools."""

from __future__ import annotations

from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                       open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                        open_world_hint=False)


class Out(BaseModel):
    """A tool's structured output: the fields the API documents; anything more it sends is kept."""

    model_config = ConfigDict(extra="allow")
