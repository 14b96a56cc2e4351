def speedups() -> bool:
    try:
        import six  # noqa: F401
    except ImportError:
        return False
    return True
