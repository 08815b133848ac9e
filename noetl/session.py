"""The stack a local command talks through (store and bus), opened again fresh after an outage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from noetl.outage import outage_of

if TYPE_CHECKING:
    from control_plane.stack import Stack, StackConfig

T = TypeVar("T")


class Session:
    """`await session.call(lambda stack: ...)` opens the stack on first use. With `reopen` (the command
    only submits and reads: the dev stack runs everything), a stack whose call met an outage is closed
    and the next call opens a fresh one, so no call waits out a connection pool's reconnection backoff;
    a stack that hosts the orchestrator and workers is kept. Close it with `await session.close()`."""

    def __init__(self, config: StackConfig, *, reopen: bool) -> None:
        self.config = config
        self.reopen = reopen
        self._stack: Stack | None = None

    async def stack(self) -> Stack:
        if self._stack is None:
            from control_plane.stack import Stack

            stack = Stack(self.config)
            await stack.__aenter__()  # what fails to start is closed again (Stack.__aenter__)
            self._stack = stack
        return self._stack

    async def call(self, action: Callable[[Stack], Awaitable[T]]) -> T:
        stack = await self.stack()
        try:
            return await action(stack)
        except Exception as exc:
            if self.reopen and outage_of(exc) is not None:
                await self.close()
            raise

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.close()
