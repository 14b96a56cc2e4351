"""The one place that talks to the container engine (docker-py).

``Engine`` is a checked connection; ``CellContainer`` owns one container's
whole life; ``run_scope`` removes every container of a run on the way out,
whatever the way out is (return, error, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import docker.types
import requests

from ..errors import EngineError

RUN_LABEL = "spawn-compat.run"
CELL_LABEL = "spawn-compat.cell"
# "<host>:<pid>" of the runner that made a container: a container whose runner
# is gone (SIGKILLed, OOM) can be told apart from one of a live run.
RUNNER_LABEL = "spawn-compat.runner"


def runner_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


KEEP_ENV = "COMPAT_KEEP_CONTAINERS"
HTTP_OK, CONFLICT = 200, 409
SAVE_TIMEOUT_S = 600
API_VERSION = "1.41"
# Root hosts (CI runners, containers) often have no sudo at all.
PROVISION = ("" if os.geteuid() == 0 else "sudo ") + "compat provision"
PROVISION_HINT = f"run `{PROVISION}` (or start your docker engine)"


def keep_containers() -> bool:
    return os.environ.get(KEEP_ENV, "") not in ("", "0")


class Engine:
    """A docker-py client that has answered a ping."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.api = client.api

    @classmethod
    def connect(cls, *, timeout: float = 5.0) -> Engine:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        _probe_unix_socket(where, timeout)
        client = None
        try:
            # A fixed API version: "auto" connects inside the constructor and leaks
            # that socket when the engine is missing. 1.41 has everything a cell needs.
            client = docker.from_env(timeout=int(max(timeout, 1)), version=API_VERSION)
            client.ping()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            if client is not None:
                client.close()
            raise EngineError(f"no container engine answers at {where} ({_short(exc)}); {PROVISION_HINT}") from None
        return cls(client)

    def version(self) -> dict[str, Any]:
        return dict(self.api.version())

    def image_id(self, ref: str) -> str | None:
        try:
            return str(self.api.inspect_image(ref)["Id"])
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot inspect image {ref}: {_short(exc)}") from None

    def save(self, refs: Sequence[str], chunk: int = 1 << 20) -> Iterator[bytes]:
        """The tar ``docker save REF...`` writes: several images, each layer once, their tags kept.

        docker-py's ``get_image`` saves one image; the engine's endpoint takes several names.
        """
        url = f"{self.api.base_url}/v{self.api.api_version}/images/get"
        try:
            with self.api.get(url, params={"names": list(refs)}, stream=True, timeout=SAVE_TIMEOUT_S) as res:
                if res.status_code != HTTP_OK:
                    raise EngineError(f"cannot save {', '.join(refs)}: {res.status_code} {res.text.strip()}")
                yield from res.iter_content(chunk)
        except requests.RequestException as exc:
            raise EngineError(f"cannot save {', '.join(refs)}: {_short(exc)}") from None

    def run_containers(self, run_id: str, *, runner: str | None = None) -> list[Any]:
        """The containers of ``run_id``; with ``runner``, only those that runner (``host:pid``) made."""
        # ignore_removed: another run may remove its containers between the listing and their inspection.
        labels = [f"{RUN_LABEL}={run_id}", *([f"{RUNNER_LABEL}={runner}"] if runner else [])]
        return list(self.client.containers.list(all=True, filters={"label": labels}, ignore_removed=True))

    def remove_orphans(self) -> list[str]:
        """Remove containers whose runner on this host is gone; return what was removed."""
        host = socket.gethostname()
        removed = []
        listed = self.client.containers.list(all=True, filters={"label": RUNNER_LABEL}, ignore_removed=True)
        for container in listed:
            owner_host, _, pid = (container.labels.get(RUNNER_LABEL) or "").rpartition(":")
            if owner_host != host or not pid.isdigit() or _pid_alive(int(pid)):
                continue
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
                removed.append(f"{container.labels.get(CELL_LABEL, '?')} of run {container.labels.get(RUN_LABEL, '?')}")
        return removed

    def remove_run(self, run_id: str) -> int:
        """Force-remove the containers this process made for ``run_id``; returns how many.

        Only this process's: several jobs of one CI run (act, a self-hosted
        runner with several agents) or two `compat run`s may share a run id
        and an engine, and must never remove each other's live cells.
        """
        removed = 0
        for container in self.run_containers(run_id, runner=runner_identity()):
            try:
                container.remove(force=True)
                removed += 1
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError as exc:
                if exc.status_code != CONFLICT:  # 409: its removal is already under way (another thread's)
                    raise EngineError(f"cannot remove container {container.name}: {_short(exc)}") from None
        return removed

    def close(self) -> None:
        self.client.close()


def _probe_unix_socket(where: str, timeout: float) -> None:
    """Refuse a dead unix socket ourselves: docker-py leaks the socket of a failed connect."""
    if not where.startswith("unix://"):
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(where.removeprefix("unix://"))
    except OSError as exc:
        raise EngineError(f"no container engine answers at {where} ({exc.strerror or exc}); {PROVISION_HINT}") from None


@dataclass(frozen=True, kw_only=True)
class ContainerSpec:
    """Everything a cell container is made from; hardening is not optional."""

    image: str
    command: Sequence[str]
    run_id: str
    cell_id: str
    mounts: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # host -> (ctr, mode)
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    user: str = "1000:1000"
    pids: int = 512
    memory: str = "2g"
    cpus: float | None = None
    tmpfs_size: str = "512m"
    # Further tmpfs mounts (path -> size), e.g. the cell's writable copy of the target.
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    network: str = "none"
    cap_add: Sequence[str] = ()

    def create_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": list(self.command),
            "labels": {RUN_LABEL: self.run_id, CELL_LABEL: self.cell_id, RUNNER_LABEL: runner_identity()},
            "environment": dict(self.env),
            # Mounts, not binds: a missing host path is an error, never a new root-owned directory.
            "mounts": [
                docker.types.Mount(target=c, source=h, type="bind", read_only=(m == "ro"))
                for h, (c, m) in self.mounts.items()
            ],
            "working_dir": self.working_dir,
            "user": self.user,
            "init": True,
            "network_mode": self.network,
            # The engine turns IPv6 off in a container's network namespace; a test that binds ::1
            # (a dual-stack free-port helper) must find the loopback a machine has.
            "sysctls": {"net.ipv6.conf.lo.disable_ipv6": "0", "net.ipv6.conf.all.disable_ipv6": "0"},
            "read_only": True,
            # exec: pytest and the target may run helpers from /tmp; sockets live there too.
            "tmpfs": {
                "/tmp": f"rw,exec,nosuid,nodev,size={self.tmpfs_size}",
                **{path: f"rw,exec,nosuid,nodev,size={size},uid=1000,gid=1000" for path, size in self.tmpfs.items()},
            },
            "pids_limit": self.pids,
            "mem_limit": self.memory,
            "security_opt": ["no-new-privileges"],
            "cap_drop": ["ALL"],
            "detach": True,
        }
        if self.cap_add:
            kwargs["cap_add"] = list(self.cap_add)
        if self.cpus:
            kwargs["nano_cpus"] = int(self.cpus * 1e9)
        return kwargs


def cli_args(spec: ContainerSpec, *, tty: bool) -> list[str]:
    """``docker run`` for the same container ``spec`` describes, attached to this terminal.

    For `compat repro`: an interactive session needs the CLI's terminal
    handling, which docker-py does not offer. Every hardening option is the
    one ``create_kwargs`` gives the engine.
    """
    kw = spec.create_kwargs()
    args = ["docker", "run", "--rm", "-i", *(["-t"] if tty else []), "--init", "--network", kw["network_mode"]]
    args.append("--read-only")
    for path, options in kw["tmpfs"].items():
        args += ["--tmpfs", f"{path}:{options}"]
    for key, value in kw["sysctls"].items():
        args += ["--sysctl", f"{key}={value}"]
    for mount in kw["mounts"]:
        ro = ",readonly" if mount["ReadOnly"] else ""
        args += ["--mount", f"type=bind,source={mount['Source']},target={mount['Target']}{ro}"]
    for key, value in kw["labels"].items():
        args += ["--label", f"{key}={value}"]
    for key, value in kw["environment"].items():
        args += ["-e", f"{key}={value}"]
    args += ["--pids-limit", str(kw["pids_limit"]), "--memory", str(kw["mem_limit"])]
    if "nano_cpus" in kw:
        args += ["--cpus", str(spec.cpus)]
    for opt in kw["security_opt"]:
        args += ["--security-opt", opt]
    for cap in kw["cap_drop"]:
        args += ["--cap-drop", cap]
    for cap in kw.get("cap_add", ()):
        args += ["--cap-add", cap]
    args += ["--user", kw["user"], "--workdir", kw["working_dir"], kw["image"], *kw["command"]]
    return args


class CellContainer:
    """One container from creation to removal.

    Created and started in ``__enter__`` (removed again if that fails half-way);
    killed if still running and always removed in ``__exit__`` unless
    COMPAT_KEEP_CONTAINERS=1.
    """

    def __init__(self, engine: Engine, *, spec: ContainerSpec) -> None:
        self.engine = engine
        self.spec = spec
        self.container: Any = None

    def __enter__(self) -> CellContainer:
        try:
            self.container = self.engine.client.containers.create(**self.spec.create_kwargs())
            self.container.start()
        except BaseException as exc:
            self._remove()
            if isinstance(exc, docker.errors.DockerException):
                raise EngineError(f"cannot start a container for {self.spec.cell_id}: {_short(exc)}") from None
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._remove()

    @property
    def id(self) -> str:
        return str(self.container.id)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout`` seconds."""
        try:
            result = self.container.wait(timeout=max(timeout, 0.01))
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            return None
        return int(result.get("StatusCode", -1))

    def exec(self, command: Sequence[str], *, user: str | None = None) -> tuple[int, str]:
        try:
            code, out = self.container.exec_run(list(command), user=user or self.spec.user)
        except docker.errors.APIError as exc:
            return -1, _short(exc)
        return code, out.decode(errors="replace")

    def kill(self) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self.container.kill()

    def pids_usage(self) -> tuple[int, int] | None:
        """(processes and threads now, the pids limit) of the container, from its cgroup."""
        try:
            stats = self.container.stats(stream=False, one_shot=True)
        except (docker.errors.APIError, ValueError):
            return None
        pids = stats.get("pids_stats") or {}
        current, limit = pids.get("current"), pids.get("limit")
        return (int(current), int(limit)) if isinstance(current, int) and isinstance(limit, int) else None

    def host_pids(self) -> list[int]:
        """The container's processes as the host numbers them (``docker top``), init and all."""
        try:
            listed = self.container.top()
        except docker.errors.APIError:
            return []
        column = listed.get("Titles", []).index("PID") if "PID" in listed.get("Titles", []) else 1
        return [int(row[column]) for row in listed.get("Processes") or [] if str(row[column]).isdigit()]

    def logs(self) -> str:
        try:
            return str(self.container.logs(stdout=True, stderr=True).decode(errors="replace"))
        except docker.errors.APIError:
            return ""

    def image_id(self) -> str | None:
        return self.container.attrs.get("Image") if self.container else None

    def oom_killed(self) -> bool:
        try:
            self.container.reload()
        except docker.errors.APIError:
            return False
        return bool(self.container.attrs.get("State", {}).get("OOMKilled"))

    def _remove(self) -> None:
        if self.container is None or keep_containers():
            return
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            self.container.remove(force=True)


@contextlib.contextmanager
def run_scope(engine: Engine, run_id: str) -> Iterator[None]:
    """Remove all of ``run_id``'s containers on any exit; SIGTERM acts like Ctrl-C."""
    restore = _sigterm_as_interrupt()
    try:
        yield
    finally:
        try:
            if not keep_containers():
                engine.remove_run(run_id)
        finally:
            restore()


def _sigterm_as_interrupt() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _short(exc: BaseException) -> str:
    """The engine's whole message on one line: its cause is often at the end."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
