"""``python -m compat.report``: the report without the CLI, ``--bench`` and ``--schema``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import CompatError
from ..results import ledger as L
from .bench import bench
from .build import SCHEMA, build_report, write_atomic


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m compat.report", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--raw", type=Path, default=Path("reports/raw"))
    p.add_argument("--out", type=Path, default=Path("reports"))
    p.add_argument("--baseline", type=Path, default=None)
    p.add_argument("--summary", type=Path, default=None)
    p.add_argument("--fail-on-regression", action="store_true")
    p.add_argument("--bench", action="store_true", help="time a synthetic 54-cell x 100-test report")
    p.add_argument("--schema", action="store_true", help="write reports/compat.schema.json and exit")
    args = p.parse_args(argv)
    try:
        if args.bench:
            return bench()
        if args.schema:
            args.out.mkdir(parents=True, exist_ok=True)
            write_atomic(args.out / SCHEMA, L.schema_text().encode())
            return 0
        return build_report(
            args.raw, args.out, baseline=args.baseline, summary=args.summary, fail_on_regression=args.fail_on_regression
        )
    except CompatError as exc:
        print(f"compat report: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
