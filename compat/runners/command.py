"""What a cell runs: its pytest arguments, its environment and the spec the in-cell entry reads.

A cell's selection comes from four places: the backend's (an option value,
``-k``/``-m`` arguments, environment), the target's own axes, the target's
``pytest-args`` and the user's arguments after ``--``. pytest keeps only the
last ``-k`` and the last ``-m``, so every ``-k`` here is combined into one,
``(a) and (b)``, and every ``-m`` likewise: no source can silently replace
another's selection.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..cell import protocol as P
from ..matrix import Cell, Matrix, substitute

CTR_OUT, CTR_TARGET, CTR_PLUGIN = "/out", "/target", "/opt/compat/plugin"
CTR_SOURCE, CTR_WHEELS = "/opt/compat/source", "/opt/compat/wheels"
EXPIRY_GRACE_S = 60.0  # past the cell bound, before a cell gives up on its runner
_EXPRESSIONS = ("-k", "-m")


@dataclass(frozen=True)
class Split:
    """pytest arguments with every ``-k`` and ``-m`` taken out, and what those said."""

    rest: tuple[str, ...]
    expressions: dict[str, tuple[str, ...]]


def split_expressions(args: Iterable[str]) -> Split:
    """Take ``-k EXPR``, ``-kEXPR`` and ``-k=EXPR`` (and the same of ``-m``) out of ``args``."""
    rest: list[str] = []
    found: dict[str, list[str]] = {flag: [] for flag in _EXPRESSIONS}
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        flag = next((f for f in _EXPRESSIONS if arg == f or arg.startswith(f)), None)
        if flag is None:
            rest.append(arg)
        elif arg == flag:
            if i + 1 < len(items):
                found[flag].append(items[i + 1])
                i += 1
            else:
                rest.append(arg)  # pytest says what is missing
        else:
            found[flag].append(arg[len(flag) :].removeprefix("="))
        i += 1
    return Split(tuple(rest), {f: tuple(v) for f, v in found.items() if v})


def combine(expressions: Sequence[str]) -> str:
    """``(a) and (b)``; one expression stays as written."""
    parts = [e.strip() for e in expressions if e.strip()]
    return parts[0] if len(parts) == 1 else " and ".join(f"({p})" for p in parts)


def compose(*sources: Iterable[str]) -> list[str]:
    """The sources' arguments in order, their ``-k``s and ``-m``s combined into one of each at the end."""
    rest: list[str] = []
    wanted: dict[str, list[str]] = {}
    for source in sources:
        split = split_expressions(source)
        rest += split.rest
        for flag, values in split.expressions.items():
            wanted.setdefault(flag, []).extend(values)
    for flag in _EXPRESSIONS:
        if wanted.get(flag):
            rest += [flag, combine(wanted[flag])]
    return rest


def backend_args(matrix: Matrix, cell: Cell) -> list[str]:
    """The arguments that select the cell's backend."""
    target = matrix.target
    selection = target.selection(cell.backend)
    args = [f"{target.backend_option}={selection.option}"] if selection.option is not None else []
    return [*args, *selection.pytest_args]


def axis_args(matrix: Matrix, cell: Cell) -> list[str]:
    values = dict(cell.extra)
    return [substitute(arg, {"value": values[axis.name]}) for axis in matrix.axes.extra for arg in axis.pytest_args]


def selection(matrix: Matrix, cell: Cell, extra: Sequence[str] = ()) -> str:
    """How this cell chose its tests (backend, -k, -m, test paths), as one line for a reason."""
    target = matrix.target
    chosen = target.selection(cell.backend)
    parts = [f"{target.backend_option}={chosen.option}"] if chosen.option is not None else []
    split = split_expressions([*chosen.pytest_args, *axis_args(matrix, cell), *target.pytest_args, *extra])
    for flag, values in split.expressions.items():
        parts += [flag, combine(values)]
    parts = [*(f"{k}={v}" for k, v in sorted(chosen.env.items())), *target.tests, *parts]
    return shlex.join(parts) if parts else "the target's own test paths"


def pytest_argv(matrix: Matrix, cell: Cell, *, out: str, extra: Sequence[str] = ()) -> list[str]:
    """pytest's arguments for a cell, with ``{dumps}``/``{out}`` pointing at ``out``."""
    target = matrix.target
    fill = {"dumps": f"{out}/{P.DUMPS}", "out": out}
    ours = [
        f"--capture={cell.capture}",
        "-p", P.PLUGIN_MODULE,
        "-p", "no:cacheprovider",
        f"--junitxml={out}/{P.JUNIT}",
    ]  # fmt: skip
    return [
        *target.tests,
        *compose(
            backend_args(matrix, cell),
            ours,
            axis_args(matrix, cell),
            (substitute(arg, fill) for arg in target.pytest_args),
            extra,
        ),
    ]


def python_path(matrix: Matrix, root: str) -> list[str]:
    """The target's import paths as the cell sees them (``root`` is where it is)."""
    return [str(Path(root) / p) if p != "." else root for p in matrix.target.import_paths]


def cell_env(matrix: Matrix, cell: Cell) -> dict[str, str]:
    """Environment variables of the cell: the target's, then its backend's."""
    return {**matrix.target.env, **matrix.target.selection(cell.backend).env}


def entry_spec(
    matrix: Matrix,
    cell: Cell,
    *,
    out: str,
    cwd: str,
    plugin: str,
    extra: Sequence[str],
    fresh_dirs: bool,
    source: str | None = None,
    files: str | None = None,
    wheels: str | None = None,
    reuse: Sequence[str] = (),
) -> P.EntrySpec:
    spec: P.EntrySpec = {
        "out": out,
        "cwd": cwd,
        "pytest": pytest_argv(matrix, cell, out=out, extra=extra),
        "per_test_timeout": matrix.timeouts.per_test,
        # The runner enforces the cell's bound from outside; this one only
        # acts when the runner is gone (SIGKILLed, OOM), so no cell runs on.
        "expire_after": matrix.timeouts.per_cell + EXPIRY_GRACE_S,
        "env": cell_env(matrix, cell),
        "fresh_dirs": fresh_dirs,
        "reaper": matrix.target.reaper,
        "pythonpath": [plugin, *python_path(matrix, cwd)],
        "restarts": matrix.timeouts.restarts,
        "lifeline": f"{plugin}/{P.LIFELINE}",
    }
    if source is not None and files is not None:
        spec["source"], spec["files"] = source, files
    if wheels is not None:
        spec["wheels"] = wheels
    if reuse:
        spec["reuse"] = list(reuse)
    return spec
