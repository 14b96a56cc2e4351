"""Broken channels: garbage frames and peers that vanish mid-stream end in clear errors."""

from __future__ import annotations

import os
import socket
import struct

import pytest
import trio

import backends
from tests.backends import _actors
from tests.backends._harness import actor_children, leaves, trio_test

# A frame header announcing 5 bytes, then 5 bytes that are not msgpack of any message.
GARBAGE = struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1"


def _listener_path() -> str:
    run_dir = backends.current_actor().run_dir
    (path,) = run_dir.glob(f"*@{os.getpid()}.sock")
    return str(path)


@trio_test(timeout=20)
async def test_malformed_frame_on_an_established_channel(spawn_backend):
    with pytest.raises((BaseExceptionGroup, backends.ProtocolError, backends.TransportClosed)) as info:
        async with backends.open_nursery() as an:
            portal = await an.start_actor("vandal")
            assert await portal.run(_actors.add, 1, 1) == 2
            with trio.fail_after(5):
                await portal.run(_actors.corrupt_parent_channel, _listener_path(), GARBAGE)
    found = leaves(info.value)
    assert any(isinstance(e, backends.ProtocolError) for e in found), repr(info.value)
    # Nothing but the protocol error and the consequences of losing that channel.
    assert all(isinstance(e, (backends.ProtocolError, backends.TransportClosed)) for e in found), found
    assert "malformed frame" in str(next(e for e in found if isinstance(e, backends.ProtocolError)))
    assert actor_children() == []


@trio_test(timeout=20)
async def test_garbage_from_a_stranger_on_the_listener_is_dropped(spawn_backend):
    async with backends.open_nursery() as an:
        portal = await an.start_actor("bystander")
        stranger = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with stranger:
            await stranger.connect(_listener_path())
            await stranger.send(GARBAGE)
            # The root answers with at most a violation notice, then closes: never a hang.
            with trio.fail_after(5):
                while await stranger.recv(65536):
                    pass
        # Its children never noticed.
        assert await portal.run(_actors.add, 2, 3) == 5
        await portal.cancel_actor()


@pytest.mark.skipon_spawn_backend(
    "subint", reason="os._exit in a sub-interpreter ends the whole host process (the pytest run)"
)
@trio_test(timeout=20)
async def test_child_dying_mid_stream(spawn_backend):
    got = []
    with pytest.raises((BaseExceptionGroup, backends.TransportClosed)) as info:
        async with backends.open_nursery() as an:
            portal = await an.start_actor("quitter")
            with trio.fail_after(5):
                async with portal.open_stream(_actors.stream_then_exit, 3) as stream:
                    async for x in stream:
                        got.append(x)  # noqa: PERF401 - what arrived before the failure is the point
    assert got == [0, 1, 2]
    found = leaves(info.value)
    assert found and all(isinstance(e, backends.TransportClosed) for e in found), found
    assert "code 7" in " ".join(str(e) for e in found)
    assert actor_children() == []
