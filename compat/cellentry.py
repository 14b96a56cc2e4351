"""What runs inside a cell: pytest, then the target's reaper, then a census.

Stdlib only; runs in the cell's own interpreter (container or local venv)
as ``python -m compat.cellentry run '<spec json>'``. It talks back to the
runner through files in the output directory and three tagged lines on its
own stdout (``COMPAT-ENV``, ``COMPAT-PYTEST``, ``COMPAT-DONE``), and exits
with pytest's exit code (``EXPIRED`` when its runner never came to end it).

``python -m compat.cellentry dump`` sends SIGUSR1 to every other Python
process in scope (the runner execs it at a cell's time bound) and prints
their pids as JSON.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REAP_TIMEOUT_S = 60.0
EXPIRED = 124  # what timeout(1) exits with
TAG_ENV, TAG_PYTEST, TAG_DONE = "COMPAT-ENV", "COMPAT-PYTEST", "COMPAT-DONE"


def say(tag: str, payload: dict[str, Any]) -> None:
    print(f"{tag} {json.dumps(payload)}", flush=True)


def environment() -> dict[str, Any]:
    packages = {
        dist.metadata["Name"]: dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }
    return {"python": platform.python_version(), "packages": dict(sorted(packages.items()))}


# -- processes in scope --------------------------------------------------------
# In a container or a private PID namespace every process is ours; without a
# namespace (local runner fallback) "ours" is the session the runner started.


def _stat(pid: int) -> tuple[str, int, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[3])  # state, ppid, session


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    if raw:
        return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    try:
        return "[" + Path(f"/proc/{pid}/comm").read_text().strip() + "]"
    except OSError:
        return ""


def processes(*, exclude: set[int]) -> list[dict[str, Any]]:
    scope_session = os.getsid(0) if os.environ.get("COMPAT_SCOPE") == "session" else None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None or (scope_session is not None and stat[2] != scope_session):
            continue
        found.append({"pid": pid, "ppid": stat[1], "state": stat[0], "cmdline": _cmdline(pid)})
    return sorted(found, key=lambda p: p["pid"])


def census() -> dict[str, Any]:
    procs = processes(exclude={1, os.getpid()})
    return {"processes": procs, "zombies": sum(p["state"] == "Z" for p in procs)}


def is_python(proc: dict[str, Any]) -> bool:
    argv0 = proc["cmdline"].split(" ", 1)[0]
    return "python" in os.path.basename(argv0) or proc["cmdline"].startswith("backends[")


def dump_pythons() -> list[int]:
    """SIGUSR1 to every other live Python in scope (faulthandler dumps their stacks)."""
    mine = {os.getpid(), os.getppid(), 1}
    signalled = []
    for proc in processes(exclude=mine):
        if proc["state"] != "Z" and is_python(proc) and "compat.cellentry" not in proc["cmdline"]:
            try:
                os.kill(proc["pid"], signal.SIGUSR1)
                signalled.append(proc["pid"])
            except OSError:
                pass
    return signalled


# -- the cell ------------------------------------------------------------------


def run_pytest(spec: dict[str, Any], out: Path) -> tuple[int, float]:
    env = {
        **os.environ,
        "COMPAT_EVENTS_FILE": str(out / "events.jsonl"),
        "BACKENDS_DUMP_DIR": str(out / "dumps"),
        "COMPAT_PER_TEST_TIMEOUT": str(spec.get("per_test_timeout") or ""),
    }
    started = time.monotonic()
    with open(out / "output.log", "ab") as log:
        try:
            code = subprocess.call(
                [sys.executable, "-m", "pytest", *spec["pytest"]],
                cwd=spec["cwd"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=spec.get("expire_after"),
            )
        except subprocess.TimeoutExpired:
            # pytest is killed; in a container our exit stops everything else.
            log.write(f"\ncompat: the cell outlived its runner's bound; stopped after {spec['expire_after']} s\n".encode())
            code = EXPIRED
    return code, time.monotonic() - started


def run_reaper(spec: dict[str, Any], out: Path) -> int | None:
    """``backends.reap --json`` if the target has it; its stdout is reap.json."""
    module = spec.get("reaper_module", "backends.reap")
    sys.path.insert(0, spec["cwd"])
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except ImportError:
        return None
    finally:
        sys.path.pop(0)
    with open(out / "reap.json", "wb") as reap, open(out / "output.log", "ab") as log:
        try:
            return subprocess.call(
                [sys.executable, "-m", module, "--json"],
                cwd=spec["cwd"],
                stdin=subprocess.DEVNULL,
                stdout=reap,
                stderr=log,
                timeout=REAP_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return -1


def run(spec: dict[str, Any]) -> int:
    out = Path(spec["out"])
    (out / "dumps").mkdir(parents=True, exist_ok=True)
    say(TAG_ENV, environment())
    code, duration = run_pytest(spec, out)
    say(TAG_PYTEST, {"exit": code, "duration": round(duration, 6)})
    reap_code = run_reaper(spec, out)
    (out / "census.json").write_text(json.dumps(census(), indent=1))
    say(TAG_DONE, {"reap_exit": reap_code})
    return code


def main(argv: list[str]) -> int:
    match argv:
        case ["run", spec]:
            return run(json.loads(spec))
        case ["dump"]:
            print(json.dumps(dump_pythons()), flush=True)
            return 0
        case _:
            print("usage: python -m compat.cellentry run SPEC_JSON | dump", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
