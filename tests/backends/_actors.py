"""Functions the suites run inside actors.

They live in an importable module (``tests.backends._actors``) because a
child, whatever its backend, resolves a call by module and qualified name.
Actors report progress the runtime cannot carry (a stuck loop, a finally
block that ran) through ``tests.backends._beacon.send``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
import threading
import time

import trio
import trio.lowlevel

import backends

from ._beacon import send

TICK = 0.05


# -- plain calls -----------------------------------------------------------
def add(a, b):
    return a + b


async def async_add(a, b):
    await trio.lowlevel.checkpoint()
    return a + b


def echo(value):
    return value


def whoami() -> dict:
    me = backends.current_actor()
    return {
        "name": me.name,
        "pid": me.pid,
        "os_pid": os.getpid(),
        "ppid": os.getppid(),
        "is_root": me.is_root,
        "backend": me.backend,
        "env_backend": os.environ.get("BACKENDS_SPAWN_BACKEND"),
        "sys_path_head": sys.path[:3],
    }


def loaded(module: str) -> bool:
    return module in sys.modules


def kwargs_only(*, a: int, b: int) -> int:
    return a * b


class Counter:
    """State kept by a daemon actor between calls (the module is per interpreter)."""

    value = 0


def bump() -> int:
    Counter.value += 1
    return Counter.value


# -- errors ----------------------------------------------------------------
class CustomError(Exception):
    pass


def raise_assertion(message: str = "boom"):
    raise AssertionError(message)


def raise_custom(message: str):
    raise CustomError(message)


async def raise_after_checkpoint(message: str = "fast fail"):
    await trio.lowlevel.checkpoint()
    raise AssertionError(message)


# -- streaming -------------------------------------------------------------
async def countdown(n: int):
    for i in range(n, 0, -1):
        yield i


async def count_forever(address: str | None = None):
    i = 0
    try:
        while True:
            yield i
            i += 1
            await trio.lowlevel.checkpoint()
    finally:
        if address:
            send(address, "generator-closed")


async def stream_then_fail(n: int):
    for i in range(n):
        yield i
    raise ValueError(f"stream broke after {n}")


# -- waiting, cleanly or not -----------------------------------------------
async def sleep_forever_marked(address: str, tag: str = "child"):
    """Park at a checkpoint; report that we got here and that our finally ran."""
    send(address, f"ready {os.getpid()}")
    try:
        await trio.sleep_forever()
    finally:
        send(address, f"cleanup {tag}")


async def shielded_forever(address: str):
    """Ignore cancellation while still checkpointing: only a signal (or abandon) ends it.

    It ticks, so it ends by itself once the test's beacon is gone (an
    abandoned sub-interpreter must not outlive its test).
    """
    send(address, f"ready {os.getpid()}")
    with trio.CancelScope(shield=True):
        while True:
            await trio.sleep(TICK)
            try:
                send(address, "tick")
            except OSError:
                return


async def sync_sleep_loop(address: str, mode: str = "sleep", stop_when_unheard: bool = True):
    """Never checkpoint: block the actor's event loop in synchronous waits.

    ``mode`` picks the blocking primitive (``sleep`` or ``event``). Each pass
    sends a tick so the test can see whether this is still running; when
    the test's beacon is gone the send fails and the loop ends, unless
    ``stop_when_unheard`` is false (the orphan scenario, where only the
    process's death may end it).
    """
    event = threading.Event()
    send(address, f"ready {os.getpid()}")
    while True:
        if mode == "event":
            event.wait(TICK)
        else:
            time.sleep(TICK)
        try:
            send(address, "tick")
        except OSError:
            if stop_when_unheard:
                return
            continue


async def spawn_and_park(address: str, grandchild: str, backend: str | None = None):
    """Be a parent: start a grandchild running ``grandchild`` and park.

    ``grandchild`` is ``sleep`` (checkpointing) or ``stuck`` (a sync loop).
    """
    async with backends.open_nursery(backend=backend) as an:
        portal = await an.start_actor("grandchild")
        async with trio.open_nursery() as tn:
            if grandchild == "stuck":
                tn.start_soon(portal.run, sync_sleep_loop, address)
            else:
                tn.start_soon(portal.run, sleep_forever_marked, address, "grandchild")
            send(address, f"parent {os.getpid()}")
            await trio.sleep_forever()


async def stuck_after_first_item(address: str):
    """A stream whose generator goes into a sync loop right after its first item."""
    yield "started"
    # Let the channel's writer task flush that item before the loop blocks everything.
    from trio.testing import wait_all_tasks_blocked  # lazily: it imports pytest

    await wait_all_tasks_blocked()
    await sync_sleep_loop(address)


async def run_stuck_loop_then_return(address: str):
    """Get a grandchild stuck in a sync loop, then get stuck too."""
    async with backends.open_nursery() as an:
        portal = await an.start_actor("stuck-grandchild")
        async with portal.open_stream(stuck_after_first_item, address) as stream:
            await stream.receive()
            await sync_sleep_loop(address)


# -- trees -----------------------------------------------------------------
async def spawn_grandchild_report() -> dict:
    """Recursive spawn: this child opens its own nursery and asks a grandchild who it is."""
    me = whoami()
    async with backends.open_nursery() as an:
        grandchild = await an.run_in_actor(whoami, name="grandchild")
    return {"child": me, "grandchild": grandchild}


async def failing_tree(depth: int, leaves: int):
    """Spawners nested ``depth`` levels deep; the last level runs ``leaves`` failing actors.

    Each level but the last spawns one spawner (keeping a depth-3 tree at a
    size a 2-core box spawns quickly); every failure travels up through all
    the levels above it.
    """
    if depth == 0:
        raise AssertionError(f"leaf {backends.current_actor().name} failed")
    count = leaves if depth == 1 else 1
    async with backends.open_nursery() as an, trio.open_nursery() as tn:
        for i in range(count):
            tn.start_soon(functools.partial(an.run_in_actor, failing_tree, depth - 1, leaves, name=f"d{depth - 1}-{i}"))


def fail_at_barrier(address: str, barrier: str):
    """Report, then wait synchronously (no cancel can interrupt it) until the test opens
    the barrier file, then fail: siblings fail together whatever the parent sends."""
    send(address, f"armed {os.getpid()}")
    while not os.path.exists(barrier):
        time.sleep(0.005)
    raise AssertionError(f"{backends.current_actor().name} failed at the barrier")


def born_then_fail(address: str):
    # Best effort: once the test has its first error it stops reading, and a
    # full beacon must not turn this child's failure into a TimeoutError.
    with contextlib.suppress(OSError):
        send(address, f"born {os.getpid()}")
    raise AssertionError(f"{backends.current_actor().name} failed fast")


def exit_abruptly(code: int):
    """Die without a word to the parent, as a crash would."""
    os._exit(code)


# -- output ----------------------------------------------------------------
def _deep(n: int, message: str):
    if n == 0:
        raise RuntimeError(message)
    _deep(n - 1, message)


def spew_and_fail(nbytes: int, tag: str):
    """Flood stderr at both the Python and the fd level, then fail with a long traceback."""
    line = (f"[{tag}] " + "x" * 100 + "\n").encode()
    chunk = line * max(1, nbytes // 2 // len(line))
    os.write(2, chunk)
    sys.stderr.write(chunk.decode())
    sys.stderr.flush()
    _deep(60, f"{tag} failed " + "y" * 2000)


# -- shared memory ---------------------------------------------------------
def shm_digest(name: str, size: int) -> str:
    with backends.attach_shared_memory(name) as shm:
        return hashlib.sha256(bytes(shm.buf[:size])).hexdigest()


def shm_write_back(name: str, offset: int, data: bytes) -> None:
    with backends.attach_shared_memory(name) as shm:
        shm.buf[offset : offset + len(data)] = data


def shm_own_segment(size: int) -> str:
    """Create (and on return unlink) a segment in the child; report its name."""
    with backends.shared_memory(size) as shm:
        shm.buf[:5] = b"child"
        return shm.name


async def shm_hold_until_killed(address: str, size: int):
    """Create a segment and never release it: only the parent's cleanup can."""
    with backends.shared_memory(size) as shm:
        send(address, f"segment {shm.name}")
        await sync_sleep_loop(address)


# -- channel abuse -----------------------------------------------------------
def corrupt_parent_channel(listener_path: str, garbage: bytes) -> int:
    """Write raw bytes on this actor's own connection to its parent; the fd used.

    The connection is the socket whose peer is the parent's listener path.
    """
    import socket

    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if sock.family == socket.AF_UNIX and sock.getpeername() == listener_path:
                os.write(fd, garbage)
                return fd
        except OSError:
            pass
        finally:
            sock.close()
    raise LookupError(f"no connection to {listener_path} in this actor")


async def stream_then_exit(n: int):
    for i in range(n):
        yield i
    # Let the items reach the wire, then vanish without a goodbye.
    from trio.testing import wait_all_tasks_blocked  # lazily: it imports pytest

    await wait_all_tasks_blocked()
    os._exit(7)


# -- output during a cascade -------------------------------------------------
async def park_then_spew(address: str, nbytes: int, tag: str):
    send(address, f"ready {os.getpid()}")
    try:
        await trio.sleep_forever()
    finally:
        line = (f"[{tag} cancelled] " + "z" * 100 + "\n").encode()
        os.write(2, line * max(1, nbytes // len(line)))
        import traceback

        traceback.print_stack(file=sys.stderr)


# -- sync code calling the async API -----------------------------------------
async def spawn_and_add(a, b):
    async with backends.open_nursery() as an:
        return await an.run_in_actor(add, a, b, name="bridged")


def sync_calls_async_api(a, b):
    """Synchronous code in an RPC task; needs the greenback portal syncbridge set up."""
    from backends import syncbridge

    return syncbridge.block_on(spawn_and_add(a, b))


def _sync_callback(portal, a, b):
    from backends import syncbridge

    return syncbridge.block_on(portal.run(add, a, b))


async def thread_calls_async_api(a, b):
    """A trio.to_thread worker thread calling portal.run of a grandchild."""
    async with backends.open_nursery() as an:
        portal = await an.start_actor("from-thread")
        value = await trio.to_thread.run_sync(_sync_callback, portal, a, b)
        await portal.cancel_actor()
        return value


async def callback_calls_async_api(a, b):
    """A sync callback invoked from async code, awaiting through the task's portal."""
    async with backends.open_nursery() as an:
        portal = await an.start_actor("from-callback")
        value = _sync_callback(portal, a, b)
        await portal.cancel_actor()
        return value


def block_on_without_portal() -> str:
    """block_on in a trio task without greenback must refuse clearly, not hang."""
    from backends import syncbridge

    async def nothing():
        return None

    try:
        syncbridge.block_on(nothing())
    except RuntimeError as exc:
        return str(exc)
    return "no error"


# -- process details -----------------------------------------------------------
def fd_targets() -> list[str]:
    """What this process's open fds point at."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out.append(os.readlink(f"/proc/self/fd/{name}"))
    return out


def proc_identity() -> dict:
    def read(name: str) -> str:
        try:
            with open(f"/proc/self/{name}", "rb") as f:
                return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return ""

    return {
        "pid": os.getpid(),
        "comm": read("comm"),
        "cmdline": read("cmdline"),
        "main_thread": threading.current_thread() is threading.main_thread(),
        "threads": threading.active_count(),
    }


def tracked_shm_roundtrip(size: int) -> bytes:
    """multiprocessing's default (tracked) SharedMemory must work in any actor."""
    from multiprocessing.shared_memory import SharedMemory

    shm = SharedMemory(create=True, size=size)
    try:
        shm.buf[:4] = b"ok!!"
        return bytes(shm.buf[:4])
    finally:
        shm.close()
        shm.unlink()
