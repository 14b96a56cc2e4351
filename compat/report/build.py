"""reports/raw/<cell-id>/ -> compat.json, COMPATIBILITY.md, index.html, job summary.

``build_report`` is called by ``compat report`` and ``python -m compat.report``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import msgspec

from ..errors import CompatError, RegressionFound, ReportError
from ..matrix import Matrix, load
from ..results import ledger as L
from ..results.raw import CellResult, read_cells
from ..results.why import apply_reruns, read_reruns, why_labels
from .html import render_html
from .markdown import render_markdown, render_summary
from .view import KnownIssues

LEDGER = "compat.json"
SCHEMA = "compat.schema.json"
MARKDOWN = "COMPATIBILITY.md"
HTML = "index.html"


def build_report(
    raw_dir: Path,
    out_dir: Path,
    *,
    baseline: Path | None,
    summary: Path | None,
    fail_on_regression: bool,
    matrix: Matrix | None = None,
    known_issues: Path | None = None,
) -> int:
    """Write the ledger, its schema, the Markdown and the HTML into out_dir.

    baseline None means the committed ``out_dir/compat.json`` (else the one on
    disk); an empty file such as /dev/null means no comparison.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    cells = _read(raw_dir)
    matrix = matrix if matrix is not None else _matrix_near(raw_dir)
    ledger = make_ledger(cells, raw_dir, matrix)
    base, name, problem = _baseline(out_dir, baseline)
    ledger = msgspec.structs.replace(ledger, diff=L.diff(ledger, base, name, problem))
    known = KnownIssues(*_known_issues(out_dir, known_issues))
    write_outputs(ledger, out_dir, known, summary)
    regressions = ledger.diff.regressions if ledger.diff else []
    if fail_on_regression and regressions:
        first = regressions[0]
        raise RegressionFound(
            f"{len(regressions)} new failure(s) since {name}, e.g. {first.nodeid} in {first.cell} "
            f"({first.before or 'absent'} -> {first.after}); see {out_dir / MARKDOWN}"
        )
    return 0


def _read(raw_dir: Path) -> list[CellResult]:
    if not raw_dir.is_dir():
        raise ReportError(f"{raw_dir}: no raw results directory; run the matrix (or a cell) first")
    cells = read_cells(raw_dir)
    if not cells:
        raise ReportError(f"{raw_dir}: no cell directories in it; run the matrix (or a cell) first")
    return cells


def make_ledger(cells: list[CellResult], raw_dir: Path, matrix: Matrix | None) -> L.Ledger:
    cells, neighbour_runs, flaky = apply_reruns(cells, read_reruns(raw_dir))
    declared = matrix.axes.values() if matrix is not None else None
    target = _target(matrix)
    return L.build_ledger(
        cells,
        axes=L.axes_of(cells, declared),
        why=why_labels(cells, neighbour_runs, flaky),
        target=target,
    )


def _matrix_near(raw_dir: Path) -> Matrix | None:
    """matrix.toml of the project the raw dir belongs to, when it can be read."""
    for root in (Path.cwd(), *raw_dir.resolve().parents):
        path = root / "matrix.toml"
        if path.is_file():
            try:
                return load(path)
            except CompatError:
                return None
    return None


def _target(matrix: Matrix | None) -> L.TargetInfo:
    if matrix is None:
        return L.TargetInfo()
    try:
        name = matrix.project().name
    except CompatError:
        name = None
    return L.target_info(matrix.target_dir, name)


def _baseline(out_dir: Path, baseline: Path | None) -> tuple[L.Ledger | None, str, str]:
    if baseline is not None:
        base, problem = L.read_baseline(Path(baseline))
        return base, str(baseline), problem
    committed = _committed(out_dir / LEDGER)
    if committed is not None:
        base, problem = L.decode_baseline(committed, f"HEAD:{out_dir / LEDGER}")
        return base, f"HEAD:{out_dir / LEDGER}", problem
    if (out_dir / LEDGER).is_file():
        base, problem = L.read_baseline(out_dir / LEDGER)
        return base, str(out_dir / LEDGER), problem
    return None, "none", "no baseline: no committed or previous reports/compat.json"


def _committed(path: Path) -> bytes | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(path.parent if path.parent.is_dir() else "."), "show", f"HEAD:./{path.name}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _known_issues(out_dir: Path, directory: Path | None) -> tuple[Path | None, str]:
    directory = directory if directory is not None else out_dir.resolve().parent / "docs" / "known-issues"
    if not directory.is_dir():
        return None, ""
    return directory, os.path.relpath(directory.resolve(), out_dir.resolve()).replace(os.sep, "/") + "/"


def write_outputs(ledger: L.Ledger, out_dir: Path, known: KnownIssues, summary: Path | None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / LEDGER, L.encode(ledger))
    write_atomic(out_dir / SCHEMA, L.schema_text().encode())
    write_atomic(out_dir / MARKDOWN, render_markdown(ledger, known).encode())
    write_atomic(out_dir / HTML, render_html(ledger, known).encode())
    if summary is not None:
        pointer = f"`{out_dir / HTML}` (and `{out_dir / MARKDOWN}`) in this run's artifacts"
        text = render_summary(ledger, known, pointer)
        with open(summary, "a", encoding="utf-8") as f:  # GITHUB_STEP_SUMMARY is appended to
            f.write(text)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace atomically: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
