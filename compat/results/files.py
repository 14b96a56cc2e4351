"""Reading a raw file safely: regular files only, bounded in size, never blocking."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

RAW_LIMIT = 256 * 1024 * 1024  # no raw file of a real cell comes near this
UNREADABLE = b"\0unreadable"


def read_raw(path: Path, limit: int = RAW_LIMIT) -> bytes:
    """A raw file's bytes: regular files only (a FIFO would block for ever), at most ``limit``.

    Raises FileNotFoundError when absent, OSError (with the reason) otherwise.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"{info.st_size} bytes, over the {limit}-byte limit")
        return f.read(limit + 1)


def read_optional(path: Path) -> bytes | None:
    try:
        return read_raw(path)
    except FileNotFoundError:
        return None
    except OSError:
        return UNREADABLE
