"""clip_norm, precision, micro_batch and decay in the single loop, each against a hand-written torch loop.

The oracle builds the same model after ``torch.manual_seed(seed)``, draws the
same batches (``torch.randperm`` from ``seed + 1``), and does by hand what the
setting asks: ``clip_grad_norm_`` between backward and step, autocast (and a
``GradScaler`` for fp16), micro-batch losses weighted by their share of the
batch, two parameter groups for AdamW. Float64 makes the equality tight where
autocast does not apply (autocast leaves float64 alone, so the precision cases
are float32). Each case also checks that the setting changed the run, so that
an ignored setting cannot pass.
"""

from __future__ import annotations

from typing import Any

import optuna
import pytest
import torch

import gradtune
from gradtune import TrainConfig
from gradtune.errors import UsageError
from step_oracle import SEED, batchnorm_problem, gap, hand_loop, problem32, problem64, refusal_before_training, sgd


class Losses(gradtune.Callback):
    def __init__(self):
        self.values = []

    def on_step(self, step, loss, lr):
        self.values.append(loss)


def train(problem: gradtune.Problem, config: dict[str, Any]) -> tuple[gradtune.TrainResult, list[float]]:
    losses = Losses()
    result = gradtune.train(problem, seed=SEED, callbacks=[losses], **config)
    assert result.status == "completed"
    return result, losses.values


def test_clip_norm_equals_clip_grad_norm_between_backward_and_step():
    problem = problem64()
    config = dict(optimizer="momentum", lr=0.5, momentum=0.9, batch_size=16, epochs=3, clip_norm=0.3)
    result, losses = train(problem, config)
    model, expected = hand_loop(problem, config, sgd(0.5, 0.9))
    assert losses == pytest.approx(expected, rel=1e-12)
    assert gap(result.model, model) < 1e-12
    unclipped, _ = hand_loop(problem, {**config, "clip_norm": None}, sgd(0.5, 0.9))
    assert gap(result.model, unclipped) > 1e-3  # the clip was active


def test_micro_batches_sum_to_the_full_batch_step():
    """Batch 24 over 80 samples is 24, 24, 24, 8; micro-batches of 10 cut each 24 as 10, 10, 4."""
    problem = problem64()
    config = dict(optimizer="momentum", lr=0.2, momentum=0.9, batch_size=24, epochs=3, micro_batch=10)
    result, losses = train(problem, config)
    model, expected = hand_loop(problem, config, sgd(0.2, 0.9))
    assert losses == pytest.approx(expected, rel=1e-12)
    assert gap(result.model, model) < 1e-12
    whole, whole_losses = hand_loop(problem, {**config, "micro_batch": None}, sgd(0.2, 0.9))
    assert gap(result.model, whole) < 1e-10  # accumulation: the same step as the whole batch's
    assert losses == pytest.approx(whole_losses, rel=1e-10)
    assert result.history[-1]["batch_size"] == 24  # the batch size stays the optimisation hyperparameter


def test_micro_batches_are_cut_as_asked():
    """BatchNorm makes the cut observable (its statistics are the micro-batch's), so the whole batch's run
    cannot pass for the micro-batched one."""
    problem = batchnorm_problem()
    config = dict(optimizer="sgd", lr=0.2, batch_size=24, epochs=2, micro_batch=10)
    result, losses = train(problem, config)
    model, expected = hand_loop(problem, config, sgd(0.2))
    assert losses == pytest.approx(expected, rel=1e-12)
    assert gap(result.model, model) < 1e-12
    whole, _ = hand_loop(problem, {**config, "micro_batch": None}, sgd(0.2))
    assert gap(result.model, whole) > 1e-3


def test_micro_batches_inside_the_lbfgs_closure_give_the_full_batch_run():
    problem = problem64()
    whole = gradtune.train(problem, optimizer="lbfgs", lr=0.5, max_iter=5, epochs=2, seed=SEED)
    split = gradtune.train(problem, optimizer="lbfgs", lr=0.5, max_iter=5, epochs=2, seed=SEED, micro_batch=30)
    assert gap(split.model, whole.model) < 1e-8
    assert split.metrics["valid_loss"] == pytest.approx(whole.metrics["valid_loss"], rel=1e-8)


def test_decay_matrices_matches_adamw_with_two_parameter_groups():
    problem = problem64()
    config = dict(optimizer="adamw", lr=0.01, weight_decay=0.5, batch_size=16, epochs=3, decay="matrices")
    result, losses = train(problem, config)

    def two_groups(model):
        matrices = [p for p in model.parameters() if p.ndim >= 2]
        others = [p for p in model.parameters() if p.ndim < 2]
        return torch.optim.AdamW([{"params": matrices}, {"params": others, "weight_decay": 0.0}], lr=0.01,
                                 weight_decay=0.5)

    model, expected = hand_loop(problem, config, two_groups)
    assert losses == pytest.approx(expected, rel=1e-12)
    assert gap(result.model, model) < 1e-12
    everywhere, _ = hand_loop(problem, config, lambda m: torch.optim.AdamW(m.parameters(), lr=0.01,
                                                                           weight_decay=0.5))
    assert gap(result.model, everywhere) > 1e-4  # the biases were spared


def test_bf16_autocasts_the_forward_and_loss():
    problem = problem32()
    config = dict(optimizer="sgd", lr=0.3, batch_size=16, epochs=2, precision="bf16")
    result, losses = train(problem, config)
    model, expected = hand_loop(problem, config, sgd(0.3))
    assert losses == pytest.approx(expected, rel=1e-6)
    assert gap(result.model, model) < 1e-6
    full, full_losses = hand_loop(problem, {**config, "precision": None}, sgd(0.3))
    assert max(abs(a - b) for a, b in zip(losses, full_losses)) > 1e-4  # bf16 really ran


def test_fp16_scales_the_loss_and_unscales_before_clipping():
    problem = problem32()
    config = dict(optimizer="momentum", lr=0.3, momentum=0.5, batch_size=16, epochs=2, precision="fp16",
                  clip_norm=0.5)
    result, losses = train(problem, config)
    model, expected = hand_loop(problem, config, sgd(0.3, 0.5))
    assert losses == pytest.approx(expected, rel=1e-6)
    assert gap(result.model, model) < 1e-6


def test_the_precision_accepts_32_as_a_number_and_records_it_as_text():
    problem = problem64()
    plain = gradtune.train(problem, optimizer="sgd", lr=0.1, epochs=1, seed=SEED)
    as_number = gradtune.train(problem, optimizer="sgd", lr=0.1, epochs=1, seed=SEED, precision=32)
    assert as_number.config["precision"] == "32" and as_number.config["decay"] == "all"
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, as_number.model.state_dict()[key])


def test_a_micro_batch_above_the_batch_size_is_a_cap_that_changes_nothing():
    problem = problem64()
    plain = gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=16, epochs=1, seed=SEED)
    capped = gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=16, epochs=1, seed=SEED, micro_batch=64)
    assert capped.config["micro_batch"] == 64
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, capped.model.state_dict()[key])


@pytest.mark.parametrize("settings, expected", [
    ({"clip_norm": 0.0}, "The 'clip_norm' parameter must be a float in (0, inf). Got 0.0."),
    ({"clip_norm": "1"}, "The 'clip_norm' parameter must be a float in (0, inf). Got '1'."),
    ({"precision": "fp8"}, "The 'precision' parameter must be one of: 32, bf16, fp16. Got 'fp8'."),
    ({"precision": 16}, "The 'precision' parameter must be one of: 32, bf16, fp16. Got 16."),
    ({"micro_batch": 0}, "The 'micro_batch' parameter must be an integer in [1, inf). Got 0."),
    ({"micro_batch": 2.5}, "The 'micro_batch' parameter must be an integer in [1, inf). Got 2.5."),
    ({"decay": "biases"}, "The 'decay' parameter must be one of: all, matrices. Got 'biases'."),
    ({"optimizer": "lbfgs", "clip_norm": 1.0}, "'clip_norm' parameter must be unset for optimizer 'lbfgs'"),
    ({"optimizer": "lbfgs", "precision": "fp16"}, "'precision' parameter must be '32' or 'bf16' for optimizer"),
    ({"optimizer": "lbfgs", "decay": "matrices"}, "'all' for optimizer 'lbfgs' (it has no weight decay)"),
    ({"optimizer": "sgd-hd", "decay": "matrices"}, "'all' for optimizer 'sgd-hd' (its learning rate adapts"),
    ({"sampling": "importance", "micro_batch": 8}, "'micro_batch' parameter must be unset with sampling"),
])
def test_bad_step_settings_are_refused_in_one_line_before_training(settings, expected):
    message = refusal_before_training(**settings)
    assert expected in message
    assert "\n" not in message


# -- unknown keys: every door, one line naming the key and the accepted ones ------------------------------


def _one_line_naming(error: pytest.ExceptionInfo, key: str, hint: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert f"'{key}'" in message and f"did you mean '{hint}'" in message
    assert "clip_norm, precision, micro_batch, decay" in message  # the accepted keys


def test_an_unknown_override_of_train_is_a_usage_error_not_a_type_error():
    with pytest.raises(UsageError) as caught:
        gradtune.train(problem64(), grad_clip=1.0)
    _one_line_naming(caught, "grad_clip", "clip_norm")
    with pytest.raises(UsageError) as caught:
        TrainConfig(optimizer="adam", max_grad_norm=1.0)
    _one_line_naming(caught, "max_grad_norm", "clip_norm")


def test_an_unknown_key_of_a_mapping_is_refused():
    with pytest.raises(UsageError) as caught:
        TrainConfig.from_mapping({"optimizer": "sgd", "gradient_accumulation_steps": 4})
    _one_line_naming(caught, "gradient_accumulation_steps", "micro_batch")
    with pytest.raises(UsageError) as caught:
        gradtune.train_population(problem64(), [{"optimizer": "sgd"}, {"bf16": True}])
    _one_line_naming(caught, "bf16", "precision")


def test_an_unknown_key_of_a_config_file_is_refused_by_the_cli(main_cli, tmp_path):
    (tmp_path / "run.yaml").write_text("optimizer: sgd\nmax_grad_norm: 1.0\n")
    done = main_cli("train", "linreg", "--config", "run.yaml", "--epochs", "1", "--quiet")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "'max_grad_norm'" in line and "did you mean 'clip_norm'" in line and "micro_batch" in line


def test_an_unknown_space_name_is_refused_before_a_study_is_made(tmp_path):
    with pytest.raises(UsageError) as caught:
        gradtune.tune(problem64(), space={"lr": 0.1, "grad_clip": {"choices": [0.5, 1.0]}}, strategy="random",
                      budget=1, storage=f"sqlite:///{tmp_path / 's.db'}")
    message = str(caught.value)
    assert "\n" not in message and "'grad_clip'" in message and "clip_norm" in message and "lr" in message
    assert "did you mean 'clip_norm'" in message
    if (tmp_path / "s.db").exists():
        summaries = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 's.db'}", include_best_trial=False)
        assert all(s.n_trials == 0 for s in summaries)


def test_an_fp16_run_resumes_with_its_gradient_scaler(tmp_path):
    """The scaler's scale is part of the run's state: a run resumed from its epoch checkpoint ends as one never
    stopped. Targets of a few hundred overflow float16 at the first scale, 2**16, so the first epoch halves it
    (skipping those steps); a fresh scaler would skip them again."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(100, 6, generator=generator)
    y = 300 * x[:, :1] + x[:, 1:2] ** 2
    problem = gradtune.Problem(lambda: torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(),
                                                           torch.nn.Linear(16, 1)),
                               train=(x[:80], y[:80]), valid=(x[80:], y[80:]), loss="mse", task="regression")
    config = TrainConfig(optimizer="sgd", lr=1e-3, batch_size=16, epochs=3, precision="fp16", seed=SEED)

    class StopAfterOne(gradtune.Callback):
        def on_epoch_end(self, record):
            return record["epoch"] >= 1

    whole = gradtune.train(problem, config)
    path = tmp_path / "run.pt"
    assert gradtune.train(problem, config, checkpoint=path, callbacks=[StopAfterOne()]).status == "stopped"
    saved = gradtune.load_checkpoint(path)
    assert saved["scaler_state"]["scale"] < 2.0**16
    resumed = gradtune.train(problem, config, checkpoint=path)
    assert resumed.report["resumed_from_epoch"] == 1
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key])
    torch.save({**saved, "scaler_state": None}, path)  # the oracle's other side: a fresh scaler
    fresh = gradtune.train(problem, config, checkpoint=path)
    assert fresh.report["resumed_from_epoch"] == 1 and gap(fresh.model, whole.model) > 1e-4
