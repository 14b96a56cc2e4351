import pytest

pytest.skip("needs a kernel module this machine has not loaded", allow_module_level=True)


def test_never_collected():
    raise AssertionError("unreachable")
