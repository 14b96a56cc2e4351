"""The fixture's backend option and availability gate, shaped like backends'.

``--target-backend`` (named apart from the real ``--spawn-backend`` so both plugins can load) takes trio, forkserver or subint; subint needs Python
3.14, and on older interpreters the gate refuses it the way the real plugin
does (a UsageError saying "is unavailable here: <reason>", pytest exit 4).
"""

import sys

import pytest


def pytest_addoption(parser):
    parser.addoption("--target-backend", default="trio", choices=("trio", "forkserver", "subint"))


def pytest_configure(config):
    backend = config.getoption("--target-backend")
    if backend == "subint" and sys.version_info < (3, 14):
        raise pytest.UsageError(
            f"backend 'subint' is unavailable here: sub-interpreters need Python 3.14+, this is "
            f"{sys.version_info.major}.{sys.version_info.minor}"
        )


@pytest.fixture
def backend(request):
    return request.config.getoption("--target-backend")


@pytest.fixture
def capture(request):
    return request.config.getoption("capture")
