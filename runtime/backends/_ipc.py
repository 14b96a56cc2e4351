"""Framed msgspec channels over UDS (default) or TCP.

Frames are a 4-byte big-endian length and a msgpack payload. Each channel
owns one encoder and one decoder, and one writer task: senders only append
to a buffer, so a cancelled sender can never leave half a frame on the wire,
and bursts (streams) go out in few syscalls.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path
from typing import Literal

import msgspec
import trio

from ._errors import ProtocolError, TransportClosed
from ._msgs import Msg, ProtocolViolation

Transport = Literal["uds", "tcp"]
Address = tuple[str, str] | tuple[str, str, int]  # ("uds", path) | ("tcp", host, port)

MAX_FRAME = 64 * 1024 * 1024
_HIGH_WATER = 256 * 1024
_RECV_SIZE = 256 * 1024
_CLOSE_FLUSH_TIMEOUT = 1.0


class Channel:
    """One peer connection. One task reads (``receive``/``async for``); any task sends."""

    def __init__(self, stream: trio.abc.Stream, peer: str = "?") -> None:
        self.peer = peer
        self._stream = stream
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Msg)
        self._out = bytearray()
        self._wake = trio.Event()
        self._space = trio.lowlevel.ParkingLot()
        self._inbuf = bytearray()
        self._pos = 0
        self._closed = False
        self._broken: BaseException | None = None
        self._writer_done = trio.Event()
        self._writer_scope = trio.CancelScope(shield=True)
        self._writer_idle = False
        sock = getattr(stream, "socket", None)
        self._fd: int | None = sock.fileno() if sock is not None else None

    @property
    def closed(self) -> bool:
        return self._closed or self._broken is not None

    # -- sending ---------------------------------------------------------
    def send_nowait(self, msg: Msg) -> None:
        if self.closed:
            raise TransportClosed(f"channel to {self.peer} is closed")
        payload = self._encoder.encode(msg)
        if len(payload) > MAX_FRAME:
            raise ProtocolError(f"message of {len(payload)} bytes exceeds the frame limit")
        frame = len(payload).to_bytes(4, "big") + payload
        sent = 0
        if self._writer_idle and not self._out and self._fd is not None:
            # Fast path: the socket is non-blocking and nothing is queued, so a
            # direct write keeps order and saves a task switch per message.
            try:
                sent = os.write(self._fd, frame)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._broken = exc
                raise TransportClosed(f"channel to {self.peer} broke: {exc}") from exc
        if sent < len(frame):
            self._out += frame[sent:]
            self._wake.set()

    async def send(self, msg: Msg) -> None:
        """Queue ``msg``; wait only when the peer is not keeping up."""
        self.send_nowait(msg)
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._out) > _HIGH_WATER and not self.closed:
            await self._space.park()
        if self._broken is not None:
            raise TransportClosed(f"channel to {self.peer} broke: {self._broken}")

    async def run_writer(self) -> None:
        """Flush queued frames until the channel closes. Run it in a nursery.

        Shielded: the writer stops when the channel is closed, not when the
        task that owns it is cancelled, so a cancel request queued during a
        cancelled teardown still reaches the peer. ``aclose`` bounds it.
        """
        try:
            with self._writer_scope:
                await self._write_until_closed()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._broken = exc
        finally:
            self._writer_done.set()
            self._space.unpark_all()

    async def _write_until_closed(self) -> None:
        while True:
            if not self._out:
                if self._closed:
                    return
                self._wake = trio.Event()
                self._writer_idle = True
                try:
                    await self._wake.wait()
                finally:
                    self._writer_idle = False
                continue
            data, self._out = self._out, bytearray()
            await self._stream.send_all(data)
            self._space.unpark_all()

    # -- receiving -------------------------------------------------------
    async def receive(self) -> Msg | None:
        """The next message, or None at a clean end of stream."""
        while True:
            msg = self._next_buffered()
            if msg is not None:
                return msg
            try:
                data = await self._stream.receive_some(_RECV_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                if self._closed:
                    return None
                raise TransportClosed(f"channel to {self.peer} broke: {exc}") from exc
            if not data:
                if len(self._inbuf) > self._pos:
                    raise self._violation(
                        f"connection closed inside a frame ({len(self._inbuf) - self._pos} bytes pending)"
                    )
                return None
            if self._pos > _RECV_SIZE:
                del self._inbuf[: self._pos]
                self._pos = 0
            self._inbuf += data

    def _next_buffered(self) -> Msg | None:
        buf, pos = self._inbuf, self._pos
        if len(buf) - pos < 4:
            return None
        size = int.from_bytes(buf[pos : pos + 4], "big")
        if size > MAX_FRAME:
            raise self._violation(f"frame length {size} exceeds the limit of {MAX_FRAME}")
        end = pos + 4 + size
        if len(buf) < end:
            return None
        try:
            msg: Msg = self._decoder.decode(memoryview(buf)[pos + 4 : end])
        except msgspec.DecodeError as exc:
            raise self._violation(f"malformed frame: {exc}") from None
        self._pos = end
        if type(msg) is ProtocolViolation:
            self._closed = True
            raise ProtocolError(f"{self.peer} closed the channel: {msg.reason}")
        return msg

    def violation(self, reason: str) -> ProtocolError:
        """Tell the peer why we are closing, and return the error to raise here."""
        return self._violation(reason)

    def _violation(self, reason: str) -> ProtocolError:
        if not self.closed:
            with contextlib.suppress(TransportClosed, ProtocolError):
                self.send_nowait(ProtocolViolation(reason))
        self._closed = True
        self._wake.set()
        return ProtocolError(f"protocol error on channel to {self.peer}: {reason}")

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> Msg:
        msg = await self.receive()
        if msg is None:
            raise StopAsyncIteration
        return msg

    # -- closing ---------------------------------------------------------
    async def aclose(self) -> None:
        """Flush what is queued (bounded), then close the socket."""
        self._closed = True
        self._wake.set()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(_CLOSE_FLUSH_TIMEOUT):
                if self._out and self._broken is None:
                    await self._writer_done.wait()
            self._writer_scope.cancel()  # a peer that stopped reading cannot hold us
            await self._stream.aclose()


async def connect(addr: Address) -> trio.SocketStream:
    if addr[0] == "uds":
        return await trio.open_unix_socket(addr[1])
    assert len(addr) == 3, addr
    stream = await trio.open_tcp_stream(addr[1], addr[2])
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    return stream


async def open_listener(transport: Transport, path: Path | None) -> tuple[trio.SocketListener, Address]:
    """Bind a listener; UDS at ``path`` (replacing a stale file), TCP on loopback."""
    if transport == "tcp":
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        host, port = sock.getsockname()
        return trio.SocketListener(sock), ("tcp", host, port)
    assert path is not None
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    try:
        await sock.bind(os.fspath(path))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENAMETOOLONG or len(os.fspath(path)) > 107:
            raise OSError(exc.errno, f"socket path too long: {path}") from None
        raise
    sock.listen(128)
    return trio.SocketListener(sock), ("uds", os.fspath(path))
