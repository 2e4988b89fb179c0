"""``gradtune compare`` and ``gradtune report`` end to end, and the report every ``tune`` writes."""

from __future__ import annotations

import json
import re

import optuna
import pytest


def _ok(done) -> None:
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr


def _self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text and len(text.encode()) < 5 * 1024 * 1024


def test_compare_prints_the_ranking_and_writes_result_and_report(cli, tmp_path):
    done = cli("compare", "digits-mlp", "--hidden", "16", "--optimizers", "sgd,adam", "--budget", "2", "--seeds", "2",
               "--epochs", "2", "--storage", "sqlite:///x.db", "--out", "out", "--device", "cpu")
    _ok(done)
    assert "gradtune compare digits-mlp" in done.stdout and re.search(r"\n(Use sgd|Use adam)", done.stdout)
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert set(result["optimizers"]) == {"sgd", "adam"} and result["recommendation"].startswith("Use ")
    text = (tmp_path / "out" / "report.html").read_text()
    _self_contained(text)
    assert "<h2>Comparison</h2>" in text and result["recommendation"].split(":")[0] in text

    # The same study, on demand, into a named file.
    again = cli("report", "--study", "digits-mlp-compare", "--storage", "sqlite:///x.db", "--out", "r.html")
    _ok(again)
    assert "written to r.html" in again.stdout and "<h2>Comparison</h2>" in (tmp_path / "r.html").read_text()


def test_tune_writes_a_self_contained_report(cli, tmp_path):
    done = cli("tune", "linreg", "--strategy", "random", "--budget", "3", "--trial-epochs", "2",
               "--storage", "sqlite:///x.db", "--out", "out", "--quiet")
    _ok(done)
    text = (tmp_path / "out" / "report.html").read_text()
    _self_contained(text)
    assert "study linreg-random" in text and "Leaderboard" in text


@pytest.mark.parametrize("storage", ["sqlite:///x.db", "sqlite:///absent.db"])
def test_report_on_a_missing_study_is_one_line_and_exit_2(cli, tmp_path, storage):
    if storage == "sqlite:///x.db":
        optuna.create_study(study_name="other", storage=f"sqlite:///{tmp_path / 'x.db'}")
    done = cli("report", "--study", "nope", "--storage", storage)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradtune report: error: The 'study' parameter must name a study")
    assert "studies there: other" in lines[0] if storage == "sqlite:///x.db" else "does not exist" in lines[0]
    assert not (tmp_path / "report.html").exists()


def test_compare_refuses_an_unknown_optimizer_with_exit_2(cli):
    done = cli("compare", "linreg", "--optimizers", "sgd,adamx")
    assert done.returncode == 2 and "'optimizers' parameter must be" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
