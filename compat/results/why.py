"""The "why" column: which single matrix axis explains a test's failures.

A test that fails (or times out) in some cells and passes in others is
explained by an axis when its outcome is a function of that axis's value
alone, and some pair of cells differing only in that axis shows the flip.
``compat triage`` fills in missing neighbours by re-running just that test
there (bounded), and re-runs it once where it failed to tell flaky from
broken; the re-runs land under ``<raw>/_triage/`` and the report reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import msgspec

from ..matrix import AXES
from ..matrix.cells import cell_id as format_cell_id
from .raw import read_cell, with_tests
from .schema import CellResult
from .status import FAILING, PASSING

TRIAGE_DIR = "_triage"
INDEX = "triage.json"

# A cell's axis values: python, group, backend, capture, then the target's own axes.
AxisValues = tuple[str, ...]


class Observation(msgspec.Struct, frozen=True):
    cell: AxisValues
    failed: bool


class Rerun(msgspec.Struct, frozen=True, kw_only=True):
    nodeid: str
    cell: str
    dir: str
    purpose: str
    status: str = ""


class TriageIndex(msgspec.Struct, kw_only=True):
    reruns: list[Rerun] = []
    labels: dict[str, str] = {}
    budget: int = 0
    skipped: int = 0


# --------------------------------------------------------------------------
# explaining a test from what was observed


def _label(axis: str, failing: set[str], passing: set[str]) -> str:
    if axis == "capture":
        if len(failing) == 1:
            return f"capture-sensitive: fails only with --capture={next(iter(failing))}"
        if len(passing) == 1:
            return f"capture-sensitive: passes only with --capture={next(iter(passing))}"
        return f"capture-sensitive: fails with --capture={'/'.join(sorted(failing))}"
    if axis == "group" and len(passing) == 1 and next(iter(passing)) != "base":
        return f"needs {next(iter(passing))}"
    if len(failing) == 1:
        value = next(iter(failing))
        return f"{value}-only" if axis != "group" else f"fails only with the {value} group"
    if len(passing) == 1:
        return f"passes only with {axis} {next(iter(passing))}"
    return f"fails with {axis} {'/'.join(sorted(failing))}"


def _consistent(obs: Sequence[Observation], i: int) -> tuple[set[str], set[str]] | None:
    """(failing values, passing values) when the outcome depends on axis i alone."""
    failing = {o.cell[i] for o in obs if o.failed}
    passing = {o.cell[i] for o in obs if not o.failed}
    return None if failing & passing else (failing, passing)


def _flips(obs: Sequence[Observation], i: int) -> bool:
    """Some failing and passing cells differ in axis i and nowhere else."""

    def rest(o: Observation) -> AxisValues:
        return o.cell[:i] + o.cell[i + 1 :]

    failing_rest = {rest(o) for o in obs if o.failed}
    return any(rest(o) in failing_rest for o in obs if not o.failed)


def explain(obs: Sequence[Observation], names: Sequence[str] = AXES) -> str:
    """The why label for one test, or "" when there is nothing to explain."""
    if not any(o.failed for o in obs) or all(o.failed for o in obs):
        return ""
    confirmed: list[str] = []
    unconfirmed: list[str] = []
    for i, axis in enumerate(names[: len(obs[0].cell)]):
        split = _consistent(obs, i)
        if split is None:
            continue
        (confirmed if _flips(obs, i) else unconfirmed).append(_label(axis, *split))
    if len(confirmed) == 1:
        return confirmed[0]
    if len(confirmed) > 1:
        return "ambiguous: " + " or ".join(confirmed)
    if unconfirmed:
        return "unconfirmed: " + " or ".join(unconfirmed) + " (no neighbouring cell was run)"
    failed = sum(o.failed for o in obs)
    return f"no single axis explains it (fails in {failed} of {len(obs)} cells)"


def is_settled(label: str) -> bool:
    return bool(label) and not label.startswith(("ambiguous", "unconfirmed", "no single"))


# --------------------------------------------------------------------------
# observations from cells and re-runs


def _axes(cell: CellResult) -> AxisValues:
    return (cell.python, cell.group, cell.backend, cell.capture, *cell.extra.values())


def axis_names(cells: Iterable[CellResult]) -> tuple[str, ...]:
    extra = next((tuple(c.extra) for c in cells if c.extra), ())
    return (*AXES, *extra)


def observations(
    cells: Iterable[CellResult], reruns: Iterable[tuple[CellResult, str]] = ()
) -> dict[str, list[Observation]]:
    """Per test, one pass/fail observation per cell (flaky and skips say nothing)."""
    seen: dict[str, dict[AxisValues, bool]] = {}
    cells = list(cells)
    for cell in cells:
        for nodeid, test in cell.tests.items():
            _observe(seen, nodeid, _axes(cell), test.status)
    # A module that failed to collect somewhere collected where its tests ran: that is its pass there
    # (a collection error on one Python only is then explained like any other failure).
    broken = {n for n, by_cell in seen.items() if "::" not in n and any(by_cell.values())}
    for cell in cells:
        ran_modules = {n.split("::", 1)[0] for n, t in cell.tests.items() if "::" in n and t.status in PASSING}
        for module in broken & ran_modules:
            seen[module].setdefault(_axes(cell), False)
    for cell, nodeid in reruns:
        rerun = cell.tests.get(nodeid)
        if rerun is not None and _axes(cell) not in seen.get(nodeid, {}):
            _observe(seen, nodeid, _axes(cell), rerun.status)
    return {n: [Observation(c, f) for c, f in by_cell.items()] for n, by_cell in seen.items()}


def _observe(seen: dict[str, dict[AxisValues, bool]], nodeid: str, axes: AxisValues, status: str) -> None:
    if status in FAILING:
        seen.setdefault(nodeid, {})[axes] = True
    elif status in PASSING:
        seen.setdefault(nodeid, {})[axes] = False


def why_labels(
    cells: Sequence[CellResult],
    reruns: Iterable[tuple[CellResult, str]] = (),
    flaky: Iterable[str] = (),
    reproduced: Iterable[str] | None = None,
    repeats: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, str]:
    """Each failing test's why. An axis label needs a re-run that failed again where the test
    failed (``reproduced``): one run's pattern alone is shown as unconfirmed, never as a fact.
    ``reproduced=None`` trusts the observations as they are (the analysis on its own)."""
    names = axis_names(cells)
    labels = {n: explain(obs, names) for n, obs in observations(cells, reruns).items()}
    if reproduced is not None:
        again = set(reproduced)
        for nodeid, label in labels.items():
            if is_settled(label) and nodeid not in again:
                labels[nodeid] = f"unconfirmed: {label} (from one run; `compat run --triage` re-runs it)"
    _label_repeats(labels, repeats or {}, set(flaky))
    for cell in cells:
        for nodeid, test in cell.tests.items():
            if test.status == "flaky" and not labels.get(nodeid, "").startswith("flaky"):
                rest = labels.get(nodeid, "")
                labels[nodeid] = "flaky (failed, then passed on re-run)" + (f"; {rest}" if rest else "")
    return {n: label for n, label in labels.items() if label}


def _label_repeats(labels: dict[str, str], repeats: Mapping[str, tuple[int, int]], flaky: set[str]) -> None:
    """Flaky or deterministic, from its re-runs where it failed, before any axis's label."""
    for nodeid in set(repeats) | flaky:
        rest = labels.get(nodeid, "")
        failed, total = repeats.get(nodeid, (0, 0))
        if nodeid in flaky:
            said = f"failed {failed} of {total} re-runs where it failed" if total else "failed, then passed on re-run"
            labels[nodeid] = f"flaky ({said})" + (f"; {rest}" if rest and not rest.startswith("flaky") else "")
        elif total and failed == total:
            # Seen failing every time where it failed first: a fact to explain, not chance.
            kept = rest and not rest.startswith("unconfirmed")
            labels[nodeid] = f"deterministic (failed {failed} of {total} re-runs where it failed)" + (
                f"; {rest}" if kept else ""
            )


# --------------------------------------------------------------------------
# stored re-runs


def read_index(raw_dir: Path) -> TriageIndex:
    try:
        return msgspec.json.decode((raw_dir / TRIAGE_DIR / INDEX).read_bytes(), type=TriageIndex)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return TriageIndex()


def write_index(raw_dir: Path, index: TriageIndex) -> None:
    path = raw_dir / TRIAGE_DIR / INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(index)))


def read_reruns(raw_dir: Path) -> list[tuple[CellResult, Rerun]]:
    return read_reruns_from(raw_dir, read_index(raw_dir))


class Applied(msgspec.Struct, frozen=True):
    """Re-runs folded into the cells: flaky tests marked, neighbours as observations."""

    cells: list[CellResult]
    neighbours: list[tuple[CellResult, str]]
    flaky: set[str]
    # Tests a re-run saw fail again (where they failed, or in a neighbour).
    reproduced: set[str]
    # Per test: (failed, total) of its re-runs where it failed first.
    repeats: dict[str, tuple[int, int]] = {}

    def labels(self) -> dict[str, str]:
        return why_labels(self.cells, self.neighbours, self.flaky, self.reproduced, self.repeats)


def apply_reruns(cells: Sequence[CellResult], reruns: Sequence[tuple[CellResult, Rerun]]) -> Applied:
    """Fold re-runs in: a failure that passed when re-run in its own cell is flaky, one that failed again
    is reproduced."""
    flaky: dict[tuple[str, str], CellResult] = {}
    reproduced: set[str] = set()
    neighbours = []
    repeats: dict[str, tuple[int, int]] = {}
    for rerun_cell, rerun in reruns:
        test = rerun_cell.tests.get(rerun.nodeid)
        if rerun.purpose == "flaky":
            failed, total = repeats.get(rerun.nodeid, (0, 0))
            repeats[rerun.nodeid] = (failed + (test is None or test.status in FAILING), total + 1)
        if rerun.purpose == "flaky" and test is not None and test.status in PASSING:
            flaky[(rerun.cell, rerun.nodeid)] = rerun_cell
        elif rerun.purpose == "neighbour":
            neighbours.append((rerun_cell, rerun.nodeid))
        if test is not None and test.status in FAILING:
            reproduced.add(rerun.nodeid)  # it failed again in a fresh run: the pattern is not one run's chance
    return Applied([_mark_flaky(c, flaky) for c in cells], neighbours, {n for _, n in flaky}, reproduced, repeats)


def _mark_flaky(cell: CellResult, flaky: Mapping[tuple[str, str], CellResult]) -> CellResult:
    changed = {
        nodeid: msgspec.structs.replace(
            test,
            status="flaky",
            reason=f"failed, then passed on re-run ({test.status} first: {test.reason or test.when or ''})".replace(
                ": )", ")"
            ),
        )
        for nodeid, test in cell.tests.items()
        if (cell.cell, nodeid) in flaky and test.status in FAILING
    }
    return with_tests(cell, {**cell.tests, **changed}) if changed else cell


# --------------------------------------------------------------------------
# planning re-runs


def neighbours(axes: AxisValues, values: Mapping[str, Sequence[str]]) -> Iterable[AxisValues]:
    """Cells that differ from `axes` in exactly one axis, nearest axis first."""
    for i, axis in enumerate(list(values)[: len(axes)]):
        for v in values.get(axis, ()):
            if v != axes[i]:
                yield (*axes[:i], v, *axes[i + 1 :])


REPEATS = 3  # re-runs of a failure where it failed: flaky (some pass) or deterministic (all fail)


def plan_reruns(
    cells: Sequence[CellResult],
    values: Mapping[str, Sequence[str]],
    max_reruns: int,
    done: Iterable[tuple[str, str, str]] = (),
    repeats: int = REPEATS,
) -> list[tuple[str, AxisValues, str]]:
    """(nodeid, cell axes, purpose) to re-run, at most max_reruns of them.

    Every test with a failure first gets ``repeats`` re-runs where it failed, before anything else:
    it is flaky or it is deterministic, and a label needs the failure seen again; then unexplained
    tests get their missing one-axis neighbours. Cells known to be unsupported or unavailable are
    never proposed. ``done`` may hold a re-run several times (one per repeat).
    """
    done = list(done)
    dead = _dead(cells)
    exists = _exists(cells)
    obs = observations(cells)
    flaky_checks, neighbour_runs = [], []
    for nodeid, test_obs in sorted(obs.items()):
        failing = [o.cell for o in test_obs if o.failed]
        label = explain(test_obs, list(values))
        if not failing:
            continue
        already = done.count((nodeid, cell_id(failing[0]), "flaky"))
        flaky_checks += [(nodeid, failing[0], "flaky")] * max(0, repeats - already)
        if is_settled(label):
            continue
        observed = {o.cell for o in test_obs}
        for cell in failing:
            for n in neighbours(cell, values):
                if n not in observed and not dead(n) and exists(nodeid, cell, n):
                    observed.add(n)
                    neighbour_runs.append((nodeid, n, "neighbour"))
    wanted = flaky_checks + [p for p in neighbour_runs if (p[0], cell_id(p[1]), p[2]) not in done]
    return wanted[: max(0, max_reruns)]


def _exists(cells: Sequence[CellResult]) -> Callable[[str, AxisValues, AxisValues], bool]:
    """Whether a test can exist in a neighbour. Where cells with the neighbour's value on the axis that
    differs ran tests and none of them collected it (``test_x[subint]`` in trio cells), it does not;
    where no such cell ran, nothing says so."""
    where: dict[str, set[tuple[int, str]]] = {}
    ran: set[tuple[int, str]] = set()
    for cell in cells:
        axes = _axes(cell)
        if cell.tests:
            ran.update(enumerate(axes))
        for nodeid in cell.tests:
            where.setdefault(nodeid, set()).update(enumerate(axes))

    def exists(nodeid: str, cell: AxisValues, neighbour: AxisValues) -> bool:
        seen = where.get(nodeid, set())
        changed = [(i, v) for i, (a, v) in enumerate(zip(cell, neighbour, strict=True)) if a != v]
        return all(iv in seen or iv not in ran for iv in changed)

    return exists


def _dead(cells: Sequence[CellResult]) -> Callable[[AxisValues], bool]:
    """Whether a cell cannot run: an interpreter or image is missing per
    (python, group); an availability gate refuses per (python, group, backend)."""
    unavailable = {_axes(c)[:2] for c in cells if c.status == "unavailable"}
    unsupported = {_axes(c)[:3] for c in cells if c.status == "unsupported"}
    return lambda axes: axes[:2] in unavailable or axes[:3] in unsupported


def cell_id(axes: AxisValues) -> str:
    python, group, backend, capture, *extra = axes
    return format_cell_id(python, group, backend, capture, extra)


def read_reruns_from(raw_dir: Path, index: TriageIndex) -> list[tuple[CellResult, Rerun]]:
    return [
        (read_cell(raw_dir / TRIAGE_DIR / r.dir), r) for r in index.reruns if (raw_dir / TRIAGE_DIR / r.dir).is_dir()
    ]
