"""The files in examples/ run as their docstrings say, and learn what they are meant to.

Oracles: chance accuracy, an F1 counted by hand over the whole validation set,
a masked mean-pool that padding cannot change, every augmented image being one
of the crops and flips of its source image, and the pretrained backbone's own
weights (bit for bit) after a population tune.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

import gradtune
from gradtune.cli.main import main
from gradtune.config import TrainConfig
from gradtune.training.pool import fallback_reason
from user_problem_files import EXAMPLES, imports_forgotten

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


def load(name: str):
    """Import ``examples/NAME.py`` by its path, as ``FILE.py:ATTR`` does."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in(tmp_path, monkeypatch, *args: str) -> int:
    """``main(ARGS)`` in ``tmp_path``: what the command runs, through main() in this process, without a fresh
    interpreter's seconds of imports (the example's module is forgotten afterwards)."""
    monkeypatch.chdir(tmp_path)
    with imports_forgotten(EXAMPLES):
        return main(list(args))


# The command the issue names, with the default strategy (auto).
def test_tune_the_text_classifier_from_the_cli_on_f1(tmp_path, monkeypatch, capsys):
    code = run_in(tmp_path, monkeypatch, "tune", f"{EXAMPLES / 'text_classifier.py'}:make_problem", "--budget", "10",
                  "-o", "n=2000", "--population", "off", "--out", "out", "--quiet")
    assert code == 0, capsys.readouterr().err[-2000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["metric"] == "valid_f1" and result["direction"] == "maximize"
    completed = [t for t in result["trials"] if t["state"] == "completed"]
    assert completed and result["best_value"] == max(t["value"] for t in completed)
    # The recorded F1 is the example's whole-set F1 of that configuration trained alone. The trials train alone
    # (--population off): stacked, a member equals its lone run only up to floating-point reassociation, which
    # thirty epochs can carry into a one-sample change of F1.
    best = next(t for t in completed if t["number"] == result["best_trial"])
    alone = gradtune.train(load("text_classifier").make_problem(n=2000), TrainConfig.from_mapping(best["config"]))
    assert best["value"] == pytest.approx(alone.metrics["valid_f1"], abs=1e-9)


def test_the_text_classifiers_f1_is_the_whole_sets_and_padding_does_not_change_the_model():
    example = load("text_classifier")
    problem = example.make_problem(n=2000)
    result = gradtune.train(problem, optimizer="adam", lr=0.01, batch_size=32, epochs=5, device="cpu")
    valid = problem.valid.dataset  # the Sentences the example made
    model = result.model.eval()
    with torch.no_grad():
        batch = example.pad_collate([valid[i] for i in range(len(valid))])  # one batch: the whole set
        predicted = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).argmax(-1)
        padded = torch.nn.functional.pad(batch["input_ids"], (0, 7))  # 7 more pad tokens, masked out
        more = model(input_ids=padded, attention_mask=(padded != example.PAD).long()).argmax(-1)
    labels = batch["labels"]
    tp = int(((predicted == 1) & (labels == 1)).sum())
    fp, fn = int(((predicted == 1) & (labels == 0)).sum()), int(((predicted == 0) & (labels == 1)).sum())
    assert result.metrics["valid_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-12)
    assert result.metrics["valid_f1"] > 0.7  # predicting all-positive gives 0.43 (28% are positive)
    assert torch.equal(predicted, more)


class Recorded(torch.utils.data.Dataset):
    """Wraps an augmenting ``Shapes`` dataset and keeps every image it hands out, by index."""

    def __init__(self, dataset):
        self.dataset, self.reads = dataset, {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        self.reads.setdefault(int(index), []).append(image)
        return image, label


def _crops_and_flips(image: torch.Tensor, padding: int) -> list[torch.Tensor]:
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    size = image.shape[-1]
    crops = [padded[:, t:t + size, left:left + size] for t in range(2 * padding + 1) for left in range(2 * padding + 1)]
    return crops + [c.flip(-1) for c in crops]


def test_the_augmented_cnn_beats_chance_with_new_crops_and_flips_every_epoch():
    example = load("image_augment")
    recorded = Recorded(example.Shapes(300, seed=0, augment=True))
    problem = gradtune.Problem(example.make_model, train=recorded, valid=example.Shapes(150, seed=1, augment=False))
    epochs = 4
    result = gradtune.train(problem, optimizer="adam", lr=0.01, batch_size=32, epochs=epochs, device="cpu")
    assert result.metrics["valid_accuracy"] > 0.7  # chance: 1/3
    assert set(recorded.reads) == set(range(300)) and all(len(r) == epochs for r in recorded.reads.values())
    changed = sum(not torch.equal(reads[0], reads[1]) for reads in recorded.reads.values())
    assert changed > 0.8 * 300  # 50 crops and flips: the same one twice is rare
    for index in range(0, 300, 30):  # each read is one of its source image's crops and flips
        candidates = _crops_and_flips(recorded.dataset.images[index], example.PAD)
        assert all(any(torch.equal(read, c) for c in candidates) for read in recorded.reads[index])


def test_the_stream_trains_on_a_step_budget_reading_only_the_batches_it_needs():
    example = load("streaming")
    problem = example.make_problem()
    result = gradtune.train(problem, optimizer="adam", lr=0.01, batch_size=32, steps=150, eval_every=50,
                            device="cpu")
    assert [row["step"] for row in result.history] == [50, 100, 150]
    assert result.metrics["valid_accuracy"] > 0.85  # chance: 1/4; the clusters' overlap caps it near 0.95
    assert problem.train.drawn == 150 * 32


def test_the_stream_tunes_with_trial_steps_and_each_trial_is_its_single_run(tmp_path, monkeypatch, capsys):
    """A stream has no epochs: --trial-steps gives every trial its length, in place of the default space's
    epochs. The oracle: the best trial's accuracy is that of its configuration trained alone."""
    spec = f"{EXAMPLES / 'streaming.py'}:make_problem"
    assert run_in(tmp_path, monkeypatch, "tune", spec, "--strategy", "random", "--budget", "3", "--quiet") == 2
    assert "give --trial-steps N (trial_steps=N), or a space with 'steps'" in capsys.readouterr().err
    code = run_in(tmp_path, monkeypatch, "tune", spec, "--strategy", "random", "--budget", "3", "--trial-steps", "60",
                  "--population", "off", "--out", "out", "--quiet")
    assert code == 0, capsys.readouterr().err[-2000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert [(t["config"]["steps"], t["config"].get("epochs")) for t in result["trials"]] == [(60, None)] * 3
    best = next(t for t in result["trials"] if t["number"] == result["best_trial"])
    alone = gradtune.train(load("streaming").make_problem(), TrainConfig.from_mapping(best["config"]))
    assert best["value"] == pytest.approx(alone.metrics["valid_accuracy"], abs=1e-9)
    assert "60 steps per trial" in (tmp_path / "out" / "report.html").read_text()


def test_auto_tunes_a_stream_with_trial_steps(tmp_path, monkeypatch, capsys):
    # The default strategy on the CPU decides after its baselines how many trials to stack, from a probe
    # configuration that once took epochs, which a stream cannot: the run stopped there with a usage error.
    code = run_in(tmp_path, monkeypatch, "tune", f"{EXAMPLES / 'streaming.py'}:make_problem", "--budget", "8",
                  "--trial-steps", "40", "--device", "cpu", "--out", "out", "--quiet")
    assert code == 0, capsys.readouterr().err[-2000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert len(result["auto"]["baselines"]) == 3  # the portfolio, each trained
    assert {t["config"]["steps"] for t in result["trials"]} == {40}


def test_tuning_the_head_as_a_population_leaves_the_pretrained_backbone_bit_for_bit(tmp_path):
    example = load("finetune_head")
    problem = example.make_problem()
    pretrained = {f"0.{k}": v.clone() for k, v in example.pretrained_backbone().items()}
    configs = [TrainConfig(optimizer=o, lr=0.01, weight_decay=0.1, epochs=2, seed=s, device="cpu").resolve_for(problem)
               for s, o in enumerate(["adamw", "sgd", "adam", "momentum"])]
    assert fallback_reason(problem, configs) is None  # the four trials really do train as one stack
    result = gradtune.tune(problem, strategy="random", budget=4, population=4, trial_epochs=3,
                           storage=f"sqlite:///{tmp_path}/s.db", device="cpu", best_model=True)
    assert [t["state"] for t in result.trials] == ["completed"] * 4
    state = result.best_model.state_dict()
    for key, value in pretrained.items():
        assert torch.equal(state[key], value), key
    fresh = problem.build_model().state_dict()
    assert not torch.equal(state["1.0.weight"], fresh["1.0.weight"])  # the head did train
    assert result.best_value > 1 / 3  # chance: three classes of about equal size
