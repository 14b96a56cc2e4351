"""Actor nurseries: spawn children, supervise them, tear them down in bounded steps.

Teardown ladder per child, every wait bounded and shielded: cancel request ->
wait -> terminate (SIGTERM; a sub-interpreter is abandoned) -> wait -> kill
(SIGKILL of its whole subtree) -> wait -> remove its socket files and shm.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from . import _main, _state, spawn
from ._errors import ActorBootError, TransportClosed
from ._ipc import Channel, Transport
from ._msgs import CancelActor
from ._portal import Calls, Portal, func_ref
from .spawn._base import ChildHandle, SpawnRequest, StdioPolicy

# Exit codes of a child stopped by an interrupt rather than a failure.
_INTERRUPTED = {0, 130, -2, None}


@dataclass(frozen=True)
class Timeouts:
    """Bounds of the teardown ladder, in seconds."""

    cancel: float = 1.0  # after the cancel request, before terminate
    terminate: float = 1.0  # after SIGTERM (or abandoning a sub-interpreter), before kill
    kill: float = 1.0  # after SIGKILL, before giving up waiting
    subint: float = 3.0  # a sub-interpreter's whole bound before it is abandoned


class _Child:
    """One supervised child; its task owns the spawn, the channel and the teardown."""

    def __init__(self, name: str, timeouts: Timeouts) -> None:
        self.name = name
        self.timeouts = timeouts
        self.handle: ChildHandle
        self.chan: Channel | None = None
        self.calls: Calls | None = None
        self.portal: Portal | None = None
        self.stop_requested = trio.Event()
        self.done = trio.Event()
        self._cancel_sent = False

    async def stop(self) -> None:
        self.stop_requested.set()
        await self.done.wait()

    def _send_cancel(self) -> None:
        if not self._cancel_sent and self.chan is not None and not self.chan.closed:
            self._cancel_sent = True
            self.chan.send_nowait(CancelActor())

    async def _wait(self, bound: float) -> bool:
        with trio.move_on_after(bound):
            await self.handle.wait()
        return self.handle.poll() is not None

    async def _drain(self, drained: trio.Event) -> None:
        assert self.calls is not None
        try:
            await self.calls.drain()
        finally:
            drained.set()

    async def teardown(self) -> None:
        """The ladder. Shielded and bounded: runs to the end even when cancelled."""
        t = self.timeouts
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as drain:
                drained = trio.Event()
                if self.portal is not None and self.chan is not None and not self.chan.closed:
                    drain.start_soon(self._drain, drained)
                else:
                    drained.set()
                abandoned = False
                if self.handle.poll() is None:
                    self._send_cancel()
                    graceful = t.subint if self.handle.kind == "interpreter" else t.cancel
                    if not await self._wait(graceful):
                        self.handle.terminate()
                        abandoned = self.handle.kind == "interpreter"
                        if not await self._wait(t.terminate):
                            self.handle.kill()
                            await self._wait(t.kill)
                if self.handle.poll() is not None and not abandoned:
                    # What it wrote before going is still buffered in the socket,
                    # and EOF follows it: read that far, so a last error is kept.
                    # (An abandoned interpreter still runs: no EOF is coming.)
                    with trio.move_on_after(t.kill):
                        await drained.wait()
                drain.cancel_scope.cancel()
            if self.chan is not None:
                await self.chan.aclose()


class _BootSlot:
    """A place among the children of one backend booting at once in this actor.

    Held from before the spawn until the handshake, and never longer than
    ``HOLD``: it spreads boots out, it must not let one stuck boot stall the rest.
    """

    HOLD = 5.0

    def __init__(self, actor: _state.Actor, backend: spawn.SpawnBackend) -> None:
        width = backend.boot_width
        self._gate = None if width is None else actor.boot_gates.setdefault(backend.name, trio.Semaphore(width))
        self._held = False

    async def acquire(self) -> None:
        if self._gate is not None:
            await self._gate.acquire()
            self._held = True

    def release(self) -> None:
        if self._held and self._gate is not None:
            self._held = False
            self._gate.release()

    async def expire(self) -> None:
        if self._held:
            await trio.sleep(self.HOLD)
            self.release()


class ActorNursery:
    """Spawn and supervise actors; one failing child cancels the rest."""

    def __init__(
        self,
        nursery: trio.Nursery,
        actor: _state.Actor,
        backend: spawn.SpawnBackend,
        transport: Transport,
        stdio: StdioPolicy,
        timeouts: Timeouts,
        child_init: str | None = None,
    ) -> None:
        self._nursery = nursery
        self._actor = actor
        self._backend = backend
        self._transport = transport
        self._stdio = stdio
        self._timeouts = timeouts
        self._child_init = child_init
        self._children: set[_Child] = set()

    @property
    def backend(self) -> str:
        return self._backend.name

    async def start_actor(self, name: str) -> Portal:
        """Spawn ``name``; returns once the child answered the handshake."""
        portal: Portal = await self._nursery.start(self._supervise, name)
        return portal

    async def run_in_actor(
        self, fn: Callable[..., Any] | str, *args: Any, name: str | None = None, **kwargs: Any
    ) -> Any:
        """Spawn an actor, run ``fn`` in it, stop it, and return the value."""
        if name is None:
            name = fn if isinstance(fn, str) else getattr(fn, "__name__", "actor")
            name = name.rpartition(":")[2]
        portal = await self.start_actor(name)
        try:
            return await portal.run(fn, *args, **kwargs)
        finally:
            with trio.CancelScope(shield=True):
                await portal.cancel_actor()

    async def cancel(self) -> None:
        """Stop every child of this nursery, concurrently; returns once all are gone."""
        children = list(self._children)
        for child in children:
            child.stop_requested.set()
        for child in children:
            await child.done.wait()

    def _request(self, name: str, uid: str, address: Any) -> SpawnRequest:
        return SpawnRequest(
            name=name,
            uid=uid,
            backend=self._backend.name,
            parent_addr=address,
            parent_pid=os.getpid(),
            run_dir=os.fspath(self._actor.run_dir),
            run_token=self._actor.run_token,
            transport=self._transport,
            sys_path=list(sys.path),
            stdio=self._stdio,
            init=self._child_init,
            main_path=_main.script_for_children(),
        )

    async def _supervise(self, name: str, *, task_status: trio.TaskStatus[Portal]) -> None:
        listener = await self._actor.ensure_listener(self._transport)
        uid = secrets.token_hex(8)
        pending = listener.expect(uid)
        child = _Child(name, self._timeouts)
        slot = _BootSlot(self._actor, self._backend)
        await self._spawn(child, slot, listener, uid)
        self._children.add(child)
        if child.handle.pid:
            self._actor.child_pids.add(child.handle.pid)
        failure: BaseException | None = None
        try:
            async with _collapsing(), trio.open_nursery() as io:
                io.start_soon(child.handle.run_io)
                io.start_soon(slot.expire)
                try:
                    child.chan = await self._handshake(child, pending)
                    slot.release()
                    io.start_soon(child.chan.run_writer)
                    child.calls = Calls(child.name, child.chan)
                    child.portal = portal = Portal(child, child.calls)
                    task_status.started(portal)
                    failure = await self._run(child, child.calls)
                finally:
                    slot.release()
                    if child.chan is None:
                        # Cancelled while it boots: nobody will ever talk to it. Its
                        # hello is refused (or, already accepted, closed), so it meets
                        # EOF and stops as if orphaned instead of waiting out a bound.
                        listener.forget(uid)
                        if pending.chan is not None:
                            await pending.chan.aclose()
                    await child.teardown()
                    io.cancel_scope.cancel()
            failure = failure or _unclaimed(child)
        except BaseException as exc:
            # Cancelled by a failing sibling: errors this child raised meanwhile
            # still join the nursery's group rather than vanish. A real error
            # in flight is never replaced.
            if (late := _unclaimed(child)) is not None and _only_cancelled(exc):
                raise late from None
            raise
        finally:
            listener.forget(uid)
            await self._forget(child)
        if failure is not None:
            raise failure

    async def _spawn(self, child: _Child, slot: _BootSlot, listener: _state.Listener, uid: str) -> None:
        """Start the child's process (or interpreter) within a boot slot; on failure, forget it."""
        try:
            await slot.acquire()
            child.handle = await self._backend.spawn(self._request(child.name, uid, listener.address))
        except BaseException:
            slot.release()
            listener.forget(uid)
            child.done.set()
            raise

    async def _forget(self, child: _Child) -> None:
        """After the child's teardown: its files, its pids, and any process it left to us."""
        child.handle.cleanup()
        pids = child.handle.pids()
        for pid in pids:
            _state.cleanup_pid(self._actor, pid)
        self._actor.child_pids.discard(child.handle.pid)
        if self._actor.subreaper and len(pids) > 1:
            await _reap_adopted(self._actor, pids[1:])
        self._children.discard(child)
        child.done.set()

    async def _handshake(self, child: _Child, pending: _state._Pending) -> Channel:
        """The child's hello, raced against its death during boot."""
        async with trio.open_nursery() as race:

            async def watch_death() -> None:
                await child.handle.wait()
                race.cancel_scope.cancel()

            race.start_soon(watch_death)
            await pending.event.wait()
            race.cancel_scope.cancel()
        if pending.chan is None:
            # A spawner being cancelled sees its child go too: that is not a boot death.
            await trio.lowlevel.checkpoint_if_cancelled()
            raise ActorBootError(child.name, child.handle.poll(), await child.handle.boot_output())
        if self._stdio == "pipe":
            child.handle.forward_output()
        return pending.chan

    async def _run(self, child: _Child, calls: Calls) -> BaseException | None:
        """Serve the child's messages until it is asked to stop or goes away."""
        async with trio.open_nursery() as inner:

            async def on_stop() -> None:
                await child.stop_requested.wait()
                child._send_cancel()
                # The child closes the channel as it exits; bound the wait.
                await trio.sleep(child.timeouts.cancel)
                inner.cancel_scope.cancel()

            inner.start_soon(on_stop)
            try:
                await calls.serve()
            except TransportClosed as exc:
                calls.fail_all(str(exc))
            inner.cancel_scope.cancel()
        code = child.handle.poll()
        if code is None:
            with trio.move_on_after(child.timeouts.cancel):
                code = await child.handle.wait()
        reason = "it exited" if code is None else f"it exited with code {code}"
        if child.stop_requested.is_set():
            reason = "it was cancelled"
        calls.fail_all(reason)
        if not child.stop_requested.is_set() and code not in _INTERRUPTED:
            return TransportClosed(f"actor {child.name!r} died unexpectedly: {reason}")
        return None


def _unclaimed(child: _Child) -> BaseException | None:
    errors = child.calls.unclaimed if child.calls is not None else []
    if not errors:
        return None
    return _collapse(BaseExceptionGroup(f"unclaimed errors from actor {child.name!r}", errors))


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


async def _reap_adopted(actor: _state.Actor, pids: list[int]) -> None:
    """Collect killed grandchildren the kernel re-parented to us (a subreaper)."""
    from . import hygiene

    with trio.CancelScope(shield=True):
        await hygiene.reap_adopted_pids(pids, own=actor.child_pids, within=1.0)


def _collapse(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


@asynccontextmanager
async def _collapsing() -> AsyncIterator[None]:
    """Re-raise a one-exception group as that exception (several stay a group)."""
    try:
        yield
    except BaseExceptionGroup as group:
        raise _collapse(group) from None


@asynccontextmanager
async def open_nursery(
    backend: str | None = None,
    transport: Transport = "uds",
    *,
    stdio: StdioPolicy = "inherit",
    timeouts: Timeouts = Timeouts(),
    child_init: Callable[..., Any] | str | None = None,
) -> AsyncIterator[ActorNursery]:
    """Open an actor nursery; the first one in a process makes it the root actor.

    ``stdio``: ``"inherit"`` (children write to our stderr's file directly) or
    ``"pipe"`` (their stdout/stderr pass through this process's ``sys.stderr``,
    which pytest's capture sees in every mode). ``child_init``: a module-level
    function run in every child before its handshake (a failure there is a
    boot death, raised as ``ActorBootError``).
    """
    if transport not in ("uds", "tcp"):
        raise ValueError(f"unknown transport {transport!r}; valid: uds, tcp")
    if stdio not in ("inherit", "pipe"):
        raise ValueError(f"unknown stdio policy {stdio!r}; valid: inherit, pipe")
    init_ref = func_ref(child_init) if child_init is not None else None
    chosen = spawn.get_backend(backend)
    actor = _state.enter_root(chosen.name)
    try:
        _maybe_become_subreaper(actor)
        async with _collapsing(), trio.open_nursery() as nursery:
            an = ActorNursery(nursery, actor, chosen, transport, stdio, timeouts, init_ref)
            yield an
            await an.cancel()
    finally:
        _state.leave(actor)
        _maybe_reap_adopted(actor)


def _maybe_become_subreaper(actor: _state.Actor) -> None:
    if actor.is_root and actor.users == 1:
        try:
            from . import hygiene
        except ImportError:
            return
        actor.subreaper = hygiene.apply_root()


def _maybe_reap_adopted(actor: _state.Actor) -> None:
    if actor.is_root and actor.users == 0:
        try:
            from . import hygiene
        except ImportError:
            return
        hygiene.reap_adopted()
