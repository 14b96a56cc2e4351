"""Children flooding stderr during a failing cascade must not wedge the session.

The hazard: children share the test process's fd 2 (a fork keeps it; an exec'd
child inherits it), which ``--capture=fd`` points at pytest's capture file. The
suite runs this under each capture mode the matrix selects.
"""

from __future__ import annotations

import functools
import os

import pytest
import trio

import backends
from tests.backends import _actors
from tests.backends._beacon import Beacon
from tests.backends._harness import actor_children, leaves, trio_test, wait_gone

SPEW = 128 * 1024  # twice a pipe buffer, per child


@trio_test(timeout=30)
async def test_log_spew_from_many_children_during_a_failing_cascade(spawn_backend):
    with Beacon() as beacon:
        with pytest.raises((BaseExceptionGroup, backends.RemoteActorError)) as info:
            async with backends.open_nursery() as an, trio.open_nursery() as tn:
                for i in range(2):
                    portal = await an.start_actor(f"quiet-{i}")
                    tn.start_soon(portal.run, _actors.park_then_spew, beacon.address, SPEW, f"quiet-{i}")
                pids = await beacon.expect_pids("ready", 2)
                for i in range(3):
                    tn.start_soon(
                        functools.partial(an.run_in_actor, _actors.spew_and_fail, SPEW, f"loud-{i}", name=f"loud-{i}")
                    )
        found = leaves(info.value)
        assert found
        for leaf in found:
            assert isinstance(leaf, backends.RemoteActorError), repr(leaf)
            assert leaf.boxed_type is RuntimeError
            # The traceback arrives whole: the recursion (folded by Python) and the failure.
            assert "_deep" in leaf.traceback and "repeated" in leaf.traceback
            assert "failed yyy" in leaf.traceback
            assert len(leaf.message) > 2000
    assert await wait_gone(pids, within=5) == []
    assert actor_children() == []
    # The parent's own fd 2 still works after the flood.
    os.write(2, b"log spew test: parent stderr still writable\n")
