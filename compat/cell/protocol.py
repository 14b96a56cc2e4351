"""The names both sides of the cell boundary use: modules, files, env, tags.

Imported by the in-cell code (stdlib only) and by the host, so neither
re-spells a string the other reads.
"""

from __future__ import annotations

ENTRY_MODULE = "compat.cell.entry"
PLUGIN_MODULE = "compat.cell.plugin"

# Files of a cell's raw directory.
EVENTS = "events.jsonl"
JUNIT = "junit.xml"
OUTPUT = "output.log"
REAP = "reap.json"
CENSUS = "census.json"
DUMPS = "dumps"
META = "meta.json"
SIGNALS = "signals.json"  # who was asked for a stack dump at a timeout, and who could not be
FORENSICS = "forensics.json"  # what kind of hang a timed-out cell was in (compat.cell.forensics)
TASKS_SUFFIX = "-tasks"  # dumps/<title>-tasks-<pid>.txt: a process's trio task tree

# Environment the entry gives pytest (and the plugin reads).
ENV_EVENTS = "COMPAT_EVENTS_FILE"
ENV_PER_TEST = "COMPAT_PER_TEST_TIMEOUT"
ENV_SCOPE = "COMPAT_SCOPE"  # "all": every process is the cell's (a container); "session": ours only
ENV_DUMP_DIR = "BACKENDS_DUMP_DIR"

# Tagged lines on the entry's stdout: "<TAG> <json>".
TAG_ENV = "COMPAT-ENV"
TAG_PYTEST = "COMPAT-PYTEST"
TAG_DONE = "COMPAT-DONE"
TAGS = (TAG_ENV, TAG_PYTEST, TAG_DONE)

EXPIRED = 124  # what timeout(1) exits with: the cell outlived its runner's bound
