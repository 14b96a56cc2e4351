"""wirekit's pytest plugin: its own backend option, a transport option, and a refusal."""

import pytest


def pytest_addoption(parser):
    parser.addoption("--runtime-backend", default="plain", choices=("plain", "fork"))
    parser.addoption("--wire", default="tcp", choices=("tcp", "uds"))


def pytest_configure(config):
    # Like tractor in CI mode: a fork backend under --capture=fd is refused
    # with exit code 1, before any test runs, with a message of several lines.
    if config.getoption("--runtime-backend") == "fork" and config.getoption("capture") == "fd":
        pytest.exit(
            "wirekit refuses: the fork backend needs --capture=sys\n"
            "fork children inherit pytest's capture descriptors and deadlock",
            returncode=1,
        )


@pytest.fixture
def backend(request):
    return request.config.getoption("--runtime-backend")


@pytest.fixture
def wire(request):
    return request.config.getoption("--wire")
