"""The public API's shape and its argument checking, before anything is spawned."""

from __future__ import annotations

import os

import pytest
import trio

import backends
from backends.spawn import BACKEND_NAMES
from tests.backends._harness import trio_test


def module_level(x):
    return x


def test_public_names_are_pinned():
    assert sorted(backends.__all__) == sorted(
        [
            "BACKEND_NAMES",
            "ActorBootError",
            "ActorNursery",
            "ActorTooSlow",
            "BackendUnavailable",
            "MsgStream",
            "Portal",
            "ProtocolError",
            "RemoteActorError",
            "Timeouts",
            "TransportClosed",
            "attach_shared_memory",
            "available_backends",
            "current_actor",
            "open_nursery",
            "shared_memory",
        ]
    )
    assert all(hasattr(backends, name) for name in backends.__all__)


def test_available_backends_names_every_backend_with_a_reason_or_none():
    available = backends.available_backends()
    assert tuple(available) == BACKEND_NAMES == ("trio", "forkserver", "subint")
    assert available["trio"] is None
    for reason in available.values():
        assert reason is None or (isinstance(reason, str) and reason)


@trio_test(timeout=5)
async def test_unknown_backend_is_a_value_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown spawn backend 'mp'; valid: trio, forkserver, subint"):
        async with backends.open_nursery(backend="mp"):
            pass


@trio_test(timeout=5)
async def test_unavailable_backend_raises_before_spawning_anything():
    unavailable = {n: r for n, r in backends.available_backends().items() if r}
    if not unavailable:
        pytest.skip("every backend is available on this interpreter")
    name, reason = next(iter(unavailable.items()))
    with pytest.raises(backends.BackendUnavailable) as info:
        async with backends.open_nursery(backend=name):
            pytest.fail("the body must not run")
    assert info.value.reason == reason
    assert f"is unavailable here: {reason}" in str(info.value)


@trio_test(timeout=5)
async def test_bad_transport_and_stdio_are_rejected():
    with pytest.raises(ValueError, match="unknown transport 'udp'"):
        async with backends.open_nursery(transport="udp"):
            pass
    with pytest.raises(ValueError, match="unknown stdio policy"):
        async with backends.open_nursery(stdio="tee"):
            pass


@trio_test(timeout=15)
async def test_env_var_chooses_the_default_backend(spawn_backend, monkeypatch):
    monkeypatch.setenv("BACKENDS_SPAWN_BACKEND", spawn_backend)
    async with backends.open_nursery() as an:
        assert an.backend == spawn_backend
        assert await an.run_in_actor(module_level, 7) == 7


@trio_test(timeout=5)
async def test_closures_and_lambdas_are_refused_before_sending(spawn_backend):
    def local(x):
        return x

    async with backends.open_nursery() as an:
        portal = await an.start_actor("picky")
        with pytest.raises(TypeError, match="only module-level functions"):
            await portal.run(local, 1)
        with pytest.raises(TypeError, match="only module-level functions"):
            await portal.run(lambda: 1)
        with pytest.raises(ValueError, match="module:qualname"):
            await portal.run("no_colon_here")
        assert await portal.run(module_level, 2) == 2


@trio_test(timeout=15)
async def test_tcp_transport_works_like_uds(spawn_backend):
    async with backends.open_nursery(transport="tcp") as an:
        portal = await an.start_actor("over-tcp")
        assert await portal.run(pow, 2, 5) == 32


def test_current_actor_outside_a_runtime_is_an_error():
    with pytest.raises(RuntimeError, match="no actor runtime"):
        backends.current_actor()


@trio_test(timeout=10)
async def test_root_actor_removes_its_run_directory(spawn_backend):
    async with backends.open_nursery() as an:
        run_dir = backends.current_actor().run_dir
        assert run_dir.is_dir()
        assert backends.current_actor().is_root
        await an.run_in_actor(os.getpid)
    assert not run_dir.exists()


@trio_test(timeout=10)
async def test_shared_memory_names_carry_run_and_pid_and_are_unlinked():
    async with backends.open_nursery():
        token = backends.current_actor().run_token
        with backends.shared_memory(128) as shm:
            assert shm.name.startswith(f"backends-{token}-{os.getpid()}-")
            with backends.attach_shared_memory(shm.name) as other:
                other.buf[:3] = b"abc"
            assert bytes(shm.buf[:3]) == b"abc"
        assert not os.path.exists(f"/dev/shm/{shm.name}")
    await trio.lowlevel.checkpoint()
