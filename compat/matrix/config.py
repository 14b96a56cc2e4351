"""matrix.toml -> frozen msgspec structs, validated once.

Every problem is reported as one ``ConfigError`` line,
``<file>: <key path>: <what is wrong>[; did you mean '<name>'?]``, where the
key path uses the names written in the TOML file (``$.timeouts.per-test``).
Decoding (types, unknown keys) is msgspec's job; ``_problems`` adds the
checks a type cannot express (non-empty axes, known backends, bounded
numbers, paths that exist). Every path is relative to the matrix file.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import tomllib
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

import msgspec

from ..errors import ConfigError
from ..hints import did_you_mean, not_one_of
from .cells import AXES, Cell
from .target import TargetProject, read_project

CAPTURE_MODES = ("fd", "sys", "no", "tee-sys")
MAX_SECONDS = 86_400.0  # a day: longer bounds are a typo, and break CI job timeouts
MIN_MEMORY = 6 * 1024 * 1024  # the engine refuses less
MIN_PIDS = 16  # pytest, its reaper and a census need a few


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="kebab"):
    pass


class ExtraAxis(_Base, frozen=True):
    """A target's own axis: its values become pytest arguments (``{value}``)."""

    name: str
    values: tuple[str, ...]
    pytest_args: tuple[str, ...]


class AxesConfig(_Base, frozen=True):
    python: tuple[str, ...] = ("3.13", "3.14")
    group: tuple[str, ...] = ("base", "greenback", "cffi")
    backend: tuple[str, ...] = ("trio", "forkserver", "subint")
    capture: tuple[str, ...] = ("fd", "sys", "no")
    extra: tuple[ExtraAxis, ...] = ()

    def values(self) -> dict[str, tuple[str, ...]]:
        """Every axis, built-in first, then the target's own, in matrix order."""
        return {
            "python": self.python, "group": self.group, "backend": self.backend,
            "capture": self.capture, **{x.name: x.values for x in self.extra},
        }  # fmt: skip


class TargetConfig(_Base, frozen=True):
    # Relative to the matrix file, like every path here.
    path: str = "."
    # What a cell's image installs from the target's project: "auto" its
    # uv.lock when it has one (frozen), else its pyproject resolved at build;
    # "lock" requires the lock; "pyproject" ignores it. The target's own
    # source is never installed: it is mounted, and `import-paths` of it go on
    # PYTHONPATH, so editing it never rebuilds an image.
    install: Literal["auto", "lock", "pyproject"] = "auto"
    import_paths: tuple[str, ...] = (".",)
    # The target's dependency groups every cell installs (its test group).
    test_groups: tuple[str, ...] = ("test",)
    # Our group axis values -> the target's group names ("base": none).
    group_map: dict[str, str] = {}
    tests: tuple[str, ...] = ("tests/backends",)
    backend_option: str = "--spawn-backend"
    # Our backend names -> the target's; empty means the names are the same.
    backend_map: dict[str, str] = {}
    pytest_args: tuple[str, ...] = ()
    # How the target refuses a combination. When no test ran and its output
    # matches one of these, whatever the exit code, the cell is `unsupported`
    # with the target's message (the `reason` group, else the match and the
    # lines after it).
    unsupported_pattern: str | tuple[str, ...] = r"is unavailable here: (?P<reason>.*)"
    # Environment variables for every cell (values may use {home}, {tmp}).
    env: dict[str, str] = {}
    # The target's reaper module, run with --json after pytest when it exists.
    reaper: str = "backends.reap"
    # Files of the target that cannot change a result (globs relative to it,
    # as pathlib's full_match reads them: `docs/**`, `**/*.md`): editing them
    # does not invalidate the per-cell result cache.
    cache_ignore: tuple[str, ...] = ()
    # Skip reasons (regular expressions) that only say a test belongs to
    # another backend's suite: the table shows those results as "n/a", apart
    # from skips that hide something.
    na_skips: tuple[str, ...] = ()

    @property
    def unsupported_patterns(self) -> tuple[str, ...]:
        p = self.unsupported_pattern
        return (p,) if isinstance(p, str) else p

    def group_name(self, group: str) -> str | None:
        """The target's dependency group for one of our group values."""
        return None if group == "base" else self.group_map.get(group, group)


class CellBounds(_Base, frozen=True):
    """Seconds; per-cell is enforced from outside the container."""

    per_test: float = 60.0
    per_cell: float = 600.0


class ImagesConfig(_Base, frozen=True):
    base: Literal["auto", "registry", "debootstrap"] = "auto"
    registry_image: str = "debian:trixie-slim"
    debian_suite: str = "trixie"
    mirror: str = "http://deb.debian.org/debian"


class ContainerLimits(_Base, frozen=True):
    pids: int = 512
    memory: str = "2g"
    cpus: float | None = None


MAX_RERUNS = 1000


class TriageConfig(_Base, frozen=True):
    # Re-runs the main job (`compat run --triage`, `nox -s matrix`) may spend
    # to explain failures (the "why" column); 0 turns it off.
    reruns: int = 6


GITHUB_MAX_JOBS = 256  # a matrix may not generate more jobs than this


class CiConfig(_Base, frozen=True):
    # Cell jobs at most: larger matrices pack several cells (of one image) per job.
    max_jobs: int = 20
    # cron for a scheduled run against new upstream releases; "" for none.
    schedule: str = "17 3 * * *"
    # Branches whose pushes run the matrix; empty: every branch. The table is
    # published from the repository's default branch, whatever its name.
    push_branches: tuple[str, ...] = ()


class Matrix(_Base, frozen=True):
    axes: AxesConfig = AxesConfig()
    target: TargetConfig = TargetConfig()
    timeouts: CellBounds = CellBounds()
    images: ImagesConfig = ImagesConfig()
    limits: ContainerLimits = ContainerLimits()
    triage: TriageConfig = TriageConfig()
    ci: CiConfig = CiConfig()
    # Like GitHub's matrix.exclude: each table names axis values (a value or a
    # list) and a `reason`; matching cells are "n/a" and cost nothing.
    exclude: tuple[dict[str, str | tuple[str, ...]], ...] = ()
    # Where the file was read from; every relative path is resolved against it.
    base_dir: str = "."
    # The file itself, as the user named it ("" when built in code).
    source: str = ""

    def cells(self) -> list[Cell]:
        a = self.axes
        extras = [[(x.name, v) for v in x.values] for x in a.extra]
        return [
            Cell(p, g, b, c, tuple(extra))
            for p, g, b, c in itertools.product(a.python, a.group, a.backend, a.capture)
            for extra in itertools.product(*extras)
        ]

    def path(self, relative: str) -> Path:
        """A path of the matrix file, resolved against the file's directory."""
        return (Path(self.base_dir) / relative).resolve()

    @property
    def target_dir(self) -> Path:
        return self.path(self.target.path)

    def project(self) -> TargetProject:
        return read_project(self.target_dir)

    def excluded(self, cell: Cell) -> str | None:
        """The reason of the first exclude rule that matches ``cell``."""
        axes = cell.axes
        for rule in self.exclude:
            conditions = {k: v for k, v in rule.items() if k != "reason"}
            if all(axes.get(k) in ((v,) if isinstance(v, str) else v) for k, v in conditions.items()):
                reason = rule.get("reason")
                text = reason if isinstance(reason, str) else ""
                where = ", ".join(f"{k}={v if isinstance(v, str) else '|'.join(v)}" for k, v in conditions.items())
                return f"excluded by matrix rule ({where})" + (f": {text}" if text else "")
        return None


def load(path: str | Path = "matrix.toml") -> Matrix:
    path = Path(path)
    if "\0" in str(path):
        raise ConfigError(f"--matrix: the path contains a NUL byte: {str(path)!r}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    matrix = decode(raw, source=str(path), base_dir=path.resolve().parent)
    for key, problem in _problems(matrix):
        raise ConfigError(f"{path}: {key}: {problem}")
    return matrix


def decode(raw: bytes | str, *, source: str, base_dir: Path | str = ".") -> Matrix:
    """Types and unknown keys only; ``load`` adds the semantic checks."""
    try:
        data = tomllib.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    for internal in ("base-dir", "source"):
        if internal in data:
            raise ConfigError(f"{source}: $.{internal}: unknown key '{internal}'")
    data["base-dir"] = str(base_dir)
    data["source"] = source
    try:
        return msgspec.convert(data, Matrix)
    except msgspec.ValidationError as exc:
        key, problem = explain_validation_error(str(exc))
        raise ConfigError(f"{source}: {key}: {problem}") from None


# -- msgspec's messages, rephrased with the key path first -------------------

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_ENUM = re.compile(r"^Invalid enum value '(?P<value>[^']*)'$")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[([^\]]*)\]")


def explain_validation_error(message: str) -> tuple[str, str]:
    """msgspec's ``<msg> - at `<path>``` -> (key path, problem with a hint)."""
    m = _AT.match(message)
    assert m is not None  # the pattern matches any string
    msg, path = m["msg"], m["path"] or "$"
    node = _type_at(path)
    if unknown := _UNKNOWN.match(msg):
        name = unknown["name"]
        known = _field_names(node)
        hint = did_you_mean(name, known) or (f"; expected one of: {', '.join(known)}" if known else "")
        return (f"{path}.{name}" if path != "$" else f"$.{name}"), f"unknown key '{name}'{hint}"
    if enum := _ENUM.match(msg):
        choices = typing.get_args(node) if typing.get_origin(node) is Literal else ()
        return path, not_one_of(enum["value"], [str(c) for c in choices])
    if msg == "Expected `str`, got `float`" and path.startswith("$.axes.python"):
        return path, f'{msg}; quote versions so 3.10 stays 3.10: "3.14"'
    return path, msg


def _type_at(path: str) -> object:
    """The declared type at a msgspec key path (kebab names), if a struct field."""
    node: object = Matrix
    for name, index in _SEGMENT.findall(path):
        if index:
            args = typing.get_args(node)
            node = args[0] if args else None
            continue
        if not (isinstance(node, type) and issubclass(node, msgspec.Struct)):
            return None
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(node)}
        node = fields.get(name)
    return node


def _field_names(node: object) -> list[str]:
    if isinstance(node, type) and issubclass(node, msgspec.Struct):
        return [f.encode_name for f in msgspec.structs.fields(node) if f.encode_name not in ("base-dir", "source")]
    return []


# -- semantic checks: (key path, problem) in file order ----------------------

_PYTHON = re.compile(r"^3\.\d+t?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.]*$")
_MEMORY = re.compile(r"^(?P<n>\d+)(?P<unit>[bkmg]?)$")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

Problems = Iterator[tuple[str, str]]


def _problems(matrix: Matrix) -> Problems:
    yield from _axes_problems(matrix)
    yield from _target_problems(matrix)
    yield from _timeout_problems(matrix.timeouts)
    yield from _limit_problems(matrix.limits)
    if not 1 <= matrix.ci.max_jobs <= GITHUB_MAX_JOBS:
        yield "$.ci.max-jobs", f"must be between 1 and {GITHUB_MAX_JOBS} (GitHub's limit), got {matrix.ci.max_jobs}"
    if matrix.ci.schedule and len(matrix.ci.schedule.split()) != 5:
        yield "$.ci.schedule", f"'{matrix.ci.schedule}' is not a cron expression of 5 fields (or \"\" for none)"
    if not 0 <= matrix.triage.reruns <= MAX_RERUNS:
        yield "$.triage.reruns", f"must be between 0 (off) and {MAX_RERUNS}, got {matrix.triage.reruns}"
    yield from _exclude_problems(matrix)


def _axes_problems(matrix: Matrix) -> Problems:
    axes, target = matrix.axes, matrix.target
    for name, values in axes.values().items():
        key = f"$.axes.{name}" if name in AXES else f"$.axes.extra[{_extra_index(axes, name)}].values"
        if not values:
            yield key, "must list at least one value"
        seen: set[str] = set()
        for i, value in enumerate(values):
            if value in seen:
                yield f"{key}[{i}]", f"'{value}' is listed twice"
            seen.add(value)
            if name not in ("python", "capture") and not _NAME.match(value):
                yield f"{key}[{i}]", _bad_name(value)
    for i, py in enumerate(axes.python):
        if not _PYTHON.match(py):
            yield f"$.axes.python[{i}]", f"'{py}' is not a Python version like '3.14'"
    project = _project_or_none(matrix)
    groups = project.groups if project is not None else None
    for i, group in enumerate(axes.group):
        mapped = target.group_name(group)
        if groups is not None and mapped is not None and mapped not in groups and _NAME.match(group):
            name = mapped
            where = f" (mapped to '{name}' by $.target.group-map)" if name != group else ""
            yield (
                f"$.axes.group[{i}]",
                not_one_of(name, ["base", *groups], f"'base' or a dependency group of the target{where}:"),
            )
    for i, backend in enumerate(axes.backend):
        if target.backend_map and _NAME.match(backend) and backend not in target.backend_map:
            yield f"$.axes.backend[{i}]", not_one_of(backend, list(target.backend_map), "in $.target.backend-map:")
    for i, capture in enumerate(axes.capture):
        if capture not in CAPTURE_MODES:
            yield f"$.axes.capture[{i}]", not_one_of(capture, list(CAPTURE_MODES), "a pytest --capture mode:")
    for i, extra in enumerate(axes.extra):
        if extra.name in AXES or not re.fullmatch(r"[a-z][a-z0-9_]*", extra.name):
            yield (
                f"$.axes.extra[{i}].name",
                (
                    f"'{extra.name}' must be a new axis name "
                    f"(lower-case letters, digits, '_'; not one of {', '.join(AXES)})"
                ),
            )
        if not any("{value}" in arg for arg in extra.pytest_args):
            yield f"$.axes.extra[{i}].pytest-args", "must use {value} in at least one argument"


def _extra_index(axes: AxesConfig, name: str) -> int:
    return next(i for i, x in enumerate(axes.extra) if x.name == name)


def _bad_name(value: str) -> str:
    # Cell ids and nox parameter ids join axis values with '-'.
    return f"'{value}' must be lower-case letters, digits, '_' and '.' (ids join values with '-')"


def _project_or_none(matrix: Matrix) -> TargetProject | None:
    try:
        return matrix.project()
    except (ConfigError, ValueError, OSError):  # reported by _target_problems, with its key
        return None


def _target_problems(matrix: Matrix) -> Problems:
    target = matrix.target
    if "\0" in target.path:
        yield from _path_problems("$.target.path", target.path)
        return
    target_dir = matrix.target_dir
    if not target_dir.is_dir():
        yield "$.target.path", f"'{target.path}' is not a directory (resolved against the matrix file: {target_dir})"
        return
    try:
        project = matrix.project()
    except ConfigError as exc:
        yield "$.target.path", str(exc)
        return
    if target.install == "lock" and not project.has_lock:
        yield "$.target.install", f"'lock' needs {target_dir / 'uv.lock'}, which does not exist"
    if not project.has_pyproject and target.install != "auto":
        yield "$.target.install", f"'{target.install}' needs {target_dir / 'pyproject.toml'}"
    for i, group in enumerate(target.test_groups):
        if project.groups is not None and group not in project.groups:
            yield f"$.target.test-groups[{i}]", not_one_of(group, project.groups, "a dependency group of the target:")
    for ours, theirs in target.group_map.items():
        if project.groups is not None and theirs not in project.groups:
            yield f"$.target.group-map.{ours}", not_one_of(theirs, project.groups, "a dependency group of the target:")
    for key, paths in (("tests", target.tests), ("import-paths", target.import_paths)):
        if not paths and key == "tests":
            yield "$.target.tests", "must list at least one test path"
        for i, rel in enumerate(paths):
            yield from _path_problems(f"$.target.{key}[{i}]", rel)
            local = rel.split("::", 1)[0]
            if "\0" not in local and not (target_dir / local).exists():
                yield f"$.target.{key}[{i}]", f"'{local}' does not exist in the target ({target_dir})"
    for i, pattern in enumerate(target.na_skips):
        try:
            re.compile(pattern)
        except re.error as exc:
            yield f"$.target.na-skips[{i}]", f"{pattern!r} is not a regular expression: {exc}"
    for i, glob in enumerate(target.cache_ignore):
        if not glob.strip() or glob.startswith("/") or "\0" in glob:
            yield f"$.target.cache-ignore[{i}]", f"{glob!r} is not a glob relative to the target (like 'docs/**')"
    if not target.backend_option.startswith("-"):
        yield (
            "$.target.backend-option",
            (f"'{target.backend_option}' is not a command-line option (like '--spawn-backend')"),
        )
    for ours, theirs in target.backend_map.items():
        if not theirs or theirs.startswith("-"):
            yield f"$.target.backend-map.{ours}", f"'{theirs}' is not a backend value"
    patterns = target.unsupported_patterns
    key = "$.target.unsupported-pattern"
    if not patterns:
        yield key, "must list at least one pattern"
    for i, text in enumerate(patterns):
        where = key if isinstance(target.unsupported_pattern, str) else f"{key}[{i}]"
        try:
            re.compile(text)
        except re.error as exc:
            yield where, f"not a regular expression: {exc}"
    for name in target.env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            yield f"$.target.env.{name}", "not an environment variable name"


def _path_problems(key: str, value: str) -> Problems:
    if "\0" in value:
        yield key, f"contains a NUL byte: {value!r}"


def _timeout_problems(timeouts: CellBounds) -> Problems:
    for f in msgspec.structs.fields(CellBounds):
        value = getattr(timeouts, f.name)
        if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
            yield (
                f"$.timeouts.{f.encode_name}",
                (f"must be a number of seconds above 0 and at most {MAX_SECONDS:g} (a day), got {value:g}"),
            )
    if timeouts.per_test > timeouts.per_cell:
        yield "$.timeouts.per-test", f"{timeouts.per_test:g} s exceeds $.timeouts.per-cell ({timeouts.per_cell:g} s)"


def memory_bytes(text: str) -> int | None:
    m = _MEMORY.match(text.strip().lower())
    return int(m["n"]) * _UNITS[m["unit"]] if m else None


def _limit_problems(limits: ContainerLimits) -> Problems:
    if limits.pids < MIN_PIDS:
        yield "$.limits.pids", f"must be at least {MIN_PIDS} processes, got {limits.pids}"
    size = memory_bytes(limits.memory)
    if size is None:
        yield "$.limits.memory", f"'{limits.memory}' is not a size like '2g' or '512m'"
    elif size < MIN_MEMORY:
        yield "$.limits.memory", f"'{limits.memory}' is below the engine's minimum of 6m"
    if limits.cpus is not None:
        cores = os.cpu_count() or 1
        if not (math.isfinite(limits.cpus) and 0 < limits.cpus <= cores):
            yield "$.limits.cpus", f"must be above 0 and at most this host's {cores} cores, got {limits.cpus:g}"


def _exclude_problems(matrix: Matrix) -> Problems:
    values = matrix.axes.values()
    for i, rule in enumerate(matrix.exclude):
        axes = [k for k in rule if k != "reason"]
        if not axes:
            yield f"$.exclude[{i}]", "names no axis; give at least one of " + ", ".join(values)
        for key in axes:
            if key not in values:
                yield f"$.exclude[{i}].{key}", f"unknown axis '{key}'" + did_you_mean(key, [*values, "reason"])
                continue
            given = rule[key]
            for value in (given,) if isinstance(given, str) else given:
                if value not in values[key]:
                    yield f"$.exclude[{i}].{key}", not_one_of(value, values[key], f"on the {key} axis:")
        if "reason" in rule and not isinstance(rule["reason"], str):
            yield f"$.exclude[{i}].reason", "must be a string"


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``{name}`` placeholders filled from ``values``; others stay as written."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text
