"""Names and places shared by the runtime, the reaper and the pytest plugin.

The reaper recognises what the runtime leaves behind only through these, so
both sides import them from here instead of spelling them twice.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SHM_PREFIX = "backends-"
TITLE_PREFIX = "backends["
CHILD_MODULE = "backends._child"
RUN_DIR_PREFIX = "run-"
SOCKET_SUFFIX = ".sock"
MAX_NAME = 40

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_SOCKET = re.compile(r"^([A-Za-z0-9_.-]{1,40})@([1-9][0-9]*)(?:\.([1-9][0-9]*))?\.sock$")
_RUN_DIR = re.compile(r"^run-([1-9][0-9]*)-([0-9a-f]{8})$")
_SHM = re.compile(r"^backends-([0-9a-f]+)-([1-9][0-9]*)-([0-9]+)$")


def runtime_base() -> Path:
    """$BACKENDS_RUNTIME_DIR, else $XDG_RUNTIME_DIR/backends, else /tmp/backends-<uid>."""
    if explicit := os.environ.get("BACKENDS_RUNTIME_DIR"):
        return Path(explicit)
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(xdg) / "backends"
    return Path(f"/tmp/backends-{os.getuid()}")


def sanitise(name: str, limit: int = MAX_NAME) -> str:
    """``name`` reduced to ``[A-Za-z0-9_.-]``, at most ``limit`` characters, never empty."""
    return (_UNSAFE.sub("_", name)[:limit]) or "_"


def interpreter_id() -> int:
    """This interpreter's id: 0 in the main one (and where there are no others)."""
    try:
        import _interpreters
    except ImportError:
        return 0
    current = _interpreters.get_current()
    return int(current[0] if isinstance(current, tuple) else current)


def socket_name(name: str, pid: int, interp: int = 0) -> str:
    """``<name>@<pid>.sock``, or ``<name>@<pid>.<interp>.sock`` from a sub-interpreter,
    with the name sanitised. Sub-interpreter actors share a pid and may share a
    name (two spawners each starting a "worker"): the interpreter id keeps one
    from binding over the other's socket."""
    where = f"{pid}.{interp}" if interp else f"{pid}"
    return f"{sanitise(name)}@{where}{SOCKET_SUFFIX}"


def socket_globs(pid: int) -> list[str]:
    """Glob patterns matching every socket file of the actors of process ``pid``."""
    return [f"*@{pid}{SOCKET_SUFFIX}", f"*@{pid}.*{SOCKET_SUFFIX}"]


def parse_socket_name(filename: str) -> tuple[str, int] | None:
    """``(name, pid)`` for a name made by :func:`socket_name`, else None."""
    match = _SOCKET.match(filename)
    return (match[1], int(match[2])) if match else None


def shm_name(run_token: str, pid: int, n: int) -> str:
    """``backends-<runtoken>-<pid>-<n>``: a parent can remove what a killed child created."""
    return f"{SHM_PREFIX}{run_token}-{pid}-{n}"


def shm_glob(run_token: str, pid: int | None = None) -> str:
    """Glob pattern of the segments of a run, or of one process of it."""
    return f"{SHM_PREFIX}{run_token}-{'*' if pid is None else f'{pid}-*'}"


def parse_shm_name(name: str) -> tuple[str, int] | None:
    """``(runtoken, pid)`` for a name made by :func:`shm_name`, else None."""
    match = _SHM.match(name)
    return (match[1], int(match[2])) if match else None


def run_dir_name(root_pid: int, token: str) -> str:
    """``run-<rootpid>-<8 hex>``: one directory per root actor."""
    return f"{RUN_DIR_PREFIX}{root_pid}-{token}"


def parse_run_dir_name(dirname: str) -> int | None:
    """The root pid of a ``run-<rootpid>-<8 hex>`` directory name, else None."""
    match = _RUN_DIR.match(dirname)
    return int(match[1]) if match else None
