"""A tiny out-of-band signal line from actors (any process, any interpreter) to a test.

Tests must not order events with sleeps, and an actor stuck in synchronous
code cannot answer over the runtime's own channel, so actors report what
they are doing ("ready 1234", "tick", "cleanup") as datagrams on an abstract
Unix socket that the test owns. Abstract names leave no file behind, so the
per-test leak check never sees them.

The sending side is plain stdlib (``send``) so it works from a sync loop that
never checkpoints, from a sub-interpreter and from a process whose parent
was SIGKILLed. A sender fails as soon as the test's socket is gone, which
ends any stuck loop built on it once its test is over.
"""

from __future__ import annotations

import os
import socket
import uuid

import trio

_SEND_TIMEOUT = 2.0


def send(address: str, text: str) -> None:
    """Send one message; raises OSError once the receiving test has gone away."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(_SEND_TIMEOUT)
        sock.sendto(text.encode(), "\0" + address)


class Beacon:
    """The receiving end, owned by a test (or a harness root) inside ``trio.run``."""

    def __init__(self, address: str | None = None) -> None:
        # A fixed address is for senders that cannot be told one (a child_init).
        self.address = address or f"backends-test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._raw.bind("\0" + self.address)
        self._sock = trio.socket.from_stdlib_socket(self._raw)
        self._pending: list[str] = []
        self.seen: list[str] = []

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Beacon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _receive(self) -> str:
        text = (await self._sock.recv(65536)).decode()
        self.seen.append(text)
        return text

    async def expect(self, kind: str) -> str:
        """Wait for the next message whose first word is ``kind``; return the rest of it.

        Messages of other kinds that arrive meanwhile are kept for later calls.
        """
        for i, text in enumerate(self._pending):
            if text.split(" ", 1)[0] == kind:
                del self._pending[i]
                return text.partition(" ")[2]
        while True:
            text = await self._receive()
            if text.split(" ", 1)[0] == kind:
                return text.partition(" ")[2]
            self._pending.append(text)

    async def expect_pids(self, kind: str, count: int) -> list[int]:
        """Collect ``count`` messages ``"<kind> <pid>"`` and return the pids."""
        return [int(await self.expect(kind)) for _ in range(count)]

    def discard(self, kind: str) -> None:
        """Forget buffered messages of ``kind`` (e.g. old ticks) and drain the socket."""
        while True:
            try:
                text = self._raw.recv(65536, socket.MSG_DONTWAIT).decode()
            except BlockingIOError:
                break
            self.seen.append(text)
            self._pending.append(text)
        self._pending = [t for t in self._pending if t.split(" ", 1)[0] != kind]

    async def quiet_for(self, kind: str, window: float) -> bool:
        """True when no ``kind`` message arrives within ``window`` seconds.

        This is an observation with a deadline (is anything still running?),
        not a way of ordering events.
        """
        self.discard(kind)
        with trio.move_on_after(window):
            await self.expect(kind)
            return False
        return True
