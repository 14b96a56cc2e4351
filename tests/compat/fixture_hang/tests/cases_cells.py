import faulthandler
import os
import signal
import subprocess
import sys
import time

import pytest

# A child that, like a runtime's actors, retitles itself and dumps its stacks
# on SIGUSR1: it must be asked for a dump whatever it calls itself.
CHILD = """
import faulthandler, os, signal, time
import setproctitle
setproctitle.setproctitle("actor[worker@1]")
d = os.environ.get("BACKENDS_DUMP_DIR")
if d:
    f = open(os.path.join(d, f"child-{os.getpid()}.txt"), "w")
    faulthandler.register(signal.SIGUSR1, file=f, all_threads=True)
while True:
    time.sleep(1)
"""


def test_passes():
    assert 1 + 1 == 2


def test_skips():
    pytest.skip("nothing to see")


@pytest.mark.xfail(reason="known to fail", strict=True)
def test_xfails():
    raise AssertionError("expected")


def test_fails():
    assert "left" == "right"


def test_leaks_a_sleeper(backend):
    # An orphan the census must see (the container's init collects it at exit).
    devnull = subprocess.DEVNULL
    subprocess.Popen(["sleep", "299"], start_new_session=True, stdin=devnull, stdout=devnull, stderr=devnull)


def test_hangs(backend):
    if backend != "hang":
        pytest.skip("only with --fixture-backend=hang")
    child = subprocess.Popen([sys.executable, "-c", CHILD])
    # A Python child without a handler: SIGUSR1 would kill it, so it must not get one.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        while True:
            time.sleep(0.5)
    finally:
        child.kill()
        bystander.kill()


def test_after_hang():
    pass
