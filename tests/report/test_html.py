"""The HTML report: self-contained, small, every figure a decodable image; partial, empty and missing studies."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import optuna
import pytest

from gradtune.errors import UsageError
from gradtune.report import ReportData, load_report_data, write_report
from gradtune.storage.keys import METADATA_KEY

MAX_BYTES = 5 * 1024 * 1024
_IMG = re.compile(r'<img class="figure" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _figures(text: str) -> list[bytes]:
    return [base64.b64decode(b) for b in _IMG.findall(text)]


def _check_self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    # Nothing to fetch: no stylesheet links, and every src is an inline image.
    assert "<link" not in text and re.findall(r'src="(?!data:image/png;base64,)', text) == []
    assert len(text.encode()) < MAX_BYTES


def test_report_of_a_study_is_self_contained_and_every_figure_decodes(small_study, tmp_path):
    storage, name, _ = small_study
    path = write_report(tmp_path, study=name, storage=storage)
    assert path == tmp_path / "report.html"
    text = path.read_text()
    _check_self_contained(text)
    images = _figures(text)
    declared = int(re.search(r'data-figures="(\d+)"', text).group(1))
    # history, curves, sensitivity, importance, slice: each drawn, each a real PNG.
    assert len(images) == declared == 5
    for png in images:
        assert matplotlib.image.imread(io.BytesIO(png), format="png").shape[0] > 50
    assert "Partial report" not in text and "Leaderboard" in text and "fANOVA" in text


def _stored_study(tmp_path: Path, trials: int, running: int) -> tuple[str, str]:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="live", storage=storage, direction="maximize")
    study.set_user_attr(METADATA_KEY, {"problem": "digits-mlp", "metric": "valid_accuracy", "strategy": "tpe"})
    for i in range(trials):
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)})
        trial.set_user_attr("config", {"optimizer": "sgd", "lr": trial.params["lr"]})
        trial.set_user_attr("history", [{"epoch": 1, "valid_accuracy": 0.5 + 0.1 * i}])
        study.tell(trial, 0.5 + 0.1 * i)
    for _ in range(running):
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)})
        trial.set_user_attr("status", "running")
    return storage, "live"


def test_a_running_study_gives_a_partial_report(tmp_path):
    storage, name = _stored_study(tmp_path, trials=3, running=1)
    text = write_report(tmp_path, study=name, storage=storage).read_text()
    assert "Partial report: 1 trial(s) still running; 3 finished so far." in text
    _check_self_contained(text)
    assert len(_figures(text)) >= 3


def test_an_empty_study_says_there_is_nothing_yet(tmp_path):
    storage, name = _stored_study(tmp_path, trials=0, running=0)
    text = write_report(tmp_path, study=name, storage=storage).read_text()
    assert "no trials yet: there is nothing to show" in text and _figures(text) == []
    _check_self_contained(text)


def test_a_missing_study_is_a_usage_error_that_lists_the_studies(tmp_path):
    storage, _ = _stored_study(tmp_path, trials=0, running=0)
    with pytest.raises(UsageError, match="Got 'nope'; studies there: live"):
        load_report_data("nope", storage)


def test_a_missing_sqlite_file_is_not_created(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_report_data("x", f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()


def test_sections_of_other_strategies_render_where_present(tmp_path):
    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]
    losses = [2.3 - i / 100 for i in range(99)] + [None]  # lr-find writes a non-finite loss as null
    report = ReportData("lr-find digits-mlp", extras={
        # lr-find's result.json for two optimisers: each key a mapping by optimiser.
        "lr_find": {"optimizers": ["sgd", "adam"], "suggested_lr": {"sgd": 1e-2, "adam": 1e-3},
                    "range": {"sgd": [1e-3, 1e-1], "adam": None}, "lrs": {"sgd": lrs, "adam": lrs},
                    "losses": {"sgd": losses, "adam": losses}},
        "noise_scale": {"noise_scale": 120.0, "recommended_batch_size": 128, "critical_batch_size": 120.0,
                        "history": [{"step": 0, "noise_scale": None}, {"step": 100, "noise_scale": 120.0}]},
        "pbt": {"schedule": [{"epoch": 0, "lr": 0.1}, {"epoch": 5, "lr": 0.08}],
                "lineage": [{"epoch": 5, "member": 3, "copied_from": 1, "score": 0.5, "source_score": 0.9,
                             "lr": 0.08}]}})
    text = write_report(tmp_path / "x.html", report).read_text()
    assert "Learning-rate range test" in text and "Gradient noise scale" in text and "Population-based" in text
    assert "<td>adam</td><td>0.001</td><td>-</td>" in text and "<td>lr=0.08</td>" in text
    assert len(_figures(text)) == 3
    _check_self_contained(text)


def test_lr_find_and_batch_size_write_a_report(tmp_path, capsys):
    from gradtune.cli.main import main

    assert main(["lr-find", "digits-mlp", "--hidden", "16", "--optimizer", "sgd,adam", "--steps", "20",
                 "--device", "cpu", "--out", str(tmp_path / "lr"), "--quiet"]) == 0
    text = (tmp_path / "lr" / "report.html").read_text()
    assert "Learning-rate range test" in text and len(_figures(text)) == 1
    _check_self_contained(text)
    assert main(["batch-size", "linreg", "--epochs", "2", "--points", "2", "--device", "cpu",
                 "--out", str(tmp_path / "bs"), "--quiet"]) == 0
    text = (tmp_path / "bs" / "report.html").read_text()
    assert "Gradient noise scale" in text and "recommended batch size" in text
    _check_self_contained(text)


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-headless-shell", "chromium-browser",
                                            "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (see README: Reports)")
def test_headless_chromium_renders_every_figure(small_study, tmp_path):
    storage, name, _ = small_study
    path = write_report(tmp_path, study=name, storage=storage)
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                           "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    declared = re.search(r'data-figures="(\d+)"', done.stdout)
    rendered = re.search(r'data-rendered="(\d+)"', done.stdout)
    assert declared and rendered, done.stderr[-2000:]
    assert rendered.group(1) == declared.group(1) == "5"


def test_a_pbt_study_reports_its_lineage_and_the_best_schedule(tmp_path):
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(study_name="pbt", storage=storage, direction="maximize")
    dist = {"lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)}
    schedules = [[{"epoch": 0, "lr": 0.1}], [{"epoch": 0, "lr": 0.3}, {"epoch": 4, "lr": 0.24}]]
    for member, (value, schedule) in enumerate(zip((0.7, 0.9), schedules)):
        trial = study.ask(dist)
        trial.set_user_attr("config", {"optimizer": "sgd", "lr": schedule[0]["lr"], "hyper_schedule": schedule})
        events = [{"epoch": 4, "member": member, "copied_from": 0, "lr": 0.24}] if member == 1 else []
        trial.set_user_attr("pbt_lineage", events)
        study.tell(trial, value)
    report = load_report_data("pbt", storage)
    assert report.extras["pbt"] == {"lineage": [{"epoch": 4, "member": 1, "copied_from": 0, "lr": 0.24}],
                                    "schedule": schedules[1]}
    text = write_report(tmp_path, report).read_text()
    assert "Population-based training" in text and "<td>lr=0.24</td>" in text


def test_the_summary_gives_the_length_the_trials_trained(small_study, tmp_path):
    storage, name, _ = small_study
    ran = {t.user_attrs["epochs_run"] for t in optuna.load_study(study_name=name, storage=storage).trials
           if t.user_attrs.get("status") == "completed"}
    assert len(ran) == 1  # the space's constant length, which the study's summary must name
    text = write_report(tmp_path, study=name, storage=storage).read_text()
    assert f"<dd>{ran.pop()} epochs per trial; seed 0</dd>" in text


@pytest.mark.parametrize(("space", "trial_epochs", "said"), [
    ({"epochs": 30}, 6, "6 epochs per trial"),  # --trial-epochs caps the space's length
    ({"epochs": {"choices": [5, 10]}}, None, "epochs per trial as the space draws them"),
    ({"epochs": {"low": 5, "high": 50}}, 8, "epochs per trial as the space draws them, at most 8"),
    ({}, 7, "7 epochs per trial"),
    ({}, None, "20 epochs per trial"),  # DEFAULT_TRIAL_EPOCHS
])
def test_the_summary_gives_the_length_a_space_and_trial_epochs_set(tmp_path, space, trial_epochs, said):
    meta = {"problem": "linreg", "strategy": "tpe", "space": space, "trial_epochs": trial_epochs, "seed": 0}
    text = write_report(tmp_path, ReportData("study s", metadata=meta)).read_text()
    assert f"<dd>{said}; seed 0</dd>" in text
