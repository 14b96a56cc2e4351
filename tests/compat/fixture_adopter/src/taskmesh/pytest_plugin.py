"""taskmesh's pytest plugin, registered only by its entry point (pyproject.toml)."""

import pytest

import taskmesh


def pytest_generate_tests(metafunc):
    # TASKMESH_BACKEND picks one backend; without it the tests run on inline and pool (ids [inline], [pool]).
    if "backend" in metafunc.fixturenames:
        chosen = taskmesh.selected()
        metafunc.parametrize("backend", [chosen] if chosen else ["inline", "pool"])


@pytest.fixture
def mesh(backend):
    return lambda fn, *args: taskmesh.run(backend, fn, *args)
