"""matrix.toml -> frozen msgspec structs, validated once.

Every problem is reported as one ``ConfigError`` line,
``<file>: <key path>: <what is wrong>[; did you mean '<name>'?]``, where the
key path uses the names written in the TOML file (``$.timeouts.per-test``).
Decoding (types, unknown keys) is msgspec's job; ``_problems`` adds the
checks a type cannot express (non-empty axes, known backends, positive
bounds). Impossible cells (subint on 3.13) are deliberately kept: the
target's own availability gate marks them ``unsupported`` with its reason.
"""

from __future__ import annotations

import difflib
import itertools
import re
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec

from .errors import ConfigError

CAPTURE_MODES = ("fd", "sys", "no", "tee-sys")


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="kebab"):
    pass


class Axes(_Base):
    python: tuple[str, ...] = ("3.13", "3.14")
    group: tuple[str, ...] = ("base", "greenback", "cffi")
    backend: tuple[str, ...] = ("trio", "forkserver", "subint")
    capture: tuple[str, ...] = ("fd", "sys", "no")


class Target(_Base):
    path: str = "."
    # What a cell installs: "." is the target path with its own lock file
    # and dependency groups; anything else is a pip/uv requirement spec.
    install: str = "."
    tests: tuple[str, ...] = ("tests/backends",)
    backend_option: str = "--spawn-backend"
    # Our backend names -> the target's; empty means the names are the same.
    backend_map: dict[str, str] = {}
    pytest_args: tuple[str, ...] = ()
    unsupported_pattern: str = r"is unavailable here: (?P<reason>.*)"

    def backend_value(self, backend: str) -> str:
        return self.backend_map.get(backend, backend)


class Timeouts(_Base):
    per_test: float = 60.0
    per_cell: float = 600.0


class Images(_Base):
    base: Literal["auto", "registry", "debootstrap"] = "auto"
    registry_image: str = "debian:trixie-slim"
    debian_suite: str = "trixie"
    mirror: str = "http://deb.debian.org/debian"


class Limits(_Base):
    pids: int = 512
    memory: str = "2g"
    cpus: float | None = None


class Cell(msgspec.Struct, frozen=True):
    python: str
    group: str
    backend: str
    capture: str

    @property
    def id(self) -> str:
        return f"py{self.python}-{self.group}-{self.backend}-cap{self.capture}"


class Matrix(_Base):
    axes: Axes = Axes()
    target: Target = Target()
    timeouts: Timeouts = Timeouts()
    images: Images = Images()
    limits: Limits = Limits()

    def cells(self) -> list[Cell]:
        a = self.axes
        return [
            Cell(p, g, b, c)
            for p, g, b, c in itertools.product(a.python, a.group, a.backend, a.capture)
        ]


def load(path: str | Path = "matrix.toml") -> Matrix:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    matrix = decode(raw, source=str(path))
    for key, problem in _problems(matrix, base_dir=path.parent):
        raise ConfigError(f"{path}: {key}: {problem}")
    return matrix


def decode(raw: bytes | str, *, source: str) -> Matrix:
    """Types and unknown keys only; ``load`` adds the semantic checks."""
    try:
        data = tomllib.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
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
        return f"{path}.{name}" if path != "$" else f"$.{name}", _unknown_key(
            name, _field_names(node)
        )
    if enum := _ENUM.match(msg):
        choices = typing.get_args(node) if typing.get_origin(node) is Literal else ()
        return path, _not_one_of(enum["value"], [str(c) for c in choices])
    if msg == "Expected `str`, got `float`" and path.startswith("$.axes.python"):
        return path, f"{msg}; quote versions so 3.10 stays 3.10: \"3.14\""
    return path, msg


def _type_at(path: str) -> object:
    """The declared type at a msgspec key path (kebab names), if a struct field."""
    node: object = Matrix
    for name, index in _SEGMENT.findall(path):
        if index or not (isinstance(node, type) and issubclass(node, msgspec.Struct)):
            return None
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(node)}
        node = fields.get(name)
    return node


def _field_names(node: object) -> list[str]:
    if isinstance(node, type) and issubclass(node, msgspec.Struct):
        return [f.encode_name for f in msgspec.structs.fields(node)]
    return []


def _unknown_key(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown key '{name}'; did you mean '{close[0]}'?"
    return f"unknown key '{name}'; expected one of: {', '.join(known)}"


def _not_one_of(value: str, choices: list[str], what: str = "one of") -> str:
    hint = difflib.get_close_matches(value, choices, n=1)
    text = f"'{value}' is not {what} {', '.join(choices)}"
    return f"{text}; did you mean '{hint[0]}'?" if hint else text


# -- semantic checks: (key path, problem) in file order ----------------------

_PYTHON = re.compile(r"^3\.\d+t?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_MEMORY = re.compile(r"^\d+[bkmg]?$")


def _problems(matrix: Matrix, *, base_dir: Path) -> Iterator[tuple[str, str]]:
    yield from _axes_problems(matrix, base_dir=base_dir)
    yield from _target_problems(matrix.target)
    yield from _timeout_problems(matrix.timeouts)
    yield from _limit_problems(matrix.limits)


def _axes_problems(matrix: Matrix, *, base_dir: Path) -> Iterator[tuple[str, str]]:
    axes, target = matrix.axes, matrix.target
    for f in msgspec.structs.fields(Axes):
        values = getattr(axes, f.name)
        if not values:
            yield f"$.axes.{f.encode_name}", "must list at least one value"
        seen: set[str] = set()
        for i, value in enumerate(values):
            if value in seen:
                yield f"$.axes.{f.encode_name}[{i}]", f"'{value}' is listed twice"
            seen.add(value)
    for i, py in enumerate(axes.python):
        if not _PYTHON.match(py):
            yield f"$.axes.python[{i}]", f"'{py}' is not a Python version like '3.14'"
    groups = _dependency_groups(base_dir / target.path)
    for i, group in enumerate(axes.group):
        if not _NAME.match(group):
            yield f"$.axes.group[{i}]", _bad_name(group)
        elif groups is not None and group != "base" and group not in groups:
            yield f"$.axes.group[{i}]", _not_one_of(
                group, ["base", *groups], "'base' or a dependency group of the target:"
            )
    for i, backend in enumerate(axes.backend):
        if not _NAME.match(backend):
            yield f"$.axes.backend[{i}]", _bad_name(backend)
        elif target.backend_map and backend not in target.backend_map:
            yield f"$.axes.backend[{i}]", _not_one_of(
                backend, list(target.backend_map), "in $.target.backend-map:"
            )
    for i, capture in enumerate(axes.capture):
        if capture not in CAPTURE_MODES:
            yield f"$.axes.capture[{i}]", _not_one_of(
                capture, list(CAPTURE_MODES), "a pytest --capture mode:"
            )


def _bad_name(value: str) -> str:
    # Cell ids and nox parameter ids join axis values with '-'.
    return f"'{value}' must be lower-case letters, digits and '_' (ids join values with '-')"


def _dependency_groups(target: Path) -> list[str] | None:
    """The target's declared dependency groups, or None when it declares none."""
    try:
        with (target / "pyproject.toml").open("rb") as f:
            groups = tomllib.load(f).get("dependency-groups")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return list(groups) if isinstance(groups, dict) else None


def _target_problems(target: Target) -> Iterator[tuple[str, str]]:
    if not target.tests:
        yield "$.target.tests", "must list at least one test path"
    if not target.backend_option.startswith("-"):
        yield "$.target.backend-option", (
            f"'{target.backend_option}' is not a command-line option (like '--spawn-backend')"
        )
    try:
        pattern = re.compile(target.unsupported_pattern)
    except re.error as exc:
        yield "$.target.unsupported-pattern", f"not a regular expression: {exc}"
    else:
        if "reason" not in pattern.groupindex:
            yield "$.target.unsupported-pattern", "needs a (?P<reason>...) group"


def _timeout_problems(timeouts: Timeouts) -> Iterator[tuple[str, str]]:
    for f in msgspec.structs.fields(Timeouts):
        value = getattr(timeouts, f.name)
        if not value > 0:
            yield f"$.timeouts.{f.encode_name}", f"must be a positive number of seconds, got {value:g}"
    if timeouts.per_test > timeouts.per_cell:
        yield "$.timeouts.per-test", (
            f"{timeouts.per_test:g} s exceeds $.timeouts.per-cell ({timeouts.per_cell:g} s)"
        )


def _limit_problems(limits: Limits) -> Iterator[tuple[str, str]]:
    if limits.pids <= 0:
        yield "$.limits.pids", f"must be a positive number of processes, got {limits.pids}"
    if not _MEMORY.match(limits.memory):
        yield "$.limits.memory", f"'{limits.memory}' is not a size like '2g' or '512m'"
    if limits.cpus is not None and not limits.cpus > 0:
        yield "$.limits.cpus", f"must be positive, got {limits.cpus:g}"
