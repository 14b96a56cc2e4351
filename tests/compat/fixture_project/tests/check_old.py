import pytest

six = pytest.importorskip("six", reason="needs the oldonly group")


def test_six():
    assert six.PY3
