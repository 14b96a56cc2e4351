"""What runs inside a cell: pytest, then the target's reaper, then a census.

Stdlib only; runs in the cell's own interpreter (container or local venv)
as ``python -m compat.cell.entry run '<spec json>'``. It talks back to the
runner through files in the output directory and tagged lines on its own
stdout (see ``protocol``), and exits with pytest's exit code (``EXPIRED``
when its runner never came to end it).

``python -m compat.cell.entry dump`` sends SIGUSR1 to every other process in
scope that has a handler for it (the kernel's ``SigCgt`` mask says so,
whatever the process calls itself) and prints, as JSON, who was signalled
and who had no handler; a process without one would die of the signal.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from . import leftovers, session
from . import protocol as P
from .session import inner_pid, run_sessions, stop_test

REAP_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 300.0
# Relative to HOME: XDG's defaults, so a test that ignores the variables finds the same places.
FRESH_DIRS = {
    "XDG_RUNTIME_DIR": ".run",
    "XDG_CACHE_HOME": ".cache",
    "XDG_CONFIG_HOME": ".config",
    "XDG_DATA_HOME": ".local/share",
}
OUTPUT_TAIL = 12


def say(tag: str, payload: Mapping[str, Any]) -> None:
    print(f"{tag} {json.dumps(payload)}", flush=True)


def environment(pythonpath: list[str] | None = None) -> P.EnvPayload:
    """The interpreter and the distributions pytest will see (``pythonpath`` as it will have it)."""
    path = [*(pythonpath or []), *sys.path]
    packages = {
        dist.metadata["Name"]: dist.version
        for dist in importlib.metadata.distributions(path=path)
        if dist.metadata["Name"]
    }
    return {"python": platform.python_version(), "packages": dict(sorted(packages.items()))}


# -- processes in scope --------------------------------------------------------
# In a container or a private PID namespace every process is ours; without a
# namespace (local runner fallback) "ours" is the session the runner started.
# This is the cell side's one /proc reader (the host side uses psutil).


class Proc:
    __slots__ = ("cmdline", "pid", "ppid", "session", "sigcgt", "state")

    def __init__(self, pid: int, state: str, ppid: int, session: int, cmdline: str, sigcgt: int) -> None:
        self.pid, self.state, self.ppid, self.session = pid, state, ppid, session
        self.cmdline, self.sigcgt = cmdline, sigcgt

    def catches(self, signum: int) -> bool:
        return bool(self.sigcgt >> (signum - 1) & 1)

    def as_dict(self) -> P.ProcessInfo:
        return {"pid": self.pid, "ppid": self.ppid, "state": self.state, "cmdline": self.cmdline}


def read_proc(pid: int) -> Proc | None:
    base = Path(f"/proc/{pid}")
    try:
        raw = (base / "stat").read_text()
        status = (base / "status").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    sigcgt = 0
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            sigcgt = int(line.split()[1], 16)
    return Proc(pid, fields[0], int(fields[1]), int(fields[3]), _cmdline(base), sigcgt)


def _cmdline(base: Path) -> str:
    try:
        raw = (base / "cmdline").read_bytes()
    except OSError:
        return ""
    if raw:
        return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    try:
        return "[" + (base / "comm").read_text().strip() + "]"
    except OSError:
        return ""


def processes(*, exclude: set[int], root: int | None = None) -> list[Proc]:
    """The cell's processes: every one in a container; ``root``'s tree when a runner outside names it;
    without a PID namespace, the entry's session and the sessions of the pytests it started."""
    tree = set(session.tree(root)) if root is not None else None
    sessions = None
    if tree is None and os.environ.get(P.ENV_SCOPE) == "session":
        sessions = {os.getsid(0), *session.STARTED}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        if tree is not None and int(entry.name) not in tree:
            continue
        proc = read_proc(int(entry.name))
        if proc is None or (sessions is not None and proc.session not in sessions):
            continue
        found.append(proc)
    return sorted(found, key=lambda p: p.pid)


def census(shm_before: frozenset[str] = frozenset()) -> P.Census:
    """What still lives in the cell after pytest and the reaper: processes, and the shared-memory
    segments of the cell's user that were not there before pytest (any target's, not only ours)."""
    procs = processes(exclude={1, os.getpid()})
    return {
        "processes": [p.as_dict() for p in procs],
        "zombies": sum(p.state == "Z" for p in procs),
        "shm": sorted(leftovers.snapshot().shm - shm_before),
    }


def dump_stacks(root: int | None = None) -> P.Signals:
    """SIGUSR1 to every live process in scope that catches it; the rest are listed.

    ``root``: only that process tree (the local runner's cells, from outside);
    otherwise the scope the environment says.
    """
    mine = {os.getpid(), os.getppid(), 1}
    signalled, no_handler = [], []
    for proc in processes(exclude=mine, root=root):
        if proc.state == "Z" or P.ENTRY_MODULE in proc.cmdline:
            continue
        if not proc.catches(signal.SIGUSR1):
            no_handler.append(proc.as_dict())
            continue
        try:
            os.kill(proc.pid, signal.SIGUSR1)
        except OSError:
            continue
        signalled.append(proc.as_dict())
    return {"signalled": signalled, "no_handler": no_handler}


# -- the cell ------------------------------------------------------------------


def fresh_home() -> Path:
    """The cell user's home as its passwd entry names it (on the tmpfs), else a new temporary directory."""
    try:
        home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        home = Path()
    tmp = Path(tempfile.gettempdir())
    if not home.is_relative_to(tmp) or home == tmp:
        return Path(tempfile.mkdtemp(prefix="cell-home-"))
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


def cell_env(spec: P.EntrySpec, out: Path, site: Path | None = None) -> dict[str, str]:
    """pytest's environment: ours, fresh writable dirs, the installed target, then the target's own."""
    env = dict(os.environ)
    values = {"tmp": tempfile.gettempdir(), "out": str(out)}
    if spec.get("fresh_dirs"):
        home = fresh_home()
        env["HOME"] = str(home)
        for name, rel in FRESH_DIRS.items():
            path = home / rel
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            env[name] = str(path)
    values["home"] = env.get("HOME", values["tmp"])
    pythonpath = list(spec.get("pythonpath") or [])
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    if site is not None:
        env[P.ENV_TARGET_SITE] = str(site)
    for name, value in (spec.get("env") or {}).items():
        for key, filled in values.items():
            value = value.replace("{" + key + "}", filled)
        env[name] = value
    env[P.ENV_EVENTS] = str(out / P.EVENTS)
    env[P.ENV_DUMP_DIR] = str(out / P.DUMPS)
    env[P.ENV_DEPS_DIR] = str(out / P.DEPS_DIR)
    if reuse := spec.get("reuse"):
        (out / P.REUSE_LIST).write_text("\n".join(reuse) + "\n")
        env[P.ENV_REUSE] = str(out / P.REUSE_LIST)
    env[P.ENV_PER_TEST] = str(spec.get("per_test_timeout") or "")
    return env


# -- before pytest: the target's writable copy and its wheel -------------------


class SetupFailed(Exception):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step, self.detail = step, detail


def copy_target(spec: P.EntrySpec) -> int:
    """Copy the target's files (git's view of them, as the host listed them) from its read-only mount into cwd."""
    source, listing = spec.get("source"), spec.get("files")
    if not source or not listing:
        return 0
    try:
        names = [n for n in Path(listing).read_bytes().decode(errors="surrogateescape").split("\0") if n]
    except OSError as exc:
        raise SetupFailed("copying the target", f"cannot read its file list: {exc}") from None
    cwd = Path(spec["cwd"])
    copied = 0
    for name in names:
        src, dest = Path(source) / name, cwd / name
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dest)
            elif src.is_file():
                shutil.copy2(src, dest)
            else:
                continue  # listed by git but deleted in the work tree
        except FileExistsError:
            continue
        except OSError as exc:
            raise SetupFailed("copying the target", f"{name}: {exc.strerror or exc}") from None
        copied += 1
    return copied


def install_wheels(spec: P.EntrySpec, out: Path) -> tuple[Path | None, list[str]]:
    """Install the target's wheels (built on the host) into the cell's tmpfs, without dependencies or network."""
    directory = spec.get("wheels")
    if not directory:
        return None, []
    wheels = sorted(str(p) for p in Path(directory).glob("*.whl"))
    if not wheels:
        raise SetupFailed("installing the target", f"no wheel in {directory}")
    site = Path(tempfile.mkdtemp(prefix="compat-target-"))
    uv = shutil.which("uv")
    if uv is None:
        raise SetupFailed("installing the target", "uv is not on PATH in the cell")
    cmd = [uv, "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-cache", "--target", str(site)]
    cmd += ["--python", sys.executable, *wheels]
    with open(out / P.OUTPUT, "ab") as log:
        log.write(f"compat: installing the target: {' '.join(Path(w).name for w in wheels)}\n".encode())
        log.flush()
        try:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SetupFailed("installing the target", str(exc)) from None
        log.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()[-OUTPUT_TAIL:]
        raise SetupFailed("installing the target", " | ".join(tail) or f"uv exited with {proc.returncode}")
    return site, [Path(w).name for w in wheels]


def setup(spec: P.EntrySpec, out: Path) -> tuple[Path | None, P.SetupPayload]:
    """The steps before pytest; a failure is reported as the cell's setup failure, never pytest's."""
    try:
        copied = copy_target(spec)
        site, installed = install_wheels(spec, out)
    except SetupFailed as exc:
        return None, {"copied": 0, "installed": [], "failed": exc.step, "detail": exc.detail}
    return site, {"copied": copied, "installed": installed}


def run_reaper(spec: P.EntrySpec, out: Path, env: dict[str, str]) -> int | None:
    """``<reaper> --json`` if the target has that module; its stdout is reap.json."""
    module = spec.get("reaper") or ""
    if not module:
        return None
    sys.path.insert(0, spec["cwd"])
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except ImportError:
        return None
    finally:
        sys.path.pop(0)
    with open(out / P.REAP, "wb") as reap, open(out / P.OUTPUT, "ab") as log:
        try:
            return subprocess.call(
                [sys.executable, "-m", module, "--json"],
                cwd=spec["cwd"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=reap,
                stderr=log,
                timeout=REAP_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return -1


def run(spec: P.EntrySpec) -> int:
    out = Path(spec["out"])
    (out / P.DUMPS).mkdir(parents=True, exist_ok=True)
    site, done = setup(spec, out)
    say(P.TAG_SETUP, done)
    say(P.TAG_ENV, environment([str(site)] if site else None))
    if "failed" in done:
        return 1
    env = cell_env(spec, out, site)
    shm_before = leftovers.snapshot().shm
    code, duration, restarts = run_sessions(spec, out, env)
    ran: P.PytestPayload = {"exit": code, "duration": round(duration, 6), "restarts": restarts}
    say(P.TAG_PYTEST, ran)
    reap_code = run_reaper(spec, out, env)
    (out / P.CENSUS).write_text(json.dumps(census(shm_before), indent=1))
    finished: P.DonePayload = {"reap_exit": reap_code}
    say(P.TAG_DONE, finished)
    return code


def exec_in_cell(spec: P.EntrySpec, shell: bool) -> NoReturn:
    """Become the cell's pytest (or a shell) with its environment, attached to the caller's terminal."""
    out = Path(spec["out"])
    (out / P.DUMPS).mkdir(parents=True, exist_ok=True)
    site, done = setup(spec, out)
    if "failed" in done:
        print(f"compat: {done['failed']} failed: {done.get('detail', '')}", file=sys.stderr, flush=True)
        sys.exit(1)
    env = cell_env(spec, out, site)
    os.chdir(spec["cwd"])
    if shell:
        argv = ["bash"] if Path("/bin/bash").exists() else ["sh"]
        print(f"cell shell; pytest would run: python -m pytest {' '.join(spec['pytest'])}", flush=True)
    else:
        argv = [sys.executable, "-m", "pytest", *spec["pytest"]]
    os.execvpe(argv[0], argv, env)


TREE_WAIT_S = 1.5


def forensics(out: Path, hang: str, nodeid: str, bound: str, root: int | None = None) -> dict[str, Any]:
    """At a timeout, before the kill: task trees (SIGUSR2 to whoever handles it), then the hang's class,
    into ``out/hang/forensics.json``.

    Bounded: the trees get ``TREE_WAIT_S``, the investigation its own probe bound.
    """
    from . import forensics as F

    mine = {os.getpid(), os.getppid(), 1}
    procs = [p for p in processes(exclude=mine, root=root) if p.state != "Z" and P.ENTRY_MODULE not in p.cmdline]
    # Outside the cell's PID namespace (a local cell), its files are named by the cell's own numbers.
    inner = {p.pid: inner_pid(p.pid) for p in procs}
    before = {pid: _tree_count(out, inner[pid]) for pid in inner}
    asked = []
    for proc in procs:
        if proc.catches(signal.SIGUSR2):
            try:
                os.kill(proc.pid, signal.SIGUSR2)
                asked.append(proc.pid)
            except OSError:
                continue
    deadline = time.monotonic() + TREE_WAIT_S
    answered: set[int] = set()
    while time.monotonic() < deadline and len(answered) < len(asked):
        time.sleep(0.05)
        answered |= {pid for pid in asked if pid not in answered and _tree_count(out, inner[pid]) > before[pid]}
    # A tree with tasks in it means a trio loop runs in that process's main thread.
    trio = {pid for pid in answered if _last_tree_has_tasks(out, inner[pid])}
    report = F.investigate(list(inner), output=out / P.OUTPUT, trio=trio)
    report["processes"] = {str(inner.get(int(pid), pid)): seen for pid, seen in report["processes"].items()}
    trees = {"asked": sorted(inner[p] for p in asked), "answered": sorted(inner[p] for p in answered)}
    report.update(nodeid=nodeid, bound=bound, task_trees=trees)
    (out / hang).mkdir(parents=True, exist_ok=True)
    _collect_target_dumps(sorted(inner.values()), out / hang)
    (out / hang / P.FORENSICS).write_text(json.dumps(report, indent=1))
    return {"class": report["class"].get("class"), "seconds": report["seconds"]}


def _collect_target_dumps(pids: list[int], into: Path) -> None:
    """The target's own dumps (its SIGUSR1 handlers' files, e.g. tractor's stackscope trees), tails kept."""
    try:
        patterns = [str(p) for p in json.loads(os.environ.get(P.ENV_TARGET_DUMPS) or "[]")]
    except ValueError:
        return
    for pattern in patterns:
        for pid in pids:
            path = Path(pattern.replace("{pid}", str(pid)))
            try:
                with open(path, "rb") as f:
                    f.seek(max(0, path.stat().st_size - P.TARGET_DUMP_LIMIT))
                    (into / f"{P.TARGET_DUMP_PREFIX}{path.name}").write_bytes(f.read())
            except OSError:
                continue


def _tree_texts(out: Path, pid: int) -> list[str]:
    trees = []
    for path in (out / P.DUMPS).glob(f"*-{pid}.txt"):
        try:
            trees += path.read_text(errors="replace").split(P.TREE_HEADER)[1:]
        except OSError:
            continue
    return trees


def _tree_count(out: Path, pid: int) -> int:
    return len(_tree_texts(out, pid))


def _last_tree_has_tasks(out: Path, pid: int) -> bool:
    trees = _tree_texts(out, pid)
    return bool(trees) and "task '" in trees[-1]


def main(argv: list[str]) -> int:
    match argv:
        case ["run", spec]:
            return run(json.loads(spec))
        case ["exec", spec]:
            return exec_in_cell(json.loads(spec), shell=False)
        case ["shell", spec]:
            return exec_in_cell(json.loads(spec), shell=True)
        case ["dump"]:
            print(json.dumps(dump_stacks()), flush=True)
            return 0
        case ["dump", root] if root.isdigit():
            print(json.dumps(dump_stacks(int(root))), flush=True)
            return 0
        case ["forensics", out, hang, nodeid, bound]:
            print(json.dumps(forensics(Path(out), hang, nodeid, bound)), flush=True)
            return 0
        case ["forensics", out, hang, nodeid, bound, root] if root.isdigit():
            print(json.dumps(forensics(Path(out), hang, nodeid, bound, int(root))), flush=True)
            return 0
        case ["stop-test", out]:
            print(json.dumps(stop_test(Path(out))), flush=True)
            return 0
        case _:
            usage = (
                "run|exec|shell SPEC_JSON | dump [ROOT_PID] | forensics OUT HANG NODEID BOUND [ROOT_PID] "
                "| stop-test OUT"
            )
            print(f"usage: python -m {P.ENTRY_MODULE} {usage}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
