"""What only the ``subint`` backend has: actors as sub-interpreters of this process.

Runs only with ``--spawn-backend=subint``, which exists on Python 3.14+.
Nothing here imports ``concurrent.interpreters`` at module level, so the
module still collects (and skips) on older interpreters.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import trio

import backends
from tests.backends import _actors
from tests.backends._beacon import Beacon
from tests.backends._harness import trio_test

pytestmark = pytest.mark.skipon_spawn_backend(
    "trio", "forkserver", reason="subint-backend suite: sub-interpreter actors only"
)


def _comm() -> str:
    return Path("/proc/self/comm").read_text().strip()


@trio_test(timeout=20)
async def test_actor_lives_in_this_process_and_does_not_retitle_it(spawn_backend):
    before = _comm()
    async with backends.open_nursery() as an:
        portal = await an.start_actor("guest")
        info = await portal.run(_actors.whoami)
        await portal.cancel_actor()
    assert info["os_pid"] == os.getpid()
    assert info["is_root"] is False and info["backend"] == "subint"
    assert _comm() == before


@trio_test(timeout=20)
async def test_module_state_is_per_interpreter(spawn_backend):
    before = _actors.Counter.value
    async with backends.open_nursery() as an:
        portal = await an.start_actor("counter")
        assert [await portal.run(_actors.bump) for _ in range(3)] == [1, 2, 3]
        await portal.cancel_actor()
    assert _actors.Counter.value == before


@trio_test(timeout=20)
async def test_a_stuck_sub_interpreter_is_abandoned_within_the_bound(spawn_backend):
    from backends.spawn import subint

    timeouts = backends.Timeouts(subint=0.3)
    abandoned_before = len(subint.abandoned())
    with Beacon() as beacon, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with backends.open_nursery(timeouts=timeouts) as an:
            portal = await an.start_actor("wedged")
            async with trio.open_nursery() as tn:

                async def park():
                    with pytest.raises(backends.TransportClosed):
                        await portal.run(_actors.sync_sleep_loop, beacon.address)

                tn.start_soon(park)
                await beacon.expect("ready")
                with trio.fail_after(5):
                    await portal.cancel_actor()
    # Leaving the beacon block closed the socket; the abandoned loop ends on its next tick.
    assert subint.abandoned()[abandoned_before:] == ["wedged"]
    assert any("abandoned" in str(w.message) for w in caught), [str(w.message) for w in caught]


@trio_test(timeout=30)
async def test_many_sub_interpreters_boot_side_by_side(spawn_backend):
    async with backends.open_nursery() as an:
        portals = [await an.start_actor(f"guest-{i}") for i in range(4)]
        assert [await p.run(_actors.add, i, i) for i, p in enumerate(portals)] == [0, 2, 4, 6]


# -- beside the forkserver backend -------------------------------------------------
@trio_test(timeout=30)
async def test_forkserver_spawns_after_sub_interpreters_are_gone(spawn_backend):
    # CPython crashes a child forked while any sub-interpreter exists (SIGSEGV
    # at boot, exit code -11); the warm pool's idle one is let go of first.
    from backends.spawn import subint

    async with backends.open_nursery() as an:
        assert await an.run_in_actor(_actors.add, 1, 2) == 3
    assert subint.POOL.wait_ready(10)
    async with backends.open_nursery("forkserver") as an:
        assert await an.run_in_actor(_actors.add, 3, 4) == 7


@trio_test(timeout=30)
async def test_forkserver_refuses_to_fork_beside_a_live_sub_interpreter(spawn_backend):
    async with backends.open_nursery() as an:
        guest = await an.start_actor("guest")
        with pytest.raises(backends.BackendUnavailable, match="sub-interpreter"):
            async with backends.open_nursery("forkserver") as forks:
                await forks.start_actor("forked")
        assert await guest.run(_actors.add, 5, 6) == 11
