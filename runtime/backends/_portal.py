"""The parent's handle on one child: calls, streams, cancellation."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import outcome
import trio

from . import _main
from ._errors import RemoteActorError, TransportClosed
from ._ipc import Channel
from ._msgs import Call, Cancel, Error, Return, StreamEnd, Yield
from .spawn._base import ChildHandle

_STREAM_BUFFER = 4096


def func_ref(fn: Callable[..., Any] | str) -> str:
    """``module:qualname`` for a module-level function, checked here, not in the child."""
    if isinstance(fn, str):
        if ":" not in fn:
            raise ValueError(f"function reference {fn!r} must look like 'module:qualname'")
        return fn
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        raise TypeError(f"{fn!r} cannot be called in another actor: only module-level functions can")
    if module == "__main__":
        module = _main.module_for(fn)
    return f"{module}:{qualname}"


class _StreamFailed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class MsgStream:
    """Values yielded by an async generator in the child, in order."""

    def __init__(self, receive: trio.MemoryReceiveChannel[Any]) -> None:
        self._receive = receive

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        if isinstance(item, _StreamFailed):
            raise item.error
        return item

    async def receive(self) -> Any:
        return await self.__anext__()


class ChildControl(Protocol):
    """What a portal needs of its child's supervisor: its name, its process, and a way to stop it."""

    name: str
    handle: ChildHandle

    async def stop(self) -> None: ...


class Calls:
    """The calls and streams in flight over one child's channel: what the portal's users wait on,
    and what the supervising nursery feeds (``serve``, ``drain``) and fails (``fail_all``)."""

    def __init__(self, name: str, chan: Channel) -> None:
        self.name = name
        self.chan = chan
        self._ids = itertools.count()
        self._calls: dict[int, trio.Event | outcome.Outcome[Any]] = {}
        self._streams: dict[int, trio.MemorySendChannel[Any]] = {}
        self._closed_reason: str | None = None
        # Errors the child raised for calls whose callers had gone (cancelled):
        # they fail the child's supervision instead of vanishing.
        self.unclaimed: list[BaseException] = []

    def check_open(self) -> None:
        if self._closed_reason is not None:
            raise TransportClosed(f"actor {self.name!r} is gone: {self._closed_reason}")

    async def call(self, ref: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.check_open()
        cid = next(self._ids)
        done = trio.Event()
        self._calls[cid] = done
        try:
            await self.chan.send(Call(cid, ref, args, kwargs))
            await done.wait()
        except BaseException:
            late = self._calls.pop(cid, None)
            if late is done:
                if not self.chan.closed:
                    self.chan.send_nowait(Cancel(cid))
            elif isinstance(late, outcome.Error):
                # The answer landed between our cancellation and this handler
                # running: nobody will unwrap it, so it must not vanish.
                self.unclaimed.append(late.error)
            raise
        result = self._calls.pop(cid)
        assert isinstance(result, outcome.Outcome)
        return result.unwrap()

    @asynccontextmanager
    async def stream(self, ref: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AsyncIterator[MsgStream]:
        self.check_open()
        cid = next(self._ids)
        send, receive = trio.open_memory_channel(_STREAM_BUFFER)
        self._streams[cid] = send
        try:
            await self.chan.send(Call(cid, ref, args, kwargs, stream=True))
            async with receive:
                yield MsgStream(receive)
        finally:
            if self._streams.pop(cid, None) is not None and not self.chan.closed:
                self.chan.send_nowait(Cancel(cid))

    async def serve(self) -> None:
        """Dispatch the child's answers until the channel ends (the supervisor's task)."""
        async for msg in self.chan:
            match msg:
                case Return(cid=cid, value=value):
                    self._resolve(cid, outcome.Value(value))
                case Error(cid=cid):
                    error = self._box(msg)
                    if cid in self._streams:
                        await self._stream_put(cid, _StreamFailed(error), end=True)
                    else:
                        self._resolve(cid, outcome.Error(error))
                case Yield(cid=cid, value=value):
                    await self._stream_put(cid, value)
                case StreamEnd(cid=cid):
                    await self._stream_put(cid, None, end=True)
                case _:
                    raise self.chan.violation(f"unexpected {type(msg).__name__} from a child")

    def _box(self, msg: Error) -> RemoteActorError:
        return RemoteActorError(self.name, msg.type_name, msg.message, msg.traceback)

    def _resolve(self, cid: int, result: outcome.Outcome[Any]) -> None:
        waiter = self._calls.get(cid)
        if isinstance(waiter, trio.Event):
            self._calls[cid] = result
            waiter.set()
        elif isinstance(result, outcome.Error):  # the caller gave up (cancelled)
            self.unclaimed.append(result.error)

    async def drain(self) -> None:
        """Read what the child still says while it is torn down: late errors count."""
        with contextlib.suppress(Exception):
            async for msg in self.chan:
                if type(msg) is Error:
                    self._resolve(msg.cid, outcome.Error(self._box(msg)))

    async def _stream_put(self, cid: int, item: Any, end: bool = False) -> None:
        send = self._streams.get(cid)
        if send is None:
            return
        try:
            if not end or item is not None:
                await send.send(item)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        if end:
            self._streams.pop(cid, None)
            await send.aclose()

    def fail_all(self, reason: str) -> None:
        """The channel is gone: every waiting call and stream learns it now."""
        self._closed_reason = reason
        error = TransportClosed(f"actor {self.name!r} is gone: {reason}")
        for cid, waiter in list(self._calls.items()):
            if isinstance(waiter, trio.Event):
                self._calls[cid] = outcome.Error(error)
                waiter.set()
        for send in self._streams.values():
            with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                send.send_nowait(_StreamFailed(error))
            send.close()
        self._streams.clear()


class Portal:
    """Run functions in one child actor; returned by ``ActorNursery.start_actor``."""

    def __init__(self, child: ChildControl, calls: Calls) -> None:
        self._child = child
        self._calls = calls

    @property
    def name(self) -> str:
        return self._child.name

    @property
    def pid(self) -> int | None:
        return self._child.handle.pid

    @property
    def exitcode(self) -> int | None:
        """The child's exit code once it is gone (negative: killed by that signal)."""
        return self._child.handle.poll()

    async def run(self, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` in the child (sync or async) and return its value."""
        return await self._calls.call(func_ref(fn), args, kwargs)

    @asynccontextmanager
    async def open_stream(self, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> AsyncIterator[MsgStream]:
        """Iterate an async generator running in the child; leaving early cancels it."""
        async with self._calls.stream(func_ref(fn), args, kwargs) as stream:
            yield stream

    async def cancel_actor(self) -> None:
        """Stop the child: cancel request, then escalation; returns once it is gone."""
        await self._child.stop()
