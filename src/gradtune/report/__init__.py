"""Reports: the numbers behind each figure (``data``), matplotlib figures, and one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write_bytes
from .html import render_html
from .load import ReportData, load_report_data

__all__ = ["ReportData", "load_report_data", "render_html", "write_report", "report_path"]


def report_path(out: str | Path) -> Path:
    """``--out``: a file ending in .html, or a directory to hold ``report.html``."""
    out = Path(out)
    return out if out.suffix.lower() in (".html", ".htm") else out / "report.html"


def write_report(out: str | Path, report: ReportData | None = None, *, study: str | None = None,
                 storage: str | None = None) -> Path:
    """Write the report of ``report``, or of the stored ``study``, to ``out``; returns the file's path.

    Example:
        >>> write_report("runs/tune-digits-mlp-tpe", study="digits-mlp-tpe")
    """
    if report is None:
        report = load_report_data(study, storage)
    path = report_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, render_html(report).encode("utf-8"))
    return path
