"""A cell and its id, both ways: the one definition every module uses.

A cell is one value of every axis: the four built-in ones (python, group,
backend, capture) and the target's own (``[[axes.extra]]``, e.g. a transport).
Its id joins them with ``-``: ``py3.14-base-subint-capfd`` and, with an extra
axis, ``py3.14-base-subint-capfd-tcp``. Axis values never contain ``-``
(config checks that), so an id splits back unambiguously.
"""

from __future__ import annotations

import fnmatch
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

AXES = ("python", "group", "backend", "capture")


class Cell(msgspec.Struct, frozen=True, order=True):
    python: str
    group: str
    backend: str
    capture: str
    # (axis name, value) for each of the target's own axes, in matrix order.
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return cell_id(self.python, self.group, self.backend, self.capture, [v for _, v in self.extra])

    @property
    def axes(self) -> dict[str, str]:
        return {
            "python": self.python, "group": self.group, "backend": self.backend,
            "capture": self.capture, **dict(self.extra),
        }  # fmt: skip

    def value(self, axis: str) -> str:
        return self.axes[axis]


class CellAxes(msgspec.Struct, frozen=True, kw_only=True):
    """A cell's value of every axis, as every record of a cell carries it (its meta.json, its
    results, the ledger, the plan): one definition, and one type for the target's own axes."""

    python: str
    group: str
    backend: str
    capture: str
    # The target's own axes: name -> value, in the config's order.
    extra: dict[str, str] = {}


def axes_of(cell: Cell) -> dict[str, Any]:
    """The keyword arguments of ``CellAxes`` (and the records built on it) for ``cell``."""
    return {
        "python": cell.python, "group": cell.group, "backend": cell.backend, "capture": cell.capture,
        "extra": dict(cell.extra),
    }  # fmt: skip


def same_axes(record: CellAxes) -> dict[str, Any]:
    """The keyword arguments that give another record of the cell the same axes as ``record``."""
    return {a: getattr(record, a) for a in CellAxes.__struct_fields__}


def cell_id(python: str, group: str, backend: str, capture: str, extra: Iterable[str] = ()) -> str:
    return "-".join([f"py{python}", group, backend, f"cap{capture}", *extra])


class ParsedId(msgspec.Struct, frozen=True):
    python: str
    group: str
    backend: str
    capture: str
    extra: tuple[str, ...] = ()


def parse_cell_id(text: str) -> ParsedId | None:
    """The axis values of a cell id, or None when ``text`` is not one."""
    parts = text.split("-")
    if len(parts) < 4 or not parts[0].startswith("py") or not parts[3].startswith("cap"):
        return None
    if not all(parts):
        return None
    return ParsedId(parts[0][2:], parts[1], parts[2], parts[3][3:], tuple(parts[4:]))


def match_ids(patterns: Sequence[str], cells: Sequence[Cell]) -> list[Cell]:
    """Cells whose id matches any of ``patterns`` (exact ids or shell globs)."""
    return [c for c in cells if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]


def new_run_id() -> str:
    """Sortable by time, unique across machines: ``20261201T023517-1a2b3c``."""
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
