"""The fixture's "backend option", shaped like backends' --spawn-backend.

ok: the passing/skipping/xfailing cases run; hang: one case never returns;
missing: the backend is unavailable here (pytest exit code 4, like the real
availability gate).
"""

import pytest


def pytest_addoption(parser):
    # The hang forensics cases (cases_forensics.py) each build one class of hang.
    hangs = ("await", "starved", "pipe", "child", "blocked")
    parser.addoption("--fixture-backend", default="ok", choices=("ok", "hang", "missing", *hangs))


def pytest_configure(config):
    if config.getoption("--fixture-backend") == "missing":
        raise pytest.UsageError("backend 'missing' is unavailable here: the fixture has no such thing")


def pytest_report_header(config):
    # Like backends' own header: what is unavailable here, whichever backend this session runs.
    return ["fixture backend 'missing' is unavailable here: the fixture has no such thing"]


@pytest.fixture
def backend(request):
    return request.config.getoption("--fixture-backend")
