"""The published table: the ledger rendered as Markdown, HTML and a job summary."""

from .build import build_report

__all__ = ["build_report"]
