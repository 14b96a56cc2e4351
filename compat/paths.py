"""Where this checkout's own files are: the embedded target and the image recipes."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ROOT / "containers"
DOCKERFILE = CONTAINERS / "Dockerfile"
MAKE_BASE = CONTAINERS / "make-base"


def shown(path: str, *, outside: str = "absolute") -> str:
    """A path as a command line the user copies should show it: relative to the current directory
    when inside it; outside it, absolute (a terminal) or only its name (a published report)."""
    p = Path(path)
    if not p.is_absolute():
        return path
    cwd = Path.cwd()
    if p.is_relative_to(cwd):
        return os.path.relpath(p, cwd)
    return path if outside == "absolute" else p.name
