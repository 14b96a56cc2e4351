"""The `compat` command line: selection, JSON plan, exit codes, pytest arguments."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compat import cli
from compat.errors import CellsFailed, ConfigError
from compat.matrix import Cell, load
from compat.matrix import sessions as plan

# read(2)'s number, as /proc/<pid>/syscall shows it.
READ_SYSCALL = {"x86_64": 0, "aarch64": 63}[platform.machine()]
ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / "compat.toml"


def compat(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "compat", *argv], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )


def test_plan_json_for_one_nox_session():
    proc = compat("plan", "--json", "-s", "test-3.14-subint")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [c["id"] for c in data["cells"]] == [
        f"py3.14-{g}-subint-cap{c}" for g in ("base", "greenback", "cffi") for c in ("fd", "sys", "no")
    ]
    first = data["cells"][0]
    assert first == {
        "id": "py3.14-base-subint-capfd",
        "python": "3.14",
        "group": "base",
        "backend": "subint",
        "capture": "fd",
        "session": "test-3.14-subint(base-fd)",
    }
    assert data["jobs"][0] == {
        "name": "py3.14-base-subint-capfd",
        "cells": ["py3.14-base-subint-capfd"],
        "sessions": "test-3.14-subint(base-fd)",
        "images": "py3.14-base",
    }


def test_filters_combine_and_accept_commas(capsys):
    assert cli.main(["plan", "--python", "3.13", "--backend", "trio,subint", "--capture", "no", "--group", "cffi"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "py3.13-cffi-trio-capno    nox -s 'test-3.13-trio(cffi-no)'",
        "py3.13-cffi-subint-capno  n/a: excluded by matrix rule (python=3.13, backend=subint): "
        "sub-interpreter actors need Python 3.14 (PEP 734, concurrent.interpreters)",
        "2 cells (1 n/a, recorded without running)",
    ]


def test_matrix_option_works_after_the_subcommand(write_matrix, capsys):
    path = write_matrix('[axes]\npython = ["3.14"]\ngroup = ["base"]\nbackend = ["trio"]\ncapture = ["fd"]\n')
    assert cli.main(["plan", "--matrix", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 cells"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["plan", "--backend", "subnt"],
            "--backend: 'subnt' is not on the backend axis (trio, forkserver, subint); did you mean 'subint'?",
        ),
        (
            ["plan", "-s", "test-3.14-subnt"],
            "-s: 'test-3.14-subnt' is not a session of this matrix (see `nox -l`); did you mean 'test-3.14-subint'?",
        ),
        (
            ["plan", "--", "-k", "x"],
            "arguments after '--' are pytest's, and only `compat run` and `compat repro` take them",
        ),
        (
            ["run", "-s", "test-3.14-subint", "--python", "3.13"],
            "no cell matches the selection; `compat plan` with the same options lists them",
        ),
    ],
)
def test_selection_errors_are_one_line_with_exit_2(argv, message):
    proc = compat(*argv)
    assert proc.returncode == ConfigError.exit_code
    assert proc.stderr == f"compat: error: {message}\n"


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "compat"
    proc = subprocess.run([script, "plan", "-s", "matrix"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "54 cells (9 n/a, recorded without running)"


def test_split_pytest_args_keeps_everything_after_the_first_separator():
    assert cli.split_pytest_args(["run", "--jobs", "2", "--", "-k", "a -- b", "--", "-x"]) == (
        ["run", "--jobs", "2"],
        ["-k", "a -- b", "--", "-x"],
    )
    assert cli.split_pytest_args(["run"]) == (["run"], [])


def test_nox_posargs_reach_pytest_last():
    """nox -s 'test-3.14-subint(base-fd)' -- -k cancel: posargs -> compat run -> pytest argv."""
    from compat import nox as compat_nox
    from compat.runners.command import pytest_argv

    cell = Cell("3.14", "base", "subint", "fd")
    source = str(ROOT / "compat.toml")
    argv = compat_nox.compat_argv(source, "run", cell.id, posargs=["-k", "cancel", "-x"], pytest=True)
    before, extra = cli.split_pytest_args(argv)
    args = cli.build_parser().parse_args(before)
    matrix = load(args.matrix)
    assert args.command == "run"
    assert cli.selected_cells(args, matrix) == [cell]
    assert extra == ["-k", "cancel", "-x"]
    pytest_args = pytest_argv(matrix, cell, out="/out", extra=extra)
    assert pytest_args[:3] == ["tests/backends", "--spawn-backend=subint", "--capture=fd"]
    assert pytest_args[-3:] == ["-x", "-k", "cancel"]  # every -k is combined into one, last
    # Without posargs nothing is appended, not even the separator.
    assert "--" not in compat_nox.compat_argv(source, "run", cell.id, pytest=True)


@pytest.mark.parametrize(
    ("status", "fine"),
    [
        ("ok", True),
        ("unsupported", True),
        ("unavailable", True),
        ("excluded", True),
        ("failing", False),
        ("timeout", False),
        ("error", False),
        ("leaked", False),  # tests were fine; the run was not clean
        ("skipped", False),  # nothing was tested: not green
    ],
)
def test_which_cells_fail_a_run(status, fine):
    from compat.results.status import FINE_CELLS

    assert (status in FINE_CELLS) is fine


def test_cells_failed_has_its_own_exit_code():
    codes = [cls.exit_code for cls in (ConfigError, CellsFailed)]
    assert codes == [2, 8]


def test_ctrl_c_exits_130_without_a_traceback(tmp_path):
    """A compat blocked reading its matrix (a FIFO) is interrupted like a user's Ctrl-C."""
    fifo = tmp_path / "matrix.toml"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "compat", "--matrix", str(fifo), "plan"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer = _open_writer_when_read(fifo, proc)
    try:
        # Only once compat sleeps in read(): a signal that lands between open()
        # and read() is handled only at the next bytecode, which never comes.
        _wait_until_asleep_in_read(proc)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        os.close(writer)
    assert proc.returncode == cli.INTERRUPTED
    assert err == "compat: interrupted\n"


def _wait_until_asleep_in_read(proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        syscall = Path(f"/proc/{proc.pid}/syscall").read_text().split()
        if syscall and syscall[0] == str(READ_SYSCALL) and "pipe" in Path(f"/proc/{proc.pid}/wchan").read_text():
            return
        time.sleep(0.01)
    raise AssertionError("compat never went to sleep reading its matrix file")


def _open_writer_when_read(fifo: Path, proc: subprocess.Popen) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            # Succeeds only once a reader has the FIFO open.
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.01)
    raise AssertionError("compat never opened its matrix file")


def test_plan_cells_are_the_matrix_cells():
    matrix = load(MATRIX)
    assert [c.id for c in plan.plan(matrix, matrix.cells()).cells] == [c.id for c in matrix.cells()]


def test_plan_records_na_cells_and_gives_them_no_job(tmp_path, capsys):
    fixture = ROOT / "tests" / "compat" / "fixture_project" / "compat.toml"
    assert cli.main(["--matrix", str(fixture), "plan", "--json", "--record-na", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    na = {c["id"]: c["na"] for c in data["cells"] if c.get("na")}
    assert len(data["cells"]) == 32 and len(na) == 14
    assert not {cell for job in data["jobs"] for cell in job["cells"]} & set(na)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(na)
    recorded = {p.name: json.loads((p / "meta.json").read_text()) for p in tmp_path.iterdir()}
    assert {m["outcome"] for m in recorded.values()} == {"excluded", "unsupported"}
    assert all(recorded[cell]["reason"] == reason for cell, reason in na.items())
    assert recorded["py3.13-base-plain-capfd-uds"]["extra"] == {"wire": "uds"}


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (["py3.14-base-subint-capfd"], ["py3.14-base-subint-capfd"]),
        (["py3.14-*-subint-capfd"], [f"py3.14-{g}-subint-capfd" for g in ("base", "greenback", "cffi")]),
        (["py3.1?-cffi-trio-capno", "--python", "3.13"], ["py3.13-cffi-trio-capno"]),
    ],
)
def test_cells_are_chosen_by_the_id_the_table_shows(selection, expected, capsys):
    assert cli.main(["--matrix", str(MATRIX), "plan", *selection]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[:-1]] == expected


def test_an_unknown_cell_id_is_one_line_with_a_hint(capsys):
    assert cli.main(["--matrix", str(MATRIX), "plan", "py3.14-base-subnt-capfd"]) == 2
    assert capsys.readouterr().err == (
        "compat: error: 'py3.14-base-subnt-capfd' matches no cell id of this matrix (see `compat plan`); "
        "did you mean 'py3.14-base-subint-capfd'?\n"
    )


def test_version_and_help_name_every_exit_code(capsys):
    import compat.errors

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("compat 0.")
    codes = {
        cls.exit_code
        for cls in vars(compat.errors).values()
        if isinstance(cls, type) and issubclass(cls, compat.errors.CompatError) and cls.exit_code > 1
    }
    listed = {int(word) for line in cli.EXIT_CODES.splitlines()[1:] for word in line.split() if word.isdigit()}
    assert codes | {0, cli.INTERRUPTED} <= listed


def test_bare_nox_runs_the_main_job(noxfile):
    assert noxfile.nox.options.sessions == ["matrix", "report"]


def test_a_closed_pipe_ends_the_listing_quietly_with_the_shells_code():
    # The reader is gone before the first write (`| head -0`): a reader that closes after a line
    # would race a listing small enough to fit in the pipe's buffer.
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "compat", "plan"],
            check=False,
            stdout=write,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            timeout=60,
        )
    finally:
        os.close(write)
    code, err = done.returncode, done.stderr.decode()
    assert code == 141 and "Traceback" not in err and "BrokenPipe" not in err, (code, err)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (("run", "--pythn", "3.14"), "compat run: error: unrecognized arguments: --pythn; did you mean '--python'?"),
        (
            ("run", "--backend", "trio", "-k", "cancel"),
            "compat run: error: unrecognized arguments: -k; pytest's arguments go after `--`: "
            "compat run ... -- -k cancel",
        ),
        (("plan", "-s", "py3.14-base-subint-capfd"), "compat: error: -s: 'py3.14-base-subint-capfd' is a cell id: "
         "give it as is, without -s"),
    ],
)  # fmt: skip
def test_a_mistaken_argument_is_the_subcommands_error_with_a_hint(argv, line):
    proc = compat(*argv)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == line, proc.stderr
    if argv[0] == "run":
        assert proc.stderr.startswith("usage: compat run ")  # its own usage, not the top-level one


def test_run_and_repro_say_where_pytests_arguments_go_and_every_command_says_what_it_does():
    for command in ("run", "repro"):
        assert "[-- PYTEST_ARGS ...]" in compat(command, "--help").stdout
    for command in ("images", "doctor", "report", "triage", "workflow", "run", "repro", "plan", "init", "merge"):
        shown = compat(command, "--help").stdout
        # A description paragraph after the usage, not only the one-line help of `compat --help`.
        assert shown.split("\n\n")[1].strip() and not shown.split("\n\n")[1].lstrip().startswith("positional"), command
    assert "where cells run" in compat("run", "--help").stdout
    assert "exit code: pytest's own" in compat("repro", "--help").stdout
