"""``compat doctor``: what a run needs, checked in one screen, each problem with its fix."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker.errors
from rich.console import Console
from rich.table import Table

from .errors import CompatError
from .matrix import Matrix
from .matrix.sessions import not_applicable
from .matrix.target import read_project
from .runners import stacks
from .runners.engine import PROVISION, RUN_LABEL, Engine
from .runners.images import ImageBuilder, base_tag, ca_bundle_from_env, registry_reachable

MIN_FREE_GIB = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


class Doctor:
    def __init__(self, matrix: Matrix) -> None:
        self.matrix = matrix
        self.engine: Engine | None = None
        self.probe_image: str | None = None  # a local image to start tiny containers from

    def checks(self) -> list[Check]:
        steps: list[Callable[[], Check]] = [
            self.check_config,
            self.check_engine,
            self.check_base,
            self.check_container_limits,
            self.check_python_314,
            self.check_ca_bundle,
            self.check_images,
            self.check_uv,
            self.check_host_python,
            self.check_stacks,
            *([self.check_chromium] if self.is_spawn_compat() else []),
            self.check_disk,
            self.check_leftovers,
        ]
        return [step() for step in steps]

    def is_spawn_compat(self) -> bool:
        """Is the target spawn-compat's own repository (whose tests need a browser)?"""
        root = read_project(self.matrix.target_dir)
        return root.name == "spawn-compat"

    def check_stacks(self) -> Check:
        """A hung test's stacks are read from outside its processes: both tools, and the right to ptrace."""
        name = "stacks of hung tests"
        missing = [t for t in ("pystack", "py-spy") if stacks.tool(t) is None]
        if missing:
            fix = "install spawn-compat with its dependencies (uv tool install, from its checkout or its wheel)"
            return Check(
                name, False, f"not installed: {', '.join(missing)}; hangs keep /proc evidence only", fix, False
            )
        refused = stacks.ptrace_refusal()
        if refused:
            fix = "run compat as root, or: sysctl kernel.yama.ptrace_scope=1"
            return Check(name, False, f"{refused}; hangs keep /proc evidence only", fix, False)
        with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as probe:
            try:
                text = subprocess.run(
                    [str(stacks.tool("pystack")), "remote", str(probe.pid)],
                    capture_output=True, text=True, timeout=stacks.TOOL_TIMEOUT_S, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                text = None
            finally:
                probe.kill()
        if text is None or "Traceback for thread" not in text.stdout:
            said = (text.stdout + text.stderr).strip().splitlines()[-1:] if text is not None else ["timed out"]
            return Check(name, False, f"pystack could not read a process: {' '.join(said)}", "see compat doctor", False)
        return Check(name, True, "pystack and py-spy read every thread of every interpreter (ptrace allowed)")

    def check_config(self) -> Check:
        cells = self.matrix.cells()
        na = not_applicable(self.matrix, cells)
        try:
            name = self.matrix.project().name or self.matrix.target_dir.name
        except CompatError as exc:
            return Check("config", False, str(exc), "fix the target's pyproject.toml")
        where = self.matrix.source or "(built in code)"
        detail = f"{where}: target {name}, {len(cells)} cells ({len(na)} n/a), results in {self.matrix.raw_dir}"
        return Check("config", True, detail)

    def check_engine(self) -> Check:
        try:
            self.engine = Engine.connect(timeout=3)
        except CompatError as exc:
            return Check("engine", False, str(exc).split(";")[0], PROVISION)
        version = self.engine.version()
        return Check("engine", True, f"docker {version.get('Version')}, API {version.get('ApiVersion')}")

    def check_base(self) -> Check:
        images = self.matrix.images
        if self.engine is None:
            return Check("base image", False, "needs the engine", PROVISION)
        for ref in (images.registry_image, base_tag(images)):
            if self.engine.image_id(ref):
                self.probe_image = ref
                return Check("base image", True, f"{ref} (local)")
        if images.base != "debootstrap" and registry_reachable(images.registry_image):
            return Check("base image", True, f"{images.registry_image} (registry reachable; pulled on first use)")
        if shutil.which("debootstrap"):
            return Check(
                "base image", True, f"none yet; made with debootstrap on first use (~35 s) as {base_tag(images)}"
            )
        return Check("base image", False, "no registry reachable and debootstrap is missing", PROVISION)

    def _run(self, command: list[str], *, network: bool = False, image: str | None = None) -> tuple[int, str]:
        assert self.engine is not None
        image = image or self.probe_image
        kwargs = {} if network else {"network_mode": "none"}
        try:
            out = self.engine.client.containers.run(
                image, command, remove=True, init=True, pids_limit=64, labels={RUN_LABEL: "doctor"}, **kwargs
            )
        except docker.errors.ContainerError as exc:
            return exc.exit_status, (exc.stderr or b"").decode(errors="replace")
        except docker.errors.APIError as exc:
            return -1, str(exc.explanation)
        return 0, out.decode(errors="replace")

    def check_container_limits(self) -> Check:
        if self.engine is None or self.probe_image is None:
            return Check("--init, pids limit", False, "no engine or base image to try them on", PROVISION)
        code, out = self._run(
            [
                "sh",
                "-c",
                "tr '\\0' ' ' </proc/1/cmdline; echo; "
                "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; true",
            ]
        )
        init_ok = "docker-init" in out
        pids_ok = "64" in out.split()
        detail = f"init {'ok' if init_ok else 'missing'}, pids.max {'64' if pids_ok else 'not applied'}"
        return Check(
            "--init, pids limit",
            code == 0 and init_ok and pids_ok,
            detail,
            "install docker.io >= 20.10 with the pids cgroup: " + PROVISION,
        )

    def _image(self, python: str) -> str | None:
        if self.engine is None:
            return None
        tags = [t for img in self.engine.client.images.list(name="spawn-compat") for t in img.tags]
        return next((t for t in sorted(tags) if t.startswith(f"spawn-compat:py{python}-")), None)

    def check_python_314(self) -> Check:
        required = "3.14" in self.matrix.axes.python
        if not required:
            return Check("Python 3.14", True, "not on this matrix's python axis", required=False)
        image = self._image("3.14")
        if image is None:
            return Check("Python 3.14", False, "no 3.14 image built yet", "nox -s images", required=False)
        code, out = self._run(["python", "-c", "import sys, _interpreters; print(sys.version.split()[0])"], image=image)
        return Check(
            "Python 3.14",
            code == 0,
            f"{out.strip()} in {image}" if code == 0 else out.strip()[-200:],
            "rebuild: nox -s images",
            required=required,
        )

    def check_ca_bundle(self) -> Check:
        bundle = ca_bundle_from_env()
        if bundle is None:
            return Check(
                "CA bundle", True, "none named by SSL_CERT_FILE / REQUESTS_CA_BUNDLE; system trust used", required=False
            )
        image = self._image("3.13") or self._image("3.14")
        if image is None:
            return Check("CA bundle", True, f"{bundle} (goes into images; none built to try it in yet)", required=False)
        code, out = self._run(
            [
                "python",
                "-c",
                "import urllib.request as u; u.urlopen('https://pypi.org/simple/pip/', timeout=10); print('ok')",
            ],
            network=True,
            image=image,
        )
        detail = f"{bundle}: PyPI reachable over TLS inside a container" if code == 0 else out.strip()[-200:]
        return Check(
            "CA bundle",
            code == 0,
            detail,
            "export SSL_CERT_FILE=<your proxy's CA bundle>, then nox -s images",
            required=False,
        )

    def check_images(self) -> Check:
        """Every (python, group) image the matrix needs: built, or buildable on first use."""
        cells = self.matrix.cells()
        na = not_applicable(self.matrix, cells)
        pairs = sorted({(c.python, c.group) for c in cells if c not in na})
        if self.engine is None or self.probe_image is None:
            return Check("images", False, f"{len(pairs)} needed; no engine or base image to build them on", PROVISION)
        try:
            builder = ImageBuilder(self.engine, self.matrix, base=self.probe_image, ca_bundle=ca_bundle_from_env())
            missing = [f"py{p}-{g}" for p, g in pairs if self.engine.image_id(builder.tag(p, g)) is None]
        except CompatError as exc:
            return Check("images", False, str(exc), "uv run nox -s images")
        if not missing:
            return Check("images", True, f"all {len(pairs)} built and current")
        detail = f"{len(missing)} of {len(pairs)} not built or out of date ({', '.join(missing[:4])}"
        detail += ", ...)" if len(missing) > 4 else ")"
        return Check("images", True, detail + "; built on first use", "uv run nox -s images", required=False)

    def check_uv(self) -> Check:
        uv = shutil.which("uv")
        if uv is None:
            return Check("uv", False, "not on PATH (the local runner and the README's commands use it)",
                         "python3 -m pip install uv")  # fmt: skip
        proc = subprocess.run([uv, "--version"], capture_output=True, text=True, check=False, timeout=30)
        return Check("uv", proc.returncode == 0, proc.stdout.strip() or proc.stderr.strip())

    def check_host_python(self) -> Check:
        ok = sys.version_info >= (3, 13)
        return Check(
            "host Python", ok, f"{sys.version.split()[0]} at {sys.executable}",
            "install a CPython 3.13+ and export UV_PYTHON=/path/to/python3.13",
        )  # fmt: skip

    def check_chromium(self) -> Check:
        found = shutil.which("chromium") or shutil.which("chromium-browser")
        if found is None:
            return Check("chromium", False, "missing: the report page's browser test cannot run",
                         "apt-get install -y chromium", required=False)  # fmt: skip
        return Check("chromium", True, found, required=False)

    def check_disk(self) -> Check:
        root = "/var/lib/docker"
        if self.engine is not None:
            root = self.engine.client.info().get("DockerRootDir", root)
        path = Path(root) if Path(root).exists() else Path("/")
        free = shutil.disk_usage(path).free / 2**30
        return Check(
            "free disk",
            free >= MIN_FREE_GIB,
            f"{free:.1f} GiB free at {path}",
            f"free at least {MIN_FREE_GIB:g} GiB (docker image prune)",
        )

    def check_leftovers(self) -> Check:
        if self.engine is None:
            return Check("leftover containers", True, "no engine", required=False)
        # Running ones may belong to a run in progress; stopped ones outlived theirs.
        left = self.engine.client.containers.list(
            all=True, filters={"label": RUN_LABEL, "status": ["created", "exited", "dead"]}, ignore_removed=True
        )
        if not left:
            return Check("leftover containers", True, "none", required=False)
        return Check(
            "leftover containers", False, f"{len(left)} stopped, from runs that ended without cleanup",
            f"docker rm $(docker ps -aq --filter label={RUN_LABEL} --filter status=exited)", required=False,
        )  # fmt: skip


def run_doctor(matrix: Matrix, *, console: Console | None = None) -> int:
    console = console or Console()
    doctor = Doctor(matrix)
    try:
        checks = doctor.checks()
    finally:
        if doctor.engine is not None:
            doctor.engine.close()
    table = Table(title="spawn-compat doctor", show_lines=False)
    for column in ("check", "", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        mark = "[green]ok[/]" if check.ok else ("[red]FAIL[/]" if check.required else "[yellow]warn[/]")
        table.add_row(check.name, mark, check.detail, "" if check.ok else check.fix)
    console.print(table)
    failed = [c.name for c in checks if c.required and not c.ok]
    if failed:
        console.print(f"[red]missing: {', '.join(failed)}[/]")
        return 1
    return 0
