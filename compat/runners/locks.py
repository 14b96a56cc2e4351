"""One builder at a time for a thing several runs may build at once: an image, a venv, a wheel.

Two runs on one host (two CI jobs, two `compat run`s, two test workers)
that need the same image tag would otherwise build it twice, and the later
build would replace the tag under the earlier run's feet. The lock is the
kernel's (flock), so it goes with its holder, however that one ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator

from ..paths import CACHE_ROOT

LOCKS = CACHE_ROOT / "locks"


@contextlib.contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold the host-wide lock called ``name`` (any string) for the block."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    path = LOCKS / (hashlib.sha256(name.encode()).hexdigest()[:24] + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
