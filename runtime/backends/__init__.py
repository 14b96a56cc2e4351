"""A structured-concurrency actor runtime on trio with three spawn backends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import (
    ActorBootError,
    ActorTooSlow,
    BackendUnavailable,
    ProtocolError,
    RemoteActorError,
    TransportClosed,
)
from ._nursery import ActorNursery, Timeouts, open_nursery
from ._portal import MsgStream, Portal
from ._shm import attach_shared_memory, shared_memory
from .spawn import BACKEND_NAMES, available_backends

if TYPE_CHECKING:
    from ._state import Actor


def current_actor() -> Actor:
    """The actor this code runs in (``.name``, ``.pid``, ``.is_root``, ``.backend``)."""
    from . import _state

    actor = _state.current()
    if actor is None:
        raise RuntimeError("no actor runtime is active here (open a nursery first)")
    return actor


__all__ = [
    "BACKEND_NAMES",
    "ActorBootError",
    "ActorNursery",
    "ActorTooSlow",
    "BackendUnavailable",
    "MsgStream",
    "Portal",
    "ProtocolError",
    "RemoteActorError",
    "Timeouts",
    "TransportClosed",
    "attach_shared_memory",
    "available_backends",
    "current_actor",
    "open_nursery",
    "shared_memory",
]
