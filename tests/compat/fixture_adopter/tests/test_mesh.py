import getpass
import os
import pathlib
import socket

import pytest


def test_runs_a_function(mesh, backend):
    assert mesh(pow, 2, 10).value == 1024
    assert mesh(pow, 2, 10).backend == backend


def test_pool_keeps_order(mesh, backend):
    if backend == "pool":
        raise AssertionError("the pool backend reorders results")


def test_the_machine_is_an_ordinary_one():
    # A user with a passwd entry and a home, and both loopbacks, with no other network.
    assert getpass.getuser()
    assert pathlib.Path.home().is_dir()
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as s:
            s.bind((host, 0))


def test_writes_into_its_checkout():
    # A coverage file or a cache beside the tests is ordinary.
    here = pathlib.Path(__file__).with_name("scratch.txt")
    here.write_text("ok")
    here.unlink()


@pytest.mark.skipif(os.environ.get("TASKMESH_SLOW") != "1", reason="slow tests are opt-in")
def test_slow():
    pass
