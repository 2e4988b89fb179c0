"""Search spaces: parsing, refusals, conditional parameters, grid expansion, and ``gradtune space --show``.

Refusals are checked twice: through :meth:`SearchSpace.from_mapping` (a
``UsageError`` naming the parameter) and through ``gradtune tune --space FILE``
in a fresh process (exit code 2, exactly one line on stderr, no traceback, and
no trial recorded in the storage). Conditional parameters are checked by
drawing many configurations through a real Optuna sampler.
"""

from __future__ import annotations

import math
import sqlite3

import optuna
import pytest
import yaml

from gradtune.config import TrainConfig
from gradtune.errors import UsageError
from gradtune.problems import get_problem
from gradtune.tuning import SearchSpace, default_space
from gradtune.tuning.defaults import LR_RANGES, OTHER_LR_RANGES, lr_range
from space_draws import draw

optuna.logging.set_verbosity(optuna.logging.WARNING)

# (id, space mapping, substrings the error message must hold, problem the CLI case runs on)
BAD_SPACES = [
    ("low-not-below-high", {"lr": {"low": 1.0, "high": 0.1}}, ["'lr'", "low < high", "low=1.0", "high=0.1"]),
    ("low-equals-high", {"lr": {"low": 0.1, "high": 0.1}}, ["'lr'", "low < high"]),
    ("log-with-zero-low", {"lr": {"low": 0, "high": 0.1, "log": True}}, ["'lr'", "log scale", "low=0"]),
    ("log-with-negative-low", {"weight_decay": {"low": -1e-3, "high": 0.1, "log": True}},
     ["'weight_decay'", "log scale"]),
    ("per-optimizer-low-not-below-high", {"optimizer": {"choices": ["sgd", "adam"]},
                                          "lr": {"sgd": {"low": 0.1, "high": 0.1},
                                                 "adam": {"low": 1e-4, "high": 1e-2}}},
     ["lr[sgd]", "low < high"]),
    ("empty-choices", {"batch_size": {"choices": []}}, ["'batch_size'", "non-empty"]),
    ("empty-optimizer-choices", {"optimizer": {"choices": []}}, ["'optimizer'", "non-empty"]),
    ("unknown-parameter", {"learning_rate": {"low": 0.01, "high": 0.1}},
     ["The 'space' parameter's keys must be among:", "batch_size", "Got 'learning_rate'. (did you mean 'lr'?)"]),
    ("unknown-optimizer-in-choices", {"optimizer": {"choices": ["sgd", "adamx"]}}, ["'adamx'", "adam", "sgd"]),
    ("unknown-fixed-optimizer", {"optimizer": "sgdd"}, ["'sgdd'", "sgd"]),
    ("unknown-optimizer-in-per-optimizer-range", {"lr": {"sgd": {"low": 0.01, "high": 0.1},
                                                         "adamx": {"low": 1e-4, "high": 1e-2}}}, ["'adamx'", "adam"]),
    ("misspelt-range-key", {"lr": {"low": 1e-3, "hi": 1.0}}, ["'lr'", "unknown key 'hi'", "low, high"]),
    ("unknown-optimizer-in-optimizers-list", {"momentum": {"low": 0.8, "high": 0.9, "optimizers": ["momentun"]}},
     ["'momentun'", "momentum"]),
]


@pytest.mark.parametrize("data, expected", [c[1:] for c in BAD_SPACES], ids=[c[0] for c in BAD_SPACES])
def test_from_mapping_refuses_bad_spaces(data, expected):
    with pytest.raises(UsageError) as caught:
        SearchSpace.from_mapping(data)
    message = str(caught.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} missing from: {message}"


def test_batch_size_above_the_training_set_is_refused_by_the_space():
    n_train = get_problem("linreg").n_train  # 800 of linreg's 1000 samples
    for spec in ({"choices": [16, n_train + 1]}, {"low": 16, "high": n_train + 1}):
        space = SearchSpace.from_mapping({"batch_size": spec})
        with pytest.raises(UsageError, match="batch_size") as caught:
            space.check_batch_sizes(n_train)
        assert str(n_train) in str(caught.value) and str(n_train + 1) in str(caught.value)
    SearchSpace.from_mapping({"batch_size": {"choices": [16, n_train]}}).check_batch_sizes(n_train)  # the limit is fine


# The CLI cases: one per kind of bad input (each costs a fresh interpreter), plus the batch size that only
# the problem can refuse.
CLI_CASES = [(c[0], yaml.safe_dump(c[1]), c[2]) for c in BAD_SPACES if c[0] in (
    "low-not-below-high", "log-with-zero-low", "empty-choices", "unknown-parameter",
    "unknown-optimizer-in-per-optimizer-range")] + [
    ("batch-size-above-train-set", "batch_size: {choices: [16, 801]}\n", ["batch_size", "800", "801"]),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_bad_space_before_any_trial(main_cli, tmp_path, text, expected):
    (tmp_path / "space.yaml").write_text(text)
    done = main_cli("tune", "linreg", "--strategy", "random", "--space", "space.yaml", "--budget", "2",
               "--trial-epochs", "1", "--storage", "sqlite:///x.db", "--out", "out", "--quiet")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    for part in expected:
        assert part in lines[0], f"{part!r} missing from: {lines[0]}"
    assert not (tmp_path / "out").exists()
    db = tmp_path / "x.db"
    if db.exists():  # opening the storage is allowed; recording a trial is not
        with sqlite3.connect(db) as connection:
            tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "trials" in tables:
                assert connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 0


def test_default_space_conditional_parameters():
    draws = draw(default_space(get_problem("digits-mlp")), 600)
    seen_optimizers = {c["optimizer"] for c, _ in draws}
    assert seen_optimizers == set(LR_RANGES)  # every optimiser was drawn, so the checks below are not vacuous
    assert {c["schedule"] for c, _ in draws} == {"constant", "cosine", "step", "onecycle"}
    for config, params in draws:
        optimizer = config["optimizer"]
        has_momentum = optimizer in ("momentum", "nesterov")
        assert ("momentum" in config) == has_momentum, config
        assert ("momentum" in params) == has_momentum, params
        has_betas = optimizer in ("adam", "adamw")
        assert ("beta1" in config) == has_betas and ("beta2" in config) == has_betas, config
        assert ("beta1" in params) == has_betas and ("beta2" in params) == has_betas, params
        assert ("warmup" in config) == (config["schedule"] != "onecycle"), config
        low, high = LR_RANGES[optimizer]
        assert low <= config["lr"] <= high, config
        # lr is one Optuna parameter per optimiser, so samplers never mix the ranges.
        assert [k for k in params if k.startswith("lr")] == [f"lr[{optimizer}]"], params
        assert config["batch_size"] in (16, 32, 64, 128, 256)


def test_optimizers_list_makes_a_parameter_conditional():
    space = SearchSpace.from_mapping({
        "optimizer": {"choices": ["sgd", "momentum", "rmsprop", "adam"]},
        "lr": {"low": 1e-4, "high": 1e-1, "log": True},
        # rmsprop takes a momentum too; the list restricts it to the heavy-ball optimiser.
        "momentum": {"low": 0.5, "high": 0.99, "optimizers": ["momentum"]},
        "beta1": {"choices": [0.85, 0.9]},
    })
    draws = draw(space, 200, seed=1)
    assert {c["optimizer"] for c, _ in draws} == {"sgd", "momentum", "rmsprop", "adam"}
    for config, _ in draws:
        assert ("momentum" in config) == (config["optimizer"] == "momentum"), config
        assert ("beta1" in config) == (config["optimizer"] == "adam"), config
        assert 1e-4 <= config["lr"] <= 1e-1


def test_per_optimizer_ranges_are_respected():
    ranges = {"sgd": (0.05, 0.5), "adam": (1e-4, 1e-3)}
    space = SearchSpace.from_mapping({
        "optimizer": {"choices": ["sgd", "adam"]},
        "lr": {name: {"low": lo, "high": hi, "log": True} for name, (lo, hi) in ranges.items()},
    })
    for config, _ in draw(space, 100, seed=2):
        lo, hi = ranges[config["optimizer"]]
        assert lo <= config["lr"] <= hi, config


NEW_OPTIMIZERS = ["nadamw", "radam", "lion", "ademamix", "adafactor", "sf-adamw", "sf-sgd", "muon"]


def test_newer_optimizers_have_ranges_but_are_not_in_the_default_space():
    assert set(OTHER_LR_RANGES) == {*NEW_OPTIMIZERS, "soap", "shampoo"}
    assert not set(NEW_OPTIMIZERS) & set(default_space().optimizers)  # measured: BENCHMARKS.md, issue 19
    adamw_low, adamw_high = lr_range("adamw")
    lion_low, lion_high = lr_range("lion")
    assert 3 <= adamw_low / lion_low <= 10 and 3 <= adamw_high / lion_high <= 10  # Chen et al. 2023
    assert lr_range("nadamw") == lr_range("radam") == lr_range("ademamix") == lr_range("adam")
    sf_low, sf_high = lr_range("sf-adamw")
    assert 1 <= sf_low / adamw_low <= 10 and 1 <= sf_high / adamw_high <= 10  # Defazio et al. 2024
    momentum_low, momentum_high = lr_range("momentum")
    assert sf_low < lr_range("sf-sgd")[0] and 3 <= lr_range("sf-sgd")[1] / momentum_high <= 30
    assert lr_range("muon") == lr_range("adamw")  # match_rms_adamw puts Muon's rate on AdamW's scale
    assert lr_range("lbfgs") is None
    assert lr_range("soap") == lr_range("adam") and lr_range("shampoo") == lr_range("adagrad")


def test_a_space_naming_the_newer_optimizers_draws_each_ones_hyperparameters():
    space = SearchSpace.from_mapping({
        "optimizer": {"choices": NEW_OPTIMIZERS},
        "lr": {name: {"low": lr_range(name)[0], "high": lr_range(name)[1], "log": True} for name in NEW_OPTIMIZERS},
        "beta2": {"choices": [0.99, 0.999]},
        "beta3": {"low": 0.99, "high": 0.9999},
        "alpha": {"ademamix": {"low": 2.0, "high": 8.0}},
        "beta2_decay": {"low": -1.0, "high": -0.5},
        "muon_lr_scale": {"low": 0.5, "high": 2.0, "log": True},
        "schedule": "wsd",
        "cooldown": {"choices": [0.1, 0.2]},
    })
    draws = draw(space, 150, seed=3)
    assert {c["optimizer"] for c, _ in draws} == set(NEW_OPTIMIZERS)
    for config, _ in draws:
        optimizer = config["optimizer"]
        assert ("beta3" in config) == ("alpha" in config) == (optimizer == "ademamix"), config
        assert ("beta2_decay" in config) == (optimizer == "adafactor"), config
        assert ("muon_lr_scale" in config) == (optimizer == "muon"), config
        assert ("beta2" in config) == (optimizer not in ("adafactor", "sf-sgd")), config
        lo, hi = lr_range(optimizer)
        assert lo <= config["lr"] <= hi and config["cooldown"] in (0.1, 0.2), config
        TrainConfig.from_mapping(config).resolve(100)  # every drawn configuration is a valid run


def test_yaml_exponent_strings_are_numbers():
    # YAML 1.1 reads 1e-3 (no dot) as a string; a space file with it must still work.
    space = SearchSpace.from_mapping(yaml.safe_load("lr: {low: 1e-3, high: 1e-1, log: true}\n"))
    domain = space.params["lr"].domain
    assert (domain.low, domain.high, domain.log) == (1e-3, 1e-1, True)


def test_default_grid_is_seven_learning_rates_by_four_batch_sizes():
    points = default_space(get_problem("linreg"), "grid").grid()
    assert len(points) == 28
    pairs = {(p["lr"], p["batch_size"]) for p in points}
    assert len(pairs) == 28
    rates = sorted({lr for lr, _ in pairs})
    assert len(rates) == 7 and math.isclose(rates[0], 1e-3) and math.isclose(rates[-1], 1.0)
    ratios = [b / a for a, b in zip(rates, rates[1:])]
    assert all(math.isclose(r, 10 ** 0.5, rel_tol=1e-4) for r in ratios)  # evenly spaced on a log scale
    assert {b for _, b in pairs} == {16, 32, 64, 128}


def test_grid_expands_conditional_parameters():
    space = SearchSpace.from_mapping({
        "optimizer": {"choices": ["sgd", "momentum", "adam"]},
        "lr": {"sgd": {"low": 0.01, "high": 1.0, "log": True, "points": 3},
               "momentum": {"low": 0.001, "high": 0.1, "log": True, "points": 2},
               "adam": {"choices": [1e-3, 1e-2]}},
        "momentum": {"choices": [0.8, 0.9]},
        "batch_size": {"choices": [32, 64]},
        "epochs": 5,
    })
    points = space.grid()
    # sgd: 3 lr x 2 batch; momentum: 2 lr x 2 momentum x 2 batch; adam: 2 lr x 2 batch (no momentum).
    assert len(points) == 6 + 8 + 4
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    for point in points:
        assert ("momentum" in point) == (point["optimizer"] == "momentum"), point
        assert [k for k in point if k.startswith("lr")] == [f"lr[{point['optimizer']}]"], point


def test_grid_leaves_warmup_out_for_onecycle():
    space = SearchSpace.from_mapping({
        "lr": {"low": 0.01, "high": 0.1, "log": True, "points": 2},
        "schedule": {"choices": ["constant", "onecycle"]},
        "warmup": {"choices": [0.0, 0.1]},
    })
    points = space.grid()
    assert len(points) == 2 * 2 + 2  # constant: 2 lr x 2 warmup; onecycle: 2 lr
    assert all(("warmup" in p) == (p["schedule"] == "constant") for p in points)


@pytest.mark.parametrize("extra", [[], ["--strategy", "grid"]], ids=["default", "grid"])
def test_space_show_prints_yaml_that_round_trips(main_cli, extra):
    done = main_cli("space", "--show", *extra)
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load(done.stdout)
    assert isinstance(data, dict) and data
    space = SearchSpace.from_mapping(data)
    assert space.to_data() == data
    if extra:
        assert len(space.grid()) == 28
    else:
        assert set(data["optimizer"]["choices"]) == set(LR_RANGES)
        assert set(data["lr"]) == set(LR_RANGES)
        assert data["momentum"]["optimizers"] == ["momentum", "nesterov"]
        # The printed space draws the same conditional configurations as the built-in one.
        assert [c for c, _ in draw(space, 50)] == [c for c, _ in draw(default_space(), 50)]


def test_a_space_tunes_averaging_for_any_optimizer_but_schedule_free():
    """``average_decay`` is drawn only where ``average`` is ema, wherever the space names it; Schedule-Free,
    which averages already, draws neither."""
    space = SearchSpace.from_mapping({
        "average_decay": {"low": 0.9, "high": 0.999},
        "optimizer": {"choices": ["momentum", "adamw", "sf-adamw"]},
        "average": {"choices": ["none", "ema", "swa"]},
    })
    draws = draw(space, 90, seed=4)
    for config, _ in draws:
        assert ("average" in config) == (config["optimizer"] != "sf-adamw"), config
        assert ("average_decay" in config) == (config.get("average") == "ema"), config
        TrainConfig.from_mapping(config).resolve(100)
    assert {(c["optimizer"], c.get("average")) for c, _ in draws} == {
        (o, a) for o in ("momentum", "adamw") for a in ("none", "ema", "swa")} | {("sf-adamw", None)}
    with pytest.raises(UsageError, match=r"'average'.*one of: ema, none, swa.*Got 'mean'"):
        SearchSpace.from_mapping({"average": {"choices": ["ema", "mean"]}})


def test_the_default_space_over_chosen_optimizers_gives_each_its_own_range():
    from gradtune.tuning.defaults import default_space_data, fitted_space

    chosen = ["adamw", "lion", "muon", "sf-adamw", "nesterov"]
    space = fitted_space(default_space_data(optimizers=chosen))
    assert space.optimizers == chosen
    draws = draw(space, 300, seed=4)
    assert {c["optimizer"] for c, _ in draws} == set(chosen)
    for config, _ in draws:
        low, high = lr_range(config["optimizer"])
        assert low <= config["lr"] <= high, config
        assert ("momentum" in config) == (config["optimizer"] == "nesterov"), config
        TrainConfig.from_mapping(config).resolve(1000)  # a valid run on 1000 samples
    # Without an optimiser that takes them, momentum and the betas leave the space rather than be refused.
    plain = default_space_data(optimizers=["sgd", "adagrad"])
    assert "momentum" not in plain and "beta1" not in plain and "beta2" not in plain
    assert default_space_data(optimizers=list(LR_RANGES)) == default_space_data()


@pytest.mark.parametrize(("optimizers", "message"), [
    (["adamw", "lbfgs"], r"'optimizers' parameter must name optimisers with a learning-rate range.*\(lbfgs chooses"),
    (["adamx"], r"'optimizers' parameter must be one of: .*Got 'adamx'"),
    ([], r"'optimizers' parameter must name optimisers"),
])
def test_chosen_optimizers_without_a_range_or_unknown_are_refused(optimizers, message):
    from gradtune.tuning.defaults import default_space_data

    with pytest.raises(UsageError, match=message):
        default_space_data(optimizers=optimizers)


def test_yaml_exponents_are_numbers_in_choices_and_fixed_values_too(tmp_path):
    # A range's bounds were converted, but 'lr: 1e-3' and 'choices: [1e-3, 1e-2]' stayed strings: every trial
    # that drew one failed, and a study of such trials never spent its trial budget.
    from gradtune.config import load_config_file

    path = tmp_path / "space.yaml"
    path.write_text("optimizer: adam\nlr: 1e-3\nweight_decay: {choices: [1e-4, 1E-2, 0]}\nbeta2: -1.5e+0\n"
                    "schedule: cosine\nprecision: '32'\n")
    data = load_config_file(path)
    assert data == {"optimizer": "adam", "lr": 1e-3, "weight_decay": {"choices": [1e-4, 1e-2, 0]}, "beta2": -1.5,
                    "schedule": "cosine", "precision": "32"}
    assert type(data["lr"]) is float and yaml.safe_load("lr: 1e-3")["lr"] == "1e-3"  # PyYAML's own reading, untouched


@pytest.mark.parametrize(("spec", "message"), [
    ({"epochs": -2}, r"'epochs' parameter must be an integer in \[1, inf\)\. Got -2"),
    ({"batch_size": {"choices": [0, 32]}}, r"'batch_size' .* Got 0"),
    ({"epochs": {"low": 0, "high": 3}}, r"'epochs' .* Got 0"),
    ({"optimizer": "adam", "lr": {"choices": [0.1, -1]}}, r"'lr' parameter must be a float in \(0, inf\)\. Got -1"),
    ({"optimizer": "adam", "lr": "nan"}, r"'lr' .* Got 'nan'"),
    ({"optimizer": {"choices": ["sgd", "momentum"]}, "momentum": {"low": 0.5, "high": 1.5}}, r"'momentum' .* Got 1.5"),
    ({"optimizer": "adam", "lr": {"adam": {"low": -1.0, "high": 1.0}}}, r"'lr' .* Got -1"),
])
def test_a_value_the_config_refuses_is_refused_before_any_trial(spec, message):
    # Each trial that drew it failed, and a study whose every draw failed never spent its trial budget: it ran
    # until killed, failing hundreds of trials a second.
    with pytest.raises(UsageError, match=message):
        SearchSpace.from_mapping(spec)


def test_a_range_may_end_on_an_open_bound_that_a_draw_never_reaches():
    space = SearchSpace.from_mapping({"optimizer": "momentum", "momentum": {"low": 0.5, "high": 1.0},
                                      "lr": {"low": 0.0, "high": 0.1}})
    assert space.params["momentum"].domain.high == 1.0
