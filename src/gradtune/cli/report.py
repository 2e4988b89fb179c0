"""``gradtune report --study NAME``: the HTML report of any stored study, finished, running or empty."""

from __future__ import annotations

import argparse

from ._flags import add_storage_flag, add_study_flag


def add_parser(sub) -> None:
    parser = sub.add_parser("report", help="write the HTML report of a study",
                            description="Write one self-contained HTML file (inline CSS and figures, no network) "
                                        "for a stored study.")
    add_study_flag(parser, see="gradtune studies")
    add_storage_flag(parser)
    parser.add_argument("--out", default="report.html",
                        help="the file to write (default report.html), or a directory to hold report.html")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report import load_report_data, write_report

    data = load_report_data(args.study, args.storage)
    path = write_report(args.out, data)
    state = ("empty: no trials yet" if not data.rows else
             f"partial: {data.running} trial(s) still running" if data.running else f"{len(data.rows)} trials")
    print(f"report of study {args.study} ({state}) written to {path}")
    return 0
