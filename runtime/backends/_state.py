"""Per-process (per-interpreter) actor state: who we are, our run dir, our listener.

A root actor exists while at least one of its nurseries is open; it owns the
run directory that every actor of its tree binds socket files in. Forked
children inherit this module's memory and must call ``reset_after_fork``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import trio

from . import _paths
from ._ipc import Address, Channel, Transport, open_listener
from ._msgs import Hello

_HANDSHAKE_TIMEOUT = 10.0


@dataclass(eq=False)
class Actor:
    name: str
    uid: str
    is_root: bool
    backend: str
    run_dir: Path
    run_token: str
    pid: int = field(default_factory=os.getpid)
    listeners: dict[Transport, Listener] = field(default_factory=dict)
    users: int = 0
    parent_chan: Channel | None = None
    subreaper: bool = False  # the cffi group made this root adopt orphans
    child_pids: set[int] = field(default_factory=set)  # direct children a handle waits on
    boot_gates: dict[str, trio.Semaphore] = field(default_factory=dict)
    _listener_lock: trio.Lock = field(default_factory=trio.Lock)

    async def ensure_listener(self, transport: Transport) -> Listener:
        async with self._listener_lock:  # concurrent first spawns share one listener
            if transport not in self.listeners:
                listener = Listener(self, transport)
                await listener.start()
                self.listeners[transport] = listener
        return self.listeners[transport]

    def close_listeners(self) -> None:
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()


class _Pending:
    def __init__(self) -> None:
        self.event = trio.Event()
        self.chan: Channel | None = None


class Listener:
    """Accepts children connecting back and hands each to the task that spawned it."""

    def __init__(self, actor: Actor, transport: Transport) -> None:
        self.actor = actor
        self.transport = transport
        self.address: Address | None = None
        self.path: Path | None = None
        self._pending: dict[str, _Pending] = {}
        self._scope = trio.CancelScope()

    async def start(self) -> None:
        if self.transport == "uds":
            self.path = self.actor.run_dir / _paths.socket_name(
                self.actor.name, self.actor.pid, _paths.interpreter_id()
            )
        self._listener, self.address = await open_listener(self.transport, self.path)
        # A system task: the listener outlives any one nursery of this actor.
        trio.lowlevel.spawn_system_task(self._serve, name=f"backends-listener[{self.actor.name}]")

    def expect(self, uid: str) -> _Pending:
        self._pending[uid] = pending = _Pending()
        return pending

    def forget(self, uid: str) -> None:
        self._pending.pop(uid, None)

    async def _serve(self) -> None:
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    while True:
                        stream = await self._listener.accept()
                        nursery.start_soon(self._handshake, stream)
        except Exception as exc:  # noqa: BLE001 - a system task must not crash the run
            print(f"backends: listener of {self.actor.name} failed: {exc!r}", file=sys.stderr)
        finally:
            with trio.CancelScope(shield=True):
                await self._listener.aclose()
            if self.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()

    async def _handshake(self, stream: trio.SocketStream) -> None:
        chan = Channel(stream, peer="child")
        with trio.move_on_after(_HANDSHAKE_TIMEOUT):
            try:
                msg = await chan.receive()
            except Exception:  # noqa: BLE001 - any failed hello is refused the same way
                msg = None
            if type(msg) is Hello and (pending := self._pending.pop(msg.uid, None)):
                chan.peer = f"actor {msg.name!r}"
                pending.chan = chan
                pending.event.set()
                return
        with trio.CancelScope(shield=True):
            await stream.aclose()

    def close(self) -> None:
        self._scope.cancel()


_current: Actor | None = None


def current() -> Actor | None:
    return _current


def enter_root(backend: str) -> Actor:
    """The actor of this process, becoming the root of a new tree if there is none."""
    global _current
    if _current is None:
        token = secrets.token_hex(4)
        base = _paths.runtime_base()
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        run_dir = base / _paths.run_dir_name(os.getpid(), token)
        run_dir.mkdir(mode=0o700)
        _current = Actor("root", secrets.token_hex(8), True, backend, run_dir, token)
    _current.users += 1
    return _current


def leave(actor: Actor) -> None:
    """A nursery of ``actor`` closed; the root tears its tree's leftovers down last."""
    global _current
    actor.users -= 1
    if actor.users or not actor.is_root:
        return
    actor.close_listeners()
    unlink_shm(actor.run_token)
    shutil.rmtree(actor.run_dir, ignore_errors=True)
    _current = None


def init_child(name: str, uid: str, backend: str, run_dir: str, run_token: str) -> Actor:
    global _current
    _current = Actor(name, uid, False, backend, Path(run_dir), run_token)
    return _current


def exit_child(actor: Actor) -> None:
    global _current
    actor.close_listeners()
    _current = None


def reset_after_fork() -> None:
    """Forget the parent's actor: its listeners and tasks do not exist here."""
    global _current
    _current = None


def unlink_shm(run_token: str, pid: int | None = None) -> None:
    """Segments of this run (`backends-<token>-<pid>-<n>`), or of one process of it."""
    pattern = f"/dev/shm/{_paths.shm_glob(run_token, pid)}"
    for path in glob.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def cleanup_pid(actor: Actor, pid: int) -> None:
    """Remove what a dead process of our tree may have left: socket files, shm."""
    for pattern in _paths.socket_globs(pid):
        for path in actor.run_dir.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    unlink_shm(actor.run_token, pid)
