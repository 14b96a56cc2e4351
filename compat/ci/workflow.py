"""Generate .github/workflows/matrix.yml from the matrix, deterministically.

Jobs: ``plan`` runs ``compat plan --json`` and records the n/a cells (they
get no runner); ``images`` builds each (python, group) image once, on a
cache keyed by the image's own content hash, and hands it to the cell jobs
as an artifact; ``cell`` fans out over the plan's jobs (cells of one image
each) and runs the nox sessions a developer would run; ``report`` merges
the newest attempt of every cell, writes the table and the job summary, and
on the default branch publishes the HTML report, the badge and the history
to GitHub Pages (``pages``). Nothing is ever pushed to a branch.

Images: the cache is keyed by the hash of the tags ``compat images``
computes (base image id, Dockerfile, the target's lock and sync arguments),
and restored by prefix. The job always pulls the registry base, so a
republished base or a changed lock makes new tags, which are built and
saved under a new key; unchanged ones are found and nothing is built.

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
# An image build on a cold cache: a debootstrap base and a uv sync.
IMAGE_MINUTES = 30
SETUP_MINUTES = 10
IMAGE_CACHE = ".cache/images"
IMAGE_TAR = f"{IMAGE_CACHE}/image.tar"
SITE = "reports/site"
ARTIFACTS = "reports/artifacts"
# Where the table is published from: the repository's default branch, whatever its name.
PUBLISH = (
    "${{ github.event_name == 'schedule' || ((github.event_name == 'push' || "
    "(github.event_name == 'workflow_dispatch' && inputs.cells == '')) && "
    "github.ref_name == github.event.repository.default_branch) }}"
)


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
UPLOAD_PAGES = Action("actions/upload-pages-artifact", "fc324d3547104276b827a68afc52ff2a11cc49c9", "v5.0.0")
DEPLOY_PAGES = Action("actions/deploy-pages", "cd2ce8fcbc39b97be8ca5fce6e763baed58fa128", "v5.0.0")


# -- the workflow as data -----------------------------------------------------


def workflow(matrix: Matrix) -> dict[str, Any]:
    ci = matrix.ci
    push: dict[str, Any] = {"branches": list(ci.push_branches)} if ci.push_branches else {}
    on: dict[str, Any] = {"push": push, "pull_request": {}}
    if ci.schedule:
        on["schedule"] = [{"cron": ci.schedule}]
    on["workflow_dispatch"] = {
        "inputs": {
            "cells": {
                "description": "cell ids or globs to run, space-separated (empty: every cell)",
                "required": False,
                "default": "",
                "type": "string",
            }
        }
    }
    return {
        "name": "compat matrix",
        "on": on,
        "permissions": {"contents": Commented("read", "to check out; only the pages job widens this")},
        "concurrency": {
            "group": "${{ github.workflow }}-${{ github.head_ref || github.ref }}",
            "cancel-in-progress": "${{ github.event_name == 'pull_request' }}",
        },
        # One run id for every attempt, so a re-run job's cells join the same table.
        "env": {"COMPAT_RUN_ID": "${{ github.run_id }}"},
        "jobs": {
            "plan": plan_job(),
            "images": images_job(),
            "cell": cell_job(cell_timeout_minutes(matrix)),
            "report": report_job(),
            "pages": pages_job(),
        },
    }


def cell_timeout_minutes(matrix: Matrix) -> int:
    jobs = planning.plan(matrix, matrix.cells()).jobs
    per_job = max((len(j.cells) for j in jobs), default=1)
    return SETUP_MINUTES + math.ceil(per_job * matrix.timeouts.per_cell / 60)


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
        "outputs": {"jobs": "${{ steps.plan.outputs.jobs }}", "images": "${{ steps.plan.outputs.images }}"},
        "steps": [
            *_setup_steps(),
            {
                "id": "plan",
                "name": "compat plan --json",
                # n/a cells (excluded, refused by the target's metadata) get no
                # runner: their results are recorded here. The dispatch input is
                # passed through the environment, never pasted into the script.
                "env": {"CELLS": "${{ inputs.cells }}"},
                "run": _script(
                    'read -ra cells <<< "${CELLS:-}"',
                    'uv run compat plan --json --record-na reports/raw "${cells[@]}" > plan.json',
                    'echo "jobs=$(jq -c .jobs plan.json)" >> "$GITHUB_OUTPUT"',
                    'echo "images=$(jq -c .images plan.json)" >> "$GITHUB_OUTPUT"',
                ),
            },
            _upload_raw("raw-plan-${{ github.run_attempt }}", "ignore"),
        ],
    }


def _upload_raw(name: str, if_missing: str) -> dict[str, Any]:
    return {
        "name": "Upload raw results",
        "if": "${{ !cancelled() }}",
        "uses": UPLOAD,
        "with": {
            # Named per attempt: a re-run job adds its results beside the
            # first attempt's, and the report takes the newest of each cell.
            "name": name,
            "path": "reports/raw/",
            "if-no-files-found": if_missing,
            "retention-days": 14,
        },
    }


def images_job() -> dict[str, Any]:
    return {
        "name": "image ${{ matrix.name }}",
        "needs": "plan",
        "if": "${{ needs.plan.outputs.images != '[]' }}",
        "runs-on": RUNS_ON,
        "timeout-minutes": IMAGE_MINUTES,
        "strategy": {"fail-fast": False, "matrix": {"include": "${{ fromJSON(needs.plan.outputs.images) }}"}},
        "steps": [
            *_setup_steps(),
            {
                "id": "cache",
                "name": "Restore the newest image of this kind",
                "uses": CACHE_RESTORE,
                "with": {
                    "path": IMAGE_CACHE,
                    "key": "images-${{ matrix.name }}-${{ github.run_id }}",
                    "restore-keys": "images-${{ matrix.name }}-",
                },
            },
            {
                "name": "Load it",
                "if": "${{ steps.cache.outputs.cache-matched-key != '' }}",
                "run": f"docker load -i {IMAGE_TAR}",
            },
            {
                "id": "build",
                "name": "compat images (built only when its inputs changed)",
                "env": {"PYTHON": "${{ matrix.python }}", "GROUP": "${{ matrix.group }}"},
                "run": _script(
                    'uv run compat images --python "$PYTHON" --group "$GROUP" --pull '
                    f'--save {IMAGE_TAR} --github-output "$GITHUB_OUTPUT"',
                ),
            },
            {
                "name": "Save the rebuilt image",
                "if": "${{ steps.build.outputs.built == 'true' }}",
                "uses": CACHE_SAVE,
                "with": {"path": IMAGE_CACHE, "key": "images-${{ matrix.name }}-${{ steps.build.outputs.key }}"},
            },
            {
                "name": "Hand it to the cell jobs",
                "uses": UPLOAD,
                "with": {
                    "name": "image-${{ matrix.name }}",
                    "path": IMAGE_TAR,
                    "retention-days": 1,
                    "overwrite": True,
                },
            },
        ],
    }


def cell_job(timeout_minutes: int) -> dict[str, Any]:
    return {
        "name": "${{ matrix.name }}",
        "needs": ["plan", "images"],
        "if": "${{ !cancelled() && needs.plan.result == 'success' && needs.plan.outputs.jobs != '[]' }}",
        "runs-on": RUNS_ON,
        "timeout-minutes": timeout_minutes,
        "strategy": {
            "fail-fast": False,
            "matrix": {"include": "${{ fromJSON(needs.plan.outputs.jobs) }}"},
        },
        "steps": [
            *_setup_steps(),
            {
                "name": "Download its image",
                "uses": DOWNLOAD,
                "with": {"name": "image-${{ matrix.images }}", "path": IMAGE_CACHE},
            },
            {"name": "Load it", "run": f"docker load -i {IMAGE_TAR}"},
            {
                "name": "nox",
                "env": {"NOX_SESSIONS": "${{ matrix.sessions }}"},
                # Session names are passed through the environment, never
                # pasted into the script, so no value can become shell code.
                # Each cell prints its status, counts and failures, folds its
                # pytest output into a group and annotates failing tests.
                "run": _script(
                    'read -ra sessions <<< "$NOX_SESSIONS"',
                    'uv run nox -s "${sessions[@]}"',
                ),
            },
            _upload_raw("raw-${{ matrix.name }}-${{ github.run_attempt }}", "warn"),
        ],
    }


def report_job() -> dict[str, Any]:
    return {
        "name": "report",
        "needs": ["plan", "cell"],
        "if": "${{ !cancelled() && needs.plan.result == 'success' }}",
        "runs-on": RUNS_ON,
        "timeout-minutes": 15,
        "outputs": {"publish": PUBLISH},
        "steps": [
            *_setup_steps(),
            {
                "name": "Download raw results",
                "uses": DOWNLOAD,
                "with": {"pattern": "raw-*", "path": ARTIFACTS},
            },
            {
                "name": "Merge the newest attempt of each cell",
                "run": f"uv run compat merge {ARTIFACTS} --out reports/raw",
            },
            {
                "id": "site",
                "name": "Restore the published report (baseline and history)",
                "uses": CACHE_RESTORE,
                "with": {"path": SITE, "key": "compat-site-${{ github.run_id }}", "restore-keys": "compat-site-"},
            },
            {
                "name": "compat report",
                # The baseline is the last published compat.json; the Markdown
                # table goes to the job summary; pull requests fail on regressions.
                "run": _script(
                    f'args=(--raw reports/raw --out {SITE} --summary "$GITHUB_STEP_SUMMARY")',
                    f"if [ -f {SITE}/compat.json ]; then args+=(--baseline {SITE}/compat.json);"
                    " else args+=(--baseline /dev/null); fi",
                    'if [ "$GITHUB_EVENT_NAME" = pull_request ]; then args+=(--fail-on-regression); fi',
                    'uv run compat report "${args[@]}"',
                ),
            },
            {
                "name": "Upload report",
                "if": "${{ !cancelled() }}",
                "uses": UPLOAD,
                "with": {"name": "compat-report-${{ github.run_attempt }}", "path": f"{SITE}/"},
            },
            {
                "name": "Keep it as the next baseline and history",
                "if": PUBLISH,
                "uses": CACHE_SAVE,
                "with": {"path": SITE, "key": "compat-site-${{ github.run_id }}-${{ github.run_attempt }}"},
            },
            {
                "name": "Stage it for GitHub Pages",
                "if": PUBLISH,
                "uses": UPLOAD_PAGES,
                "with": {"path": f"{SITE}/"},
            },
        ],
    }


def pages_job() -> dict[str, Any]:
    return {
        "name": "publish",
        "needs": "report",
        "if": "${{ needs.report.outputs.publish == 'true' }}",
        "runs-on": RUNS_ON,
        "timeout-minutes": 10,
        "permissions": {
            "pages": Commented("write", "to deploy the report"),
            "id-token": Commented("write", "deploy-pages proves the workflow's identity"),
        },
        "environment": {"name": "github-pages", "url": "${{ steps.deploy.outputs.page_url }}"},
        "steps": [{"id": "deploy", "uses": DEPLOY_PAGES}],
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
