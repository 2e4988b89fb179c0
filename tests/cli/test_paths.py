"""Default output directories: a study keeps its dots, a problem given as a file is named by its stem."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradtune.cli._paths import problem_dir, study_dir


@pytest.mark.parametrize(("study", "expected"), [
    ("digits-mlp-tpe", "runs/tune-digits-mlp-tpe"),
    ("my study/v1.5", "runs/tune-my-study-v1.5"),
    ("prices-auto", "runs/tune-prices-auto"),
])
def test_a_study_directory_keeps_letters_digits_dashes_underscores_and_dots(study, expected):
    assert study_dir("tune", study) == Path(expected)


@pytest.mark.parametrize(("problem", "expected"), [
    ("digits-mlp", "runs/train-digits-mlp"),
    ("csv:data/house prices.v2.csv", "runs/train-house-prices-v2"),
    ("npz:/tmp/x_y.npz", "runs/train-x_y"),
])
def test_a_problem_directory_is_named_by_the_problem_or_its_file_stem(problem, expected):
    assert problem_dir("train", problem) == Path(expected)
