"""junit.xml: the fallback when a cell has no readable events (it flattens xpass into pass)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .events import _tail, failure_reason
from .schema import TestResult
from .status import TestStatus


def parse_junit(data: bytes) -> dict[str, TestResult]:
    root = ET.fromstring(data)
    tests: dict[str, TestResult] = {}
    for case in root.iter("testcase"):
        nodeid = junit_nodeid(case.get("classname", ""), case.get("name", ""))
        tests[nodeid] = _junit_case(case)
    return tests


def junit_nodeid(classname: str, name: str) -> str:
    """Best-effort inverse of pytest's classname mangling."""
    parts = [p for p in classname.split(".") if p]
    classes: list[str] = []
    while parts and parts[-1][:1].isupper():
        classes.insert(0, parts.pop())
    module = "/".join(parts) + ".py" if parts else ""
    return "::".join([p for p in [module, *classes] if p] + [name])


def _junit_case(case: ET.Element) -> TestResult:
    duration = _float(case.get("time"))
    junit_statuses: tuple[tuple[str, TestStatus], ...] = (("failure", "failed"), ("error", "error"))
    for tag, status in junit_statuses:
        node = case.find(tag)
        if node is not None:
            text = (node.get("message") or "") + "\n" + (node.text or "")
            return TestResult(
                status=status, reason=failure_reason(node.get("message"), text),
                message=_tail(text.strip()), duration_s=duration,
            )  # fmt: skip
    skipped = case.find("skipped")
    if skipped is not None:
        message = skipped.get("message") or ""
        if skipped.get("type") == "pytest.xfail":
            return TestResult(status="xfailed", reason=message, duration_s=duration)
        return TestResult(status="skipped", reason=_skip_reason(message), duration_s=duration)
    return TestResult(status="passed", duration_s=duration)


def _skip_reason(message: str) -> str:
    # pytest writes "Skipped: <reason>" for pytest.skip() calls.
    return message.removeprefix("Skipped: ")


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
