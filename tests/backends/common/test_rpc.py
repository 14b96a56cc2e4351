"""Calls, daemons, streams, recursion and remote errors, under whichever backend is selected.

A spawn under the ``trio`` backend costs a fresh interpreter (~0.4 s of CPU),
so each test checks everything one scenario can show with as few actors as
it needs.
"""

from __future__ import annotations

import os
import sys

import pytest
import trio

import backends
from tests.backends import _actors
from tests.backends._beacon import Beacon
from tests.backends._harness import alive, trio_test


@trio_test(timeout=15)
async def test_spawn_call_and_clean_teardown(spawn_backend):
    async with backends.open_nursery() as an:
        portal = await an.start_actor("who")
        info = await portal.run(_actors.whoami)
        # The test module itself is importable there only through the propagated path.
        assert await portal.run(_actors.loaded, "tests.backends._actors") is True
        await portal.cancel_actor()
    assert info["name"] == "who"
    assert info["backend"] == spawn_backend
    assert info["is_root"] is False
    assert info["sys_path_head"] == sys.path[:3]
    if spawn_backend == "subint":
        assert info["os_pid"] == os.getpid()
    else:
        assert info["os_pid"] != os.getpid()
        assert not alive(info["os_pid"])


@trio_test(timeout=15)
async def test_run_in_actor_returns_the_value_and_the_actor_exits(spawn_backend):
    async with backends.open_nursery() as an:
        info = await an.run_in_actor(_actors.whoami, name="one-shot")
        # The actor is already gone while the nursery is still open.
        if spawn_backend != "subint":
            assert not alive(info["os_pid"])
    assert info["name"] == "one-shot"


@trio_test(timeout=15)
async def test_sync_async_string_and_keyword_targets(spawn_backend):
    async with backends.open_nursery() as an:
        portal = await an.start_actor("targets")
        assert await portal.run(_actors.add, 2, 3) == 5
        assert await portal.run(_actors.async_add, 2, 3) == 5
        assert await portal.run("tests.backends._actors:add", 4, 5) == 9
        assert await portal.run(_actors.kwargs_only, a=6, b=7) == 42
        value = {"k": [1, 2.5, "s", None, True], "b": b"\x00\xff"}
        assert await portal.run(_actors.echo, value) == value
        await portal.cancel_actor()


@trio_test(timeout=15)
async def test_daemon_keeps_state_across_calls_until_cancelled(spawn_backend):
    async with backends.open_nursery() as an:
        portal = await an.start_actor("daemon")
        assert [await portal.run(_actors.bump) for _ in range(5)] == [1, 2, 3, 4, 5]
        info = await portal.run(_actors.whoami)
        with trio.fail_after(5):
            await portal.cancel_actor()
        if spawn_backend != "subint":
            assert not alive(info["os_pid"])


@trio_test(timeout=15)
async def test_cancel_one_daemon_then_the_body_exit_stops_the_rest(spawn_backend):
    with trio.fail_after(10):
        async with backends.open_nursery() as an:
            first, second, third = [await an.start_actor(n) for n in ("first", "second", "third")]
            infos = [await p.run(_actors.whoami) for p in (first, second, third)]
            await first.cancel_actor()
            # Its siblings keep serving.
            assert await second.run(_actors.add, 1, 1) == 2
            assert await third.run(_actors.add, 2, 2) == 4
            with pytest.raises(backends.TransportClosed):
                await first.run(_actors.add, 1, 1)
        # Leaving the body cancelled the two daemons still running; it did not wait forever.
    if spawn_backend != "subint":
        assert not any(alive(i["os_pid"]) for i in infos)


@trio_test(timeout=20)
async def test_recursive_spawn_child_is_not_root(spawn_backend):
    async with backends.open_nursery() as an:
        report = await an.run_in_actor(_actors.spawn_grandchild_report, name="middle")
    child, grandchild = report["child"], report["grandchild"]
    assert (child["name"], grandchild["name"]) == ("middle", "grandchild")
    assert child["is_root"] is False and grandchild["is_root"] is False
    # The backend choice travels down the tree: the grandchild used it too.
    assert child["backend"] == grandchild["backend"] == spawn_backend
    if spawn_backend != "subint":
        assert grandchild["ppid"] == child["os_pid"]
        assert child["ppid"] == os.getpid()


@trio_test(timeout=20)
async def test_namesakes_each_keep_their_own_children(spawn_backend):
    # Under subint both twins share a pid: a listener keyed by name and pid
    # alone let the second bind over the first's socket, and the first's next
    # child then reached the wrong spawner and died "during boot (exit code 0)".
    async with backends.open_nursery() as an:
        first, second = await an.start_actor("twin"), await an.start_actor("twin")
        assert await first.run(_actors.spawn_and_add, 1, 2) == 3
        assert await second.run(_actors.spawn_and_add, 3, 4) == 7
        assert await first.run(_actors.spawn_and_add, 5, 6) == 11


@trio_test(timeout=15)
async def test_streams_complete_fail_and_close_early(spawn_backend):
    with Beacon() as beacon:
        async with backends.open_nursery() as an:
            portal = await an.start_actor("streamer")
            async with portal.open_stream(_actors.countdown, 5) as stream:
                assert [x async for x in stream] == [5, 4, 3, 2, 1]

            # Leaving early closes the generator in the child (its finally runs).
            async with portal.open_stream(_actors.count_forever, beacon.address) as stream:
                async for x in stream:
                    if x == 10:
                        break
            await beacon.expect("generator-closed")

            got = []
            with pytest.raises(backends.RemoteActorError) as info:
                async with portal.open_stream(_actors.stream_then_fail, 3) as stream:
                    async for x in stream:
                        got.append(x)  # noqa: PERF401 - what arrived before the failure is the point
            assert got == [0, 1, 2]
            assert info.value.boxed_type is ValueError
            assert "stream broke after 3" in info.value.message

            # None of that ended the actor.
            async with portal.open_stream(_actors.countdown, 2) as stream:
                assert [x async for x in stream] == [2, 1]
            await portal.cancel_actor()


@trio_test(timeout=15)
async def test_cancel_an_infinite_stream_by_timeout(spawn_backend):
    with Beacon() as beacon:
        async with backends.open_nursery() as an:
            portal = await an.start_actor("infinite")
            received = 0
            async with portal.open_stream(_actors.count_forever, beacon.address) as stream:
                assert await stream.receive() == 0
                with trio.move_on_after(0.2) as scope:
                    async for _ in stream:
                        received += 1
            assert scope.cancelled_caught
            assert received > 0
            await beacon.expect("generator-closed")
            assert await portal.run(_actors.add, 1, 2) == 3
            await portal.cancel_actor()


@trio_test(timeout=15)
async def test_remote_errors_are_boxed_and_do_not_end_the_actor(spawn_backend):
    async with backends.open_nursery() as an:
        portal = await an.start_actor("failer")
        with pytest.raises(backends.RemoteActorError) as info:
            await portal.run(_actors.raise_assertion, "the message")
        err = info.value
        assert err.type_name.endswith("AssertionError")
        assert err.boxed_type is AssertionError
        assert "the message" in err.message
        assert err.actor == "failer"
        assert "raise_assertion" in err.traceback and "_actors.py" in err.traceback

        with pytest.raises(backends.RemoteActorError) as info:
            await portal.run(_actors.raise_custom, "custom")
        assert info.value.boxed_type is _actors.CustomError

        with pytest.raises(backends.RemoteActorError) as info:
            await portal.run(_actors.kwargs_only, 1, 2)
        assert info.value.boxed_type is TypeError

        assert await portal.run(_actors.add, 1, 1) == 2
        await portal.cancel_actor()


@trio_test(timeout=15)
async def test_calls_the_child_cannot_resolve(spawn_backend, tmp_path, monkeypatch):
    # A module with a syntax error, reachable only through the path children inherit.
    broken = f"broken_{os.getpid()}_{tmp_path.name}"
    (tmp_path / f"{broken}.py").write_text("def fn(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = [
        ("tests.backends._actors:no_such_function", {"AttributeError"}),
        ("tests.backends.no_such_module:fn", {"ModuleNotFoundError", "ImportError"}),
        (f"{broken}:fn", {"SyntaxError"}),
        ("tests.backends._actors:Counter.value", {"TypeError"}),  # not callable
    ]
    async with backends.open_nursery() as an:
        portal = await an.start_actor("importer")
        for target, expected in cases:
            with pytest.raises(backends.RemoteActorError) as info:
                await portal.run(target)
            assert info.value.type_name.rpartition(".")[2] in expected, (target, info.value)
        # Unresolvable calls must not take the actor down.
        assert await portal.run(_actors.add, 1, 1) == 2
        await portal.cancel_actor()
