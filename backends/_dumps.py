"""Hang dumps into files: faulthandler on SIGUSR1, when $BACKENDS_DUMP_DIR is set.

pytest's capture swallows stderr, so a supervisor outside the process asks
for stacks with SIGUSR1 and reads them from files instead.
"""

from __future__ import annotations

import faulthandler
import os
import signal
from pathlib import Path
from typing import TextIO

from ._paths import sanitise

ENV_VAR = "BACKENDS_DUMP_DIR"

# faulthandler keeps only the fd; the file object must outlive the registration.
_file: TextIO | None = None
_file_pid: int | None = None
# Files inherited through a fork: their fd numbers were closed in the child
# and may be reused, so they must be neither closed nor finalized here.
_inherited: list[TextIO] = []


def install(title: str) -> Path | None:
    """Register SIGUSR1 to dump every thread's stack to ``<dir>/<title>-<pid>.txt``.

    Returns the file's path, or None when $BACKENDS_DUMP_DIR is unset. Call it
    again after a fork: the inherited registration writes to the parent's file.
    """
    global _file, _file_pid
    directory = os.environ.get(ENV_VAR)
    if not directory:
        return None
    path = Path(directory) / f"{sanitise(title, limit=80)}-{os.getpid()}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    new = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives for the process
    faulthandler.register(signal.SIGUSR1, file=new, all_threads=True, chain=False)
    old, _file = _file, new
    old_pid, _file_pid = _file_pid, os.getpid()
    if old is not None:
        if old_pid == os.getpid():
            old.close()
        else:
            _inherited.append(old)
    return path
