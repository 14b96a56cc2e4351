"""Every status a test or a cell can have, once: its code, glyphs, colour, rank and meaning.

As Bazel's ``TestStatus`` is one enum every view reads, every view here is
derived from these two tables: the history's one-letter codes, the HTML
page's data (its script gets the table as JSON, never a copy by hand), the
Markdown's emoji, the terminal's colours, which statuses are problems and
which are n/a, and how bad a change is.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

TestStatus = Literal["passed", "failed", "error", "xfailed", "xpassed", "skipped", "timeout", "not-run", "flaky"]
# In the ledger a skip that only says a test belongs to another backend's suite is "n/a".
LedgerStatus = TestStatus | Literal["n/a"]
CellStatus = Literal[
    "ok", "failing", "timeout", "leaked", "skipped", "unsupported", "unavailable", "excluded", "error"
]  # fmt: skip


class Status(NamedTuple):
    name: str
    # One character: history.jsonl and the HTML page's data. Unique within the table.
    code: str
    # Markdown (GitHub draws emoji) and the HTML page (no emoji font needed).
    emoji: str
    glyph: str
    # The terminal's colour (rich), and the HTML's class suffix is the code.
    style: str
    # How bad: a change to a higher rank is a regression; problem lists go worst first.
    rank: int
    meaning: str
    # How a problem list says it: "fails", "times out".
    verb: str = ""
    # A test that broke the run (failing), one that passed, and a result that is a problem to show.
    failing: bool = False
    passing: bool = False
    problem: bool = False
    # Not applicable: the combination or the test does not exist here; never a problem.
    na: bool = False

    @property
    def css(self) -> str:
        """The HTML class suffix (``t-passed``, ``t-na``, ``c-failing``)."""
        return self.name.replace("/", "")


TESTS: tuple[Status, ...] = (
    Status("timeout", "T", "⏱️", "T", "bold red", 6,
           "ran past the per-test bound (stopped, its hang class and stacks attached; the cell went on) "
           "or was running when the cell's bound expired",
           "times out", failing=True, problem=True),
    Status("error", "E", "💥", "E", "bold red", 5,
           "an exception in setup or teardown (a fixture), or the test's process died under it (its cause shown)",
           "errors", failing=True, problem=True),
    Status("failed", "F", "❌", "✗", "bold red", 5, "an assertion or exception in the test body",
           "fails", failing=True, problem=True),
    Status("flaky", "f", "🎲", "~", "yellow", 4, "failed, then passed when re-run in the same cell",
           "is flaky", problem=True),
    Status("xpassed", "X", "🌟", "XP", "yellow", 3,
           "passed despite an xfail marker; a strict marker makes that a failure of the run",
           "passes despite its xfail"),
    Status("not-run", "n", "⬜", "–", "dim", 2,
           "never reached: the cell timed out, or ran out of restarts, before getting to it",
           "was not run"),
    Status("xfailed", "x", "🔶", "xf", "", 1, "failed as declared by an xfail marker (reason shown); not a skip",
           "xfails"),
    Status("skipped", "s", "⏭️", "s", "dim", 1, "skipped by a marker, pytest.skip or importorskip (reason shown)",
           "skipped"),
    Status("passed", ".", "✅", "✓", "green", 0, "the test passed", "passes", passing=True),
    Status("n/a", "a", "➖", "n/a", "dim", 0,
           "skipped because it belongs to another backend's suite (the target's na-skips): not a problem",
           "is n/a", na=True),
)  # fmt: skip
# A strict xpass is an xpass that fails the run: shown apart, recorded as an xpass with strict=true.
STRICT_XPASS = Status("xpassed-strict", "S", "‼️", "XP!", "bold red", 5, "xpassed under a strict marker: fails the run",
                      "passes despite a strict xfail", failing=True, problem=True)  # fmt: skip

CELLS: tuple[Status, ...] = (
    Status("error", "E", "💥", "E", "bold red", 6,
           "the cell could not run or report (a build, the machinery, missing or damaged raw files); reason shown",
           problem=True),
    Status("timeout", "T", "⏱️", "T", "bold red", 5,
           "the cell's wall-clock bound expired; the running test is marked timeout, with its stack dump",
           problem=True),
    Status("failing", "F", "❌", "✗", "bold red", 4, "at least one test failed, errored, timed out or strictly xpassed",
           problem=True),
    Status("skipped", "s", "⏭️", "s", "yellow", 3,
           "no test ran: every test the cell collected was skipped (often a backend that is not installed)",
           problem=True),
    Status("leaked", "L", "💧", "L", "yellow", 2,
           "tests were fine but the reaper or the census found processes, zombies, shm segments, sockets, threads "
           "or sub-interpreters left behind", problem=True),
    Status("unsupported", "U", "🚫", "U", "dim", 1,
           "the target refused this combination (its availability gate or its metadata; reason shown)", na=True),
    Status("unavailable", "-", "➖", "–", "dim", 1, "no interpreter or image for this cell", na=True),
    Status("excluded", "x", "n/a", "n/a", "dim", 0,
           "n/a: an [[exclude]] rule of the config says this combination is meaningless (rule shown)", na=True),
    Status("ok", ".", "✅", "✓", "green", 0,
           "every test passed, xfailed or skipped as declared, and nothing leaked", passing=True),
)  # fmt: skip

TEST = {s.name: s for s in (*TESTS, STRICT_XPASS)}
CELL = {s.name: s for s in CELLS}
BY_CODE = {s.code: s for s in (*TESTS, STRICT_XPASS)}

# The sets the code asks about, derived.
FAILING: frozenset[str] = frozenset(s.name for s in TESTS if s.failing)
PASSING: frozenset[str] = frozenset(s.name for s in TESTS if s.passing)
PROBLEM_TESTS: tuple[str, ...] = tuple(s.name for s in TESTS if s.problem or s.name == "xpassed")  # worst first
NA_CELLS: frozenset[str] = frozenset(s.name for s in CELLS if s.na)
PROBLEM_CELLS: tuple[str, ...] = tuple(s.name for s in CELLS if s.problem)  # worst first
# Cells that need nothing from whoever reads the log: clean, or n/a.
FINE_CELLS: frozenset[str] = frozenset(s.name for s in CELLS if s.passing or s.na)
# Counts in the order a line of them reads.
COUNT_ORDER: tuple[str, ...] = (
    "passed", "failed", "error", "timeout", "xfailed", "xpassed", "skipped", "not-run", "flaky", "n/a"
)  # fmt: skip


def row_of(name: str, *, strict: bool | None = None) -> Status:
    """The row of a test result (a strict xpass has its own)."""
    return STRICT_XPASS if name == "xpassed" and strict else TEST[name]


ABSENT = " "  # in the history's and the page's status strings: the test was not collected in that cell
ABSENT_GLYPH = "·"


def page_data() -> dict[str, object]:
    """What the HTML page's script knows of the statuses (the table, as data): per code its name,
    glyph, class and rank, and each status name's code (the filter's choices)."""
    rows = (*TESTS, STRICT_XPASS)
    return {
        "codes": {s.name: s.code for s in rows},
        "names": {**{s.code: s.name for s in rows}, ABSENT: "not collected"},
        "glyphs": {**{s.code: s.glyph for s in rows}, ABSENT: ABSENT_GLYPH},
        "classes": {**{s.code: s.css for s in rows}, ABSENT: "absent"},
        "ranks": {**{s.code: s.rank for s in rows}, ABSENT: -1},
        "absent": ABSENT,
        "passed": TEST["passed"].code,
    }
