"""`python -m backends.bench`: the JSON shape the issue fixes, and clear refusals."""

from __future__ import annotations

import json
import subprocess
import sys

RESULT_KEYS = {
    "spawn_p50_ms",
    "spawn_p90_ms",
    "spawn_back_to_back_p50_ms",
    "teardown_p50_ms",
    "rpc_p50_us",
    "rpc_p90_us",
    "stream_msgs_per_s",
}
BASELINE_KEYS = {
    "python_startup_p50_ms",
    "import_runtime_p50_ms",
    "mp_spawn_p50_ms",
    "mp_forkserver_p50_ms",
    "uds_pingpong_p50_us",
}


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backends.bench", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_json_report_has_the_documented_shape():
    done = bench("--json", "--backends", "forkserver,subint", "-n", "1", "--rpc-calls", "20", "--stream-msgs", "200")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(report["baselines"]) == BASELINE_KEYS
    assert all(v > 0 for v in report["baselines"].values())
    assert set(report["results"]["forkserver"]) == RESULT_KEYS
    assert all(v > 0 for v in report["results"]["forkserver"].values())
    # subint is either measured or said to be unavailable, never silently missing.
    assert ("subint" in report["results"]) != ("subint" in report["unavailable"])
    assert "forkserver_rpc<=2*pingpong" in report["checks"]


def test_unknown_backend_is_one_line_and_exit_2():
    done = bench("--backends", "mp")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "unknown backend 'mp'" in done.stderr
