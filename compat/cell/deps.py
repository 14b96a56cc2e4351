"""What each test module of a cell depends on, recorded while it runs; and the modules a re-run
leaves out because their results are reused (stdlib only, like all of compat.cell).

A module's dependencies are the target's files (content-hashed, relative to the target's root):
the module itself, the conftest files above it, the target's modules it imports (read from the
import statements of each, transitively, resolved through ``sys.modules`` the way the test saw
them, a wheel-installed package mapped back to its source), and every target file opened for
reading while it was collected and while its tests ran (an audit hook: data files, fixtures'
inputs). What the session did before collecting, and what session- or package-scoped fixtures
read, belongs to every module (``session``): an edit to it re-runs them all.

Out of sight, and so left to the host's conservative rules (docs/DESIGN.md, "Incremental
re-runs"): files read by another process (a child actor, a subprocess), and imports made by
name at run time (importlib).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from . import protocol as P

SESSION = ""  # the window of everything not attributed to one module
CONFIG_FILES = ("pyproject.toml", "pytest.ini", "setup.cfg", "tox.ini", "conftest.py")
# Caches, never a test's input (the runner's listing of the target leaves them out too).
JUNK = frozenset({"__pycache__", ".pytest_cache", ".git", ".mypy_cache", ".ruff_cache", ".nox", ".tox"})


def _hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


class Recorder:
    """Registered as a pytest plugin in every pytest process of a cell; writes ``deps/<pid>.json``."""

    def __init__(self, root: Path, into: Path) -> None:
        self.root = root.resolve()
        self.into = into
        self.window = SESSION
        # window (module key, or SESSION) -> target-relative files it opened
        self.opened: dict[str, set[str]] = {SESSION: set()}
        # module key (its node id's file part) -> its file, target-relative
        self.modules: dict[str, str] = {}
        self.session_modules: set[str] = set()
        sys.addaudithook(self._audit)

    def _rel(self, path: object) -> str | None:
        if not isinstance(path, str | os.PathLike):
            return None
        try:
            resolved = Path(path).resolve()
        except (TypeError, OSError, ValueError):
            return None
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            return None
        rel = resolved.relative_to(self.root)
        if JUNK.intersection(rel.parts) or rel.suffix == ".pyc":
            return None
        return rel.as_posix()

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not args:
            return
        mode = args[1] if len(args) > 1 else "r"
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            return
        rel = self._rel(args[0])
        if rel is not None:
            self.opened.setdefault(self.window, set()).add(rel)

    def _module_key(self, nodeid: str) -> str:
        return nodeid.split("::", 1)[0]

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> None:
        # What is loaded before any test module is (plugins, the initial conftests): every module's.
        # Resolved now: conftests share module names ("conftest"), a later one replaces an earlier.
        self.session_modules = {s for name, mod in list(sys.modules.items()) if (s := self._source_of(name, mod))}

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Any:
        if not isinstance(collector, pytest.Module):
            return (yield)
        key = self._module_key(collector.nodeid)
        rel = self._rel(collector.path)
        if rel is not None:
            self.modules[key] = rel
        self.window = key
        try:
            return (yield)
        finally:
            self.window = SESSION

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Any:
        self.window = self._module_key(item.nodeid)
        try:
            return (yield)
        finally:
            self.window = SESSION

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any]) -> Any:
        if fixturedef.scope not in ("session", "package"):
            return (yield)
        # A wider fixture serves other modules too: what it reads is every module's.
        window, self.window = self.window, SESSION
        try:
            return (yield)
        finally:
            self.window = window

    # -- at the end: the import closure of every module, hashed -----------------------------

    def _source_of(self, name: str, module: object) -> str | None:
        """The target file a module was loaded from, or, for a copy installed from the target's wheel,
        the target's source file it was built from."""
        where = getattr(module, "__file__", None)
        rel = self._rel(where) if where else None
        if rel is not None:
            return rel
        if not where or ("site-packages" not in str(where) and "dist-packages" not in str(where)):
            return None
        parts = name.split(".")
        for base in (self.root, self.root / "src"):
            for candidate in (base.joinpath(*parts).with_suffix(".py"), base.joinpath(*parts, "__init__.py")):
                if candidate.is_file():
                    return candidate.relative_to(self.root).as_posix()
        return None

    def _imports(self, rel: str) -> set[str]:
        """The target files the module at ``rel`` imports directly."""
        path = self.root / rel
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            return set()
        package = _package_of(rel)
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node.module, node.level, package)
                if base is None:
                    continue
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        found = set()
        for name in names:
            # A package's __init__ runs for any of its submodules: each level counts.
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                module = sys.modules.get(prefix)
                source = self._source_of(prefix, module) if module is not None else None
                if source is not None:
                    found.add(source)
        return found

    def _closure(self, start: set[str]) -> set[str]:
        seen: set[str] = set()
        frontier = [s for s in start if s.endswith(".py")]
        while frontier:
            rel = frontier.pop()
            if rel in seen:
                continue
            seen.add(rel)
            frontier += [r for r in self._imports(rel) if r not in seen]
        return seen | start

    def _conftests(self, rel: str) -> set[str]:
        found = set()
        here = (self.root / rel).parent
        while here.is_relative_to(self.root):
            conftest = here / "conftest.py"
            if conftest.is_file():
                found.add(conftest.relative_to(self.root).as_posix())
            if here == self.root:
                break
            here = here.parent
        return found

    def report(self) -> P.Deps:
        # A conftest below the root, loaded while collecting its directory, is its modules' (and so is
        # what it imports): each module's record names the conftests above it.
        opened = set(self.opened.get(SESSION, set()))
        below = self._closure({f for f in opened if f.endswith("/conftest.py")})
        session = opened - below
        session |= self.session_modules
        session |= {name for name in CONFIG_FILES if (self.root / name).is_file()}
        session = self._closure(session)
        modules: dict[str, dict[str, str]] = {}
        for key, rel in self.modules.items():
            conftests = self._conftests(rel)
            files = self._closure({rel, *conftests, *self.opened.get(key, set())}) - session
            modules[key] = {f: _hash(self.root / f) for f in sorted(files)}
        return {
            "format": P.DEPS_FORMAT,
            "session": {f: _hash(self.root / f) for f in sorted(session)},
            "modules": modules,
        }

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        self.into.mkdir(parents=True, exist_ok=True)
        (self.into / f"{os.getpid()}.json").write_text(json.dumps(self.report(), indent=1))


def _package_of(rel: str) -> str:
    parts = rel.removesuffix(".py").split("/")
    if parts[0] == "src":
        parts = parts[1:]
    return ".".join(parts[:-1])


def _absolute(module: str | None, level: int, package: str) -> str | None:
    if level == 0:
        return module
    base = package.split(".") if package else []
    if level - 1 > len(base):
        return None
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])]) or None


class Reuse:
    """A re-run of a cell leaves out the modules whose results it takes from the last run."""

    def __init__(self, path: str) -> None:
        self.modules = set(Path(path).read_text(encoding="utf-8").split("\n")) - {""}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        kept = [item for item in items if item.nodeid.split("::", 1)[0] not in self.modules]
        dropped = [item for item in items if item.nodeid.split("::", 1)[0] in self.modules]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
