"""A child that dies before its handshake raises ActorBootError promptly, never hangs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import backends
from tests.backends import _actors
from tests.backends._harness import actor_children, trio_test

BOOT_BOUND = 5.0  # the guarantee is "within a second"; leave room for a loaded 2-core box


def _listener_path() -> Path:
    run_dir = backends.current_actor().run_dir
    (path,) = run_dir.glob(f"*@{os.getpid()}.sock")
    return path


@trio_test(timeout=20)
async def test_child_that_cannot_reach_its_parent_dies_in_boot(spawn_backend):
    async with backends.open_nursery() as an:
        survivor = await an.start_actor("survivor")
        # With the parent's socket file gone, the next child's connect-back fails.
        _listener_path().unlink()
        started = time.monotonic()
        with pytest.raises(backends.ActorBootError) as info:
            await an.start_actor("stranded")
        assert time.monotonic() - started < BOOT_BOUND
        err = info.value
        assert err.actor == "stranded"
        assert err.exitcode not in (None, 0), err
        assert any(word in err.stderr_tail for word in ("FileNotFoundError", "ConnectionRefused", "No such file")), (
            err.stderr_tail
        )
        # The failed spawn is that call's error; the established child is unaffected.
        assert await survivor.run(_actors.add, 1, 2) == 3
        await survivor.cancel_actor()
    assert actor_children() == []


@pytest.mark.skipon_spawn_backend(
    "forkserver",
    reason="not applicable: a forked child inherits the parent's imports and imports nothing at boot",
)
@trio_test(timeout=20)
async def test_import_error_during_boot(spawn_backend, tmp_path, monkeypatch):
    # A shadowing msgspec that cannot be imported: an exec'd interpreter finds it through
    # PYTHONPATH, a sub-interpreter through the sys.path it is given.
    (tmp_path / "msgspec.py").write_text("raise ImportError('boot bomb: msgspec shadowed')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    started = time.monotonic()
    with pytest.raises(backends.ActorBootError) as info:
        async with backends.open_nursery() as an:
            await an.start_actor("doomed")
    assert time.monotonic() - started < BOOT_BOUND
    assert "boot bomb" in info.value.stderr_tail, info.value.stderr_tail
    assert info.value.exitcode not in (None, 0)
    assert actor_children() == []
