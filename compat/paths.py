"""Where the files that run in other places are: package data, found through the package.

``compat/resources/`` (the Dockerfile, the debootstrap base recipe, the engine
provisioning script) and ``compat/cell/`` (the stdlib-only code a cell runs)
ship inside the wheel, as cibuildwheel ships its ``resources/``: an installed
``compat`` finds them wherever it was installed, and never looks for a
spawn-compat checkout.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from .errors import ConfigError
from .matrix.config import find_config

RESOURCES = Path(str(resources.files("compat") / "resources"))
DOCKERFILE = RESOURCES / "Dockerfile"
MAKE_BASE = RESOURCES / "make-base"
PROVISION_ENGINE = RESOURCES / "provision-engine"
CELL_PACKAGE = Path(str(resources.files("compat") / "cell"))
# What compat keeps between runs on this machine: local venvs, the targets' wheels, build locks.
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spawn-compat"


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


def git_root(directory: Path) -> Path | None:
    """The work tree ``directory`` is in, found by its ``.git`` (no git needed)."""
    directory = directory.resolve()
    for parent in (directory, *directory.parents):
        if (parent / ".git").exists():
            return parent
    return None


def compat_command(config: str | Path | None) -> str:
    """How to call compat where the config lives: ``uv run compat`` inside the project
    environment that has it (a spawn-compat checkout), else the installed ``compat``."""
    if config:
        here = Path(config).resolve().parent
        roots = [here, *([root] if (root := git_root(here)) else [])]
        if any(Path(sys.prefix).resolve() == (r / ".venv").resolve() for r in roots):
            return "uv run compat"
    return "compat"


def config_option(config: str | Path | None, *, base: Path | None = None) -> str:
    """``--matrix PATH`` for a command run from ``base`` (the current directory), or ``""`` when
    compat finds that config from there by itself."""
    if not config:
        return ""
    path = Path(config).resolve()
    base = (base or Path.cwd()).resolve()
    try:
        if find_config(base).resolve() == path:
            return ""
    except ConfigError:  # none found from base (or two): name ours
        pass
    shown_path = os.path.relpath(path, base) if path.is_relative_to(base) else str(path)
    return f"--matrix {shlex.quote(shown_path)}"


def compat_invocation(config: str | Path | None, *, base: Path | None = None) -> str:
    """``compat [--matrix PATH]`` as a user types it from ``base``."""
    option = config_option(config, base=base)
    return compat_command(config) + (f" {option}" if option else "")


def repro_command(cell: str, nodeid: str, invocation: str = "compat", pytest_args: Sequence[str] = ()) -> str:
    """``compat [--matrix PATH] repro CELL NODE_ID``; ``invocation`` is how compat is called where the report lives.

    A node id made stable over an object's address (``at 0x…``) selects nothing in a new process:
    the test function is named instead, with its parameters as ``-k`` (pytest's own words for them).
    """
    if " at 0x…" in nodeid:
        function, _, params = nodeid.partition("[")
        words = [w for w in re.split(r"[^\w]+", params.split("at 0x…")[-1]) if w and not w.startswith("0x")]
        args = [*(["-k", " and ".join(words)] if words else []), *pytest_args]
        return f"{invocation} repro {cell} {shlex.quote(function)}" + (f" -- {shlex.join(args)}" if args else "")
    tail = f" -- {shlex.join(pytest_args)}" if pytest_args else ""
    return f"{invocation} repro {cell} {shlex.quote(nodeid)}{tail}"
