"""Supervision: failures travel up, one failure cancels the rest, groups collect several."""

from __future__ import annotations

import functools

import pytest
import trio

import backends
from tests.backends import _actors
from tests.backends._beacon import Beacon
from tests.backends._harness import actor_children, leaves, trio_test, wait_gone


def _assert_remote_assertions(exc: BaseException) -> list[backends.RemoteActorError]:
    """Every leaf is a boxed AssertionError: no Cancelled or transport error leaked out."""
    found = leaves(exc)
    assert found, exc
    for leaf in found:
        assert isinstance(leaf, backends.RemoteActorError), repr(leaf)
        assert leaf.boxed_type is AssertionError, repr(leaf)
    return found  # type: ignore[return-value]


@trio_test(timeout=20)
async def test_two_failing_children_raise_a_group(spawn_backend, tmp_path):
    barrier = tmp_path / "barrier"
    with (
        Beacon() as beacon,
        pytest.RaisesGroup(backends.RemoteActorError, backends.RemoteActorError, flatten_subgroups=True) as info,
    ):
        async with backends.open_nursery() as an, trio.open_nursery() as tn:
            for name in ("left", "right"):
                tn.start_soon(
                    functools.partial(
                        an.run_in_actor,
                        _actors.fail_at_barrier,
                        beacon.address,
                        str(barrier),
                        name=name,
                    )
                )
            await beacon.expect_pids("armed", 2)
            barrier.touch()
    errors = _assert_remote_assertions(info.value)
    assert sorted(e.actor for e in errors) == ["left", "right"]


@trio_test(timeout=30)
async def test_25_children_failing_fast_while_siblings_still_spawn(spawn_backend):
    from backends.spawn import subint

    abandoned = subint.abandoned()
    with Beacon() as beacon:
        with pytest.raises((BaseExceptionGroup, backends.RemoteActorError)) as info:
            async with backends.open_nursery() as an, trio.open_nursery() as tn:
                for i in range(25):
                    tn.start_soon(
                        functools.partial(
                            an.run_in_actor,
                            _actors.born_then_fail,
                            beacon.address,
                            name=f"fast-{i}",
                        )
                    )
        errors = _assert_remote_assertions(info.value)
        assert 1 <= len(errors) <= 25
        beacon.discard("none")  # pull in every report that arrived
        born = [int(t.split()[1]) for t in beacon.seen if t.startswith("born ")]
    assert born, "no child ran before the cascade"
    assert await wait_gone(born, within=5) == []
    assert actor_children() == []
    # Siblings still booting stop (or never start): none outlasts its bound.
    assert subint.abandoned() == abandoned


@trio_test(timeout=20)
async def test_one_failing_child_cancels_its_siblings(spawn_backend):
    with Beacon() as beacon:
        with pytest.RaisesGroup(backends.RemoteActorError, allow_unwrapped=True, flatten_subgroups=True) as info:
            async with backends.open_nursery() as an, trio.open_nursery() as tn:
                for i in range(2):
                    portal = await an.start_actor(f"idle-{i}")
                    tn.start_soon(portal.run, _actors.sleep_forever_marked, beacon.address, f"idle-{i}")
                pids = await beacon.expect_pids("ready", 2)
                await an.run_in_actor(_actors.raise_assertion, "first error wins", name="failer")
        # Only the failure itself comes out (our own trio nursery may wrap it in a group):
        # the siblings' cancellation is not reported as an error.
        (error,) = _assert_remote_assertions(info.value)
        assert error.actor == "failer"
        # The siblings were cancelled (their finally ran), not just killed.
        with trio.fail_after(3):
            cleaned = sorted([await beacon.expect("cleanup"), await beacon.expect("cleanup")])
        assert cleaned == ["idle-0", "idle-1"]
    assert await wait_gone(pids, within=5) == []


@trio_test(timeout=20)
async def test_an_error_in_the_body_cancels_every_child(spawn_backend):
    with Beacon() as beacon:
        with pytest.RaisesGroup(KeyError, allow_unwrapped=True, flatten_subgroups=True) as info:
            async with backends.open_nursery() as an:
                portal = await an.start_actor("idle")
                async with trio.open_nursery() as tn:
                    tn.start_soon(portal.run, _actors.sleep_forever_marked, beacon.address)
                    pids = await beacon.expect_pids("ready", 1)
                    raise KeyError("body failed")
        assert [type(e) for e in leaves(info.value)] == [KeyError]
        with trio.fail_after(3):
            assert await beacon.expect("cleanup") == "child"
    assert await wait_gone(pids, within=5) == []


@trio_test(timeout=20)
async def test_nursery_cancel_returns_and_stops_every_child(spawn_backend):
    with Beacon() as beacon:

        async def park(portal, tag):
            # A call still running in an actor that gets cancelled ends as "actor gone".
            with pytest.raises(backends.TransportClosed):
                await portal.run(_actors.sleep_forever_marked, beacon.address, tag)

        async with backends.open_nursery() as an, trio.open_nursery() as tn:
            for i in range(2):
                tn.start_soon(park, await an.start_actor(f"idle-{i}"), f"idle-{i}")
            pids = await beacon.expect_pids("ready", 2)
            with trio.fail_after(5):
                await an.cancel()
        with trio.fail_after(3):
            assert {await beacon.expect("cleanup"), await beacon.expect("cleanup")} == {"idle-0", "idle-1"}
    assert await wait_gone(pids, within=5) == []


@pytest.mark.skipon_spawn_backend(
    "subint", reason="os._exit in a sub-interpreter ends the whole host process (the pytest run)"
)
@trio_test(timeout=20)
async def test_a_child_dying_abruptly_fails_the_nursery(spawn_backend):
    with Beacon() as beacon:
        with pytest.raises((BaseExceptionGroup, backends.TransportClosed)) as info:
            async with backends.open_nursery() as an:
                idle = await an.start_actor("idle")
                async with trio.open_nursery() as tn:
                    tn.start_soon(idle.run, _actors.sleep_forever_marked, beacon.address)
                    pids = await beacon.expect_pids("ready", 1)
                    crasher = await an.start_actor("crasher")
                    await crasher.run(_actors.exit_abruptly, 3)
        for leaf in leaves(info.value):
            assert isinstance(leaf, backends.TransportClosed), repr(leaf)
        assert any("code 3" in str(x) for x in leaves(info.value))
        with trio.fail_after(3):
            assert await beacon.expect("cleanup") == "child"
    assert await wait_gone(pids, within=5) == []


@pytest.mark.parametrize("depth", [1, 3])
@trio_test(timeout=40)
async def test_nested_trees_fail_upward(spawn_backend, depth):
    # Two subtrees under the root; each nests `depth` spawner levels above two failing leaves.
    with pytest.raises((BaseExceptionGroup, backends.RemoteActorError)) as info:
        async with backends.open_nursery() as an, trio.open_nursery() as tn:
            for i in range(2):
                tn.start_soon(functools.partial(an.run_in_actor, _actors.failing_tree, depth, 2, name=f"top-{i}"))
    found = leaves(info.value)
    for leaf in found:
        assert isinstance(leaf, backends.RemoteActorError), repr(leaf)
        assert leaf.actor.startswith("top-")
        # However many times it was boxed on the way up, the root cause stays readable.
        assert "leaf d0-" in leaf.traceback and "AssertionError" in leaf.traceback, leaf.traceback
    assert actor_children() == []
