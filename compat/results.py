"""A cell's raw directory -> per-test and per-cell statuses.

(CellMeta pinned by the lead: the runner writes it, the report reads it.)
"""

from __future__ import annotations

from typing import Literal

import msgspec

CellOutcome = Literal["completed", "timeout", "unsupported", "unavailable", "error"]


class Limits(msgspec.Struct, frozen=True):
    pids: int | None = None
    memory: str | None = None
    cpus: float | None = None
    timeout_s: float | None = None


class CellMeta(msgspec.Struct, frozen=True, kw_only=True):
    cell: str
    python: str
    group: str
    backend: str
    capture: str
    run_id: str
    runner: Literal["docker", "local"]
    outcome: CellOutcome
    reason: str = ""
    running: str | None = None
    exit_code: int | None = None
    image: str | None = None
    python_version: str | None = None
    packages: dict[str, str] = {}
    started: float | None = None
    finished: float | None = None
    duration_s: float | None = None
    pytest_duration_s: float | None = None
    limits: Limits = Limits()
    version: int = 1
