"""The wire protocol: a tagged union of frozen Structs, one per message kind.

New fields must get defaults so older peers still decode (schema evolution).
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Msg(msgspec.Struct, frozen=True, tag=True, array_like=True):
    pass


class Hello(_Msg, frozen=True):
    """First message a child sends on connecting back to its parent."""

    uid: str
    name: str
    pid: int


class Call(_Msg, frozen=True):
    cid: int
    func: str  # "module:qualname"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    stream: bool = False


class Return(_Msg, frozen=True):
    cid: int
    value: Any = None


class Yield(_Msg, frozen=True):
    cid: int
    value: Any = None


class StreamEnd(_Msg, frozen=True):
    cid: int


class Error(_Msg, frozen=True):
    cid: int
    type_name: str
    message: str
    traceback: str


class Cancel(_Msg, frozen=True):
    """Cancel one call or stream."""

    cid: int


class CancelActor(_Msg, frozen=True):
    """Cancel everything the actor runs, then exit."""


class ProtocolViolation(_Msg, frozen=True):
    """Sent just before closing a channel whose peer broke the protocol."""

    reason: str


Msg = Hello | Call | Return | Yield | StreamEnd | Error | Cancel | CancelActor | ProtocolViolation
