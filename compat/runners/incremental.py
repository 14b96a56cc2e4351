"""Incremental re-runs: in a cell whose context is unchanged, only the test modules an edit can affect.

A cell's context is everything but the target's files (its image or venv, command, bounds,
environment, limits: ``cache.cell_key(with_target=False)``). When that is unchanged since the
cell's last run, the cell's own record says which target files each test module depended on
(``compat.cell.deps``) and what each file's digest was then (``inputs.json``). A re-run then
leaves out every module that is unchanged and was clean, and takes its results from the last run
(``reused.json``, each result marked with the run it came from). pytest still collects every
module (so a new module runs, a deleted one's results are dropped, a renamed one is new, and a
collection error is never reused); only the left-out modules' tests are deselected.

Correctness over speed, everything re-runs when:
- a file of the session changed (the config, a root conftest, a plugin and all it imports: what
  every module saw);
- a target file that no module's record names was changed or deleted (it may have been read by a
  child process, a subprocess, or imported by name at run time: the record cannot say), unless
  ``cache-ignore`` says it cannot change a result; a new file nobody names may be a new module's,
  and collection finds that one;
- a file ``cache-inputs`` names changed and no module's record says it read it;
- the last run did not complete (timeout, error, interruption), or its record is missing or damaged.
A module re-runs when one of its files changed, or its last result was not clean (failed, error,
timeout, flaky, not-run, a strict xpass). ``--no-cache`` runs everything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import msgspec

from ..cell import protocol as P
from ..matrix import Matrix
from ..results.raw import read_cell
from ..results.schema import TestResult

# Results a re-run may take over: anything else runs again.
CLEAN = frozenset({"passed", "skipped", "xfailed", "xpassed"})


@dataclass(frozen=True)
class Reuse:
    """The modules a re-run leaves out, and what it takes over from the last run for them."""

    modules: tuple[str, ...]
    # nodeid -> its last result, marked with the run it came from.
    results: dict[str, TestResult]
    deps: P.Deps
    # Why the other modules run again, for the live view: module -> the changed file, or "not clean".
    why: dict[str, str]


def read_deps(cell_dir: Path) -> P.Deps | None:
    """The cell's record merged over its pytest processes (None: missing, damaged, another format)."""
    merged: P.Deps = {"format": P.DEPS_FORMAT, "session": {}, "modules": {}}
    files = sorted((cell_dir / P.DEPS_DIR).glob("*.json")) if (cell_dir / P.DEPS_DIR).is_dir() else []
    if not files:
        return None
    for path in files:
        try:
            part = json.loads(path.read_text())
            if part.get("format") != P.DEPS_FORMAT:
                return None
            merged["session"].update(part["session"])
            for module, deps in part["modules"].items():
                merged["modules"].setdefault(module, {}).update(deps)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
    return merged


def read_inputs(cell_dir: Path) -> dict[str, str] | None:
    try:
        data = json.loads((cell_dir / P.INPUTS).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()) else None


def plan(matrix: Matrix, cell_dir: Path, context: str, files: dict[str, str]) -> Reuse | None:
    """What a re-run of the cell in ``cell_dir`` may leave out (None: run everything)."""
    last = read_cell(cell_dir)
    meta = last.meta
    if meta is None or meta.context_key != context or meta.outcome != "completed" or last.problem:
        return None
    deps, before = read_deps(cell_dir), read_inputs(cell_dir)
    if deps is None or before is None:
        return None
    changed = {f for f in before.keys() | files.keys() if before.get(f) != files.get(f)}
    if not _per_module(matrix, deps, before, changed):
        return None
    by_module: dict[str, list[str]] = {}
    for nodeid in last.tests:
        by_module.setdefault(nodeid.split("::", 1)[0], []).append(nodeid)
    reusable, why = [], {}
    for module, nodeids in sorted(by_module.items()):
        own = deps["modules"].get(module)
        touched = sorted(f for f in own or () if f in changed)
        if own is None:
            why[module] = "not recorded"
        elif module in before and module not in files:
            why[module] = "deleted"  # its results go with it: nothing collects it any more
        elif touched:
            why[module] = touched[0]
        elif any(not _clean(last.tests[n]) for n in nodeids):
            why[module] = "not clean"
        else:
            reusable.append(module)
    if not reusable:
        return None
    run_of = meta.cached_from or meta.run_id  # a cell-cache hit kept the results of the run that made them
    results = {
        n: msgspec.structs.replace(last.tests[n], reused_from=last.tests[n].reused_from or run_of)
        for m in reusable
        for n in by_module[m]
    }
    carried: P.Deps = {
        "format": P.DEPS_FORMAT,
        "session": dict(deps["session"]),
        "modules": {m: deps["modules"][m] for m in reusable},
    }
    return Reuse(modules=tuple(reusable), results=results, deps=carried, why=why)


def _per_module(matrix: Matrix, deps: P.Deps, before: dict[str, str], changed: set[str]) -> bool:
    """Can the modules be told apart for these changes, or must everything run?"""
    if changed & deps["session"].keys():
        return False
    recorded = set(deps["session"]) | {f for d in deps["modules"].values() for f in d} | set(deps["modules"])
    if {f for f in changed if f in before} - recorded:
        return False  # read by something the record cannot see, maybe
    return all(f in recorded for f in changed if _matches(f, matrix.target.cache_inputs))


def _clean(result: TestResult) -> bool:
    """A result running again would repeat: never a failure, a collection error or a strict xpass."""
    return result.status in CLEAN and not (result.status == "xpassed" and result.strict)


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    path = PurePosixPath(rel)
    return any(path.full_match(p) for p in patterns)


def finish(cell_dir: Path, reuse: Reuse | None, files: dict[str, str]) -> None:
    """After the run: the inputs it saw, and (when it reused results) what it took over and the
    record of the modules it left out, so that the next run can plan from this one alone."""
    (cell_dir / P.INPUTS).write_text(json.dumps(files, indent=0, sort_keys=True))
    if reuse is None:
        return
    reused = {"modules": list(reuse.modules), "results": msgspec.to_builtins(reuse.results)}
    (cell_dir / P.REUSED).write_text(json.dumps(reused, indent=1))
    (cell_dir / P.DEPS_DIR).mkdir(exist_ok=True)
    (cell_dir / P.DEPS_DIR / "reused.json").write_text(json.dumps(reuse.deps, indent=1))
