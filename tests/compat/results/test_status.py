"""One status vocabulary: every view's codes, glyphs and sets come from compat.results.status."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from compat.report import history, html
from compat.results import ledger as L
from compat.results import status as S

ASSETS = Path(html.__file__).with_name("assets")


def test_every_status_the_types_allow_has_exactly_one_row():
    assert {s.name for s in S.TESTS} == set(typing.get_args(S.TestStatus)) | {"n/a"}
    assert {s.name for s in S.CELLS} == set(typing.get_args(S.CellStatus))
    codes = [s.code for s in (*S.TESTS, S.STRICT_XPASS)]
    assert len(codes) == len(set(codes)) and all(len(c) == 1 and c != S.ABSENT for c in codes)
    assert len({s.code for s in S.CELLS}) == len(S.CELLS)
    # The ledger's schema is the table's: a status name the table lacks would not decode.
    schema = L.schema()["$defs"]
    test_status = schema["LedgerResult"]["properties"]["status"]["anyOf"]
    assert {v for part in test_status for v in part["enum"]} == set(S.TEST) - {"xpassed-strict"}
    assert set(schema["LedgerCell"]["properties"]["status"]["enum"]) == set(S.CELL)


def test_the_sets_follow_the_flags():
    assert {"failed", "error", "timeout"} == S.FAILING
    assert {"passed"} == S.PASSING
    assert {"excluded", "unsupported", "unavailable"} == S.NA_CELLS
    assert {"ok", "excluded", "unsupported", "unavailable"} == S.FINE_CELLS
    assert S.PROBLEM_CELLS == ("error", "timeout", "failing", "skipped", "leaked")  # worst first
    assert S.row_of("xpassed", strict=True) is S.STRICT_XPASS and S.row_of("xpassed", strict=False).problem is False


def test_the_history_and_the_page_use_the_tables_codes():
    rec = history.Record(run_id="r", timestamp=0.0, cells={"a": "ok", "b": "ok"}, tests={"t": "F "})
    assert history.status_in(rec, "t", "a") == "failed" and history.status_in(rec, "t", "b") is None
    data = S.page_data()
    assert data["codes"] == {s.name: s.code for s in (*S.TESTS, S.STRICT_XPASS)}
    assert data["names"][S.ABSENT] == "not collected"


def test_the_pages_script_and_css_spell_no_status_of_their_own():
    script = (ASSETS / "report.js").read_text()
    # No hand-copied table of codes or names: the script reads D.status.
    assert "D.status" in script
    assert not re.search(r"\{\s*p\s*:\s*'passed'", script)
    assert not re.search(r"'(passed|failed|xfailed|flaky|not-run)'", script)
    css = (ASSETS / "report.css").read_text()
    for row in (*S.TESTS, S.STRICT_XPASS):
        assert f".t-{row.css}" in css, row.name
    for row in S.CELLS:
        assert f".c-{row.css}" in css, row.name
