"""Background tasks a part starts and must end on stop, cancelled and awaited within a bound.

So a stop never waits on a task that ignores its cancellation (issue 18: an agent must exit after SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from common.cancel import stop_task, within

logger = logging.getLogger(__name__)
T = TypeVar("T")


class TaskSet:
    """The tasks one part started and that have not finished yet."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Run `coro` in a task of its own, kept here until it ends."""
        task = asyncio.create_task(coro, name=name)
        self.add(task)
        return task

    def add(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for every task, also those the finishing ones start meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._tasks:
                    await asyncio.wait(set(self._tasks))
                    await asyncio.sleep(0)  # their done callbacks may start more

    async def cancel(self, timeout_s: float) -> None:
        """Cancel every task and wait up to `timeout_s` for them to end."""
        tasks = list(self._tasks)
        await asyncio.gather(*(stop_task(t, f"{self.what}: task {t.get_name()}", timeout_s) for t in tasks))


async def bounded_step(step: Awaitable[None], timeout_s: float, what: str) -> None:
    """Await one stop step for at most `timeout_s`; a step that overruns is logged and left behind."""
    try:
        await within(step, timeout_s)
    except TimeoutError:
        logger.error("stopping: %s took over %.0f s; going on without it", what, timeout_s)
