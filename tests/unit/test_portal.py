"""Portal bookkeeping at the edge a real run reaches only by chance: an answer that
lands in the same scheduler tick as its caller's cancellation.

The channel is real (a socketpair); no child is needed: the calls in flight are the
supervisor's Calls, which know the child only by name.
"""

from __future__ import annotations

import socket

import outcome
import trio
import trio.testing

from backends._errors import RemoteActorError
from backends._ipc import Channel
from backends._portal import Calls


def test_an_error_resolved_while_its_caller_is_being_cancelled_is_kept():
    async def main():
        ours, theirs = socket.socketpair()
        chan = Channel(trio.SocketStream(trio.socket.from_stdlib_socket(ours)), peer="child")
        calls = Calls("child", chan)
        error = RemoteActorError("child", "AssertionError", "late", "")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(chan.run_writer)
            caller = trio.CancelScope()

            async def call():
                with caller:
                    await calls.call("os:getpid", (), {})

            nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()
            assert list(calls._calls) == [0]
            # Both in one tick: the caller is rescheduled with Cancelled, then its
            # answer arrives before it gets to run its handler.
            caller.cancel()
            calls._resolve(0, outcome.Error(error))
            await trio.testing.wait_all_tasks_blocked()
            await chan.aclose()
            nursery.cancel_scope.cancel()
        theirs.close()
        assert calls.unclaimed == [error]
        assert calls._calls == {}

    trio.run(main)
