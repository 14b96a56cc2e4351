"""Generate .github/workflows/matrix.yml from a config, deterministically.

Jobs: ``plan`` runs ``compat plan --json`` and records the n/a cells (they
get no runner); ``images`` builds each (python, group) image once, on a
cache keyed by the image's own content hash, and hands it to the cell jobs
as an artifact; ``cell`` fans out over the plan's jobs (cells of one image
each) and runs them with ``compat run``; ``report`` merges the newest
attempt of every cell, writes the table and the job summary, and on the
default branch publishes the HTML report, the badge and the history to
GitHub Pages (``pages``). Nothing is ever pushed to a branch.

Every job installs exactly the spawn-compat that wrote the workflow (its
version from an index, its commit, or its wheel; ``[ci] install`` names
another) with ``uv tool install``, so the workflow works in any repository,
not only in a spawn-compat checkout, and calls compat's own CLI with the
config's path: no noxfile and no project environment is needed.

Images: the cache is keyed by the hash of the tags ``compat images``
computes (base image id, Dockerfile, the target's lock and install script),
and restored by prefix. The job always pulls the registry base, so a
republished base or a changed lock makes new tags, which are built and
saved under a new key; unchanged ones are found and nothing is built.

The YAML is written by ``_emit`` below, a small emitter for the subset a
workflow needs (mappings, lists, strings, ints, bools, comments), because
pinned actions want their version in a comment, which JSON cannot carry,
and the output must be byte-for-byte stable for ``--check``.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError, WorkflowStale
from ..matrix import Matrix
from ..matrix import sessions as planning
from ..paths import git_root

WORKFLOW_PATH = Path(".github/workflows/matrix.yml")
RUNS_ON = "ubuntu-24.04"
HOST_PYTHON = "3.13"
# An image build on a cold cache: a debootstrap base and a uv sync.
IMAGE_MINUTES = 30
SETUP_MINUTES = 10
IMAGE_CACHE = ".cache/images"
IMAGE_TAR = f"{IMAGE_CACHE}/image.tar"
DISTRIBUTION = "spawn-compat"
# Where the table is published from: the repository's default branch, whatever its name.
PUBLISH = (
    "${{ github.event_name == 'schedule' || ((github.event_name == 'push' || "
    "(github.event_name == 'workflow_dispatch' && inputs.cells == '')) && "
    "github.ref_name == github.event.repository.default_branch) }}"
)
# A pull request from a branch of this repository is already run by that branch's push.
NOT_A_SAME_REPO_PR = (
    "${{ github.event_name != 'pull_request' || github.event.pull_request.head.repo.full_name != github.repository }}"
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
ACTIONS = (CHECKOUT, SETUP_UV, CACHE_RESTORE, CACHE_SAVE, UPLOAD, DOWNLOAD, UPLOAD_PAGES, DEPLOY_PAGES)


@dataclass(frozen=True)
class Context:
    """Where things are, as the workflow sees them (paths relative to the repository's root)."""

    config: str
    raw: str
    site: str
    artifacts: str
    install: str
    uv_version: str

    @property
    def compat(self) -> str:
        return f"compat --matrix {shlex.quote(self.config)}"


def context(matrix: Matrix, *, warn: bool = False) -> Context:
    here = Path(matrix.source).resolve().parent if matrix.source else Path.cwd()
    root = git_root(here) or here

    def rel(path: Path) -> str:
        path = path.resolve()
        if not path.is_relative_to(root):
            raise ConfigError(f"{path} is outside the repository {root}: the workflow cannot reach it")
        return path.relative_to(root).as_posix() or "."

    config = rel(Path(matrix.source)) if matrix.source else "compat.toml"
    return Context(
        config=config,
        raw=rel(matrix.raw_dir),
        site=rel(matrix.out_dir / "site"),
        artifacts=rel(matrix.out_dir / "artifacts"),
        install=install_spec(matrix, root, warn=warn),
        uv_version=matrix.ci.uv_version or running_uv_version(),
    )


def install_spec(matrix: Matrix, root: Path, *, warn: bool = False) -> str:
    """What ``uv tool install`` gets in the workflow: ``[ci] install``, else this very spawn-compat."""
    if matrix.ci.install:
        return matrix.ci.install
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"$.ci.install: {DISTRIBUTION} is not installed here; name what the workflow installs"
        ) from None
    direct = dist.read_text("direct_url.json")
    if not direct:
        return f"{DISTRIBUTION}=={dist.version}"  # from an index: that exact version
    info = json.loads(direct)
    url = str(info.get("url", ""))
    vcs = info.get("vcs_info") or {}
    if vcs.get("commit_id"):
        return f"{DISTRIBUTION} @ git+{url}@{vcs['commit_id']}"
    if not url.startswith("file:"):
        return f"{DISTRIBUTION} @ {url}"
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if path.is_relative_to(root):
        inside = path.relative_to(root).as_posix()
        return "." if inside in ("", ".") else f"./{inside}"
    if "dir_info" in info:
        raise ConfigError(
            f"$.ci.install: {DISTRIBUTION} is installed from the directory {path}, which a GitHub runner cannot "
            "reach; name what the workflow installs (a version, a git URL, or a wheel in the repository)"
        )
    if warn:
        print(
            f"compat workflow: the jobs install {DISTRIBUTION} from {path}, which only this machine has; "
            "commit the wheel and set [ci] install to its path, or install spawn-compat from an index or git",
            file=sys.stderr,
        )
    return str(path)


def running_uv_version() -> str:
    uv = shutil.which("uv")
    try:
        proc = subprocess.run([uv or "uv", "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        proc = None
    m = re.search(r"\b(\d+\.\d+\.\d+)\b", proc.stdout if proc else "")
    if m is None:
        raise ConfigError("$.ci.uv-version: no uv on PATH to pin; set the uv version the workflow's jobs use")
    return m.group(1)


# -- the workflow as data -----------------------------------------------------


def workflow(matrix: Matrix, ctx: Context) -> dict[str, Any]:
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
            "plan": plan_job(ctx, every_branch=not ci.push_branches),
            "images": images_job(ctx),
            "cell": cell_job(ctx, cell_timeout_minutes(matrix)),
            "report": report_job(ctx),
            "pages": pages_job(),
        },
    }


def cell_timeout_minutes(matrix: Matrix) -> int:
    jobs = planning.plan(matrix, matrix.cells()).jobs
    per_job = max((len(j.cells) for j in jobs), default=1)
    return SETUP_MINUTES + math.ceil(per_job * matrix.timeouts.per_cell / 60)


def _setup_steps(ctx: Context) -> list[dict[str, Any]]:
    return [
        {"uses": CHECKOUT, "with": {"persist-credentials": False}},
        {
            "uses": SETUP_UV,
            "with": {
                "version": ctx.uv_version,
                "python-version": HOST_PYTHON,
                "enable-cache": True,
                "cache-dependency-glob": ctx.config,
            },
        },
        {
            "name": "Install spawn-compat",
            # The spec goes through the environment, never pasted into the script.
            "env": {"SPAWN_COMPAT": ctx.install},
            "run": _script(
                'uv tool install "$SPAWN_COMPAT"',
                'uv tool dir --bin >> "$GITHUB_PATH"',
            ),
        },
    ]


def plan_job(ctx: Context, *, every_branch: bool) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "plan",
        "runs-on": RUNS_ON,
        "timeout-minutes": 10,
        "outputs": {"jobs": "${{ steps.plan.outputs.jobs }}", "images": "${{ steps.plan.outputs.images }}"},
        "steps": [
            *_setup_steps(ctx),
            {
                "id": "plan",
                "name": "compat plan --json",
                # n/a cells (excluded, refused by the target's metadata) get no
                # runner: their results are recorded here. The dispatch input is
                # passed through the environment, never pasted into the script.
                "env": {"CELLS": "${{ inputs.cells }}"},
                "run": _script(
                    'read -ra cells <<< "${CELLS:-}"',
                    f'{ctx.compat} plan --json --record-na {shlex.quote(ctx.raw)} "${{cells[@]}}" > plan.json',
                    'echo "jobs=$(jq -c .jobs plan.json)" >> "$GITHUB_OUTPUT"',
                    'echo "images=$(jq -c .images plan.json)" >> "$GITHUB_OUTPUT"',
                ),
            },
            _upload_raw(ctx, "raw-plan-${{ github.run_attempt }}", "ignore"),
        ],
    }
    if every_branch:
        # Pushes to every branch run it, so a pull request from one of them would run twice.
        job = {"name": job["name"], "if": NOT_A_SAME_REPO_PR, **{k: v for k, v in job.items() if k != "name"}}
    return job


def _upload_raw(ctx: Context, name: str, if_missing: str) -> dict[str, Any]:
    return {
        "name": "Upload raw results",
        "if": "${{ !cancelled() }}",
        "uses": UPLOAD,
        "with": {
            # Named per attempt: a re-run job adds its results beside the
            # first attempt's, and the report takes the newest of each cell.
            "name": name,
            "path": f"{ctx.raw}/",
            "if-no-files-found": if_missing,
            "retention-days": 14,
        },
    }


def images_job(ctx: Context) -> dict[str, Any]:
    return {
        "name": "image ${{ matrix.name }}",
        "needs": "plan",
        "if": "${{ needs.plan.outputs.images != '[]' }}",
        "runs-on": RUNS_ON,
        "timeout-minutes": IMAGE_MINUTES,
        "strategy": {"fail-fast": False, "matrix": {"include": "${{ fromJSON(needs.plan.outputs.images) }}"}},
        "steps": [
            *_setup_steps(ctx),
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
                    f'{ctx.compat} images --python "$PYTHON" --group "$GROUP" --pull '
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


def cell_job(ctx: Context, timeout_minutes: int) -> dict[str, Any]:
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
            *_setup_steps(ctx),
            {
                "name": "Download its image",
                "uses": DOWNLOAD,
                "with": {"name": "image-${{ matrix.images }}", "path": IMAGE_CACHE},
            },
            {"name": "Load it", "run": f"docker load -i {IMAGE_TAR}"},
            {
                "name": "compat run",
                "env": {"CELLS": "${{ join(matrix.cells, ' ') }}"},
                # Cell ids are passed through the environment, never pasted
                # into the script, so no value can become shell code. Each cell
                # prints its status, counts and failures, folds its pytest
                # output into a group and annotates failing tests.
                "run": _script(
                    'read -ra cells <<< "$CELLS"',
                    f'{ctx.compat} run "${{cells[@]}}" --no-progress --out {shlex.quote(ctx.raw)}',
                ),
            },
            _upload_raw(ctx, "raw-${{ matrix.name }}-${{ github.run_attempt }}", "warn"),
        ],
    }


def report_job(ctx: Context) -> dict[str, Any]:
    site = shlex.quote(ctx.site)
    return {
        "name": "report",
        "needs": ["plan", "cell"],
        "if": "${{ !cancelled() && needs.plan.result == 'success' }}",
        "runs-on": RUNS_ON,
        "timeout-minutes": 15,
        "outputs": {"publish": PUBLISH},
        "steps": [
            *_setup_steps(ctx),
            {
                "name": "Download raw results",
                "uses": DOWNLOAD,
                "with": {"pattern": "raw-*", "path": ctx.artifacts},
            },
            {
                "name": "Merge the newest attempt of each cell",
                "run": f"{ctx.compat} merge {shlex.quote(ctx.artifacts)} --out {shlex.quote(ctx.raw)}",
            },
            {
                "id": "site",
                "name": "Restore the published report (baseline and history)",
                "uses": CACHE_RESTORE,
                "with": {"path": ctx.site, "key": "compat-site-${{ github.run_id }}", "restore-keys": "compat-site-"},
            },
            {
                "name": "compat report",
                # The baseline is the last published compat.json; the Markdown
                # table goes to the job summary. A run that publishes writes the
                # table at the site's root even when cells are missing (it says
                # which); every other run fails on regressions.
                "env": {"PUBLISH": PUBLISH},
                "run": _script(
                    f'args=(--raw {shlex.quote(ctx.raw)} --out {site} --summary "$GITHUB_STEP_SUMMARY")',
                    f"if [ -f {site}/compat.json ]; then args+=(--baseline {site}/compat.json);"
                    " else args+=(--baseline /dev/null); fi",
                    'if [ "$PUBLISH" = true ]; then args+=(--publish); else args+=(--fail-on-regression); fi',
                    f'{ctx.compat} report "${{args[@]}}"',
                ),
            },
            {
                "name": "Upload report",
                "if": "${{ !cancelled() }}",
                "uses": UPLOAD,
                "with": {"name": "compat-report-${{ github.run_attempt }}", "path": f"{ctx.site}/"},
            },
            {
                "name": "Keep it as the next baseline and history",
                "if": PUBLISH,
                "uses": CACHE_SAVE,
                "with": {"path": ctx.site, "key": "compat-site-${{ github.run_id }}-${{ github.run_attempt }}"},
            },
            {
                "name": "Stage it for GitHub Pages",
                "if": PUBLISH,
                "uses": UPLOAD_PAGES,
                "with": {"path": f"{ctx.site}/"},
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


def header(ctx: Context) -> str:
    command = f"{ctx.compat} workflow"
    return (
        f"# Generated by `compat workflow` from {ctx.config}: do not edit by hand.\n"
        f"# Regenerate with `{command}` (from the repository's root);\n"
        f"# `{command} --check` fails while this file is stale.\n"
    )


def render(matrix: Matrix, *, warn: bool = False) -> str:
    ctx = context(matrix, warn=warn)
    return header(ctx) + "".join(_emit(workflow(matrix, ctx), 0))


def write(matrix: Matrix, path: Path) -> None:
    text = render(matrix, warn=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def check(matrix: Matrix, path: Path) -> None:
    ctx = context(matrix)
    want = header(ctx) + "".join(_emit(workflow(matrix, ctx), 0))
    command = f"{ctx.compat} workflow"
    try:
        have = path.read_text()
    except OSError:
        raise WorkflowStale(f"{path} is missing; run `{command}` to write it") from None
    if have != want:
        first = _first_difference(have, want)
        raise WorkflowStale(f"{path} is stale ({first}); run `{command}` and commit the result")


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
