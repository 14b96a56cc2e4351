import os

import tomli_w  # from requirements/base.txt, named by requirements-test.txt

import reqkit


def test_the_extra_is_installed():
    assert reqkit.speedups()


def test_the_backend_is_chosen_by_the_environment():
    assert os.environ["REQKIT_MODE"] in ("fast", "safe")
    assert tomli_w.dumps({"mode": os.environ["REQKIT_MODE"]})
