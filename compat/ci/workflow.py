"""Generate .github/workflows/matrix.yml from the matrix, deterministically.

Three jobs: ``plan`` runs ``compat plan --json``; ``cell`` fans out over its
jobs with ``fromJSON`` and runs, in each, the nox sessions a developer would
run for those cells; ``report`` merges every cell's raw results, writes the
table and the job summary, and on a push to the default branch commits
``reports/COMPATIBILITY.md``, ``compat.json`` and ``index.html`` back.
Publishing by commit keeps the table diffable next to the code it describes
and the previous ``compat.json`` at hand as the baseline; the push uses the
job's own token, so it starts no new workflow run.

The YAML is written by ``_emit`` below, a small emitter for the subset a
workflow needs (mappings, lists, strings, ints, bools, comments), because
no YAML emitter is a dependency of the project and pinned actions want
their version in a comment, which JSON cannot carry.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import WorkflowStale
from ..matrix import Matrix
from ..matrix import sessions as planning

WORKFLOW_PATH = Path(".github/workflows/matrix.yml")
RUNS_ON = "ubuntu-24.04"
HOST_PYTHON = "3.13"
# Image builds (debootstrap base, uv sync) on a cold cache, on top of the cells.
SETUP_MINUTES = 20
IMAGE_CACHE = ".cache/images"
IMAGE_REPOS = r"^spawn-compat(-base)?:"
# Everything compat.images hashes into a tag, so the cache key changes
# whenever any image would (and sometimes when none does: harmless).
IMAGE_INPUTS = "'containers/**', 'pyproject.toml', 'uv.lock', 'matrix.toml'"
REPORT_FILES = ("reports/COMPATIBILITY.md", "reports/compat.json", "reports/index.html")


class Action(NamedTuple):
    """An action pinned to a full commit SHA; the tag is kept as a comment."""

    repo: str
    sha: str
    version: str


class Commented(NamedTuple):
    """A scalar with a trailing comment, for readers of the generated file."""

    value: str
    comment: str


CHECKOUT = Action("actions/checkout", "08c6903cd8c0fde910a37f88322edcfb5dd907a8", "v5.0.0")
SETUP_UV = Action("astral-sh/setup-uv", "61cb8a9741eeb8a550a1b8544337180c0fc8476b", "v7.2.0")
CACHE_RESTORE = Action("actions/cache/restore", "0057852bfaa89a56745cba8c7296529d2fc39830", "v4.3.0")
CACHE_SAVE = Action("actions/cache/save", "0057852bfaa89a56745cba8c7296529d2fc39830", "v4.3.0")
UPLOAD = Action("actions/upload-artifact", "ea165f8d65b6e75b540449e92b4886f43607fa02", "v4.6.2")
DOWNLOAD = Action("actions/download-artifact", "d3f86a106a0bac45b974a628896c90dbdf5c8093", "v4.3.0")


# -- the workflow as data -----------------------------------------------------


def workflow(matrix: Matrix) -> dict[str, Any]:
    n_cells = len(matrix.cells())
    return {
        "name": "compat matrix",
        "on": {
            "push": {"branches": ["main"]},
            "pull_request": {},
            "workflow_dispatch": {},
        },
        "permissions": {"contents": Commented("read", "to check out; jobs widen this only where needed")},
        "concurrency": {
            "group": "${{ github.workflow }}-${{ github.ref }}",
            "cancel-in-progress": "${{ github.event_name == 'pull_request' }}",
        },
        "env": {"COMPAT_RUN_ID": "${{ github.run_id }}-${{ github.run_attempt }}"},
        "jobs": {
            "plan": plan_job(),
            "cell": cell_job(cell_timeout_minutes(matrix, n_cells)),
            "report": report_job(),
        },
    }


def cell_timeout_minutes(matrix: Matrix, n_cells: int) -> int:
    cells = planning.cells_per_job(n_cells)
    return SETUP_MINUTES + math.ceil(cells * matrix.timeouts.per_cell / 60)


def _setup_steps() -> list[dict[str, Any]]:
    return [
        {"uses": CHECKOUT, "with": {"persist-credentials": False}},
        {
            "uses": SETUP_UV,
            "with": {
                "python-version": HOST_PYTHON,
                "enable-cache": True,
                "cache-dependency-glob": "uv.lock",
            },
        },
    ]


def plan_job() -> dict[str, Any]:
    return {
        "name": "plan",
        "runs-on": RUNS_ON,
        "timeout-minutes": 10,
        "outputs": {"jobs": "${{ steps.plan.outputs.jobs }}"},
        "steps": [
            *_setup_steps(),
            {
                "id": "plan",
                "name": "compat plan --json",
                # n/a cells (excluded, refused by the target's metadata) get no
                # job: their results are recorded here and uploaded with the rest.
                "run": _script(
                    "uv run compat plan --json --record-na reports/raw > plan.json",
                    'echo "jobs=$(jq -c .jobs plan.json)" >> "$GITHUB_OUTPUT"',
                ),
            },
            {
                "name": "Upload the n/a cells",
                "uses": UPLOAD,
                "with": {
                    "name": "raw-plan",
                    "path": "reports/raw/",
                    "if-no-files-found": "ignore",
                    "retention-days": 14,
                },
            },
        ],
    }


def cell_job(timeout_minutes: int) -> dict[str, Any]:
    return {
        "name": "${{ matrix.name }}",
        "needs": "plan",
        "runs-on": RUNS_ON,
        "timeout-minutes": timeout_minutes,
        "strategy": {
            "fail-fast": False,
            "matrix": {"include": "${{ fromJSON(needs.plan.outputs.jobs) }}"},
        },
        "steps": [
            *_setup_steps(),
            {
                "id": "images",
                "name": "Restore images",
                "uses": CACHE_RESTORE,
                "with": {"path": IMAGE_CACHE, "key": _image_cache_key()},
            },
            {
                "name": "Load images",
                "if": "${{ steps.images.outputs.cache-hit == 'true' }}",
                "run": f"docker load -i {IMAGE_CACHE}/images.tar",
            },
            {
                "name": "nox",
                "env": {"NOX_SESSIONS": "${{ matrix.sessions }}"},
                # Session names are passed through the environment, never
                # pasted into the script, so no value can become shell code.
                "run": _script(
                    'read -ra sessions <<< "$NOX_SESSIONS"',
                    'uv run nox -s "${sessions[@]}"',
                ),
            },
            {
                "name": "Save images",
                "if": "${{ !cancelled() && steps.images.outputs.cache-hit != 'true' }}",
                "run": _script(
                    f"mkdir -p {IMAGE_CACHE}",
                    "docker image ls --format '{{.Repository}}:{{.Tag}}'"
                    f" | grep -E '{IMAGE_REPOS}'"
                    f" | xargs -r docker save -o {IMAGE_CACHE}/images.tar",
                ),
            },
            {
                "name": "Cache images",
                "if": "${{ !cancelled() && steps.images.outputs.cache-hit != 'true' }}",
                "uses": CACHE_SAVE,
                "with": {"path": IMAGE_CACHE, "key": _image_cache_key()},
            },
            {
                "name": "Upload raw results",
                "if": "${{ !cancelled() }}",
                "uses": UPLOAD,
                "with": {
                    "name": "raw-${{ matrix.name }}",
                    # The root stays reports/raw, so each artifact holds
                    # <cell-id>/ and they merge back without collisions.
                    "path": "reports/raw/",
                    "if-no-files-found": "warn",
                    "retention-days": 14,
                },
            },
        ],
    }


def _image_cache_key() -> str:
    return f"images-${{{{ runner.os }}}}-${{{{ matrix.images }}}}-${{{{ hashFiles({IMAGE_INPUTS}) }}}}"


def report_job() -> dict[str, Any]:
    return {
        "name": "report",
        "needs": ["plan", "cell"],
        "if": "${{ !cancelled() && needs.plan.result == 'success' }}",
        "runs-on": RUNS_ON,
        "timeout-minutes": 15,
        "permissions": {"contents": Commented("write", "to commit the table on the default branch")},
        "steps": [
            *_setup_steps(),
            {
                "name": "Download raw results",
                "uses": DOWNLOAD,
                "with": {"pattern": "raw-*", "path": "reports/raw", "merge-multiple": True},
            },
            {
                "name": "compat report",
                # The baseline is the committed reports/compat.json (compat
                # report's default); pull requests fail on new failures.
                "run": _script(
                    'args=(--summary "$GITHUB_STEP_SUMMARY")',
                    'if [ "$GITHUB_EVENT_NAME" = pull_request ]; then args+=(--fail-on-regression); fi',
                    'uv run compat report "${args[@]}"',
                ),
            },
            {
                "name": "Upload report",
                "if": "${{ !cancelled() }}",
                "uses": UPLOAD,
                "with": {"name": "compat-report", "path": "\n".join(REPORT_FILES) + "\n"},
            },
            {
                "name": "Commit the table",
                "if": (
                    "${{ github.event_name == 'push' && github.ref == "
                    "format('refs/heads/{0}', github.event.repository.default_branch) }}"
                ),
                "env": {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"},
                "run": _script(
                    'git config user.name "github-actions[bot]"',
                    'git config user.email "41898282+github-actions[bot]@users.noreply.github.com"',
                    f"git add {' '.join(REPORT_FILES)}",
                    'if git diff --cached --quiet; then echo "table unchanged"; exit 0; fi',
                    'git commit -m "reports: compatibility table for ${GITHUB_SHA::12}"',
                    'git push "https://x-access-token:${GITHUB_TOKEN}@github.com/${GITHUB_REPOSITORY}.git"'
                    ' "HEAD:${GITHUB_REF_NAME}"',
                ),
            },
        ],
    }


def _script(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# -- writing and checking -----------------------------------------------------

HEADER = (
    "# Generated by `compat workflow` from matrix.toml: do not edit by hand.\n"
    "# Regenerate with `uv run compat workflow` (or `nox -s workflow`);\n"
    "# `compat workflow --check` fails while this file is stale.\n"
)


def render(matrix: Matrix) -> str:
    return HEADER + "".join(_emit(workflow(matrix), 0))


def write(matrix: Matrix, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(matrix))


def check(matrix: Matrix, path: Path) -> None:
    want = render(matrix)
    try:
        have = path.read_text()
    except OSError:
        raise WorkflowStale(f"{path} is missing; run `compat workflow` to write it") from None
    if have != want:
        first = _first_difference(have, want)
        raise WorkflowStale(f"{path} is stale ({first}); run `compat workflow` and commit the result")


def _first_difference(have: str, want: str) -> str:
    for line in difflib.unified_diff(have.splitlines(), want.splitlines(), lineterm="", n=0):
        if line.startswith("@@"):
            return f"first difference at line {line.split()[1].lstrip('-').split(',')[0]}"
    return "differs"


# -- a YAML emitter for exactly what a workflow holds -------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_NUMBERISH = re.compile(r"^[-+.]?\d|^\.(inf|nan)$", re.IGNORECASE)
_SPECIAL = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~", ""}


def _scalar(value: object) -> str:
    match value:
        case bool():
            return "true" if value else "false"
        case int():
            return str(value)
        case Action(repo, sha, version):
            return f"{repo}@{sha}  # {version}"
        case Commented(inner, comment):
            return f"{_scalar(inner)}  # {comment}"
        case str() if _plain_ok(value):
            return value
        case str():
            # JSON's escapes are a subset of YAML's double-quoted style.
            return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot emit {type(value).__name__} as YAML")


def _plain_ok(text: str) -> bool:
    # Conservative: anything YAML might read as another type, a comment, an
    # indicator, or a mapping is quoted instead.
    return not (
        text.lower() in _SPECIAL
        or text != text.strip()
        or not text.isprintable()
        or text[0] in "!&*-?:,[]{}#|>@%\"'`"
        or ": " in text
        or " #" in text
        or text.endswith(":")
        or _NUMBERISH.match(text)
    )


def _literal_ok(text: str) -> bool:
    # A block scalar keeps scripts readable; the cases it would need
    # indentation or chomping indicators for are quoted instead.
    return "\n" in text and not text.startswith((" ", "\n")) and not text.endswith("\n\n")


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) else json.dumps(key)


def _emit(node: object, indent: int) -> Iterator[str]:
    pad = " " * indent
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _emit_entry(f"{pad}{_key(key)}:", value, indent)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and item:
                # The first key shares the "- " line; the rest align under it.
                lines = list(_emit(item, indent + 2))
                yield f"{pad}- {lines[0].lstrip()}"
                yield from lines[1:]
            else:
                yield from _emit_entry(f"{pad}-", item, indent)
    else:
        raise TypeError(f"expected a mapping or a list, got {type(node).__name__}")


def _emit_entry(prefix: str, value: object, indent: int) -> Iterator[str]:
    if isinstance(value, (dict, list)) and not value:
        yield f"{prefix} {'{}' if isinstance(value, dict) else '[]'}\n"
    elif isinstance(value, (dict, list)):
        yield f"{prefix}\n"
        yield from _emit(value, indent + 2)
    elif isinstance(value, str) and _literal_ok(value):
        chomp = "" if value.endswith("\n") and not value.endswith("\n\n") else "-"
        yield f"{prefix} |{chomp}\n"
        body = value[:-1] if value.endswith("\n") else value
        for line in body.split("\n"):
            yield f"{' ' * (indent + 2)}{line}\n" if line else "\n"
    else:
        yield f"{prefix} {_scalar(value)}\n"
