"""The runtime's one reader of ``/proc/<pid>/stat``: standard library only.

Exec'd children import ``hygiene`` at boot, where psutil's import (~45 ms)
would cost every spawn; the reaper and the tests use this same reader.
"""

from __future__ import annotations


def stat(pid: int) -> tuple[str, int] | None:
    """(state letter, ppid) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may hold spaces and parentheses: the fields start after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1])
