"""The greenback group: synchronous code inside an actor calling the async actor API."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel

import backends
from backends import syncbridge
from tests.backends import _actors
from tests.backends._harness import trio_test


@trio_test(timeout=20)
async def test_worker_thread_calls_portal_run(spawn_backend):
    # Needs no greenback: the thread hands the coroutine to the trio thread.
    async with backends.open_nursery() as an:
        assert await an.run_in_actor(_actors.thread_calls_async_api, 20, 22) == 42


def test_block_on_outside_any_actor_refuses_clearly():
    async def nothing():
        return None

    with pytest.raises(RuntimeError, match="not inside an actor's trio task"):
        syncbridge.block_on(nothing())


@trio_test(timeout=20)
async def test_sync_code_in_an_actor_task_spawns_and_calls_through_greenback(spawn_backend):
    pytest.importorskip("greenback")
    async with backends.open_nursery() as an:
        portal = await an.start_actor("sync-host")
        # A sync RPC function that opens a nursery and runs a grandchild.
        assert await portal.run(_actors.sync_calls_async_api, 1, 2) == 3
        # A sync callback called from async code, awaiting portal.run through the portal.
        assert await portal.run(_actors.callback_calls_async_api, 3, 4) == 7
        await portal.cancel_actor()


@trio_test(timeout=20)
async def test_without_greenback_sync_code_in_a_task_gets_a_clear_error(spawn_backend):
    if syncbridge.ENABLED:
        pytest.skip("greenback is installed: the bridge works instead of refusing")
    async with backends.open_nursery() as an:
        message = await an.run_in_actor(_actors.block_on_without_portal)
    assert "greenback is not installed" in message


def test_prepare_task_gives_the_task_a_portal():
    greenback = pytest.importorskip("greenback")

    async def value():
        await trio.lowlevel.checkpoint()
        return "awaited"

    async def main():
        assert not greenback.has_portal()
        await syncbridge.prepare_task()
        assert greenback.has_portal()
        return syncbridge.block_on(value())

    assert trio.run(main) == "awaited"
