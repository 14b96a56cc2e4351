"""``compat init``: a commented config for the project it stands in, from what the project says.

It reads the project's ``pyproject.toml`` (Python bounds and classifiers,
dependency groups and their bounds, extras, a version from git), its pytest
configuration (test paths) and its conftest files and pytest plugins (an
option that selects a backend, with its choices), writes ``compat.toml`` (or
``[tool.spawn-compat]`` into ``pyproject.toml``), and prints what it guessed
and what the user must check. It never overwrites a config.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .matrix import CONFIG_NAME, configs_in, load
from .matrix.config import PYPROJECT, TEST_GROUP_NAMES, TOOL_TABLE
from .matrix.target import TargetProject, read_project

# The Pythons our images provide (Debian trixie, and sid for 3.14).
IMAGE_PYTHONS = ("3.13", "3.14")
# Groups that hold tools, not features a cell could test with.
TOOL_GROUPS = frozenset({"dev", "lint", "docs", "doc", "typing", "types", "mypy", "format", "release", "build", "ci"})
_OPTION_WORDS = ("backend", "spawn", "start-method", "start_method", "method", "runtime", "loop")
_SKIP_DIRS = frozenset({".git", ".venv", "venv", ".nox", ".tox", "node_modules", "build", "dist", "__pycache__"})
_NAME = re.compile(r"[^a-z0-9_.]")


@dataclass
class Guess:
    """What ``init`` found, and what it could not be sure of."""

    pythons: list[str] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # our value -> the target's group name
    test_groups: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    backend_option: str = ""
    backends: dict[str, str] = field(default_factory=dict)  # our value -> the option's value
    build_env: dict[str, str] = field(default_factory=dict)
    requirements: list[str] = field(default_factory=list)
    uv_version: str = ""
    notes: list[str] = field(default_factory=list)  # what the user must check


def init(directory: Path, *, backend_option: str | None, backends: Sequence[str] | None, pyproject: bool) -> int:
    directory = directory.resolve()
    existing = configs_in(directory)
    if existing:
        raise ConfigError(f"{existing[0]} already configures spawn-compat; edit it (init never overwrites a config)")
    if pyproject and not (directory / PYPROJECT).is_file():
        raise ConfigError(f"--pyproject: {directory / PYPROJECT} does not exist")
    project = read_project(directory)
    guess = guess_config(directory, project, backend_option=backend_option, backends=backends)
    text = render(guess, project, prefix=f"tool.{TOOL_TABLE}." if pyproject else "")
    path = directory / (PYPROJECT if pyproject else CONFIG_NAME)
    if pyproject:
        original = path.read_text()
        path.write_text(original.rstrip("\n") + "\n\n" + text)
    else:
        path.write_text(text)
    try:
        load(path)
    except ConfigError as exc:
        # Nothing half-made stays behind: the user gets the problem and their file as it was.
        if pyproject:
            path.write_text(original)
        else:
            path.unlink()
        raise ConfigError(f"init: the config it would write does not load ({exc}); nothing was written") from None
    print(f"wrote {path}")
    for line in summary(guess):
        print(f"  {line}")
    print("next: compat plan   (every cell, and why any is n/a), then: compat run")
    return 0


def guess_config(
    directory: Path, project: TargetProject, *, backend_option: str | None, backends: Sequence[str] | None
) -> Guess:
    guess = Guess()
    guess.pythons = _pythons(project, guess.notes)
    guess.test_groups = _test_groups(project)
    if project.groups is not None and not guess.test_groups:
        guess.notes.append("no dependency group names pytest: set [target] test-groups to the one your tests need")
    for name in project.groups or ():
        if name in guess.test_groups or name in TOOL_GROUPS:
            continue
        guess.groups[_value(name)] = name
    if not project.has_pyproject or project.groups is None:
        guess.requirements = _requirement_files(directory)
    guess.tests = (
        list(project.testpaths) if project.testpaths else (["tests"] if (directory / "tests").is_dir() else [])
    )
    if backend_option:
        guess.backend_option = backend_option
        found = list(backends or [])
    else:
        found_option, found = _backend_option(directory)
        guess.backend_option = found_option
        if backends:
            found = list(backends)
    guess.backends = {_value(b): b for b in found}
    if not guess.backend_option:
        guess.notes.append(
            "no option that selects a backend was found in conftest.py or a plugin: one cell per Python, group and "
            "capture; set [target] backend-option and [axes] backend (or a [target.backend-map.<name>] table "
            "with pytest-args or env) to add backends"
        )
    elif not guess.backends:
        guess.notes.append(f"found {guess.backend_option} but not its values: list them in [axes] backend")
    if "version" in project.dynamic and any("setuptools" in r and "scm" in r for r in project.build_requires):
        guess.build_env["SETUPTOOLS_SCM_PRETEND_VERSION"] = "0.0.0"
        guess.notes.append(
            "its version comes from git (setuptools-scm): images are built without the history, so "
            "[target.build-env] gives a pretend version"
        )
    guess.uv_version = _uv_version()
    return guess


def _pythons(project: TargetProject, notes: list[str]) -> list[str]:
    classified = {
        m.group(1) for c in project.classifiers if (m := re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", c))
    }
    wanted = [p for p in IMAGE_PYTHONS if project.allows_python(p) and (not classified or p in classified)]
    others = sorted(classified - set(IMAGE_PYTHONS), key=lambda v: tuple(map(int, v.split("."))))
    if others:
        notes.append(
            f"Python {', '.join(others)} (classifiers) are not in Debian trixie or sid, which the images come from: "
            "left out"
        )
    if not wanted:
        wanted = [p for p in IMAGE_PYTHONS if project.allows_python(p)] or list(IMAGE_PYTHONS)
        notes.append(f"no Python the images provide matches the project's bounds; using {', '.join(wanted)}")
    return wanted


def _test_groups(project: TargetProject) -> list[str]:
    for name in (*TEST_GROUP_NAMES, "dev"):
        if project.declares("pytest", groups=[name]) or (name in (project.groups or ()) and name in TEST_GROUP_NAMES):
            return [name]
    return [g for g in project.groups or () if project.declares("pytest", groups=[g])][:1]


def _value(name: str) -> str:
    """Our axis value for a target's name: cell ids join values with '-', so dashes become '_'."""
    return _NAME.sub("_", name.lower()).strip("_.") or "x"


def _requirement_files(directory: Path) -> list[str]:
    names = sorted(p.relative_to(directory).as_posix() for p in directory.glob("requirements*.txt"))
    names += sorted(p.relative_to(directory).as_posix() for p in directory.glob("requirements/*.txt"))
    test = [n for n in names if "test" in n or "dev" in n]
    return test or names[:1]


def _python_files(directory: Path) -> Iterator[Path]:
    for path in directory.rglob("*.py"):
        parts = path.relative_to(directory).parts
        if not _SKIP_DIRS.intersection(parts) and (
            path.name == "conftest.py" or "plugin" in path.name or "pytest" in path.name
        ):
            yield path


def _backend_option(directory: Path) -> tuple[str, list[str]]:
    """An ``addoption("--...backend...", choices=...)`` in the project's conftest files and plugins."""
    for path in sorted(_python_files(directory)):
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("addoption", "add_argument")):
                continue
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            option = next((n for n in names if n.startswith("--") and any(w in n for w in _OPTION_WORDS)), None)
            if option is None:
                continue
            choices: list[str] = []
            for keyword in node.keywords:
                if keyword.arg == "choices":
                    try:
                        value = ast.literal_eval(keyword.value)
                    except ValueError:
                        continue
                    choices = [str(v) for v in value] if isinstance(value, (list, tuple, set)) else []
            return option, choices
    return "", []


def _uv_version() -> str:
    try:
        proc = subprocess.run(["uv", "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"\b(\d+\.\d+\.\d+)\b", proc.stdout)
    return m.group(1) if m else ""


# -- the file ------------------------------------------------------------------


def _toml(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(type(value).__name__)


def render(guess: Guess, project: TargetProject, *, prefix: str = "") -> str:
    """The config's text: every key it sets, each with a comment that says what it is for."""
    name = project.name or "this project"
    backends = list(guess.backends) or ["default"]
    lines = [
        f"# spawn-compat's matrix for {name}: every cell is one (python, group, backend, capture)",
        "# combination, run in its own container. `compat plan` lists the cells, `compat run`",
        "# runs them, `compat report` writes the table, `compat workflow` the GitHub workflow.",
        "# Written by `compat init`; every path is relative to this file.",
        "",
        f"[{prefix}axes]",
        "# Python versions (as strings). The images provide 3.13 and 3.14 (Debian trixie and sid).",
        f"python = {_toml(guess.pythons)}",
        '# "base" installs the test group(s) alone; each other value adds one dependency group.',
        f"group = {_toml(['base', *guess.groups])}",
        f"backend = {_toml(backends)}",
        "# pytest --capture modes: some hangs only show under fd.",
        'capture = ["fd", "sys"]',
        "",
        f"[{prefix}target]",
        'path = "."',
    ]
    if guess.test_groups:
        lines += [
            "# The dependency group(s) every cell installs: the tests' own.",
            f"test-groups = {_toml(guess.test_groups)}",
        ]
    if guess.requirements:
        lines += ["# Requirement files every cell installs.", f"requirements = {_toml(guess.requirements)}"]
    if guess.tests:
        lines += ["# What pytest runs (test paths or node ids).", f"tests = {_toml(guess.tests)}"]
    if guess.backend_option and guess.backends:
        lines += ["# The option that selects a backend; [target.backend-map] gives our names its values.",
                  f"backend-option = {_toml(guess.backend_option)}"]  # fmt: skip
    else:
        if guess.backend_option:
            lines.append(f"# backend-option = {_toml(guess.backend_option)}   # found, but not its values")
        lines += ["# No option selects a backend (yet): see [target.backend-map] below.", 'backend-option = ""']
    lines += [
        "# How the target refuses a cell (a line of its output when no test ran): `unsupported`.",
        'unsupported-pattern = "is unavailable here: (?P<reason>.*)"',
    ]
    if guess.groups and any(v != k for k, v in guess.groups.items()):
        lines += ["", f"[{prefix}target.group-map]", "# Our group values -> the project's dependency groups."]
        lines += [f"{k} = {_toml(v)}" for k, v in guess.groups.items() if k != v]
    lines += ["", f"[{prefix}target.backend-map]",
              "# Our backend names -> how the target selects each: a value of backend-option, or a table:",
              '# fork = { pytest-args = ["-k", "fork and not forkserver"] }   # a -k/-m expression',
              '# fork = { env = { MY_BACKEND = "fork" } }                     # an environment variable']  # fmt: skip
    if any(k != v for k, v in guess.backends.items()):  # one mapped name means the map names them all
        lines += [f"{k} = {_toml(v)}" for k, v in guess.backends.items()]
    if guess.build_env:
        lines += ["", f"[{prefix}target.build-env]", "# For building the project where git history is missing."]
        lines += [f"{k} = {_toml(v)}" for k, v in guess.build_env.items()]
    lines += [
        "",
        f"[{prefix}timeouts]",
        "# Seconds: per-test bounds one test; per-cell is the hard bound from outside the container.",
        "per-test = 60",
        "per-cell = 900",
        "",
        f"[{prefix}report]",
        "# The table goes here; raw cell results in <out>/raw (which ignores itself in git).",
        'out = "reports"',
        "",
        f"[{prefix}ci]",
        "# The uv the generated workflow's jobs use.",
        f"uv-version = {_toml(guess.uv_version)}" if guess.uv_version else '# uv-version = "0.9.5"',
    ]
    return "\n".join(lines) + "\n"


def summary(guess: Guess) -> Iterator[str]:
    yield f"python: {', '.join(guess.pythons)}"
    groups = ", ".join(f"{k} ({v})" if k != v else k for k, v in guess.groups.items())
    yield f"groups: base{', ' + groups if groups else ''}; test group: {', '.join(guess.test_groups) or 'none'}"
    if guess.requirements:
        yield f"requirements: {', '.join(guess.requirements)}"
    yield f"tests: {', '.join(guess.tests) or 'pytest decides (testpaths)'}"
    backends = ", ".join(f"{k} ({v})" if k != v else k for k, v in guess.backends.items())
    yield f"backends: {guess.backend_option or 'no option'}{' = ' + backends if backends else ''}"
    for note in guess.notes:
        yield f"check: {note}"
