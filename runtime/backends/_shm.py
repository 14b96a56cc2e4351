"""Shared memory that the runtime can always clean up after a killed actor.

Segments are named ``backends-<runtoken>-<pid>-<n>`` so a parent can remove
what a SIGKILLed child created, and they bypass multiprocessing's resource
tracker, which fork children cannot share with their parent.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from collections.abc import Iterator
from multiprocessing.shared_memory import SharedMemory

from . import _paths, _state

_counter = itertools.count()
_fallback_token = secrets.token_hex(4)


def _token() -> str:
    actor = _state.current()
    return actor.run_token if actor is not None else _fallback_token


@contextlib.contextmanager
def shared_memory(size: int) -> Iterator[SharedMemory]:
    """Create a segment of ``size`` bytes; closed and unlinked on exit."""
    name = _paths.shm_name(_token(), os.getpid(), next(_counter))
    shm = SharedMemory(name=name, create=True, size=size, track=False)
    try:
        yield shm
    finally:
        shm.close()
        with contextlib.suppress(FileNotFoundError):
            shm.unlink()


@contextlib.contextmanager
def attach_shared_memory(name: str) -> Iterator[SharedMemory]:
    """Attach to an existing segment by name; closed (not unlinked) on exit."""
    shm = SharedMemory(name=name, track=False)
    try:
        yield shm
    finally:
        shm.close()
