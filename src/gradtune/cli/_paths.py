"""The default output directories: ``runs/COMMAND-NAME``, NAME made safe for a file name.

Two kinds of NAME, made safe in two ways. A study's name (``tune``, ``compare``)
is the user's or ``PROBLEM-STRATEGY``: it keeps its dots (``run-1.5`` stays
``run-1.5``). A problem (``train``, ``lr-find``, ``batch-size``) may be
``csv:data/prices.csv``: its directory is named after the file's stem, ``prices``; a
user problem (``tasks.py:make_problem``) after the problem's name, ``tasks-make_problem``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RUNS", "study_dir", "study_dir_name", "problem_dir", "problem_dir_name"]

RUNS = Path("runs")


def study_dir(command: str, study: str) -> Path:
    """``runs/COMMAND-STUDY``: where ``command`` writes a study's results by default."""
    return RUNS / f"{command}-{study_dir_name(study)}"


def problem_dir(command: str, problem: str) -> Path:
    """``runs/COMMAND-PROBLEM``: where ``command`` writes a problem's results by default."""
    return RUNS / f"{command}-{problem_dir_name(problem)}"


def study_dir_name(study: str) -> str:
    """The study's name with every character but letters, digits, ``-``, ``_`` and ``.`` made ``-``."""
    return _safe(study, "-_.")


def problem_dir_name(problem: str) -> str:
    """A problem's name (a built-in's, or a user problem's such as ``tasks.make_problem``), or the file stem of
    ``csv:PATH``/``npz:PATH``, with every character but letters, digits, ``-`` and ``_`` made ``-``."""
    if problem.startswith(("csv:", "npz:")):
        problem = Path(problem[4:]).stem or problem
    return _safe(problem, "-_")


def _safe(name: str, keep: str) -> str:
    return "".join(c if c.isalnum() or c in keep else "-" for c in name)
