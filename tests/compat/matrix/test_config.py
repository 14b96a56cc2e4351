"""The config -> Matrix: the committed file, where a config is found, and every error as one exact line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat.errors import ConfigError
from compat.matrix import Cell, Matrix, load
from tests.compat.places import ROOT

SECONDS = "must be a number of seconds above 0 and at most 86400 (a day)"
CORES = os.cpu_count()


def test_committed_matrix_has_every_cell_including_impossible_ones():
    matrix = load(ROOT / "compat.toml")
    cells = matrix.cells()
    assert len(cells) == 2 * 3 * 3 * 3
    assert len({c.id for c in cells}) == len(cells)
    # subint cannot run on 3.13: the cell stays, the target's gate says why.
    assert Cell("3.13", "base", "subint", "fd") in cells
    assert cells[0].id == "py3.13-base-trio-capfd"
    assert matrix.target.pytest_args == ("-p", "backends.testing.plugin", "--backends-dump-dir={dumps}")
    assert matrix.target.backend_map["subint"] == "subint"
    assert matrix.target_dir == ROOT and matrix.target.test_groups == ("test",)


def test_cell_id_is_stable_and_readable():
    assert Cell("3.14", "greenback", "subint", "fd").id == "py3.14-greenback-subint-capfd"


def test_matrix_is_frozen():
    matrix = load(ROOT / "compat.toml")
    with pytest.raises(AttributeError):
        matrix.axes = None  # type: ignore[misc]


def test_an_empty_file_means_the_defaults(write_matrix):
    path = write_matrix("")
    assert load(path) == Matrix(base_dir=str(path.parent), source=str(path))


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[axes]\nbacknd = ["trio"]\n',
            "$.axes.backnd: unknown key 'backnd'; did you mean 'backend'?",
        ),
        ("[axis]\n", "$.axis: unknown key 'axis'; did you mean 'axes'?"),
        ("[timeouts]\nper_test = 5\n", "$.timeouts.per_test: unknown key 'per_test'; did you mean 'per-test'?"),
        (
            "[limits]\nzzz = 1\n",
            "$.limits.zzz: unknown key 'zzz'; expected one of: pids, memory, cpus",
        ),
        (
            '[axes]\nbackend = ["trio", "forkserver", "subnt"]\n'
            '[target.backend-map]\ntrio = "trio"\nforkserver = "forkserver"\nsubint = "subint"\n',
            "$.axes.backend[2]: 'subnt' is not in $.target.backend-map: "
            "trio, forkserver, subint; did you mean 'subint'?",
        ),
        ('[axes]\npython = ["3.14", "2.7"]\n', "$.axes.python[1]: '2.7' is not a Python version like '3.14'"),
        (
            "[axes]\npython = [3.14]\n",
            '$.axes.python[0]: Expected `str`, got `float`; quote versions so 3.10 stays 3.10: "3.14"',
        ),
        ("[axes]\ngroup = []\n", "$.axes.group: must list at least one value"),
        ('[axes]\ncapture = ["fd", "fd"]\n', "$.axes.capture[1]: 'fd' is listed twice"),
        (
            '[axes]\ncapture = ["fdd"]\n',
            "$.axes.capture[0]: 'fdd' is not a pytest --capture mode: fd, sys, no, tee-sys; did you mean 'fd'?",
        ),
        (
            '[axes]\ngroup = ["with-dash"]\n',
            "$.axes.group[0]: 'with-dash' must be lower-case letters, digits, '_' and '.' (ids join values with '-')",
        ),
        ("[timeouts]\nper-cell = 0\n", f"$.timeouts.per-cell: {SECONDS}, got 0"),
        ("[timeouts]\nper-test = -1.5\n", f"$.timeouts.per-test: {SECONDS}, got -1.5"),
        ("[timeouts]\nper-cell = inf\n", f"$.timeouts.per-cell: {SECONDS}, got inf"),
        ("[timeouts]\nper-cell = 1e10\n", f"$.timeouts.per-cell: {SECONDS}, got 1e+10"),
        ("[timeouts]\nper-test = 900\n", "$.timeouts.per-test: 900 s exceeds $.timeouts.per-cell (600 s)"),
        (
            '[images]\nbase = "registy"\n',
            "$.images.base: 'registy' is not one of auto, registry, debootstrap; did you mean 'registry'?",
        ),
        ("[limits]\npids = 0\n", "$.limits.pids: must be at least 16 processes, got 0"),
        ("[triage]\nreruns = -1\n", "$.triage.reruns: must be between 0 (off) and 1000, got -1"),
        ('[limits]\nmemory = "2 gigs"\n', "$.limits.memory: '2 gigs' is not a size like '2g' or '512m'"),
        ('[limits]\nmemory = "0"\n', "$.limits.memory: '0' is below the engine's minimum of 6m"),
        ("[limits]\ncpus = 1e9\n", f"$.limits.cpus: must be above 0 and at most this host's {CORES} cores, got 1e+09"),
        (
            '[axes]\nbackend = ["trio"]\n[target.backend-map]\ntrio = "-x"\n',
            "$.target.backend-map.trio: '-x' is not a backend value",
        ),
        ('[target]\nimport-paths = ["sr\\u0000c"]\n', "$.target.import-paths[0]: contains a NUL byte: 'sr\\x00c'"),
        ('[target]\ntests = ["nope"]\n', "$.target.tests[0]: 'nope' does not exist in the target ({dir})"),
        (
            '[target]\nna-skips = ["ok", "(unclosed"]\n',
            "$.target.na-skips[1]: '(unclosed' is not a regular expression: "
            "missing ), unterminated subpattern at position 0",
        ),
        (
            '[target]\ncache-ignore = ["docs/**", "/abs"]\n',
            "$.target.cache-ignore[1]: '/abs' is not a glob relative to the target (like 'docs/**')",
        ),
        (
            '[target]\ndump-files = ["/tmp/a-{pid}.log", "/tmp/stackscope.log"]\n',
            "$.target.dump-files[1]: '/tmp/stackscope.log' is not an absolute path with {pid} in it",
        ),
        (
            '[target]\npath = "missing"\n',
            "$.target.path: 'missing' is not a directory (resolved against the config file: {dir}/missing)",
        ),
        ('[[exclude]]\npyhton = "3.13"\n', "$.exclude[0].pyhton: unknown axis 'pyhton'; did you mean 'python'?"),
        (
            '[[exclude]]\npython = "3.12"\n',
            "$.exclude[0].python: '3.12' is not on the python axis: 3.13, 3.14; did you mean '3.14'?",
        ),
        (
            '[[exclude]]\nreason = "x"\n',
            "$.exclude[0]: names no axis; give at least one of python, group, backend, capture",
        ),
        (
            '[[axes.extra]]\nname = "tpt"\nvalues = ["tcp"]\npytest-args = ["--tpt"]\n',
            "$.axes.extra[0].pytest-args: must use {value} in at least one argument",
        ),
        (
            '[[axes.extra]]\nname = "group"\nvalues = ["tcp"]\npytest-args = ["--t={value}"]\n',
            "$.axes.extra[0].name: 'group' must be a new axis name (lower-case letters, digits, '_'; "
            "not one of python, group, backend, capture)",
        ),
        ("[limits]\npids = 1.5\n", "$.limits.pids: Expected `int`, got `float`"),
        (
            '[target]\nbackend-option = "spawn"\n',
            "$.target.backend-option: 'spawn' is not a command-line option (like '--spawn-backend')",
        ),
        (
            '[target]\nunsupported-pattern = ["ok", "(bad"]\n',
            "$.target.unsupported-pattern[1]: not a regular expression: "
            "missing ), unterminated subpattern at position 0",
        ),
        (
            '[target]\npytest-args = ["-p", "x", "--x={nope}"]\n',
            "$.target.pytest-args[2]: unknown placeholder {nope} in '--x={nope}'; known: {dumps}, {out}",
        ),
        (
            "[target.backend-map]\ntrio = 1\n",
            "$.target.backend-map.trio: must be the backend option's value (a string) or a table of option, "
            "pytest-args and env, got `int`",
        ),
        (
            "[target.backend-map.trio]\nenv = { X = 1 }\n",
            "$.target.backend-map.trio.env.X: Expected `str`, got `int`",
        ),
        (
            '[target.backend-map.trio]\noptoin = "x"\n',
            "$.target.backend-map.trio.optoin: unknown key 'optoin'; did you mean 'option'?",
        ),
        (
            '[target]\ninstall = "wheel"\n',
            "$.target.install: 'wheel' is not one of auto, lock, pyproject, requirements",
        ),
        ('[target]\ninstall-project = "yes"\n', "$.target.install-project: 'yes' is not one of auto, true, false"),
        (
            '[target]\nextras = ["fast"]\n',
            "$.target.extras[0]: 'fast': the target declares no [project.optional-dependencies]",
        ),
        (
            '[target]\nrequirements = ["reqs.txt"]\n',
            "$.target.requirements[0]: 'reqs.txt' is not a file of the target ({dir})",
        ),
        (
            '[sandbox]\nnetwork = "bridge"\n',
            "$.sandbox.reason: say why the target needs more than the sandbox gives (it is shown in the report)",
        ),
        ('[ci]\nuv-version = "latest"\n', "$.ci.uv-version: 'latest' is not an exact uv version like '0.9.5'"),
        (
            '[axes]\nbackend = ["a", "b"]\n[target]\nbackend-option = ""\n',
            '$.target.backend-option: is "" and $.target.backend-map does not name a, b: '
            "nothing tells the backends apart",
        ),
    ],
)
def test_error_names_file_and_key_path(write_matrix, toml, expected):
    path = write_matrix(toml)
    assert error_of(path) == f"{path}: {expected.replace('{dir}', str(path.parent))}"


def test_backend_map_defines_the_backends_when_given(write_matrix):
    path = write_matrix('[axes]\nbackend = ["a", "b"]\n[target.backend-map]\na = "x"\n')
    assert error_of(path) == f"{path}: $.axes.backend[1]: 'b' is not in $.target.backend-map: a"
    # An empty map means our names are the target's names.
    assert load(write_matrix('[axes]\nbackend = ["anything"]\n')).axes.backend == ("anything",)


def test_groups_are_checked_against_the_targets_dependency_groups(write_matrix, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[dependency-groups]\ntest = ["pytest"]\ngreenback = ["greenback"]\n')
    path = write_matrix('[axes]\ngroup = ["base", "grenback"]\n')
    assert error_of(path) == (
        f"{path}: $.axes.group[1]: 'grenback' is not 'base' or a dependency group of the target: "
        "base, test, greenback; did you mean 'greenback'?"
    )
    assert load(write_matrix('[axes]\ngroup = ["base", "greenback"]\n')).axes.group == ("base", "greenback")


def test_invalid_toml_and_missing_file(write_matrix, tmp_path):
    path = write_matrix("[axes\n")
    assert error_of(path).startswith(f"{path}: not valid TOML: ")
    missing = tmp_path / "nope.toml"
    assert error_of(missing) == f"{missing}: cannot read: No such file or directory"


def test_compat_exits_with_the_config_code_and_one_line(write_matrix):
    path = write_matrix('[axes]\nbacknd = ["trio"]\n')
    proc = subprocess.run(
        [sys.executable, "-m", "compat", "--matrix", str(path), "plan"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == ConfigError.exit_code == 2
    assert proc.stdout == ""
    assert proc.stderr == (f"compat: error: {path}: $.axes.backnd: unknown key 'backnd'; did you mean 'backend'?\n")


def test_a_nul_byte_or_a_non_utf8_target_project_is_one_line(write_matrix, tmp_path):
    path = write_matrix('[target]\npath = "ta\\u0000rget"\n')
    assert error_of(path).startswith(f"{path}: $.target.path: contains a NUL byte: ")
    target = tmp_path / "latin1"
    (target / "tests" / "backends").mkdir(parents=True)
    (target / "pyproject.toml").write_bytes(b'[project]\nname = "caf\xe9"\n')
    path = write_matrix('[target]\npath = "latin1"\n')
    assert error_of(path) == (
        f"{path}: $.target.path: {target / 'pyproject.toml'}: not UTF-8 text (invalid continuation byte at byte 21)"
    )


# -- where the config is found -------------------------------------------------


def test_the_config_is_found_from_the_current_directory_upwards(tmp_path, monkeypatch):
    from compat.matrix import find_config

    (tmp_path / "tests").mkdir()
    (tmp_path / "compat.toml").write_text('[target]\ntests = ["tests"]\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_config() == tmp_path / "compat.toml"
    matrix = load()
    assert matrix.target_dir == tmp_path and matrix.raw_dir == tmp_path / "reports" / "raw"


def test_a_pyproject_table_is_a_config_and_its_keys_say_where_they_are(tmp_path, monkeypatch):
    (tmp_path / "tests").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "1"\ndependencies = ["pytest"]\n\n'
        '[tool.spawn-compat.axes]\nbackend = ["trio"]\n\n[tool.spawn-compat.report]\nout = "out"\n'
    )
    monkeypatch.chdir(tmp_path)
    matrix = load()
    assert matrix.axes.backend == ("trio",) and matrix.out_dir == tmp_path / "out"
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "1"\n\n[tool.spawn-compat.timeouts]\nper_test = 1\n'
    )
    path = tmp_path / "pyproject.toml"
    assert error_of(path) == (
        f"{path}: $.tool.spawn-compat.timeouts.per_test: unknown key 'per_test'; did you mean 'per-test'?"
    )


def test_no_config_and_two_configs_are_one_line_each(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load()
    assert str(info.value) == (
        f"no compat.toml (or [tool.spawn-compat] in a pyproject.toml) in {tmp_path} or any directory above it; "
        "run `compat init` to write one, or name one with --matrix"
    )
    (tmp_path / "compat.toml").write_text("")
    (tmp_path / "pyproject.toml").write_text("[tool.spawn-compat]\n")
    with pytest.raises(ConfigError) as info:
        load()
    assert str(info.value) == (
        f"{tmp_path / 'compat.toml'} and {tmp_path / 'pyproject.toml'} both configure spawn-compat; "
        "keep one (or name it with --matrix)"
    )


def test_a_target_whose_cells_would_have_no_pytest_is_told_before_anything_is_built(write_matrix, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "nopy"\nversion = "1"\ndependencies = ["trio"]\n')
    path = write_matrix('[target]\ntests = ["tests"]\n')
    assert error_of(path) == (
        f"{path}: $.target.test-groups: nothing the cells install names pytest (the target's dependencies, "
        "no test group): add pytest to the target's test group, or name that group here"
    )
    # Its test group is found by its conventional name, and named explicitly it is checked.
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "nopy"\nversion = "1"\n[dependency-groups]\ntesting = ["pytest>=8"]\n'
    )
    assert load(path).test_groups() == ("testing",)
    path = write_matrix('[target]\ntests = ["tests"]\ntest-groups = ["test"]\n')
    assert error_of(path) == (
        f"{path}: $.target.test-groups[0]: 'test' is not a dependency group of the target: testing; "
        "did you mean 'testing'?"
    )
