"""``trio`` backend: a fresh interpreter per child (``python -m backends._child``).

The child is started with ``posix_spawn`` from the trio thread itself: the
spawning thread must live as long as the child, because the cffi group's
``PR_SET_PDEATHSIG`` fires when that thread (not the process) exits, and
trio's ``open_process`` spawns from a worker thread that retires when idle.
"""

from __future__ import annotations

import base64
import os
import sys
from typing import Any

import msgspec

from ._base import OutputTail, PidfdHandle, SpawnRequest

NAME = "trio"
_STDERR_FD = 3  # where the child finds the inherited stderr during boot


def unavailable() -> str | None:
    if not hasattr(os, "pidfd_open"):
        return "needs os.pidfd_open (Linux 5.3+) for cancellable child waits"
    return None


def _inheritable_fds() -> list[int]:
    """Descriptors above stdio a child would inherit: posix_spawn has no close_fds."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= _STDERR_FD:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:
                pass  # the listdir's own descriptor, already closed
    return found


class TrioBackend:
    name = NAME
    # A boot is CPU-bound (imports): more at once than cores only thrash, and
    # those still queued when a sibling's failure cancels the nursery never start.
    boot_width = max(2, len(os.sched_getaffinity(0)))

    def unavailable(self) -> str | None:
        return unavailable()

    async def spawn(self, request: SpawnRequest) -> PidfdHandle:
        request = msgspec.structs.replace(request, stderr_fd=_STDERR_FD)
        arg = base64.b64encode(msgspec.msgpack.encode(request)).decode()
        boot_r, boot_w = os.pipe()
        # Closes first: the dups below may land on a number the parent had inheritable.
        actions: list[tuple[Any, ...]] = [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
        actions += [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, 2, _STDERR_FD),
            (os.POSIX_SPAWN_DUP2, boot_w, 2),
        ]
        if request.stdio == "pipe":
            actions.append((os.POSIX_SPAWN_DUP2, boot_w, 1))
        try:
            # From the trio thread itself, on purpose: PR_SET_PDEATHSIG follows the
            # spawning thread (docs/DESIGN.md, "Spawning, as built"); posix_spawn does not block.
            pid = os.posix_spawn(  # noqa: ASYNC221
                sys.executable,
                [sys.executable, "-m", "backends._child", arg],
                os.environ,
                file_actions=actions,
            )
        except BaseException:
            os.close(boot_r)
            raise
        finally:
            os.close(boot_w)
        return PidfdHandle(request.name, pid, OutputTail(boot_r))


BACKEND = TrioBackend()
