"""Shared memory written by a parent and read by children, with nothing left in /dev/shm."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

import backends
from tests.backends import _actors
from tests.backends._beacon import Beacon
from tests.backends._harness import trio_test, wait_gone


def _segment(name: str) -> Path:
    return Path("/dev/shm") / name


@trio_test(timeout=20)
async def test_parent_writes_children_read(spawn_backend):
    names = []
    async with backends.open_nursery() as an:
        portals = [await an.start_actor(f"reader-{i}") for i in range(2)]
        for size in (4096, 1 << 20):
            with backends.shared_memory(size) as shm:
                names.append(shm.name)
                assert shm.name.startswith("backends-")
                shm.buf[:size] = os.urandom(size)
                want = hashlib.sha256(bytes(shm.buf[:size])).hexdigest()
                got: dict[int, str] = {}

                async def read(i, portal, name, size, got=got):
                    got[i] = await portal.run(_actors.shm_digest, name, size)

                async with trio.open_nursery() as tn:
                    for i, portal in enumerate(portals):
                        tn.start_soon(read, i, portal, shm.name, size)
                assert got == {0: want, 1: want}
                # And the other way: a child writes, the parent sees it in place.
                await portals[0].run(_actors.shm_write_back, shm.name, 0, b"from child")
                assert bytes(shm.buf[:10]) == b"from child"
        # A child's own segment is unlinked when its context exits there.
        child_segment = await portals[1].run(_actors.shm_own_segment, 64)
        for portal in portals:
            await portal.cancel_actor()
    assert child_segment.startswith("backends-")
    assert [n for n in [*names, child_segment] if _segment(n).exists()] == []


@trio_test(timeout=20)
async def test_segment_of_a_hard_killed_child_is_removed(spawn_backend):
    with Beacon() as beacon:
        async with backends.open_nursery(timeouts=backends.Timeouts(cancel=0.3, terminate=0.5)) as an:
            portal = await an.start_actor("hoarder")
            async with trio.open_nursery() as tn:

                async def hold():
                    with pytest.raises(backends.TransportClosed):
                        await portal.run(_actors.shm_hold_until_killed, beacon.address, 4096)

                tn.start_soon(hold)
                name = await beacon.expect("segment")
                (pid,) = await beacon.expect_pids("ready", 1)
                assert _segment(name).exists()
                await portal.cancel_actor()
        assert await wait_gone([pid], within=2) == []
        # The child never ran its cleanup; its parent removed the segment it left (for a
        # sub-interpreter, which cannot be killed, the root does so when it exits).
        assert not _segment(name).exists()
