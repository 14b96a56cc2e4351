"""``compat``: init, plan, run, repro, images, doctor, report, triage, merge, workflow, provision.

Only ``main`` catches ``CompatError``: it prints ``compat: error: <message>``
as one line on stderr and exits with the error's own code. The modules that
talk to an engine are imported inside the commands that need them, so
``compat plan`` and ``nox -l`` work on a machine without one.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from .errors import CellsFailed, CompatError, ConfigError
from .hints import did_you_mean
from .matrix import AXES, Cell, Matrix, load, new_run_id
from .matrix import sessions as planning
from .paths import git_root
from .runners import kinds as runner_kinds

INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        before, pytest_extra = split_pytest_args(args_list)
        args = parse(build_parser(), before)
        if pytest_extra and args.command not in ("run", "repro"):
            raise ConfigError("arguments after '--' are pytest's, and only `compat run` and `compat repro` take them")
        args.pytest_args = pytest_extra
        code: int = args.func(args)
        return code
    except CompatError as exc:
        print(f"compat: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # The engine removes its containers in its own finally/exit hooks.
        print("compat: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # `compat plan | head`: the reader has what it wanted. Python's own flush at exit must not
        # fail again on the closed pipe, so stdout goes to /dev/null; the shell's code for it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


BROKEN_PIPE = 128 + 13  # killed by SIGPIPE, as the shell reports a writer whose reader went away
# pytest's options people give compat by mistake: they belong after `--`.
PYTEST_OPTIONS = frozenset({"-k", "-m", "-x", "--pdb", "-p", "--lf", "--ff", "-s", "--runxfail", "-n", "--maxfail"})


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """The arguments; an unknown one is the subcommand's error, with its own usage and a hint."""
    args, unknown = parser.parse_known_args(argv)
    if not unknown:
        return args
    sub: argparse.ArgumentParser = parser.subcommands[args.command]  # type: ignore[attr-defined]
    message = f"unrecognized arguments: {' '.join(unknown)}"
    flags = [a for a in unknown if a.startswith("-")]
    options = [o for action in sub._actions for o in action.option_strings]
    if pytest_like := [a for a in flags if a.split("=", 1)[0] in PYTEST_OPTIONS and a not in options]:
        given = list(argv)
        at = given.index(pytest_like[0])
        # Its value, if any, was taken for a cell id: it goes with it.
        value = given[at + 1 : at + 2] if "=" not in pytest_like[0] else []
        value = [v for v in value if not v.startswith("-")]
        shown_args = shlex.join([pytest_like[0], *value])
        message += f"; pytest's arguments go after `--`: compat {args.command} ... -- {shown_args}"
    elif flags:
        message += did_you_mean(flags[0].split("=", 1)[0], options)
    sub.error(message)  # exits 2, with the subcommand's usage
    raise AssertionError("unreachable")


def one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


def split_pytest_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split at the first ``--``: compat's arguments, then pytest's, verbatim."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


# -- argument parsing ---------------------------------------------------------


EXIT_CODES = """exit codes:
  0  every cell ran as well as it can here (ok, n/a, unsupported, unavailable)
  1  compat itself failed (a step it could not do; the line says which)
  2  bad config or arguments (one line names the file and key)
  3  no container engine      4  an image, venv or wheel could not be built
  6  the report failed        7  a regression (--fail-on-regression)
  8  some cell is not clean (failing tests, timeout, error, a leak, every test skipped)
  9  the committed workflow is stale (compat workflow --check)
  10 another run holds the results directory
  11 the results directory holds another target's results
  130 interrupted (Ctrl-C)"""

EXAMPLES = """examples:
  compat init                                  write compat.toml for the project here
  compat plan                                  every cell id and its nox session
  compat run py3.14-base-subint-capfd          one cell, by the id the table shows
  compat repro py3.14-base-subint-capfd NODE_ID -- --pdb   that cell, on your terminal
  compat run 'py3.14-*-subint-*' -j 2 -- -k cancel
  compat run --backend subint --capture fd     cells by axis values
  compat report                                the table, from the last run's results
  compat --matrix docs/targets/tractor/compat.toml plan"""

CONFIG_HELP = (
    "the config: a compat.toml, or a pyproject.toml with [tool.spawn-compat] (default: the nearest one upwards)"
)


EPILOG = f"{EXAMPLES}\n\n{EXIT_CODES}"


def _version() -> str:
    try:
        return importlib.metadata.version("spawn-compat")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compat",
        description="Run the spawn-backend compatibility matrix described by the config (compat.toml): one container "
        "per cell (python x group x backend x capture, plus a target's own axes), and the table they make.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--matrix", "--config", dest="matrix", type=Path, default=None, help=CONFIG_HELP)
    # Accept --matrix after the subcommand too, without overriding an earlier one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--matrix", "--config", dest="matrix", type=Path, default=argparse.SUPPRESS, help=CONFIG_HELP)
    select = _selection_parser()
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_init(sub)
    _add_plan_and_run(sub, common, select)
    _add_cell_tools(sub, common, select)
    _add_report_tools(sub, common)
    for name in ("run", "repro"):
        # Their usage line says where pytest's own arguments go.
        command = sub.choices[name]
        command.usage = command.format_usage().removeprefix("usage: ").rstrip() + " [-- PYTEST_ARGS ...]"
    parser.subcommands = sub.choices  # type: ignore[attr-defined]
    return parser


def _add_init(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init",
        help="write a commented compat.toml for the project in this directory",
        description="Read the project here (pyproject.toml, its pytest config and conftest files) and write a "
        "commented compat.toml: Pythons, groups, test paths, the backend option and values. It prints what it "
        "guessed and what to check, and never overwrites a config.",
    )  # fmt: skip
    p.add_argument("--backend-option", metavar="OPT", help="the target's option that selects a backend")
    p.add_argument("--backends", type=_comma_list, metavar="A,B", help="its values, comma-separated")
    p.add_argument("--pyproject", action="store_true", help="write [tool.spawn-compat] into pyproject.toml instead")
    p.add_argument("--dir", type=Path, default=Path(), help="the project's directory (default: here)")
    p.set_defaults(func=cmd_init)


def _add_plan_and_run(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    select: argparse.ArgumentParser,
) -> None:
    p = sub.add_parser(
        "plan",
        parents=[common, select],
        help="list the cells (--json for the workflow)",
        description="List the selected cells, their nox sessions, and why any is n/a.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="cells and CI jobs as JSON")
    p.add_argument(
        "--record-na", type=Path, metavar="DIR",
        help="write the raw results of the n/a cells (excluded, refused by the target's metadata) into DIR",
    )  # fmt: skip
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "run",
        parents=[common, select],
        help="run cells (pytest args after --)",
        description="Run the selected cells, each in its own container; arguments after -- reach pytest.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--jobs", "-j", type=_positive_int, default=1, help="cells at once (default 1)")
    p.add_argument("--runner", choices=runner_kinds.CHOICES, default=runner_kinds.AUTO, help=runner_kinds.help_text())
    p.add_argument("--run-id", default=os.environ.get("COMPAT_RUN_ID"), help="default: $COMPAT_RUN_ID or new")
    p.add_argument("--out", type=Path, default=None, help="raw results (default: the config's [report] out/raw)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="plain log, no live view")
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="every failing test, and the output of cells that are not ok"
    )
    p.add_argument("-q", "--quiet", action="count", default=0, help="only cells that are not ok, and the summary")
    p.add_argument(
        "--no-cache", dest="use_cache", action="store_false",
        help="run every cell, even one whose inputs are unchanged since its last clean result (kept in --out)",
    )  # fmt: skip
    p.add_argument(
        "--triage", nargs="?", type=int, const=-1, default=None, metavar="N",
        help="afterwards, re-run failing tests (at most N re-runs; default the config's [triage] reruns) "
        "to fill the report's why column",
    )  # fmt: skip
    again = p.add_mutually_exclusive_group()
    again.add_argument("--failed", action="store_true", help="only the cells that were not ok in --out's last results")
    again.add_argument(
        "--failed-tests", action="store_true",
        help="like --failed, and in each such cell only its failing, timed-out and not-run tests",
    )  # fmt: skip
    p.set_defaults(func=cmd_run)


def _add_cell_tools(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    select: argparse.ArgumentParser,
) -> None:
    p = sub.add_parser(
        "repro", parents=[common], help="one cell attached to your terminal (--pdb works)",
        description="Run one cell's exact pytest command in a container of the same image, mounts, limits and "
        "environment, attached to your terminal; node ids narrow it. The pytest arguments of the cell's last "
        "run (compat run ... -- ARGS) are replayed, then the ones after -- here.",
        epilog="examples:\n  compat repro py3.14-base-subint-capfd tests/backends/common/test_rpc.py::test_x -- --pdb\n"
        "  compat repro py3.14-base-subint-capfd --shell\n\n"
        "exit code: pytest's own (0 passed, 1 failed, 2 interrupted, 4 usage error, 5 nothing collected), or the "
        "shell's with --shell; compat's own errors as in `compat --help` (2 a bad cell id, 3 no engine, ...)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("cell", metavar="CELL", help="a cell id as `compat plan` shows it")
    p.add_argument("nodeids", nargs="*", metavar="NODE_ID", help="pytest node ids to run instead of the target's tests")
    p.add_argument("--shell", action="store_true", help="a shell in the cell instead of pytest")
    p.add_argument("--out", type=Path, default=None, help="where its junit.xml and dumps go (default: a new temp dir)")
    p.set_defaults(func=cmd_repro)

    p = sub.add_parser(
        "images", parents=[common, select], help="build (or find) the images the cells need",
        description="Build, or find already built, the image of each (python, group) the selected cells need: "
        "one tag per content hash of every input, so an unchanged image is never rebuilt.",
    )  # fmt: skip
    p.add_argument("--pull", action="store_true", help="pull the registry base even when a copy is here")
    p.add_argument("--save", type=Path, metavar="TAR", help="also write the images and their base to TAR")
    p.add_argument(
        "--github-output", type=Path, metavar="FILE",
        help="append key=<hash of the tags> and built=true|false to FILE ($GITHUB_OUTPUT)",
    )  # fmt: skip
    p.set_defaults(func=cmd_images)

    p = sub.add_parser(
        "merge", parents=[common], help="merge downloaded raw-result artifacts, newest attempt of each cell",
        description="Merge ARTIFACTS/<name>[-<attempt>]/<cell-id>/ (as actions/download-artifact lays them out) "
        "into --out: for each cell, the directory of the highest attempt wins.",
    )  # fmt: skip
    p.add_argument("artifacts", type=Path, metavar="ARTIFACTS")
    p.add_argument("--out", type=Path, default=None, help="default: the config's [report] out/raw")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser(
        "doctor", parents=[common], help="check what a run needs, and how to fix it",
        description="Check, in one screen, what a run of this config needs (the config, the engine, the base "
        "image, limits, Python 3.14, TLS inside a container, uv, reading a hung test's stacks, disk, "
        "leftovers), each problem with its fix. Exit 1 when a required check fails.",
    )  # fmt: skip
    p.set_defaults(func=cmd_doctor)


def _add_report_tools(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "report", parents=[common], help="raw cell results -> the table (Markdown, HTML, JSON)",
        description="Read the raw cell results and write COMPATIBILITY.md, index.html, compat.json, its schema, "
        "the badge and the history; a run that did not cover every cell goes to OUT/partial/ unless --publish.",
    )  # fmt: skip
    p.add_argument("--raw", type=Path, default=None, help="default: the config's [report] out/raw")
    p.add_argument("--out", type=Path, default=None, help="default: the config's [report] out")
    p.add_argument("--baseline", type=Path, help="compat.json to diff against (default: the committed one)")
    p.add_argument("--summary", type=Path, help="also write a Markdown summary here")
    p.add_argument(
        "--fail-on-regression", action="store_true",
        help="exit 7 on a new failure, a strict xfail that now passes or a cell whose status got worse",
    )  # fmt: skip
    p.add_argument(
        "--publish", action="store_true",
        help="write a partial run (not every cell, or narrowed by pytest arguments) over the published table "
        "instead of into OUT/partial/",
    )  # fmt: skip
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "triage", parents=[common], help="rerun failures across neighbouring cells",
        description="Re-run each failing test, first where it failed (flaky, or deterministic?), then in the "
        "cells next to it on each axis, to find the axis that explains it; the report's why column says it.",
    )  # fmt: skip
    p.add_argument("--raw", type=Path, default=None, help="default: the config's [report] out/raw")
    p.add_argument("--max-reruns", type=_positive_int, default=None, help="default: the config's [triage] reruns")
    p.set_defaults(func=cmd_triage)

    p = sub.add_parser(
        "workflow", parents=[common], help="write .github/workflows/matrix.yml",
        description="Write the GitHub Actions workflow from the config: a plan job, image jobs, one job per "
        "group of cells, and a report job; --check fails when the committed one is stale.",
    )  # fmt: skip
    p.add_argument("--check", action="store_true", help="fail if the committed file is stale")
    p.add_argument(
        "--output", type=Path, default=None,
        help="default: .github/workflows/matrix.yml at the root of the config's repository",
    )  # fmt: skip
    p.set_defaults(func=cmd_workflow)

    p = sub.add_parser(
        "provision", help="install and start a container engine on this Debian host (as root)",
        description="Run the provisioning script spawn-compat ships: install Debian's docker.io and debootstrap "
        "and start dockerd in the background. Idempotent; it says what it did.",
    )  # fmt: skip
    p.set_defaults(func=cmd_provision)


def _selection_parser() -> argparse.ArgumentParser:
    select = argparse.ArgumentParser(add_help=False)
    group = select.add_argument_group("cell selection (repeatable or comma-separated)")
    group.add_argument(
        "cells", nargs="*", metavar="CELL",
        help="cell ids as `compat plan` shows them, or globs: py3.14-base-subint-capfd, 'py3.14-*-subint-*'",
    )  # fmt: skip
    for axis in AXES:
        group.add_argument(
            f"--{axis}", action="append", type=_comma_list, default=[], metavar="V",
            help=f"{axis} values (of the config's [axes] {axis}: `compat plan` lists them)",
        )  # fmt: skip
    group.add_argument(
        "--axis",
        dest="extra_axes",
        action="append",
        default=[],
        metavar="NAME=V",
        help="a value of one of the target's own axes ([[axes.extra]]), e.g. --axis tpt=uds",
    )
    group.add_argument(
        "-s",
        "--session",
        dest="sessions",
        action="append",
        default=[],
        metavar="SESSION",
        help="a nox session: matrix, test-3.14-subint or test-3.14-subint(base-fd)",
    )
    return select


def _comma_list(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def selected_cells(args: argparse.Namespace, matrix: Matrix) -> list[Cell]:
    def flat(lists: list[list[str]]) -> list[str]:
        return [v for values in lists for v in values]

    axes = {axis: flat(getattr(args, axis)) for axis in AXES}
    for item in args.extra_axes:
        name, sep, values = item.partition("=")
        if not sep:
            raise ConfigError(f"--axis: '{item}' is not NAME=VALUE[,VALUE]")
        axes.setdefault(name, []).extend(_comma_list(values))
    return planning.select(matrix, axes=axes, sessions=args.sessions, ids=args.cells)


# -- commands -----------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from .init import init

    return init(args.dir, backend_option=args.backend_option, backends=args.backends, pyproject=args.pyproject)


def cmd_provision(args: argparse.Namespace) -> int:
    import subprocess

    from .paths import PROVISION_ENGINE

    return subprocess.call(["sh", str(PROVISION_ENGINE)])


def cmd_plan(args: argparse.Namespace) -> int:
    matrix = load(args.matrix)
    cells = selected_cells(args, matrix)
    the_plan = planning.plan(matrix, cells)
    if args.record_na is not None:
        from .matrix import new_run_id
        from .runners.schedule import record_not_applicable

        run_id = os.environ.get("COMPAT_RUN_ID") or new_run_id()
        na = {c.id: c.na for c in the_plan.cells if c.na}
        for cell in cells:
            if cell.id in na:
                record_not_applicable(matrix, cell, na[cell.id], run_id, "docker", args.record_na / cell.id)
    if args.json:
        sys.stdout.write(msgspec.json.encode(the_plan).decode() + "\n")
        return 0
    width = max((len(c.id) for c in the_plan.cells), default=0)
    for c in the_plan.cells:
        print(f"{c.id:<{width}}  " + (f"n/a: {c.na}" if c.na else f"nox -s '{c.session}'"))
    n_na = sum(1 for c in the_plan.cells if c.na)
    print(f"{len(the_plan.cells)} cells" + (f" ({n_na} n/a, recorded without running)" if n_na else ""))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runners.schedule import run_cells

    matrix = load(args.matrix)
    out = args.out if args.out is not None else matrix.raw_dir
    cells = selected_cells(args, matrix)
    if not cells:
        raise ConfigError("no cell matches the selection; `compat plan` with the same options lists them")
    # One set of tests per group of cells: the whole target, or (--failed-tests) each cell's failures.
    batches: dict[tuple[str, ...], list[Cell]] = {(): cells}
    if args.failed or args.failed_tests:
        from .results.selection import failed_cells

        previous = failed_cells(out)
        cells = [c for c in cells if c.id in previous]
        if not cells:
            print(f"compat: no selected cell was failing in {out}; nothing to run", file=sys.stderr)
            return 0
        batches = {(): cells}
        if args.failed_tests:
            batches = {}
            for cell in cells:
                batches.setdefault(previous[cell.id], []).append(cell)
    run_id = args.run_id or new_run_id()
    metas = []
    for tests, batch in batches.items():
        target = msgspec.structs.replace(matrix.target, tests=tests) if tests else matrix.target
        narrowed = tests if args.failed_tests else ()
        metas += run_cells(
            msgspec.structs.replace(matrix, target=target),
            batch,
            run_id=run_id,
            runner=args.runner,
            out_dir=out,
            jobs=args.jobs,
            pytest_args=tuple(args.pytest_args),
            progress=args.progress,
            # A cell that failed last time is never cached, so --failed runs it anyway.
            use_cache=args.use_cache,
            verbosity=args.verbose - args.quiet,
            narrowed_tests=narrowed,
        )
    from .results.raw import read_cell
    from .results.status import FINE_CELLS

    # What the table will say of each cell decides, not pytest's exit code: a leak or a cell
    # whose every test was skipped is not clean either.
    verdicts = {m.cell: read_cell(out / m.cell) for m in metas}
    failed = [m for m in metas if verdicts[m.cell].status not in FINE_CELLS]
    if args.triage is not None:
        bound = matrix.triage.reruns if args.triage < 0 else args.triage
        if failed and bound > 0:
            from .triage import run as triage

            print(f"compat: triage: up to {bound} re-run(s) to explain the failures (the why column)", file=sys.stderr)
            triage(matrix, out, max_reruns=bound, runner=args.runner, progress=False)
    if failed:
        names = ", ".join(f"{m.cell} ({verdicts[m.cell].status})" for m in failed)
        raise CellsFailed(f"{len(failed)} of {len(metas)} cells failed: {names}; results in {out}/")
    return 0


def cmd_repro(args: argparse.Namespace) -> int:
    from .repro import repro

    return repro(load(args.matrix), args.cell, args.nodeids, tuple(args.pytest_args), shell=args.shell, out=args.out)


def cmd_images(args: argparse.Namespace) -> int:
    from .runners.images import ensure_images

    matrix = load(args.matrix)
    selected = selected_cells(args, matrix)
    na = planning.not_applicable(matrix, selected)
    cells = [c for c in selected if c not in na]
    ensured = ensure_images(matrix, cells, refresh_base=args.pull, save=args.save)
    for (python, group), tag in sorted(ensured.tags.items()):
        print(f"py{python}-{group}  {tag}" + ("  (built)" if (python, group) in ensured.built else ""))
    if args.github_output is not None:
        import hashlib

        key = hashlib.sha256(" ".join(sorted(ensured.tags.values())).encode()).hexdigest()[:16]
        with open(args.github_output, "a", encoding="utf-8") as f:
            f.write(f"key={key}\nbuilt={'true' if ensured.built else 'false'}\n")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from .results.merge import merge
    from .results.owner import claim

    matrix = load(args.matrix)
    out = args.out if args.out is not None else matrix.raw_dir
    claim(out, matrix)
    merged = merge(args.artifacts, out)
    print(f"merged {len(merged)} cells into {out}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_doctor

    return run_doctor(load(args.matrix))


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    # Given --raw and no config to be found, the report still works (from the config that wrote
    # the results, if it is still there); it only loses the declared axis order.
    matrix: Matrix | None
    try:
        matrix = load(args.matrix)
    except ConfigError:
        if args.matrix is not None or args.raw is None:
            raise
        matrix = None
    raw = args.raw if args.raw is not None else matrix.raw_dir if matrix is not None else Path("reports/raw")
    out = args.out if args.out is not None else matrix.out_dir if matrix is not None else raw.parent
    return build_report(
        raw,
        out,
        baseline=args.baseline,
        summary=args.summary,
        fail_on_regression=args.fail_on_regression,
        matrix=matrix,
        publish=args.publish,
    )


def cmd_triage(args: argparse.Namespace) -> int:
    from .triage import run

    matrix = load(args.matrix)
    raw = args.raw if args.raw is not None else matrix.raw_dir
    bound = args.max_reruns if args.max_reruns is not None else matrix.triage.reruns
    return run(matrix, raw, max_reruns=bound)


def cmd_workflow(args: argparse.Namespace) -> int:
    from .ci import workflow

    matrix = load(args.matrix)
    here = Path(matrix.source).resolve().parent
    output = args.output or (git_root(here) or here) / workflow.WORKFLOW_PATH
    if args.check:
        workflow.check(matrix, output)
        print(f"{output} is up to date")
    else:
        workflow.write(matrix, output)
        print(f"wrote {output}")
    return 0
