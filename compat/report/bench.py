"""Raw cell directories written exactly per the contract, and the report benchmark.

``write_cell`` is what the tests build their constructed cases with, so the
report is exercised on the payloads the runner and the cell plugin produce
(``compat.cell.protocol``'s).
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from ..cell import protocol as P
from ..matrix import AxesConfig, Matrix, cell_id
from ..results.raw import axes_from_id
from ..results.schema import CellMeta
from .build import build_report


def event_lines(
    results: Iterable[dict[str, Any]],
    *,
    running: str | None = None,
    finished: bool = True,
    python: str = "3.14.0",
    collected: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The events.jsonl a cell plugin run with these results would stream.

    ``collected`` defaults to the results' node ids (and the running test).
    """
    t = 1_700_000_000.0
    results = list(results)
    # The protocol's own payloads (compat.cell.protocol), as the plugin writes them.
    session: P.SessionEvent = {
        "event": "session", "t": t, "python": python, "pytest": "9.0.0", "argv": ["pytest"], "per_test_timeout": None,
    }  # fmt: skip
    events: list[Any] = [session]
    if collected is None:
        collected = [r["nodeid"] for r in results] + ([running] if running else [])
    seen: P.CollectedEvent = {"event": "collected", "nodeids": list(collected), "t": t}
    events.append(seen)
    for r in results:
        start: P.StartEvent = {"event": "start", "nodeid": r["nodeid"], "t": t}
        result: P.ResultEvent = {
            "event": "result", "nodeid": r["nodeid"], "outcome": r["outcome"], "when": "call", "reason": "",
            "strict": None, "duration": 0.01, "message": "",
        }  # fmt: skip
        events += [start, {**result, **r}]
    if running:
        events.append(P.StartEvent(event="start", nodeid=running, t=t))
    if finished:
        events.append(P.FinishEvent(event="finish", exitstatus=0, t=t))
    return events


def write_cell(
    raw_dir: Path,
    cell_id: str,
    *,
    outcome: str = "completed",
    results: Sequence[dict[str, Any]] = (),
    reason: str = "",
    running: str | None = None,
    events: list[dict[str, Any]] | bool | None = None,
    collected: Sequence[str] | None = None,
    reap: object | None = None,
    census: object | None = None,
    dumps: dict[str, str] | None = None,
    junit: str | None = None,
    meta: bool = True,
    timeout_s: float = 600.0,
    meta_fields: dict[str, Any] | None = None,
) -> Path:
    """Write reports/raw/<cell_id>/ as the runner would (events=False: no events.jsonl)."""
    d = raw_dir / cell_id
    d.mkdir(parents=True, exist_ok=True)
    if events is None and outcome in ("completed", "timeout"):
        events = event_lines(
            results,
            running=running if outcome == "timeout" else None,
            finished=outcome == "completed",
            collected=collected,
        )
    if isinstance(events, list):
        (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    if junit is not None:
        (d / "junit.xml").write_text(junit)
    if reap is not None:
        (d / "reap.json").write_text(json.dumps(reap))
    if census is not None:
        (d / "census.json").write_text(json.dumps(census))
    for name, text in (dumps or {}).items():
        (d / "dumps").mkdir(exist_ok=True)
        (d / "dumps" / name).write_text(text)
    if meta:
        axes = axes_from_id(cell_id)
        # As the runner writes it; converted so the fixture goes through the same validation.
        m = msgspec.convert(
            {
                "cell": cell_id, **axes, "run_id": "run-1", "runner": "docker", "outcome": outcome,
                "reason": reason, "running": running, "exit_code": 0 if outcome == "completed" else None,
                "image": "sha256:abc", "python_version": axes["python"] + ".0",
                "packages": {"trio": "0.31.0", "pytest": "9.0.0"}, "started": 1_700_000_000.0,
                "finished": 1_700_000_010.0, "duration_s": 10.0, "pytest_duration_s": 9.0,
                "limits": {"timeout_s": timeout_s}, **(meta_fields or {}),
            },
            CellMeta,
        )  # fmt: skip
        (d / "meta.json").write_bytes(msgspec.json.encode(m))
    return d


FULL_AXES = {
    "python": ("3.13", "3.14"),
    "group": ("base", "greenback", "cffi"),
    "backend": ("trio", "forkserver", "subint"),
    "capture": ("fd", "sys", "no"),
}


def synthetic_matrix(raw_dir: Path, tests: int = 100) -> list[str]:
    """A full 54-cell matrix with a realistic mix of outcomes."""
    ids = []
    for py, group, backend, cap in itertools.product(*FULL_AXES.values()):
        cid = cell_id(py, group, backend, cap)
        results = []
        for i in range(tests):
            nodeid = f"tests/backends/test_mod{i % 10}.py::test_case_{i}[{backend}]"
            outcome, extra = "passed", {}
            if i % 17 == 0 and cap == "fd":
                outcome, extra = "failed", {"message": "AssertionError: " + "x" * 600}
            elif i % 13 == 0:
                outcome, extra = "xfailed", {"reason": "known hang, see capture-fd-hang"}
            elif i % 11 == 0 and py == "3.13":
                outcome, extra = "skipped", {"reason": "needs 3.14"}
            results.append({"nodeid": nodeid, "outcome": outcome, **extra})
        write_cell(
            raw_dir,
            cid,
            results=results,
            census={"processes": [], "zombies": 0},
            reap={"processes": [], "shm": [], "uds": []},
        )
        ids.append(cid)
    return ids


def bench(tests: int = 100, repeat: int = 3) -> int:
    matrix = Matrix(axes=msgspec.convert(FULL_AXES, AxesConfig))
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "out"
        synthetic_matrix(raw, tests)
        best = float("inf")
        for _ in range(repeat):
            start = time.process_time()
            build_report(
                raw,
                out,
                baseline=out / "compat.json" if (out / "compat.json").exists() else None,
                summary=Path(tmp) / "summary.md",
                fail_on_regression=False,
                matrix=matrix,
            )
            best = min(best, time.process_time() - start)
        sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
        per_run = sizes.get("history.jsonl", 0) / repeat
    print(
        f"report for 54 cells x {tests} tests: {best:.3f} s CPU (best of {repeat}); "
        + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sorted(sizes.items()))
        + f"; history: {per_run / 1024:.0f} KiB a run, {per_run * 100 / 1024 / 1024:.1f} MiB for 100 runs"
    )
    return 0
