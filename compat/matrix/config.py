"""The target's config -> frozen msgspec structs, validated once.

The config is ``compat.toml``, or the ``[tool.spawn-compat]`` table of the
target's ``pyproject.toml`` (as cibuildwheel reads ``[tool.cibuildwheel]``),
found from the current directory upwards (``find_config``); ``--matrix FILE``
names one instead. Every path in it is relative to the file that holds it.

Every problem is reported as one ``ConfigError`` line,
``<file>: <key path>: <what is wrong>[; did you mean '<name>'?]``, where the
key path uses the names written in the TOML file (``$.timeouts.per-test``,
``$.tool.spawn-compat.timeouts.per-test`` in a pyproject.toml). Decoding
(types, unknown keys) is msgspec's job; ``_problems`` adds the checks a type
cannot express (non-empty axes, known backends, bounded numbers, paths that
exist, a pytest the cells will install).
"""

from __future__ import annotations

import itertools
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from ..errors import ConfigError
from ..hints import did_you_mean, not_one_of
from .cells import AXES, Cell
from .target import TargetProject, read_project

CONFIG_NAME = "compat.toml"
PYPROJECT = "pyproject.toml"
TOOL_TABLE = "spawn-compat"  # [tool.spawn-compat] in a pyproject.toml
CAPTURE_MODES = ("fd", "sys", "no", "tee-sys")
MAX_SECONDS = 86_400.0  # a day: longer bounds are a typo, and break CI job timeouts
MIN_MEMORY = 6 * 1024 * 1024  # the engine refuses less
MIN_PIDS = 16  # pytest, its reaper and a census need a few
# Dependency groups a target's tests conventionally live in, in the order they are looked for.
TEST_GROUP_NAMES = ("test", "tests", "testing")


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="kebab"):
    pass


class ExtraAxis(_Base, frozen=True):
    """A target's own axis: its values become pytest arguments (``{value}``)."""

    name: str
    values: tuple[str, ...]
    pytest_args: tuple[str, ...]


class AxesConfig(_Base, frozen=True):
    python: tuple[str, ...] = ("3.13", "3.14")
    group: tuple[str, ...] = ("base",)
    backend: tuple[str, ...] = ("trio", "forkserver", "subint")
    capture: tuple[str, ...] = ("fd", "sys", "no")
    extra: tuple[ExtraAxis, ...] = ()

    def values(self) -> dict[str, tuple[str, ...]]:
        """Every axis, built-in first, then the target's own, in matrix order."""
        return {
            "python": self.python, "group": self.group, "backend": self.backend,
            "capture": self.capture, **{x.name: x.values for x in self.extra},
        }  # fmt: skip


class BackendSelection(_Base, frozen=True):
    """How the target selects one backend: any of a value of its backend option,
    pytest arguments (a ``-k`` or ``-m`` expression, combined with any other), and
    environment variables."""

    option: str | None = None
    pytest_args: tuple[str, ...] = ()
    env: dict[str, str] = {}


InstallMode = Literal["auto", "lock", "pyproject", "requirements"]


class TargetConfig(_Base, frozen=True):
    # Relative to the config file, like every path here.
    path: str = "."
    # What a cell's image installs from the target: "auto" its uv.lock when it
    # has one (frozen), else its pyproject.toml resolved at build, else only
    # its requirement files; "lock", "pyproject" and "requirements" force one.
    install: InstallMode = "auto"
    # A member of the target's uv workspace to test ("": the root project).
    package: str = ""
    # Build the target and install it in every cell, as tox does (its entry
    # points, pytest plugins and compiled parts exist there): "auto" when it
    # is a package (it has a [build-system]). Its source is still mounted.
    install_project: Literal["auto"] | bool = "auto"
    # The target's optional dependencies (`.[trio]`), installed in every cell.
    extras: tuple[str, ...] = ()
    # pip requirement files of the target, installed in every cell after its project.
    requirements: tuple[str, ...] = ()
    # Environment for building the target (the images' install and its wheel),
    # e.g. SETUPTOOLS_SCM_PRETEND_VERSION for a version that comes from git.
    build_env: dict[str, str] = {}
    # Directories of the target put on PYTHONPATH (e.g. ["src"]).
    import_paths: tuple[str, ...] = (".",)
    # The target's dependency groups every cell installs; unset: the first of
    # test, tests, testing that it has (none when it has none).
    test_groups: tuple[str, ...] | None = None
    # Our group axis values -> the target's group names ("base": none). With
    # install = "requirements", a value is a requirements file instead.
    group_map: dict[str, str] = {}
    # Test paths or node ids; empty: pytest's own (the target's testpaths).
    tests: tuple[str, ...] = ()
    # The target's option that selects a backend ("" for none).
    backend_option: str = "--spawn-backend"
    # Our backend names -> the target's: a value of backend-option, or a
    # table of option, pytest-args and env. Empty: the option gets our name.
    backend_map: dict[str, str | BackendSelection] = {}
    pytest_args: tuple[str, ...] = ()
    # How the target refuses a combination. When no test ran and its output
    # matches one of these, whatever the exit code, the cell is `unsupported`
    # with the target's message (the `reason` group, else the match and the
    # lines after it).
    unsupported_pattern: str | tuple[str, ...] = r"is unavailable here: (?P<reason>.*)"
    # Environment variables for every cell (values may use {home}, {tmp}).
    env: dict[str, str] = {}
    # The target's reaper module, run with --json after pytest ("": none).
    reaper: str = ""
    # Files the target's own dump handlers write inside the cell, collected
    # with a hang's evidence: absolute paths with {pid} for each process of
    # the cell (e.g. tractor's "/tmp/tractor-stackscope-{pid}.log").
    dump_files: tuple[str, ...] = ()
    # Files of the target that cannot change a result (globs relative to it,
    # as pathlib's full_match reads them: `docs/**`, `**/*.md`): editing them
    # does not invalidate the per-cell result cache.
    cache_ignore: tuple[str, ...] = ()
    # Files a test reads without the record seeing it (a child process's, a subprocess's input),
    # globs relative to the target: an edit to one re-runs the modules recorded reading it, and
    # every module when none is.
    cache_inputs: tuple[str, ...] = ()
    # Skip reasons (regular expressions) that only say a test belongs to
    # another backend's suite: the table shows those results as "n/a", apart
    # from skips that hide something.
    na_skips: tuple[str, ...] = ()

    @property
    def unsupported_patterns(self) -> tuple[str, ...]:
        p = self.unsupported_pattern
        return (p,) if isinstance(p, str) else p

    def group_name(self, group: str) -> str | None:
        """The target's dependency group (or requirements file) for one of our group values."""
        return None if group == "base" else self.group_map.get(group, group)

    def selection(self, backend: str) -> BackendSelection:
        """How a cell of ``backend`` selects it: the option's value, pytest arguments, environment.

        A backend the map does not name gives the option our name for it; without
        an option, nothing (a target with one backend, or none to choose).
        """
        chosen = self.backend_map.get(backend)
        if chosen is None:
            return BackendSelection(option=backend if self.backend_option else None)
        if isinstance(chosen, str):
            return BackendSelection(option=chosen)
        return chosen


class CellBounds(_Base, frozen=True):
    """Seconds, both enforced from outside the test process: a test past per-test is stopped and the
    cell goes on with the tests it has not run, in at most ``restarts`` new pytest processes."""

    per_test: float = 60.0
    per_cell: float = 600.0
    restarts: int = 10


class ImagesConfig(_Base, frozen=True):
    base: Literal["auto", "registry", "debootstrap"] = "auto"
    registry_image: str = "debian:trixie-slim"
    debian_suite: str = "trixie"
    mirror: str = "http://deb.debian.org/debian"


class ContainerLimits(_Base, frozen=True):
    pids: int = 512
    memory: str = "2g"
    cpus: float | None = None


class SandboxConfig(_Base, frozen=True):
    """What a cell withholds from the tests, and how a target relaxes it (with the reason)."""

    # "none": loopback only (IPv4 and IPv6); "bridge": the engine's default network.
    network: Literal["none", "bridge"] = "none"
    # Linux capabilities given back to the cell's user (every one is dropped).
    cap_add: tuple[str, ...] = ()
    # Why the target needs the above; shown in the report.
    reason: str = ""
    # The target is copied into the cell's writable tmpfs (false: tests see it read-only).
    writable_target: bool = True

    @property
    def relaxed(self) -> bool:
        return self.network != "none" or bool(self.cap_add)


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
    # What the workflow's jobs install as spawn-compat (`uv tool install ARG`):
    # a requirement, a URL or a path in the repository. "": exactly the
    # spawn-compat that writes the workflow (its version, commit or wheel).
    install: str = ""
    # The uv the workflow's jobs use (setup-uv's version); "": the uv that writes it.
    uv_version: str = ""


class ReportConfig(_Base, frozen=True):
    # The published table, relative to the config file; raw cell results go in <out>/raw.
    out: str = "reports"


class Matrix(_Base, frozen=True):
    axes: AxesConfig = AxesConfig()
    target: TargetConfig = TargetConfig()
    timeouts: CellBounds = CellBounds()
    images: ImagesConfig = ImagesConfig()
    limits: ContainerLimits = ContainerLimits()
    sandbox: SandboxConfig = SandboxConfig()
    triage: TriageConfig = TriageConfig()
    ci: CiConfig = CiConfig()
    report: ReportConfig = ReportConfig()
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
        """A path of the config file, resolved against the file's directory."""
        return (Path(self.base_dir) / relative).resolve()

    @property
    def target_dir(self) -> Path:
        return self.path(self.target.path)

    @property
    def out_dir(self) -> Path:
        """Where the published table goes ([report] out)."""
        return self.path(self.report.out)

    @property
    def raw_dir(self) -> Path:
        """Where the cells' raw results go: ``<[report] out>/raw``."""
        return self.out_dir / "raw"

    def project(self) -> TargetProject:
        return read_project(self.target_dir, self.target.package)

    def test_groups(self, project: TargetProject | None = None) -> tuple[str, ...]:
        """The target's groups every cell installs: as configured, else its conventional test group."""
        if self.target.test_groups is not None:
            return self.target.test_groups
        project = project or self.project()
        return next(((g,) for g in TEST_GROUP_NAMES if g in (project.groups or ())), ())

    def install_mode(self, project: TargetProject | None = None) -> InstallMode:
        """What "auto" means for this target: lock, pyproject or requirements (only)."""
        mode = self.target.install
        if mode != "auto":
            return mode
        project = project or self.project()
        if project.has_pyproject:
            return "lock" if project.has_lock else "pyproject"
        return "requirements"

    def installs_project(self, project: TargetProject | None = None) -> bool:
        """Whether cells get the target built and installed (``install-project``)."""
        wanted = self.target.install_project
        if wanted != "auto":
            return wanted
        project = project or self.project()
        return project.is_package and self.install_mode(project) != "requirements"

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


# -- finding and reading the config -------------------------------------------


def _has_tool_table(pyproject: Path) -> bool:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    tool = data.get("tool")
    return isinstance(tool, dict) and TOOL_TABLE in tool


def configs_in(directory: Path) -> list[Path]:
    """The config files in one directory: compat.toml, and a pyproject.toml with [tool.spawn-compat]."""
    found = []
    if (directory / CONFIG_NAME).is_file():
        found.append(directory / CONFIG_NAME)
    if (directory / PYPROJECT).is_file() and _has_tool_table(directory / PYPROJECT):
        found.append(directory / PYPROJECT)
    return found


def find_config(start: Path | None = None) -> Path:
    """The config for ``start`` (the current directory): the nearest directory upwards that has one."""
    start = (start or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        found = configs_in(directory)
        if len(found) > 1:
            raise ConfigError(
                f"{found[0]} and {found[1]} both configure spawn-compat; keep one (or name it with --matrix)"
            )
        if found:
            return found[0]
    raise ConfigError(
        f"no {CONFIG_NAME} (or [tool.{TOOL_TABLE}] in a {PYPROJECT}) in {start} or any directory above it; "
        "run `compat init` to write one, or name one with --matrix"
    )


def load(path: str | Path | None = None) -> Matrix:
    """The config at ``path`` (a compat.toml or a pyproject.toml), or the one ``find_config`` finds."""
    path = find_config() if path is None else Path(path)
    if "\0" in str(path):
        raise ConfigError(f"--matrix: the path contains a NUL byte: {str(path)!r}")
    if path.is_dir():
        found = configs_in(path)
        if len(found) != 1:
            raise ConfigError(
                f"--matrix: {path} is a directory with "
                + ("no config" if not found else f"{len(found)} configs: {', '.join(map(str, found))}")
            )
        path = found[0]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    table = (TOOL_TABLE,) if path.name == PYPROJECT else ()
    matrix = decode(raw, source=str(path), base_dir=path.resolve().parent, table=table)
    prefix = f"$.tool.{TOOL_TABLE}" if table else "$"
    for key, problem in _problems(matrix):
        raise ConfigError(f"{path}: {prefix}{key[1:]}: {problem}")
    return matrix


def decode(raw: bytes | str, *, source: str, base_dir: Path | str = ".", table: tuple[str, ...] = ()) -> Matrix:
    """Types and unknown keys only; ``load`` adds the semantic checks.

    ``table``: the config is ``[tool.<table>]`` of the file (a pyproject.toml).
    """
    try:
        data: Any = tomllib.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    prefix = "$"
    if table:
        data = data.get("tool", {}).get(table[0])
        prefix = f"$.tool.{table[0]}"
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {prefix}: must be a table")
    for internal in ("base-dir", "source"):
        if internal in data:
            raise ConfigError(f"{source}: {prefix}.{internal}: unknown key '{internal}'")
    data = {**data, "base-dir": str(base_dir), "source": source}
    try:
        return msgspec.convert(data, Matrix)
    except msgspec.ValidationError as exc:
        key, problem = explain_validation_error(str(exc), data)
        raise ConfigError(f"{source}: {prefix}{key[1:]}: {problem}") from None


# -- msgspec's messages, rephrased with the key path first -------------------

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_ENUM = re.compile(r"^Invalid enum value '(?P<value>[^']*)'$")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[([^\]]*)\]")


def explain_validation_error(message: str, data: object = None) -> tuple[str, str]:
    """msgspec's ``<msg> - at `<path>``` -> (key path, problem with a hint)."""
    m = _AT.match(message)
    assert m is not None  # the pattern matches any string
    msg, path = m["msg"], m["path"] or "$"
    path = _name_dict_key(path, data)
    node = _type_at(path)
    if unknown := _UNKNOWN.match(msg):
        name = unknown["name"]
        known = _field_names(node)
        hint = did_you_mean(name, known) or (f"; expected one of: {', '.join(known)}" if known else "")
        return (f"{path}.{name}" if path != "$" else f"$.{name}"), f"unknown key '{name}'{hint}"
    if enum := _ENUM.match(msg):
        choices = [str(c) for c in _literal_choices(node)]
        if choices:
            return path, not_one_of(enum["value"], choices)
        return path, msg
    if msg == "Expected `str`, got `float`" and path.startswith("$.axes.python"):
        return path, f'{msg}; quote versions so 3.10 stays 3.10: "3.14"'
    if msg.startswith("Expected `str | object`") and path.startswith("$.target.backend-map"):
        got = msg.rpartition("got ")[2]
        return (
            path,
            f"must be the backend option's value (a string) or a table of option, pytest-args and env, got {got}",
        )
    return path, msg


def _name_dict_key(path: str, data: object) -> str:
    """msgspec writes a bad value of a table as ``$.target.backend-map[...]``: name its key instead,
    by converting the table's values one at a time."""
    head, sep, tail = path.partition("[...]")
    if not sep or data is None:
        return path
    named = _name_first_dict_key(head, tail, data)
    return path if named is None else _name_dict_key(named, data)


def _name_first_dict_key(head: str, tail: str, data: object) -> str | None:
    node: object = data
    for name, index in _SEGMENT.findall(head):
        if index:
            node = node[int(index)] if isinstance(node, list) and index.isdigit() and int(index) < len(node) else None
        else:
            node = node.get(name) if isinstance(node, dict) else None
    args = typing.get_args(_unwrap(_type_at(head)))
    if not isinstance(node, dict) or len(args) != 2:
        return None
    for key, value in node.items():
        try:
            msgspec.convert(value, args[1])
        except msgspec.ValidationError:
            return f"{head}.{key}{tail}" if _PLAIN_KEY.fullmatch(str(key)) else f"{head}[{key!r}]{tail}"
    return None


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _literal_choices(node: object) -> tuple[object, ...]:
    if typing.get_origin(node) is Literal:
        return typing.get_args(node)
    # `Literal["auto"] | bool` and the like: the literal part's choices, and the other type's name.
    choices: list[object] = []
    for arg in typing.get_args(node):
        if typing.get_origin(arg) is Literal:
            choices += typing.get_args(arg)
        elif arg is bool:
            choices += ["true", "false"]
    return tuple(choices)


def _type_at(path: str) -> object:
    """The declared type at a msgspec key path (kebab names), if a struct field."""
    node: object = Matrix
    for name, index in _SEGMENT.findall(path):
        node = _unwrap(node)
        if index:
            args = typing.get_args(node)
            node = (args[1] if typing.get_origin(node) is dict else args[0]) if args else None
            continue
        if typing.get_origin(node) is dict:
            node = typing.get_args(node)[1]
            continue
        if not (isinstance(node, type) and issubclass(node, msgspec.Struct)):
            return None
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(node)}
        node = fields.get(name)
    return node


def _unwrap(node: object) -> object:
    """``X | None``, ``str | Struct``: the part a key path can go into (a struct, a table, a list)."""
    if typing.get_origin(node) not in (typing.Union, types.UnionType):
        return node
    for arg in typing.get_args(node):
        if (isinstance(arg, type) and issubclass(arg, msgspec.Struct)) or typing.get_origin(arg) in (dict, tuple, list):
            return arg
    return node


def _field_names(node: object) -> list[str]:
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, msgspec.Struct):
        return [f.encode_name for f in msgspec.structs.fields(node) if f.encode_name not in ("base-dir", "source")]
    return []


# -- semantic checks: (key path, problem) in file order ----------------------

_PYTHON = re.compile(r"^3\.\d+t?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.]*$")
_MEMORY = re.compile(r"^(?P<n>\d+)(?P<unit>[bkmg]?)$")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAPABILITY = re.compile(r"^(CAP_)?[A-Z_]+$")
# Placeholders a target's pytest-args may use (filled per cell): {dumps} and {out}.
PYTEST_PLACEHOLDERS = ("dumps", "out")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

Problems = Iterator[tuple[str, str]]


def _problems(matrix: Matrix) -> Problems:
    yield from _axes_problems(matrix)
    yield from _target_problems(matrix)
    yield from _timeout_problems(matrix.timeouts)
    yield from _limit_problems(matrix.limits)
    yield from _sandbox_problems(matrix.sandbox)
    if not 1 <= matrix.ci.max_jobs <= GITHUB_MAX_JOBS:
        yield "$.ci.max-jobs", f"must be between 1 and {GITHUB_MAX_JOBS} (GitHub's limit), got {matrix.ci.max_jobs}"
    if matrix.ci.schedule and len(matrix.ci.schedule.split()) != 5:
        yield "$.ci.schedule", f"'{matrix.ci.schedule}' is not a cron expression of 5 fields (or \"\" for none)"
    if matrix.ci.uv_version and not re.fullmatch(r"\d+\.\d+\.\d+", matrix.ci.uv_version):
        yield "$.ci.uv-version", f"'{matrix.ci.uv_version}' is not an exact uv version like '0.9.5'"
    if not 0 <= matrix.triage.reruns <= MAX_RERUNS:
        yield "$.triage.reruns", f"must be between 0 (off) and {MAX_RERUNS}, got {matrix.triage.reruns}"
    if not matrix.report.out.strip() or "\0" in matrix.report.out:
        yield "$.report.out", f"{matrix.report.out!r} is not a directory path"
    yield from _exclude_problems(matrix)


def _axes_problems(matrix: Matrix) -> Problems:
    axes = matrix.axes
    for name, values in axes.values().items():
        key = f"$.axes.{name}" if name in AXES else f"$.axes.extra[{_extra_index(axes, name)}].values"
        yield from _axis_value_problems(name, key, values)
    for i, py in enumerate(axes.python):
        if not _PYTHON.match(py):
            yield f"$.axes.python[{i}]", f"'{py}' is not a Python version like '3.14'"
    yield from _group_axis_problems(matrix)
    backends = matrix.target.backend_map
    for i, backend in enumerate(axes.backend):
        if backends and _NAME.match(backend) and backend not in backends:
            yield f"$.axes.backend[{i}]", not_one_of(backend, list(backends), "in $.target.backend-map:")
    for i, capture in enumerate(axes.capture):
        if capture not in CAPTURE_MODES:
            yield f"$.axes.capture[{i}]", not_one_of(capture, list(CAPTURE_MODES), "a pytest --capture mode:")
    for i, extra in enumerate(axes.extra):
        if extra.name in AXES or not re.fullmatch(r"[a-z][a-z0-9_]*", extra.name):
            yield (
                f"$.axes.extra[{i}].name",
                f"'{extra.name}' must be a new axis name "
                f"(lower-case letters, digits, '_'; not one of {', '.join(AXES)})",
            )
        if not any("{value}" in arg for arg in extra.pytest_args):
            yield f"$.axes.extra[{i}].pytest-args", "must use {value} in at least one argument"


def _axis_value_problems(name: str, key: str, values: tuple[str, ...]) -> Problems:
    if not values:
        yield key, "must list at least one value"
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            yield f"{key}[{i}]", f"'{value}' is listed twice"
        seen.add(value)
        if name not in ("python", "capture") and not _NAME.match(value):
            yield f"{key}[{i}]", _bad_name(value)


def _group_axis_problems(matrix: Matrix) -> Problems:
    project = _project_or_none(matrix)
    if project is None:
        return
    requirements_mode = matrix.install_mode(project) == "requirements"
    for i, group in enumerate(matrix.axes.group):
        mapped = matrix.target.group_name(group)
        if mapped is None or not _NAME.match(group):
            continue
        where = f" (mapped to '{mapped}' by $.target.group-map)" if mapped != group else ""
        if requirements_mode:
            if not (matrix.target_dir / mapped).is_file():
                yield (
                    f"$.axes.group[{i}]",
                    f"'{mapped}'{where} is not a requirements file of the target (with install = \"requirements\", "
                    "$.target.group-map names one per group)",
                )
        elif project.groups is not None and mapped not in project.groups:
            yield (
                f"$.axes.group[{i}]",
                not_one_of(mapped, ["base", *project.groups], f"'base' or a dependency group of the target{where}:"),
            )
        elif project.groups is None:
            yield f"$.axes.group[{i}]", f"'{mapped}'{where}: the target declares no [dependency-groups]"


def _extra_index(axes: AxesConfig, name: str) -> int:
    return next(i for i, x in enumerate(axes.extra) if x.name == name)


def _bad_name(value: str) -> str:
    # Cell ids and nox parameter ids join axis values with '-'.
    return f"'{value}' must be lower-case letters, digits, '_' and '.' (ids join values with '-')"


def _project_or_none(matrix: Matrix) -> TargetProject | None:
    try:
        return matrix.project() if matrix.target_dir.is_dir() else None
    except (ConfigError, ValueError, OSError):  # reported by _target_problems, with its key
        return None


def _target_problems(matrix: Matrix) -> Problems:
    target = matrix.target
    if "\0" in target.path:
        yield "$.target.path", f"contains a NUL byte: {target.path!r}"
        return
    target_dir = matrix.target_dir
    if not target_dir.is_dir():
        yield "$.target.path", f"'{target.path}' is not a directory (resolved against the config file: {target_dir})"
        return
    try:
        project = matrix.project()
    except ConfigError as exc:
        yield "$.target.package" if target.package else "$.target.path", str(exc)
        return
    yield from _install_problems(matrix, project)
    yield from _path_list_problems(target_dir, target)
    yield from _pattern_problems(target)
    yield from _backend_problems(target, matrix.axes.backend)
    for name in [*target.env, *target.build_env]:
        if not _ENV_NAME.fullmatch(name):
            table = "env" if name in target.env else "build-env"
            yield f"$.target.{table}.{name}", "not an environment variable name"
    yield from _placeholder_problems(target)


def _install_problems(matrix: Matrix, project: TargetProject) -> Problems:
    target, target_dir = matrix.target, matrix.target_dir
    if target.install == "lock" and not project.has_lock:
        yield "$.target.install", f"'lock' needs {target_dir / 'uv.lock'}, which does not exist"
    if not project.has_pyproject and target.install in ("lock", "pyproject"):
        yield "$.target.install", f"'{target.install}' needs {target_dir / PYPROJECT}"
    mode = matrix.install_mode(project)
    if mode == "requirements" and not target.requirements and project.has_pyproject:
        yield "$.target.requirements", 'install = "requirements" needs at least one requirements file'
    if mode != "requirements":
        yield from _group_problems(target, project)
    yield from _extra_and_file_problems(target, target_dir, project)
    groups = matrix.test_groups(project)
    if not _declares_pytest(matrix, project, groups):
        where = ", ".join(f"group '{g}'" for g in groups) or "no test group"
        yield (
            "$.target.test-groups",
            f"nothing the cells install names pytest (the target's dependencies, {where}"
            + (f", extras {', '.join(target.extras)}" if target.extras else "")
            + (f", {', '.join(target.requirements)}" if target.requirements else "")
            + "): add pytest to the target's test group, or name that group here",
        )


def _group_problems(target: TargetConfig, project: TargetProject) -> Problems:
    """The dependency groups the config names, against the ones the target declares."""
    for i, group in enumerate(target.test_groups or ()):
        if project.groups is None:
            yield f"$.target.test-groups[{i}]", f"'{group}': the target declares no [dependency-groups]"
        elif group not in project.groups:
            yield f"$.target.test-groups[{i}]", not_one_of(group, project.groups, "a dependency group of the target:")
    for ours, theirs in target.group_map.items():
        if project.groups is not None and theirs not in project.groups:
            yield f"$.target.group-map.{ours}", not_one_of(theirs, project.groups, "a dependency group of the target:")


def _extra_and_file_problems(target: TargetConfig, target_dir: Path, project: TargetProject) -> Problems:
    for i, extra in enumerate(target.extras):
        if not project.extras:
            yield f"$.target.extras[{i}]", f"'{extra}': the target declares no [project.optional-dependencies]"
        elif extra not in project.extras:
            yield (
                f"$.target.extras[{i}]",
                not_one_of(extra, list(project.extras), "an optional dependency of the target:"),
            )
    for i, rel in enumerate(target.requirements):
        if "\0" in rel or not (target_dir / rel).is_file():
            yield f"$.target.requirements[{i}]", f"'{rel}' is not a file of the target ({target_dir})"
    if target.install_project is True and not project.is_package:
        yield "$.target.install-project", "the target is not a package (its pyproject.toml has no [build-system])"


def _declares_pytest(matrix: Matrix, project: TargetProject, groups: tuple[str, ...]) -> bool:
    mode = matrix.install_mode(project)
    if mode == "requirements" and not matrix.target.requirements:
        return True  # a bare test tree: the cells install pytest itself
    if mode != "requirements" and project.declares("pytest", groups=groups, extras=matrix.target.extras):
        return True
    return any(_file_names_pytest(matrix.target_dir / rel) for rel in matrix.target.requirements)


def _file_names_pytest(path: Path) -> bool:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return any(re.match(r"\s*pytest\s*($|[<>=!~;\[ ])", line, re.I) for line in text.splitlines())


def _path_list_problems(target_dir: Path, target: TargetConfig) -> Problems:
    for key, paths in (("tests", target.tests), ("import-paths", target.import_paths)):
        for i, rel in enumerate(paths):
            if "\0" in rel:
                yield f"$.target.{key}[{i}]", f"contains a NUL byte: {rel!r}"
                continue
            local = rel.split("::", 1)[0]
            if not (target_dir / local).exists():
                yield f"$.target.{key}[{i}]", f"'{local}' does not exist in the target ({target_dir})"


def _pattern_problems(target: TargetConfig) -> Problems:
    for i, pattern in enumerate(target.na_skips):
        try:
            re.compile(pattern)
        except re.error as exc:
            yield f"$.target.na-skips[{i}]", f"{pattern!r} is not a regular expression: {exc}"
    for key, globs in (("cache-ignore", target.cache_ignore), ("cache-inputs", target.cache_inputs)):
        for i, glob in enumerate(globs):
            if not glob.strip() or glob.startswith("/") or "\0" in glob:
                yield f"$.target.{key}[{i}]", f"{glob!r} is not a glob relative to the target (like 'docs/**')"
    for i, path in enumerate(target.dump_files):
        if not path.startswith("/") or "{pid}" not in path or path.replace("{pid}", "").count("{"):
            yield f"$.target.dump-files[{i}]", f"{path!r} is not an absolute path with {{pid}} in it"
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


def _backend_problems(target: TargetConfig, backends: tuple[str, ...]) -> Problems:
    option = target.backend_option
    if option and not option.startswith("-"):
        yield "$.target.backend-option", f"'{option}' is not a command-line option (like '--spawn-backend')"
    for ours, chosen in target.backend_map.items():
        key = f"$.target.backend-map.{ours}"
        selection = target.selection(ours)
        if selection.option is not None and (not selection.option or selection.option.startswith("-")):
            yield key if isinstance(chosen, str) else f"{key}.option", f"'{selection.option}' is not a backend value"
        elif selection.option is not None and not option:
            yield key, 'a value for the backend option, but $.target.backend-option is ""'
        for name in selection.env:
            if not _ENV_NAME.fullmatch(name):
                yield f"{key}.env.{name}", "not an environment variable name"
        if isinstance(chosen, BackendSelection) and chosen.option is None and not chosen.pytest_args and not chosen.env:
            yield key, "selects nothing: give option, pytest-args or env"
    unselected = [b for b in backends if b not in target.backend_map]
    if not option and len(backends) > 1 and unselected:
        yield (
            "$.target.backend-option",
            f'is "" and $.target.backend-map does not name {", ".join(unselected)}: nothing tells the backends apart',
        )


def _placeholder_problems(target: TargetConfig) -> Problems:
    for i, arg in enumerate(target.pytest_args):
        for name in _PLACEHOLDER.findall(arg):
            if name not in PYTEST_PLACEHOLDERS:
                yield (
                    f"$.target.pytest-args[{i}]",
                    f"unknown placeholder {{{name}}} in {arg!r}; known: "
                    + ", ".join(f"{{{p}}}" for p in PYTEST_PLACEHOLDERS),
                )


MAX_RESTARTS = 1000


def _timeout_problems(timeouts: CellBounds) -> Problems:
    if not 0 <= timeouts.restarts <= MAX_RESTARTS:
        yield "$.timeouts.restarts", f"must be between 0 (none) and {MAX_RESTARTS}, got {timeouts.restarts}"
    for f in msgspec.structs.fields(CellBounds):
        if f.name == "restarts":
            continue
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


def _sandbox_problems(sandbox: SandboxConfig) -> Problems:
    for i, cap in enumerate(sandbox.cap_add):
        if not _CAPABILITY.match(cap):
            yield f"$.sandbox.cap-add[{i}]", f"'{cap}' is not a capability name like 'SYS_PTRACE'"
    if sandbox.relaxed and not sandbox.reason.strip():
        yield "$.sandbox.reason", "say why the target needs more than the sandbox gives (it is shown in the report)"


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
