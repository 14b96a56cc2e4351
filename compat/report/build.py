"""reports/raw/<cell-id>/ -> compat.json, COMPATIBILITY.md, index.html, job summary.

``build_report`` is called by ``compat report`` and ``python -m compat.report``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import msgspec

from ..errors import CompatError, RegressionFound, ReportError
from ..matrix import Matrix, load
from ..paths import compat_invocation, git_root
from ..results import ledger as L
from ..results.owner import check_owner, ignore_in_git, read_owner
from ..results.raw import read_cells
from ..results.runs import read_runs, since_last_full
from ..results.schema import CellResult
from ..results.why import apply_reruns, read_reruns
from .findings import overview
from .history import NAME as HISTORY_NAME
from .history import History
from .history import read as read_history
from .history import update as update_history
from .html import render_html
from .markdown import render_markdown, render_summary
from .view import KnownIssues

LEDGER = "compat.json"
HISTORY = HISTORY_NAME
BADGE = "badge.json"
PARTIAL_DIR = "partial"
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
    publish: bool = False,
) -> int:
    """Write the ledger, its schema, the Markdown, the HTML and the badge into out_dir.

    The table is the newest run in ``raw_dir``; cells of older runs there
    are left out and named. A partial run (not every cell of the matrix, or
    narrowed by pytest arguments) goes to ``out_dir/partial/`` unless
    ``publish``. Every run is added to ``out_dir/history.jsonl``.

    baseline None means the committed ``out_dir/compat.json`` (else the one on
    disk); an empty file such as /dev/null means no comparison.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    matrix = matrix if matrix is not None else _matrix_of(raw_dir)
    if matrix is not None:
        check_owner(raw_dir, matrix)
    cells, older = current_state(_read(raw_dir), raw_dir, matrix)
    partial = partial_reason(cells, older, matrix)
    ledger = mark_stale(make_ledger(cells, raw_dir, matrix, partial=partial), raw_dir, matrix)
    base, name, problem = _baseline(out_dir, baseline)
    ledger = msgspec.structs.replace(ledger, diff=L.diff(ledger, base, name, problem))
    dest = out_dir / PARTIAL_DIR if partial and not publish else out_dir
    # Only the published table's runs join its history; a partial report changes no tracked file.
    history, history_problem = (
        update_history(out_dir / HISTORY, ledger) if dest == out_dir else read_history(out_dir / HISTORY, ledger)
    )
    if history_problem:
        print(f"compat report: {history_problem}", file=sys.stderr)
    directory, link_base = _known_issues(dest, known_issues, out_dir, matrix)
    raw_base = os.path.relpath(raw_dir.resolve(), dest.resolve()).replace(os.sep, "/") + "/"
    known = KnownIssues(directory, link_base, raw_base)
    invocation = _invocation(matrix, out_dir)
    write_outputs(ledger, dest, known, summary, history=history, invocation=invocation)
    if dest != out_dir:
        ignore_in_git(dest)
        print(
            f"compat report: partial run ({partial}): wrote {dest / MARKDOWN}; "
            f"the published {out_dir / MARKDOWN} is unchanged (--publish replaces it)",
            file=sys.stderr,
        )
    regressions = ledger.diff.regressions if ledger.diff else []
    if fail_on_regression and regressions:
        listed = "; ".join(_regression(c) for c in regressions[:5])
        more = f" and {len(regressions) - 5} more" if len(regressions) > 5 else ""
        raise RegressionFound(f"{len(regressions)} regression(s) since {name}: {listed}{more}; see {dest / MARKDOWN}")
    return 0


def _regression(c: L.Change) -> str:
    what = f"{c.nodeid} in {c.cell}" if c.nodeid else f"cell {c.cell}"
    strict = " (strict xfail)" if c.kind == "strict-xpass" else ""
    return f"{what} {c.before or 'absent'} -> {c.after}{strict}"


def _read(raw_dir: Path) -> list[CellResult]:
    if not raw_dir.is_dir():
        raise ReportError(f"{raw_dir}: no raw results directory; run the matrix (or a cell) first")
    cells = read_cells(raw_dir)
    if not cells:
        raise ReportError(f"{raw_dir}: no cell directories in it; run the matrix (or a cell) first")
    return cells


def current_state(
    cells: list[CellResult], raw_dir: Path, matrix: Matrix | None
) -> tuple[list[CellResult], list[CellResult]]:
    """(the table's cells, the cells left out). Every cell's newest result since the last run that
    covered every cell (``compat run``, then ``compat run --failed``: one table, each cell marked with
    its run); without such a run in the run log, only the newest run's cells."""
    runs = read_runs(raw_dir)
    window = since_last_full(runs, {c.id for c in matrix.cells()}) if matrix is not None else None
    if window is None:
        return this_run(cells)
    since = {r.run_id for r in window}
    mine = [c for c in cells if c.meta is None or c.meta.run_id in since]
    return mine, [c for c in cells if c not in mine]


def mark_stale(ledger: L.Ledger, raw_dir: Path, matrix: Matrix | None) -> L.Ledger:
    """A cell whose result was made from other target files than the ones there now is stale."""
    if matrix is None or not matrix.target_dir.is_dir():
        return ledger
    from ..runners import cache, incremental

    made = {c.id: inputs for c in ledger.cells if (inputs := incremental.read_inputs(raw_dir / c.id)) is not None}
    if not made:
        return ledger
    now = cache.target_file_digests(matrix, raw_dir)
    cells = tuple(msgspec.structs.replace(c, stale=True) if made.get(c.id, now) != now else c for c in ledger.cells)
    return msgspec.structs.replace(ledger, cells=cells)


def this_run(cells: list[CellResult]) -> tuple[list[CellResult], list[CellResult]]:
    """(the newest run's cells, cells of older runs). A cell without a readable meta stays in: its damage is news."""
    started: dict[str, float] = {}
    for c in cells:
        if c.meta is not None:
            started[c.meta.run_id] = max(started.get(c.meta.run_id, 0.0), c.meta.started or 0.0)
    if len(started) <= 1:
        return cells, []
    newest = max(started, key=lambda r: started[r])
    mine = [c for c in cells if c.meta is None or c.meta.run_id == newest]
    return mine, [c for c in cells if c not in mine]


def partial_reason(cells: list[CellResult], older: list[CellResult], matrix: Matrix | None) -> str:
    """Why this run is not the whole matrix, or ""."""
    reasons = []
    if matrix is not None:
        expected = {c.id for c in matrix.cells()}
        ran = {c.cell for c in cells}
        if missing := expected - ran:
            reasons.append(f"{len(ran & expected)} of {len(expected)} cells ran ({len(missing)} not)")
    elif older:
        reasons.append(f"{len(older)} cell(s) in the raw directory are from older runs and left out")
    selections = {c.meta.selection for c in cells if c.meta is not None and c.meta.selection}
    if selections:
        shown = " ".join(sorted(selections, key=len)[-1])
        reasons.append(f"narrowed by pytest arguments: {shown[:200]}")
    return "; ".join(reasons)


def make_ledger(cells: list[CellResult], raw_dir: Path, matrix: Matrix | None, *, partial: str = "") -> L.Ledger:
    applied = apply_reruns(cells, read_reruns(raw_dir))
    cells = applied.cells
    declared = matrix.axes.values() if matrix is not None else None
    target = _target(matrix)
    ledger = L.build_ledger(
        cells,
        axes=L.axes_of(cells, declared),
        why=applied.labels(),
        target=target,
        na_skips=matrix.target.na_skips if matrix is not None else (),
        partial=partial,
    )
    return msgspec.structs.replace(ledger, key_packages=key_packages(matrix))


def key_packages(matrix: Matrix | None) -> tuple[str, ...]:
    """pytest, and whatever the target itself names: its dependencies, its groups', its extras'."""
    from ..matrix.target import requirement_name

    names = {"pytest"}
    if matrix is not None:
        try:
            project = matrix.project()
        except CompatError:
            return tuple(sorted(names))
        specs = [*project.dependencies, *(s for g in project.group_requirements.values() for s in g)]
        specs += [s for e in project.extras.values() for s in e]
        names |= {n for s in specs if (n := requirement_name(s))}
        if project.name:
            names.add(re.sub(r"[-_.]+", "-", project.name).lower())
    return tuple(sorted(names))


def _invocation(matrix: Matrix | None, out_dir: Path) -> str:
    """compat as a reader of the report calls it: from the root of the repository the report is in."""
    if matrix is None or not matrix.source:
        return "compat"
    base = git_root(out_dir) or Path(matrix.source).resolve().parent
    return compat_invocation(matrix.source, base=base)


def _matrix_of(raw_dir: Path) -> Matrix | None:
    """The config that wrote the raw directory (its owner record), when it can still be read."""
    owner = read_owner(raw_dir)
    if owner is None or not owner.config:
        return None
    try:
        return load(owner.config)
    except CompatError:
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


def _known_issues(dest: Path, directory: Path | None, out_dir: Path, matrix: Matrix | None) -> tuple[Path | None, str]:
    """The known-issues directory, and how the report written to ``dest`` links into it.

    By default ``docs/known-issues`` of the repository the config is in (else beside the report's
    directory). Relative to ``dest`` (``partial/`` is one level deeper); inside GitHub Actions, where
    the report is published as a site that has no ``docs/``, to the repository's web page of it.
    """
    if directory is None:
        root = git_root(Path(matrix.source).parent) if matrix is not None and matrix.source else None
        directory = (root or out_dir.resolve().parent) / "docs" / "known-issues"
    if not directory.is_dir():
        return None, ""
    web = _web_url(directory)
    if web is not None:
        return directory, web
    return directory, os.path.relpath(directory.resolve(), dest.resolve()).replace(os.sep, "/") + "/"


def _web_url(directory: Path) -> str | None:
    """``https://github.com/OWNER/REPO/blob/SHA/docs/known-issues/`` inside GitHub Actions, else None."""
    server, repo, sha = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_SHA"))
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if not (server and repo and sha and workspace) or not directory.resolve().is_relative_to(Path(workspace).resolve()):
        return None
    rel = directory.resolve().relative_to(Path(workspace).resolve()).as_posix()
    return f"{server}/{repo}/blob/{sha}/{rel}/"


def write_outputs(
    ledger: L.Ledger,
    out_dir: Path,
    known: KnownIssues,
    summary: Path | None,
    *,
    history: History | None = None,
    invocation: str = "compat",
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / LEDGER, L.encode(ledger))
    write_atomic(out_dir / SCHEMA, L.schema_text().encode())
    write_atomic(out_dir / MARKDOWN, render_markdown(ledger, known, history, invocation).encode())
    write_atomic(out_dir / HTML, render_html(ledger, known, history, invocation).encode())
    write_atomic(out_dir / BADGE, badge(ledger))
    if summary is not None:
        pointer = f"`{out_dir / HTML}` (and `{out_dir / MARKDOWN}`) in this run's artifacts"
        text = render_summary(ledger, known, pointer, history=history, invocation=invocation)
        with open(summary, "a", encoding="utf-8") as f:  # GITHUB_STEP_SUMMARY is appended to
            f.write(text)


def badge(ledger: L.Ledger) -> bytes:
    """A shields.io endpoint: ``compat: 45/54 cells ok`` (n/a cells count as neither)."""
    o = overview(ledger)
    applicable = o.cells - o.na
    colour = "brightgreen" if o.ok == applicable else "yellow" if o.ok >= applicable * 0.8 else "red"
    message = (
        f"{o.ok}/{applicable} cells ok" + (f", {o.na} n/a" if o.na else "") + (" (partial)" if ledger.partial else "")
    )
    doc = {"schemaVersion": 1, "label": "compat", "message": message, "color": colour}
    return json.dumps(doc).encode() + b"\n"


def write_atomic(path: Path, data: bytes) -> None:
    """Replace atomically: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
