"""Stopping a task so that its cancel is not lost, and time limits that do not swallow a cancel.

On Python 3.11 `asyncio.wait_for` returns the inner result when a cancel arrives in the same loop iteration
as that result (CPython gh-86296), so one `task.cancel()` can be dropped by any call that uses it: aiomqtt's
publish, connect and disconnect waits do. A stop that awaits a task after a single cancel then waits for
ever. `stop_task` cancels again while the task runs, within a bound; `within` is the time limit our own
code uses instead of `wait_for` (it is built on `asyncio.timeout`, which keeps an outer cancel).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")
STOP_WAIT_S = 10.0  # how long a stop waits for a cancelled task before it gives up on it (logged)
RECANCEL_S = 1.0  # how long a cancelled task gets (for its own bounded clean-up) before it is cancelled again


async def within(awaitable: Awaitable[T], timeout_s: float) -> T:
    """Await `awaitable` for at most `timeout_s` seconds (`TimeoutError` after), keeping an outer cancel."""
    async with asyncio.timeout(timeout_s):
        return await awaitable


async def stop_task(task: asyncio.Task[Any], what: str, timeout_s: float = STOP_WAIT_S) -> bool:
    """Cancel a task and wait until it ends; True if it did within `timeout_s`.

    The task is cancelled again every `RECANCEL_S` while it runs (a library may have dropped the cancel);
    each extra cancel is logged. Clean-up that must outlast cancels (a decoder thread's exit) shields itself.
    Its outcome is read, so no error goes unreported.
    """
    deadline = time.monotonic() + timeout_s
    task.cancel()
    while True:
        await asyncio.wait([task], timeout=RECANCEL_S)
        if task.done():
            break
        if time.monotonic() > deadline:
            logger.error("%s did not stop within %.0f s of its cancel", what, timeout_s)
            return False
        logger.warning("%s still runs %.0f s after its cancel; cancelling it again", what, RECANCEL_S)
        task.cancel()
    if not task.cancelled() and task.exception() is not None:
        logger.warning("%s ended with %r", what, task.exception())
    return True
