"""Images: one per (python, group), tagged by a hash of everything that goes in.

The base is a registry image when one is present or reachable, otherwise a
local Debian base made by ``compat/resources/make-base`` (debootstrap), itself
tagged by a hash of its recipe. An image whose tag exists is never rebuilt,
so a run with unchanged inputs costs a few ``inspect`` calls.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import docker.errors

from ..errors import ImageBuildError, PythonUnavailable
from ..matrix import Cell, ImagesConfig, Matrix
from ..paths import DOCKERFILE, MAKE_BASE
from .engine import Engine
from .install import Install, install_for
from .locks import exclusive

IMAGE_REPO = "spawn-compat"
BASE_REPO = "spawn-compat-base"
CA_NAME = "ca-bundle.crt"
REGISTRY_PROBE_S = 2.0
BUILD_TAIL = 8  # lines of the build's own output kept in an error
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
UNAVAILABLE = "compat-unavailable:"  # the Dockerfile's word that no package provides this Python

Log = Callable[[str], None]


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:12]


def ca_bundle_from_env() -> Path | None:
    """The CA bundle the host trusts for PyPI, if the environment names one."""
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    return None


def image_hash(
    python: str,
    group: str,
    *,
    base_id: str,
    install: Install,
    dockerfile: Path = DOCKERFILE,
    ca_bundle: Path | None = None,
    suite: str = "trixie",
    mirror: str = "http://deb.debian.org/debian",
) -> str:
    """Everything that goes into an image: the target's project files and sync arguments included."""
    ca = ca_bundle.read_bytes() if ca_bundle else b""
    return _digest(dockerfile.read_bytes(), install.digest(), python, group, base_id, ca, suite, mirror)


def image_tag(python: str, group: str, digest: str) -> str:
    return f"{IMAGE_REPO}:py{python}-{group}-{digest}"


def base_tag(images: ImagesConfig, make_base: Path = MAKE_BASE) -> str:
    return f"{BASE_REPO}:{images.debian_suite}-{_digest(make_base.read_bytes(), images.debian_suite, images.mirror)}"


# -- base image -------------------------------------------------------------


def ensure_base(engine: Engine, images: ImagesConfig, *, log: Log = print, refresh: bool = False) -> str:
    """Return a local base image reference (its id is part of every image hash).

    ``refresh`` pulls the registry base even when a copy is here, so a
    republished base changes every tag (CI restores old copies from its cache).
    """
    local = base_tag(images)
    have_registry_copy = images.base in ("auto", "registry") and engine.image_id(images.registry_image)
    if have_registry_copy and not (refresh and registry_reachable(images.registry_image)):
        return images.registry_image
    if images.base in ("auto", "debootstrap") and engine.image_id(local):
        return local
    if images.base in ("auto", "registry") and registry_reachable(images.registry_image):
        log(f"base: pulling {images.registry_image}")
        try:
            engine.client.images.pull(images.registry_image)
            return images.registry_image
        except docker.errors.APIError as exc:
            if images.base == "registry":
                raise ImageBuildError(f"cannot pull {images.registry_image}: {exc.explanation}") from None
            log(f"base: pull failed ({exc.explanation}); making a local base instead")
    elif images.base == "registry":
        raise ImageBuildError(
            f'no registry answers for {images.registry_image}; set [images] base = "debootstrap" in the config'
        )
    make_local_base(local, images, log=log)
    return local


def registry_host(image: str) -> str:
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return first
    return "registry-1.docker.io"


def registry_reachable(image: str, timeout: float = REGISTRY_PROBE_S) -> bool:
    """Does the image's registry answer its v2 API within ``timeout``? (401 counts.)"""
    url = f"https://{registry_host(image)}/v2/"
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def make_local_base(tag: str, images: ImagesConfig, *, log: Log = print) -> None:
    # Run by sh: an installed package keeps no executable bit it can rely on.
    cmd = ["sh", str(MAKE_BASE), tag, images.debian_suite, images.mirror]
    if os.geteuid() != 0 and shutil.which("sudo"):
        cmd.insert(0, "sudo")
    log(f"base: {' '.join(cmd)} (debootstrap, about 35 s)")
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ImageBuildError(f"making the base image {tag} failed: {tail[0]}")
    log(f"base: {tag} made in {time.monotonic() - started:.0f} s")


# -- images -------------------------------------------------------------------


class ImageBuilder:
    """Builds (python, group) images on one base; knows their tags without building."""

    def __init__(
        self,
        engine: Engine,
        matrix: Matrix,
        *,
        base: str,
        ca_bundle: Path | None = None,
        log: Log = print,
    ) -> None:
        self.engine = engine
        self.matrix = matrix
        self.images = matrix.images
        self.base = base
        base_id = engine.image_id(base)
        if base_id is None:
            raise ImageBuildError(f"base image {base} is missing")
        self.base_id = base_id
        self.ca_bundle = ca_bundle
        self.log = log

    def tag(self, python: str, group: str, install: Install | None = None) -> str:
        digest = image_hash(
            python,
            group,
            base_id=self.base_id,
            install=install or install_for(self.matrix, group),
            ca_bundle=self.ca_bundle,
            suite=self.images.debian_suite,
            mirror=self.images.mirror,
        )
        return image_tag(python, group, digest)

    def ensure(self, python: str, group: str) -> str:
        install = install_for(self.matrix, group)
        tag = self.tag(python, group, install)
        if self.engine.image_id(tag) is None:
            with exclusive(f"image {tag}"):  # another run may be building the same tag right now
                if self.engine.image_id(tag) is None:
                    self.build(python, group, tag, install)
        return tag

    def build(self, python: str, group: str, tag: str, install: Install) -> None:
        self.log(f"image: building {tag} (minutes; cached afterwards)")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="spawn-compat-ctx-") as ctx:
            buildargs = self._context(Path(ctx), install)
            buildargs.update(PYTHON=python, GROUP=group)
            self._stream(tag, ctx, buildargs)
        self.log(f"image: {tag} built in {time.monotonic() - started:.0f} s")

    def _context(self, ctx: Path, install: Install) -> dict[str, str]:
        shutil.copy(DOCKERFILE, ctx / "Dockerfile")
        install.copy_to(ctx / "project")
        (ctx / "ca").mkdir()
        args = {"BASE": self.base, "SUITE": self.images.debian_suite, "MIRROR": self.images.mirror}
        if self.ca_bundle:
            shutil.copy(self.ca_bundle, ctx / "ca" / CA_NAME)
            args["CA_CERT"] = f"/opt/compat/ca/{CA_NAME}"
        else:
            (ctx / "ca" / ".keep").touch()
        return args

    def _stream(self, tag: str, ctx: str, buildargs: dict[str, str]) -> None:
        step, tail = "", list[str]()
        try:
            for chunk in self.engine.api.build(
                path=ctx, tag=tag, buildargs=buildargs, decode=True, rm=True, forcerm=True, pull=False
            ):
                if "error" in chunk:
                    unavailable = [line for line in tail if UNAVAILABLE in line]
                    if unavailable:
                        raise PythonUnavailable(unavailable[-1].split(UNAVAILABLE, 1)[1].strip())
                    detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                    last = " | ".join(line for line in tail[-BUILD_TAIL:] if line)
                    raise ImageBuildError(
                        f"building {tag} failed at {step or 'the start'}: {detail.strip()}"
                        + (f" (last output: {last})" if last else "")
                    )
                for line in _ANSI.sub("", chunk.get("stream") or "").splitlines():
                    line = line.strip()
                    if line.startswith("Step "):
                        step = line
                        self.log(f"image: {tag}: {line[:120]}")
                    elif line:
                        tail = [*tail[-19:], line[:300]]
        except docker.errors.APIError as exc:
            raise ImageBuildError(f"building {tag} failed: {exc.explanation}") from None


def ensure_images(
    matrix: Matrix,
    cells: Iterable[Cell],
    *,
    engine: Engine | None = None,
    log: Log | None = None,
    refresh_base: bool = False,
    save: Path | None = None,
) -> Ensured:
    """Build (serially) whichever (python, group) images the cells need; their tags, and which were built.

    ``save`` writes the images and their base into one ``docker load``-able tar (the base too, so
    that an images job restoring it from a cache finds every tag it computes and builds nothing).
    """
    log = log or _stderr
    pairs = sorted({(c.python, c.group) for c in cells})
    if not pairs:
        return Ensured({}, set(), "")
    own = engine is None
    engine = engine or Engine.connect()
    try:
        builder = builder_for(engine, matrix, log=log, refresh_base=refresh_base)
        tags, built = {}, set()
        for pair in pairs:
            existed = engine.image_id(builder.tag(*pair)) is not None
            tags[pair] = builder.ensure(*pair)
            if not existed:
                built.add(pair)
        if save is not None:
            save_images(engine, [builder.base, *tags.values()], save)
        return Ensured(tags, built, builder.base)
    finally:
        if own:
            engine.close()


class Ensured(NamedTuple):
    tags: dict[tuple[str, str], str]
    built: set[tuple[str, str]]
    base: str


def save_images(engine: Engine, refs: Sequence[str], path: Path) -> None:
    """``docker save`` of ``refs`` (names kept, shared layers once) into ``path``, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            for chunk in engine.save(refs):
                f.write(chunk)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def builder_for(engine: Engine, matrix: Matrix, *, log: Log | None = None, refresh_base: bool = False) -> ImageBuilder:
    log = log or _stderr
    base = ensure_base(engine, matrix.images, log=log, refresh=refresh_base)
    return ImageBuilder(engine, matrix, base=base, ca_bundle=ca_bundle_from_env(), log=log)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


__all__: Sequence[str] = (
    "ImageBuilder",
    "base_tag",
    "ca_bundle_from_env",
    "ensure_base",
    "ensure_images",
    "image_hash",
    "image_tag",
    "registry_reachable",
)
