"""The runtime's lifecycle guarantees: boot death, the teardown ladder, titles, protocol errors."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading

import pytest
import trio

import backends
import backends._state
from backends._ipc import Channel
from backends._msgs import Return
from tests.backends._beacon import Beacon, send
from tests.backends._harness import alive, socket_files_of, trio_test

PROCESS_ONLY = pytest.mark.skipon_spawn_backend(
    "subint", reason="a sub-interpreter shares its host process: no exit code, signal or title"
)


# -- functions run in children -------------------------------------------------
def init_import_error() -> None:
    import backends_no_such_module  # noqa: F401


def init_exit_3() -> None:
    os._exit(3)


def init_abort() -> None:
    os.abort()


def _boot_beacon_address() -> str:
    # Both sides know the tree's run token; a child_init takes no arguments.
    return f"backends-test-boot-{backends.current_actor().run_token}"


def init_hold_until_beacon_closes() -> None:
    """Hold the child before its hello, announcing itself, until the test's beacon goes."""
    while True:
        try:
            send(_boot_beacon_address(), f"booting {os.getpid()}")
        except OSError:
            return
        threading.Event().wait(0.01)


def stuck(address: str, ignore_sigterm: bool) -> None:
    """Never checkpoints, so a cancel request cannot reach it."""
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with backends.shared_memory(64):
        send(address, "stuck")
        while True:
            threading.Event().wait(0.05)
            send(address, "tick")  # fails once the test is over, ending the loop


async def expect_cancelled(portal, *args) -> None:
    with pytest.raises(backends.TransportClosed, match="cancelled"):
        await portal.run(*args)


def my_title() -> dict:
    with open("/proc/self/cmdline", "rb") as f:
        cmdline = f.read().replace(b"\0", b" ").decode().strip()
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    return {"cmdline": cmdline, "comm": comm}


async def garbage_to_parent() -> None:
    """Break the protocol on purpose: a frame that is not msgpack."""
    chan = backends._state.current().parent_chan
    await chan._stream.send_all(b"\x00\x00\x00\x04\xc1\xc1\xc1\xc1")


def stderr_fd_after_writing(text: str) -> int:
    sys.stderr.write(text)
    sys.stderr.flush()
    return sys.stderr.fileno()


def shout(text: str) -> None:
    print(text, flush=True)
    os.write(2, f"{text}-fd\n".encode())


# -- boot death ------------------------------------------------------------------
@trio_test(timeout=20)
async def test_boot_import_error_raises_with_the_childs_output(spawn_backend):
    with pytest.raises(backends.ActorBootError) as info:
        async with backends.open_nursery(child_init=init_import_error) as an:
            await an.start_actor("doomed")
    assert info.value.actor == "doomed"
    assert info.value.exitcode not in (None, 0)
    assert "backends_no_such_module" in info.value.stderr_tail
    assert "died during boot" in str(info.value)


@PROCESS_ONLY
@pytest.mark.parametrize(("init", "code"), [(init_exit_3, 3), (init_abort, -signal.SIGABRT)])
@trio_test(timeout=20)
async def test_boot_exit_and_crash_report_the_exit_code(spawn_backend, init, code):
    with pytest.raises(backends.ActorBootError) as info:
        async with backends.open_nursery(child_init=init) as an:
            await an.run_in_actor(pow, 2, 2)
    assert info.value.exitcode == code


@trio_test(timeout=20)
async def test_boot_death_leaves_siblings_usable(spawn_backend):
    async with backends.open_nursery() as an:
        healthy = await an.start_actor("healthy")
        async with backends.open_nursery(child_init=init_import_error) as doomed_nursery:
            with pytest.raises(backends.ActorBootError):
                await doomed_nursery.start_actor("doomed")
        assert await healthy.run(pow, 3, 2) == 9


@trio_test(timeout=15)
async def test_a_spawn_cancelled_during_boot_stops_the_child_without_the_bounds(spawn_backend):
    # Bounds far past the deadline: only the child being refused at its hello
    # (and stopping on that EOF) ends it in time; no signal, no abandoning.
    timeouts = backends.Timeouts(cancel=60, terminate=60, kill=60, subint=60)
    async with backends.open_nursery(child_init=init_hold_until_beacon_closes, timeouts=timeouts) as an:
        with Beacon(_boot_beacon_address()) as beacon:
            async with trio.open_nursery() as tn:
                tn.start_soon(an.start_actor, "late")
                await beacon.expect("booting")
                tn.cancel_scope.cancel()
                beacon.close()  # lets the child go on to its hello


# -- the teardown ladder ---------------------------------------------------------
@PROCESS_ONLY
@pytest.mark.parametrize(("ignore_sigterm", "exitcode"), [(False, -signal.SIGTERM), (True, -signal.SIGKILL)])
@trio_test(timeout=20)
async def test_ladder_escalates_past_a_child_that_ignores_cancel(spawn_backend, ignore_sigterm, exitcode):
    timeouts = backends.Timeouts(cancel=0.3, terminate=0.3, kill=2.0)
    with Beacon() as beacon:
        async with backends.open_nursery(timeouts=timeouts) as an:
            portal = await an.start_actor("stuck")
            async with trio.open_nursery() as n:
                n.start_soon(expect_cancelled, portal, stuck, beacon.address, ignore_sigterm)
                await beacon.expect("stuck")
                pid = portal.pid
                await portal.cancel_actor()
            assert portal.exitcode == exitcode
            assert not alive(pid)
            assert socket_files_of(pid) == []
            assert not [n for n in os.listdir("/dev/shm") if f"-{pid}-" in n]


@pytest.mark.skipon_spawn_backend("trio", "forkserver", reason="abandoning is the subint's last step")
@trio_test(timeout=20)
async def test_subint_that_will_not_stop_is_abandoned_in_bounded_time(spawn_backend):
    from backends.spawn import subint

    timeouts = backends.Timeouts(subint=0.5)
    # The warning comes from the nursery's exit, so the whole nursery is the block.
    with Beacon() as beacon, pytest.warns(RuntimeWarning, match="abandoned"):  # noqa: PT031
        async with backends.open_nursery(timeouts=timeouts) as an:
            portal = await an.start_actor("wedged")
            async with trio.open_nursery() as n:
                n.start_soon(expect_cancelled, portal, stuck, beacon.address, False)
                await beacon.expect("stuck")
                with trio.fail_after(5):
                    await portal.cancel_actor()
    # Closing the beacon makes the abandoned loop's next send fail, so it ends.
    assert "wedged" in subint.abandoned()


# -- identification --------------------------------------------------------------
@PROCESS_ONLY
@trio_test(timeout=15)
async def test_actor_processes_carry_a_recognisable_title(spawn_backend):
    async with backends.open_nursery() as an:
        portal = await an.start_actor("titled")
        title = await portal.run(my_title)
        with open(f"/proc/{portal.pid}/comm") as f:
            seen_from_outside = f.read().strip()
    assert title["cmdline"].startswith("backends[titled]")
    assert seen_from_outside == title["comm"] == "backends[titled"


# -- protocol errors ---------------------------------------------------------------
@trio_test(timeout=10)
async def test_malformed_frame_is_a_protocol_error_on_both_sides():
    a, b = socket.socketpair()
    left = Channel(trio.SocketStream(trio.socket.from_stdlib_socket(a)), peer="left")
    right = Channel(trio.SocketStream(trio.socket.from_stdlib_socket(b)), peer="right")
    async with trio.open_nursery() as n:
        n.start_soon(left.run_writer)
        n.start_soon(right.run_writer)
        await left._stream.send_all(b"\x00\x00\x00\x03abc")
        with pytest.raises(backends.ProtocolError, match="malformed frame"):
            await right.receive()
        with pytest.raises(backends.ProtocolError, match="closed the channel: malformed frame"):
            await left.receive()
        await left.aclose()
        await right.aclose()


@trio_test(timeout=10)
async def test_oversized_frame_header_is_refused_without_reading_it():
    a, b = socket.socketpair()
    chan = Channel(trio.SocketStream(trio.socket.from_stdlib_socket(b)), peer="p")
    a.sendall(b"\xff\xff\xff\xff")
    with pytest.raises(backends.ProtocolError, match="exceeds the limit"):
        await chan.receive()
    a.close()
    await chan.aclose()


@trio_test(timeout=10)
async def test_unexpected_message_from_a_child_closes_its_channel(spawn_backend):
    with pytest.raises(backends.ProtocolError, match="malformed frame"):
        async with backends.open_nursery() as an:
            portal = await an.start_actor("rude")
            await portal.run(garbage_to_parent)


@trio_test(timeout=10)
async def test_frames_round_trip_in_bursts():
    a, b = socket.socketpair()
    left = Channel(trio.SocketStream(trio.socket.from_stdlib_socket(a)))
    right = Channel(trio.SocketStream(trio.socket.from_stdlib_socket(b)))
    async with trio.open_nursery() as n:
        n.start_soon(left.run_writer)
        for i in range(5000):
            left.send_nowait(Return(i, "x" * (i % 300)))
        got = [await right.receive() for _ in range(5000)]
        assert got == [Return(i, "x" * (i % 300)) for i in range(5000)]
        await left.aclose()
        assert await right.receive() is None
        await right.aclose()


# -- stdio ----------------------------------------------------------------------
@PROCESS_ONLY
@trio_test(timeout=15)
async def test_piped_stdio_reaches_the_parents_sys_stderr(spawn_backend, capsys):
    async with backends.open_nursery(stdio="pipe") as an:
        await an.run_in_actor(shout, "hello-from-child")
    err = capsys.readouterr().err
    assert "hello-from-child" in err
    assert "hello-from-child-fd" in err


@PROCESS_ONLY
@trio_test(timeout=15)
async def test_a_childs_sys_stderr_is_its_own_fd_2_whatever_the_parents_is(spawn_backend, monkeypatch, tmp_path):
    # Like pytest's capture: the parent's sys.stderr writes to another fd, which a
    # fork child closes; its next socket would reuse the number.
    with open(tmp_path / "captured", "w") as captured:
        monkeypatch.setattr(sys, "stderr", captured)
        async with backends.open_nursery() as an:
            portal = await an.start_actor("writer")
            assert await portal.run(stderr_fd_after_writing, "x" * 100_000) == 2
            assert await portal.run(pow, 2, 3) == 8  # the channel survived the flood
