"""A structured-concurrency actor runtime on trio with three spawn backends."""

from ._errors import (
    ActorBootError,
    ActorTooSlow,
    BackendUnavailable,
    ProtocolError,
    RemoteActorError,
    TransportClosed,
)
from .spawn import BACKEND_NAMES, available_backends

__all__ = [
    "BACKEND_NAMES",
    "ActorBootError",
    "ActorTooSlow",
    "BackendUnavailable",
    "ProtocolError",
    "RemoteActorError",
    "TransportClosed",
    "available_backends",
]
