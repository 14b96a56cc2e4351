"""Spawn backends: a small Protocol, three implementations, one registry.

Each backend says why it cannot run on this interpreter (``unavailable()``)
instead of failing after something was spawned.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, Literal, Protocol, get_args

from .._errors import BackendUnavailable

if TYPE_CHECKING:
    from ._base import ChildHandle, SpawnRequest

BackendName = Literal["trio", "forkserver", "subint"]
BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)
ENV_VAR = "BACKENDS_SPAWN_BACKEND"


class SpawnBackend(Protocol):
    name: str
    # How many of its children may boot at once in one actor (None: no limit).
    boot_width: int | None

    def unavailable(self) -> str | None:
        """None when usable here, else the reason it is not."""

    async def spawn(self, request: SpawnRequest) -> ChildHandle:
        """Start a child that will connect back to ``request.parent_addr``."""


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def check_name(name: str) -> str:
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown spawn backend {name!r}; valid: {', '.join(BACKEND_NAMES)}")
    return name


def available_backends() -> dict[str, str | None]:
    """``{name: None | "reason it is unavailable here"}`` for every backend."""
    return {name: _module(name).unavailable() for name in BACKEND_NAMES}


def resolve(name: str | None) -> str:
    """The backend to use: the argument, else $BACKENDS_SPAWN_BACKEND, else trio."""
    return check_name(name or os.environ.get(ENV_VAR) or "trio")


def get_backend(name: str | None) -> SpawnBackend:
    """The backend object, or BackendUnavailable before anything is spawned."""
    name = resolve(name)
    module = _module(name)
    reason = module.unavailable()
    if reason is not None:
        raise BackendUnavailable(name, reason)
    backend: SpawnBackend = module.BACKEND
    return backend
