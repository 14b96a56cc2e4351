"""The child side: connect back, say hello, run calls and streams until cancelled."""

from __future__ import annotations

import importlib
import inspect
import os
import traceback
from collections.abc import Callable
from contextlib import aclosing
from types import ModuleType
from typing import Any

import trio

from . import _main, _state
from ._ipc import Channel, connect
from ._msgs import Call, Cancel, CancelActor, Error, Hello, Return, StreamEnd, Yield
from .spawn._base import SpawnRequest

_syncbridge: ModuleType | None
try:
    from . import syncbridge as _syncbridge
except ImportError:  # the greenback feature is optional
    _syncbridge = None


_resolved: dict[str, Callable[..., Any]] = {}


def resolve(func: str) -> Callable[..., Any]:
    if (fn := _resolved.get(func)) is not None:
        return fn
    module_name, _, qualname = func.partition(":")
    obj: object = _main.load() if module_name == _main.ALIAS else importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{func} is not callable")
    _resolved[func] = obj
    return obj


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def error_msg(cid: int, exc: BaseException) -> Error:
    return Error(cid, type_name(exc), str(exc), "".join(traceback.format_exception(exc)))


async def serve_parent(request: SpawnRequest, after_hello: Callable[[], None]) -> None:
    actor = _state.init_child(request.name, request.uid, request.backend, request.run_dir, request.run_token)
    _main.set_parent_script(request.main_path)
    try:
        if request.init is not None:
            result = resolve(request.init)()
            if inspect.isawaitable(result):
                await result
        chan = Channel(await connect(request.parent_addr), peer="parent")
        actor.parent_chan = chan
        chan.send_nowait(Hello(request.uid, request.name, os.getpid()))
        after_hello()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(chan.run_writer)
            try:
                await _serve(chan)
            finally:
                await chan.aclose()
    finally:
        _state.exit_child(actor)


async def _serve(chan: Channel) -> None:
    """Dispatch the parent's messages until it cancels us or goes away."""
    calls: dict[int, trio.CancelScope] = {}
    async with trio.open_nursery() as tasks:
        try:
            async for msg in chan:
                match msg:
                    case Call(cid=cid):
                        if (todo := _call_inline(chan, msg)) is not None:
                            calls[cid] = scope = trio.CancelScope()
                            tasks.start_soon(_run_call, chan, msg, scope, calls, todo)
                    case Cancel(cid=cid):
                        if (call_scope := calls.get(cid)) is not None:
                            call_scope.cancel()
                    case CancelActor():
                        break
                    case _:
                        raise chan.violation(f"unexpected {type(msg).__name__} from the parent")
        finally:
            # Cancel request, parent gone (EOF) or protocol error: stop all work.
            tasks.cancel_scope.cancel()


_RUN = object()  # "call the function in the task"


def _call_inline(chan: Channel, msg: Call) -> object | None:
    """Answer a plain sync call right here: no task to spawn for what cannot await.

    Returns None when answered, else what the task must do: ``_RUN`` or an
    awaitable the function already returned. Not with greenback on: sync code
    may then await through its task's portal, which needs a task of its own.
    """
    if msg.stream or (_syncbridge is not None and _syncbridge.ENABLED):
        return _RUN
    try:
        fn = resolve(msg.func)
    except Exception:  # noqa: BLE001 - whatever resolving raised, the task reports it to the caller
        return _RUN
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return _RUN
    try:
        value = fn(*msg.args, **msg.kwargs)
        if inspect.isawaitable(value):
            return value
        chan.send_nowait(Return(msg.cid, value))
    except Exception as exc:  # noqa: BLE001 - a remote call's error is boxed for its caller
        if not chan.closed:
            chan.send_nowait(error_msg(msg.cid, exc))
    return None


async def _run_call(
    chan: Channel,
    msg: Call,
    scope: trio.CancelScope,
    calls: dict[int, trio.CancelScope],
    todo: object = _RUN,
) -> None:
    cid = msg.cid
    try:
        with scope:
            if _syncbridge is not None and _syncbridge.ENABLED:
                await _syncbridge.prepare_task()
            fn = resolve(msg.func)
            if msg.stream:
                await _run_stream(chan, cid, fn(*msg.args, **msg.kwargs), msg.func)
            else:
                value = fn(*msg.args, **msg.kwargs) if todo is _RUN else todo
                if inspect.isawaitable(value):
                    value = await value
                chan.send_nowait(Return(cid, value))
    except Exception as exc:  # noqa: BLE001 - a remote call's error is boxed for its caller
        if not chan.closed:
            chan.send_nowait(error_msg(cid, exc))
    finally:
        calls.pop(cid, None)


async def _run_stream(chan: Channel, cid: int, agen: object, func: str) -> None:
    if not inspect.isasyncgen(agen):
        raise TypeError(f"{func} is not an async generator function")
    async with aclosing(agen):
        async for value in agen:
            await chan.send(Yield(cid, value))
    chan.send_nowait(StreamEnd(cid))
