"""Synchronous code inside an actor calling the async actor API.

Switched on by the ``greenback`` dependency group. The runtime calls
``prepare_task()`` at the start of every RPC task, which gives that task a
greenback portal; synchronous code running in the task (a sync RPC
function, a sync callback, a library hook) can then ``block_on`` a
coroutine such as ``portal.run(...)``. Code in a ``trio.to_thread`` worker
thread needs no greenback: it hands the coroutine to the trio thread.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Coroutine
from typing import Any, TypeVar

import trio

T = TypeVar("T")

ENABLED: bool = importlib.util.find_spec("greenback") is not None


async def prepare_task() -> None:
    """Give the current task a greenback portal (no-op without greenback)."""
    if ENABLED:
        import greenback

        await greenback.ensure_portal()


async def _await[T](coro: Coroutine[Any, Any, T]) -> T:
    return await coro


def _in_trio_task() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def block_on[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code inside an actor.

    In a trio task with a greenback portal it is awaited through the
    portal; in a ``trio.to_thread`` worker thread it runs in the trio thread.
    Anywhere else this raises RuntimeError (and closes ``coro``).
    """
    if _in_trio_task():
        if ENABLED:
            import greenback

            if greenback.has_portal():
                result: T = greenback.await_(coro)
                return result
            reason = "this task has no greenback portal; await backends.syncbridge.prepare_task() in it first"
        else:
            reason = (
                "greenback is not installed (install the 'greenback' dependency "
                "group) so synchronous code in a trio task cannot await"
            )
        coro.close()
        raise RuntimeError(f"block_on: {reason}")
    try:
        trio.from_thread.check_cancelled()
    except RuntimeError as exc:
        coro.close()
        raise RuntimeError(
            f"block_on: not inside an actor's trio task or a trio.to_thread worker thread ({exc})"
        ) from None
    return trio.from_thread.run(_await, coro)
