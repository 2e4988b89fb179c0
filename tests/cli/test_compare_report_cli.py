"""``gradtune compare`` and ``gradtune report`` end to end, and the report every ``tune`` writes.

Each calls the CLI's ``main`` in this process, which parses and dispatches as the
command does and spares the start-up of torch, Optuna and matplotlib (the commands'
own exit status and stderr as a fresh process are checked in test_bad_input.py and
test_train_cli.py).
"""

from __future__ import annotations

import json
import re

import optuna
import pytest

from gradtune.cli.main import main

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


def _self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text and len(text.encode()) < 5 * 1024 * 1024


def test_compare_prints_the_ranking_and_writes_result_and_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["compare", "digits-mlp", "--hidden", "16", "--optimizers", "sgd,adam", "--lrs", "2", "--seeds", "2",
                 "--epochs", "2", "--storage", "sqlite:///x.db", "--out", "out", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "Traceback" not in captured.err
    stdout = captured.out
    assert "gradtune compare digits-mlp" in stdout and re.search(r"\n(Use sgd|Use adam)", stdout)
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert set(result["optimizers"]) == {"sgd", "adam"} and result["recommendation"].startswith("Use ")
    text = (tmp_path / "out" / "report.html").read_text()
    _self_contained(text)
    assert "<h2>Comparison</h2>" in text and result["recommendation"].split(":")[0] in text

    # The same study, on demand, into a named file.
    out = tmp_path / "r.html"
    assert main(["report", "--study", "digits-mlp-compare", "--storage", f"sqlite:///{tmp_path / 'x.db'}",
                 "--out", str(out)]) == 0
    assert f"written to {out}" in capsys.readouterr().out and "<h2>Comparison</h2>" in out.read_text()


def test_compare_keeps_its_runs_checkpoints_by_the_study_unless_told_where(tmp_path, monkeypatch):
    # What lets a comparison stopped within a stage go on (tests/comparison: the resume itself); the default
    # directory is named by the study, as tune's is, so that running the same command again finds it.
    import gradtune.comparison

    monkeypatch.chdir(tmp_path)
    given = []

    def compare(*args, checkpoints=None, **kwargs):
        given.append(checkpoints)
        raise KeyboardInterrupt

    monkeypatch.setattr(gradtune.comparison, "compare", compare)
    for flags in ([], ["--study", "mine"], ["--checkpoints", "elsewhere"]):
        assert main(["compare", "linreg", "--optimizers", "sgd", *flags]) == 130
    assert [str(g) for g in given] == ["runs/compare-linreg-compare/checkpoints", "runs/compare-mine/checkpoints",
                                       "elsewhere"]


def test_compare_still_takes_budget_for_lrs_with_one_deprecation_line(tmp_path, capsys):
    code = main(["compare", "linreg", "--optimizers", "sgd", "--budget", "2", "--seeds", "1", "--epochs", "1",
                 "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--out", str(tmp_path / "out"), "--device", "cpu",
                 "--quiet"])
    assert code == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--budget is deprecated" in lines[0] and "use --lrs" in lines[0], lines
    assert json.loads((tmp_path / "out" / "result.json").read_text())["budget"] == 2  # the number of rates


def test_compare_budget_given_as_a_time_says_what_the_old_name_means_now(tmp_path, capsys):
    # tune's --budget takes a time; compare's old --budget was a count of rates, and says so before any training.
    with pytest.raises(SystemExit) as exited:
        main(["compare", "linreg", "--budget", "20s", "--storage", f"sqlite:///{tmp_path / 'x.db'}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert ("--budget is the old name of --lrs, which takes the number of learning rates per optimiser (compare has "
            "no time budget). Got '20s'.") in err
    assert "deprecated" not in err and not (tmp_path / "x.db").exists()


def test_tune_writes_a_self_contained_report(tmp_path):
    code = main(["tune", "linreg", "--strategy", "random", "--budget", "3", "--trial-epochs", "2",
                 "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    text = (tmp_path / "out" / "report.html").read_text()
    _self_contained(text)
    assert "study linreg-random" in text and "Leaderboard" in text


@pytest.mark.parametrize("db", ["x.db", "absent.db"])
def test_report_on_a_missing_study_is_one_line_and_exit_2(tmp_path, capsys, db):
    storage = f"sqlite:///{tmp_path / db}"
    if db == "x.db":
        optuna.create_study(study_name="other", storage=storage)
    assert main(["report", "--study", "nope", "--storage", storage, "--out", str(tmp_path / "r.html")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1
    assert lines[0].startswith("gradtune report: error: The 'study' parameter must name a study")
    assert "studies there: other" in lines[0] if db == "x.db" else "does not exist" in lines[0]
    assert not (tmp_path / "r.html").exists() and (db == "x.db" or not (tmp_path / db).exists())


@pytest.mark.parametrize("storage", ["sqlite:///typo.db", "journal:typo.log", None])
def test_studies_on_a_missing_storage_file_is_one_line_and_exit_2_and_creates_nothing(tmp_path, monkeypatch, capsys,
                                                                                       storage):
    monkeypatch.chdir(tmp_path)
    assert main(["studies"] + (["--storage", storage] if storage else [])) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1
    assert lines[0].startswith("gradtune studies: error: The 'storage' parameter must name an existing storage")
    assert "does not exist" in lines[0] and list(tmp_path.iterdir()) == []


def test_compare_refuses_an_unknown_optimizer_with_exit_2(capsys):
    assert main(["compare", "linreg", "--optimizers", "sgd,adamx"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "'optimizers' parameter must be" in lines[0]
