"""A stop ends a task that dropped a cancel, and `within` keeps a cancel that arrives with the result."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from common.cancel import stop_task, within


async def drops_one_cancel() -> None:
    with contextlib.suppress(asyncio.CancelledError):  # as asyncio.wait_for can on Python 3.11
        await asyncio.sleep(30)
    await asyncio.sleep(30)


async def test_a_task_that_dropped_a_cancel_is_cancelled_again_and_ends():
    task = asyncio.create_task(drops_one_cancel())
    await asyncio.sleep(0)
    assert await stop_task(task, "the test task", timeout_s=5)
    assert task.cancelled()


async def test_a_task_that_ignores_every_cancel_is_given_up_after_the_bound():
    released = asyncio.Event()

    async def ignores_cancels() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()

    task = asyncio.create_task(ignores_cancels())
    await asyncio.sleep(0)
    assert await stop_task(task, "the stubborn task", timeout_s=0.5) is False
    assert not task.done()
    released.set()  # leave nothing running
    await task


async def test_a_cancel_that_arrives_with_the_result_is_kept():
    result: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(within(result, 5))
    await asyncio.sleep(0)  # the task now waits for the result
    result.set_result(1)
    task.cancel()  # in the same loop iteration as the result
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_within_raises_timeout_after_the_limit():
    with pytest.raises(TimeoutError):
        await within(asyncio.sleep(5), 0.05)
