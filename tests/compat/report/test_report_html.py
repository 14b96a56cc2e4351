"""index.html: self-contained, bounded, and working in a real headless Chromium.

The browser tests need Debian's ``chromium`` package; they skip without it,
except under CI=true where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from compat.report import build_report
from compat.report.html import PAGE_LIMIT, render_html
from compat.report.view import KnownIssues
from compat.results import ledger as L
from tests.compat.report.test_report import MATRIX, constructed

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return exe


def browse(page: Path, fragment: str = "", *extra: str) -> str:
    """Load the page in a fresh headless Chromium; return the DOM after its scripts ran."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                *extra,
                "--dump-dom",
                page.resolve().as_uri() + (f"#{fragment}" if fragment else ""),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(page: Path, png: Path, fragment: str = "") -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                "--window-size=1400,1000",
                f"--screenshot={png}",
                page.resolve().as_uri() + (f"#{fragment}" if fragment else ""),
            ],
            capture_output=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=True,
        )


def without_scripts(dom: str) -> str:
    return re.sub(r"<script.*?</script>", "", dom, flags=re.S)


def rows(dom: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr data-test="([^"]*)" data-backend="([^"]*)"', without_scripts(dom))


def shown(dom: str) -> tuple[int, int]:
    m = re.search(r'id="shown" data-matching="(\d+)" data-shown="(\d+)"', dom)
    assert m, "the table script did not run"
    return int(m.group(1)), int(m.group(2))


@pytest.fixture
def page(tmp_path: Path) -> Path:
    raw, out = tmp_path / "raw", tmp_path / "reports"
    constructed(raw)
    build_report(
        raw, out, baseline=Path("/dev/null"), summary=None, publish=True, fail_on_regression=False, matrix=MATRIX
    )
    return out / "index.html"


def test_page_is_self_contained(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text


def test_grid_and_filters_in_a_browser(page: Path, tmp_path: Path) -> None:
    dom = browse(page)
    grid = dict(re.findall(r'data-cell="([^"]+)" data-status="([^"]+)"', dom))
    assert grid == {
        "py3.13-base-trio-capfd": "failing",
        "py3.13-base-trio-capsys": "ok",
        "py3.14-base-trio-capfd": "timeout",
        "py3.14-base-trio-capsys": "leaked",
        "py3.13-base-subint-capfd": "unsupported",
        "py3.13-base-subint-capsys": "unavailable",
        "py3.14-base-subint-capfd": "error",
        "py3.14-base-subint-capsys": "error",
    }
    # Default view hides all-green rows.
    default = rows(dom)
    assert ("t.py::test_fd", "trio") in default and ("t.py::test_pass", "trio") not in default
    assert "<details><summary>t.py::test_fd</summary>" in dom and "AssertionError: wrong fd" in dom

    everything = rows(browse(page, "green=show"))
    assert ("t.py::test_pass", "trio") in everything and len(everything) > len(default)

    only_timeouts = rows(browse(page, "backend=trio&status=timeout"))
    assert only_timeouts == [("t.py::test_fd", "trio")]
    py313 = browse(page, "python=3.13")
    assert "3.14" not in re.search(r"<table id=\"tests\">.*?</thead>", py313, re.S).group(0)
    assert ("t.py::test_fd", "trio") in rows(py313)

    png = tmp_path / "index.png"
    screenshot(page, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    keep = os.environ.get("COMPAT_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / "index.png")


def big_ledger(n_tests: int = 5000) -> L.Ledger:
    axes = {
        "python": ("3.13", "3.14"),
        "group": ("base", "greenback", "cffi"),
        "backend": ("trio", "forkserver", "subint"),
        "capture": ("fd", "sys", "no"),
    }
    cells = tuple(
        L.LedgerCell(id=f"py{p}-{g}-{b}-cap{c}", python=p, group=g, backend=b, capture=c, status="failing")
        for p in axes["python"]
        for g in axes["group"]
        for b in axes["backend"]
        for c in axes["capture"]
    )
    tests = []
    for i in range(n_tests):
        results = {}
        for j, cell in enumerate(cells):
            if i % 10 == 0 and j % 7 == 0:
                results[cell.id] = L.LedgerResult(
                    status="failed", reason=f"AssertionError {i}", message="Traceback\n" + "frame line\n" * 400
                )
            elif i % 13 == 0:
                results[cell.id] = L.LedgerResult(status="xfailed", reason="known")
            else:
                results[cell.id] = L.LedgerResult(status="passed")
        tests.append(
            L.LedgerTest(
                nodeid=f"tests/backends/test_mod{i % 40}.py::test_case_{i}[param]",
                results=results,
                why="capture-sensitive: fails only with --capture=fd" if i % 10 == 0 else "",
            )
        )
    return L.Ledger(run_id="big", timestamp=0.0, axes=axes, cells=cells, tests=tuple(tests))


def test_five_thousand_tests_fit_under_one_megabyte(tmp_path: Path) -> None:
    ledger = big_ledger()
    html = render_html(ledger, KnownIssues(None))
    backend_of = {c.id: c.backend for c in ledger.cells}
    not_green = {
        (t.nodeid, backend_of[cid]) for t in ledger.tests for cid, r in t.results.items() if r.status != "passed"
    }
    assert len(html.encode()) < PAGE_LIMIT
    assert "clipped; full text in compat.json" in html
    page = tmp_path / "index.html"
    page.write_text(html)
    matching, displayed = shown(browse(page))
    assert matching == len(not_green)
    matching_all, displayed_all = shown(browse(page, "green=show&all=1"))
    assert matching_all == 15000 and displayed_all == 15000
    assert displayed == min(matching, 500)


MEASURE = (
    "<script>document.body.dataset.scrollWidth=document.documentElement.scrollWidth;"
    "document.body.dataset.innerWidth=window.innerWidth;</script></body>"
)


def measured(page: Path, width: int, tmp_path: Path) -> tuple[int, int]:
    """(page scroll width, window width) at a window ``width`` px wide, after the page's scripts ran."""
    probe = tmp_path / f"probe-{width}.html"
    probe.write_text(page.read_text().replace("</body>", MEASURE))
    dom = browse(probe, "", f"--window-size={width},900")
    m = re.search(r'data-scroll-width="(\d+)" data-inner-width="(\d+)"', dom)
    assert m, "the measuring script did not run"
    return int(m.group(1)), int(m.group(2))


# 500 px: the narrowest window headless Chromium opens, phone-sized.
@pytest.mark.parametrize("width", [1280, 500], ids=["desktop", "phone"])
def test_no_page_wide_horizontal_scroll(page: Path, tmp_path: Path, width: int) -> None:
    scroll, inner = measured(page, width, tmp_path)
    assert inner <= width and scroll <= inner, (scroll, inner)
    png = tmp_path / f"index-{width}.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},1400", f"--screenshot={png}",
             page.resolve().as_uri()],
            capture_output=True, timeout=120, stdin=subprocess.DEVNULL, check=True,
        )  # fmt: skip
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    if keep := os.environ.get("COMPAT_SCREENSHOT_DIR"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)


def test_an_empty_filter_says_so_and_the_grid_follows_the_filters(page: Path) -> None:
    nothing = browse(page, "q=no-such-test-anywhere")
    assert "no matching tests" in without_scripts(nothing) and rows(nothing) == []
    assert shown(nothing)[0] == 0

    def dimmed(dom: str) -> set[str]:
        cells = re.findall(r'<td class="([^"]*)" data-cell="([^"]+)"', without_scripts(dom))
        return {cell for cls, cell in cells if "dim" in cls.split()}

    everything = {c for _, c in re.findall(r'<td class="([^"]*)" data-cell="([^"]+)"', without_scripts(nothing))}
    assert dimmed(browse(page)) == set()
    subint = dimmed(browse(page, "backend=subint"))
    assert subint == {c for c in everything if "-trio-" in c}
    timeouts = dimmed(browse(page, "status=timeout"))
    assert everything - timeouts == {"py3.14-base-trio-capfd"}


def test_glyphs_need_no_emoji_font(page: Path) -> None:
    # Emoji (U+1F000 and up) and the variation selector need an emoji font; the
    # page's glyphs are letters, Dingbats check marks and punctuation that any text font has.
    text = page.read_text()
    emoji = {ch for ch in text if ord(ch) >= 0x1F000 or ch == "\ufe0f"}
    assert emoji == set()


# GitHub's Markdown column on a repository page, and its table styling.
GITHUB_COLUMN_PX = 1012
GITHUB_CSS = (
    "body{margin:0}article{width:" + str(GITHUB_COLUMN_PX) + "px;font:16px/1.5 -apple-system,'Segoe UI',"
    "Helvetica,Arial,sans-serif}"
    "table{border-collapse:collapse;display:block;width:max-content;max-width:100%;overflow:auto}"
    "td,th{padding:6px 13px;border:1px solid #d0d7de}code{font:85% ui-monospace,monospace}"
)
WIDEST = (
    "<script>let w=0;for(const t of document.querySelectorAll('table'))w=Math.max(w,t.scrollWidth);"
    "document.body.dataset.widest=w;</script></body>"
)


def widest_table_px(markdown: str, tmp_path: Path) -> int:
    """The widest table of ``markdown`` as GitHub lays it out (markdown-it's GFM tables, GitHub's CSS)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    page = tmp_path / "md.html"
    page.write_text(
        f"<!doctype html><meta charset=utf-8><style>{GITHUB_CSS}</style><body><article>{body}</article>{WIDEST}"
    )
    dom = browse(page, "", f"--window-size={GITHUB_COLUMN_PX + 40},900")
    m = re.search(r'data-widest="(\d+)"', dom)
    assert m, "the measuring script did not run"
    return int(m.group(1))


def test_the_markdown_of_the_full_matrix_fits_githubs_column(tmp_path: Path) -> None:
    import msgspec

    from compat.matrix import AxesConfig, Matrix
    from compat.report.bench import FULL_AXES, synthetic_matrix

    synthetic_matrix(tmp_path / "raw", tests=100)
    matrix = Matrix(axes=msgspec.convert(FULL_AXES, AxesConfig))
    build_report(
        tmp_path / "raw", tmp_path / "out", baseline=Path("/dev/null"), summary=None, publish=True,
        fail_on_regression=False, matrix=matrix,
    )  # fmt: skip
    md = (tmp_path / "out" / "COMPATIBILITY.md").read_text()
    assert len(md.encode()) < 30 * 1024
    assert widest_table_px(md, tmp_path) <= GITHUB_COLUMN_PX
    # The old layout (python x group x capture as columns) would not fit: the measurement can fail.
    wide = "| backend | " + " | ".join(f"3.1{i % 2}<br>group{i}<br>fd" for i in range(18)) + " |\n|---|" + "---|" * 18
    assert widest_table_px(wide + "\n| **trio** |" + " ✅ |" * 18 + "\n", tmp_path) > GITHUB_COLUMN_PX


STUCK = (
    "<script>{const box=document.querySelector('#tests').parentElement;box.scrollLeft=100000;"
    "const name=document.querySelector('#tests td.name');"
    "document.body.dataset.scrolled=box.scrollLeft;"
    "document.body.dataset.stuck=Math.round(name.getBoundingClientRect().left-box.getBoundingClientRect().left);"
    "document.body.dataset.scrollWidth=document.documentElement.scrollWidth;"
    "document.body.dataset.innerWidth=window.innerWidth;}</script></body>"
)


@pytest.mark.parametrize("width", [1280, 500], ids=["desktop", "phone"])
def test_a_wide_table_scrolls_in_its_own_box_with_the_test_names_kept_in_view(tmp_path: Path, width: int) -> None:
    """54 cells, long node ids: the page never scrolls sideways; the tests table does, inside its box,
    and its first column (the test's name) stays where it is."""
    page = tmp_path / "index.html"
    page.write_text(render_html(big_ledger(300), KnownIssues(None)).replace("</body>", STUCK))
    dom = browse(page, "", f"--window-size={width},900")
    m = re.search(r'data-scrolled="(\d+)" data-stuck="(-?\d+)" data-scroll-width="(\d+)" data-inner-width="(\d+)"', dom)
    assert m, "the probe did not run"
    scrolled, stuck, scroll_width, inner = map(int, m.groups())
    assert scroll_width <= inner, (scroll_width, inner)  # no page-wide sideways scroll
    assert scrolled > 0  # the table is wider than its box, which scrolls
    assert 0 <= stuck <= 2, stuck  # the name column stayed at the box's left edge


def test_each_cell_and_failing_test_has_its_history_as_a_strip(tmp_path: Path) -> None:
    from compat.report.bench import write_cell

    raw, out = tmp_path / "raw", tmp_path / "reports"
    cells = [c.id for c in MATRIX.cells()]
    for run, (started, outcome) in enumerate([(1.0, "passed"), (2.0, "passed"), (3.0, "failed")]):
        for cell in cells:
            result = {"nodeid": "t.py::test_x", "outcome": outcome if cell == cells[0] else "passed"}
            if outcome == "failed" and cell == cells[0]:
                result["message"] = "E   AssertionError: now it fails"
            write_cell(raw, cell, results=[result], meta_fields={"run_id": f"run{run}", "started": started})
        build_report(raw, out, baseline=Path("/dev/null"), summary=None, publish=True, fail_on_regression=False,
                     matrix=MATRIX)  # fmt: skip
    dom = without_scripts(browse(out / "index.html"))
    section = dom[dom.index('id="history"') :]
    assert section.count('<svg class="strip"') == len(cells)
    # The failing test's strip: its three runs in its cell, the newest one red.
    finding = dom[dom.index('class="finding"') :]
    marks = re.findall(r'<rect[^>]*fill="(#[0-9a-f]+)"><title>(run\d): (\w+)</title>', finding.split("</li>")[0])
    assert marks == [("#2da44e", "run0", "passed"), ("#2da44e", "run1", "passed"), ("#cf222e", "run2", "failed")]
