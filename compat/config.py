"""matrix.toml -> frozen msgspec structs, validated once.

(Interface pinned by the lead; the owner of this module fills in validation
and "did you mean" hints without changing these names.)
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

import msgspec

from .errors import ConfigError


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="kebab"):
    pass


class Axes(_Base):
    python: tuple[str, ...] = ("3.13", "3.14")
    group: tuple[str, ...] = ("base", "greenback", "cffi")
    backend: tuple[str, ...] = ("trio", "forkserver", "subint")
    capture: tuple[str, ...] = ("fd", "sys", "no")


class Target(_Base):
    path: str = "."
    tests: tuple[str, ...] = ("tests/backends",)
    backend_option: str = "--spawn-backend"
    backend_map: dict[str, str] = {}
    pytest_args: tuple[str, ...] = ()
    unsupported_pattern: str = r"is unavailable here: (?P<reason>.*)"


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
    try:
        return msgspec.toml.decode(raw, type=Matrix)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
