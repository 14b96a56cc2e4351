"""What only the ``trio`` backend has: every child is a fresh interpreter (exec)."""

from __future__ import annotations

import os

import pytest

import backends
from tests.backends import _actors
from tests.backends._harness import trio_test

pytestmark = pytest.mark.skipon_spawn_backend("forkserver", "subint", reason="trio-backend suite: exec'd children only")


@trio_test(timeout=15)
async def test_child_is_a_fresh_interpreter_with_a_recognisable_title(spawn_backend):
    async with backends.open_nursery() as an:
        portal = await an.start_actor("fresh")
        ident = await portal.run(_actors.proc_identity)
        # pytest lives in this process only: an exec'd child never imported it.
        assert await portal.run(_actors.loaded, "_pytest") is False
        await portal.cancel_actor()
    assert ident["pid"] != os.getpid()
    assert ident["comm"].startswith("backends[fresh")
    assert "backends[fresh]" in ident["cmdline"]


@trio_test(timeout=15)
async def test_child_does_not_inherit_the_parents_descriptors(spawn_backend, tmp_path):
    marker = tmp_path / "parent-only"
    fd = os.open(marker, os.O_CREAT | os.O_RDWR)
    os.set_inheritable(fd, True)  # even an inheritable fd must not reach the child
    try:
        async with backends.open_nursery() as an:
            targets = await an.run_in_actor(_actors.fd_targets)
    finally:
        os.close(fd)
    assert str(marker) not in targets


@trio_test(timeout=15)
async def test_child_runs_on_its_main_thread(spawn_backend):
    async with backends.open_nursery() as an:
        ident = await an.run_in_actor(_actors.proc_identity)
    assert ident["main_thread"] is True
