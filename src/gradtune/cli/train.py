"""``gradtune train PROBLEM``: train one configuration, with a progress bar, a result file and a checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._flags import PROBLEM_HELP, add_data_flags, add_option_flag, add_output_flags
from ._paths import problem_dir


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# Flags that map one-to-one onto TrainConfig fields (dest -> type).
CONFIG_FLAGS: dict[str, object] = {
    "optimizer": str, "lr": float, "batch_size": int, "epochs": int, "steps": int, "momentum": float,
    "weight_decay": float, "beta1": float, "beta2": float, "eps": float, "alpha": float, "hypergrad_lr": float,
    "max_lr": float, "schedule": str,
    "warmup": float, "gamma": float, "init": str, "activation": str, "hidden": str, "shuffle": _boolean, "seed": int,
    "device": str, "sampling": str, "clip_norm": float, "precision": str, "micro_batch": int, "decay": str,
    "beta3": float, "beta2_decay": float, "cooldown": float, "lookahead": int, "lookahead_alpha": float, "average": str,
    "average_decay": float, "muon_lr_scale": float, "ns_steps": int,
    "precondition_frequency": int, "eval_every": int,
}
_HELP = {
    "optimizer": "gd, sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad, nadamw, radam, lion, ademamix, "
                 "sf-adamw, sf-sgd, adafactor, muon, sgd-hd, adam-hd, lbfgs, or soap or shampoo with pip install "
                 "'gradtune[second-order]' (default sgd; 'gradtune optimizers' lists them)",
    "alpha": "rmsprop: decay of the squared-gradient average; ademamix: weight of the slow moment",
    "beta3": "ademamix: decay of the slow first moment (default 0.9999)",
    "beta2_decay": "adafactor: the second moment's decay is 1 - t**beta2_decay (default -0.8)",
    "muon_lr_scale": "muon: the hidden matrices' rate is lr times this (default 1; lr is AdamW's scale)",
    "ns_steps": "muon: Newton-Schulz iterations per step (default 5)",
    "precondition_frequency": "soap/shampoo: steps between refreshes of the preconditioner (default 10 / 1)",
    "hypergrad_lr": "sgd-hd/adam-hd: how fast the learning rate adapts (default 1e-3 / 1e-7, the paper's)",
    "max_lr": "sgd-hd/adam-hd: the adapted learning rate stays in [0, max_lr] (default 1.0 / 0.1)",
    "lr": "learning rate (default: the optimizer's)",
    "batch_size": "mini-batch size (default 32; full-batch optimizers use the whole training set)",
    "epochs": "training length in epochs (default 10)",
    "steps": "training length in optimizer steps, instead of epochs",
    "eval_every": "evaluate (and record, checkpoint, report for pruning) every this many steps instead of once an "
                  "epoch; data without a length is otherwise evaluated once, at the end",
    "schedule": "constant, step, exponential, cosine, onecycle, batch-growth or wsd (default constant)",
    "warmup": "fraction of training spent in linear warm-up, in [0, 1) (default 0)",
    "gamma": "decay factor of the step/exponential/batch-growth schedules",
    "cooldown": "wsd: the final fraction of training spent decaying to 0 (default 0.2)",
    "init": "default, xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal, orthogonal, zeros",
    "activation": "relu, tanh, sigmoid, gelu, leaky_relu or elu (built-in models)",
    "hidden": "hidden layer sizes of the MLP, such as 128,64",
    "device": "auto (CUDA when present), cpu, cuda or cuda:N (default auto)",
    "shuffle": "true: a new data order each epoch (default); false: the dataset's order (MNIST-1D's default)",
    "clip_norm": "clip the global gradient norm to this between backward and step (default: no clipping)",
    "precision": "32 (default), bf16 (bfloat16 autocast) or fp16 (float16 autocast with a gradient scaler)",
    "micro_batch": "run each batch as micro-batches of at most this many samples, their gradients summed "
                   "(accumulation is batch-size / micro-batch)",
    "decay": "all (default): weight decay on every parameter; matrices: none on biases and norms",
    "lookahead": "Lookahead around the optimizer: every K steps the weights move back to slow + alpha * "
                 "(fast - slow) (default 0: off; not with lbfgs)",
    "lookahead_alpha": "Lookahead's step of the slow weights towards the fast ones, in (0, 1] (default 0.5)",
    "average": "none (default), ema or swa: evaluate, save and return an average of the weights (swa: of the last "
               "quarter of the steps)",
    "average_decay": "ema: the average's decay (default 0.999; about 1/(1 - decay) recent steps count)",
    "sampling": "uniform (default) or importance: draw hard samples more often, weighted to stay unbiased, "
                "in epochs where it pays for its cost (Katharopoulos & Fleuret 2018)",
}


def add_parser(sub) -> None:
    parser = sub.add_parser("train", help="train one configuration",
                            description="Train one configuration of a problem and write result.json and model.pt.")
    parser.add_argument("problem", help=PROBLEM_HELP)
    add_option_flag(parser)
    for dest, kind in CONFIG_FLAGS.items():
        parser.add_argument("--" + dest.replace("_", "-"), dest=dest, type=kind, default=None, help=_HELP.get(dest))
    add_data_flags(parser)
    parser.add_argument("--config", help="JSON, YAML or TOML file of the same keys; flags override it")
    parser.add_argument("--nproc", type=int, default=1,
                        help="train data-parallel on this many processes (torch.distributed: gloo on CPU, nccl on "
                             "CUDA); the batch size stays the global one (default 1; under torchrun, its world size)")
    parser.add_argument("--checkpoint", default=None,
                        help="the run's checkpoint, written atomically after every epoch (or evaluation): after "
                             "Ctrl-C, kill or a crash, the same command resumes from it, with the numbers of a run "
                             "never stopped; removed once the run ends (default OUT/checkpoint.pt; 'off' for none; "
                             "under torchrun, none unless given)")
    add_output_flags(parser, out="runs/train-PROBLEM", quiet="no progress bar or table")
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    """The file's values, then every flag the user gave on top."""
    from ..config import SCHEDULED_KEYS, TrainConfig, load_config_file
    from ..errors import UsageError

    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    source = f"config file '{args.config}'"
    from_file = TrainConfig.from_mapping(values, source)  # unknown keys are refused before flags are merged
    flags = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k) is not None}
    # A value the schedule's first segment sets is the schedule's from epoch 0: the flag would train nowhere.
    opening = (from_file.hyper_schedule or [{}])[0]
    key = next((k for k in SCHEDULED_KEYS if k in flags and k in opening), None)
    if key is not None:
        raise UsageError(f"The '{key}' parameter cannot be given as a flag over {source}, whose 'hyper_schedule' "
                         f"sets {key} from epoch 0 and so replaces it. Got {key}={flags[key]!r}; change the "
                         f"schedule instead.")
    return TrainConfig.from_mapping({**values, **flags}, source)


def load_problem(args: argparse.Namespace, config):
    """The problem that ``args.problem`` names: a built-in or csv:/npz: data with its flags, or a user problem
    (a spec or an entry point) with its ``-o`` options."""
    from ..errors import UsageError
    from ..problems import get_problem
    from ..problems._registry import is_builtin
    from ..problems.spec_options import parse_option_pairs

    options = parse_option_pairs(args.options)
    if not is_builtin(args.problem):
        _refuse_builtin_flags(args, config)
        return get_problem(args.problem, **options)  # an unknown name is refused there, with what is accepted
    if options:
        raise UsageError(f"The '-o' parameter applies to your own problems (FILE.py:ATTR, MODULE:ATTR or an "
                         f"installed one). Got {', '.join(options)} for '{args.problem}', whose options are flags "
                         f"(see 'gradtune problems').")
    options = {"hidden": config.hidden}
    if args.problem.startswith(("csv:", "npz:")):
        options.update(target=args.target, task=args.task)
    elif args.target is not None or args.task is not None:
        raise UsageError(f"The '--target' and '--task' flags apply to csv:PATH and npz:PATH problems. Got them "
                         f"for '{args.problem}'.")
    return get_problem(args.problem, **options)


def load_problem_of_flags(args: argparse.Namespace):
    """:func:`load_problem` for the commands whose only training flag that shapes the problem is ``--hidden``."""
    from ..config import TrainConfig, parse_hidden

    return load_problem(args, TrainConfig(hidden=parse_hidden(args.hidden) if args.hidden else None))


def _refuse_builtin_flags(args: argparse.Namespace, config) -> None:
    """``--hidden``, ``--target`` and ``--task`` shape the problems gradtune builds; a user's own problem takes
    its settings through ``-o``."""
    from ..errors import UsageError

    given = {"--hidden": config.hidden, "--target": args.target, "--task": args.task}
    for flag, value in given.items():
        if value is not None:
            shown = ",".join(map(str, value)) if flag == "--hidden" else value
            raise UsageError(f"The '{flag}' flag applies to built-in and csv:/npz: problems. Got {shown} for "
                             f"'{args.problem}'; give your problem's settings as -o KEY=VALUE.")


def run(args: argparse.Namespace) -> int:
    from ..errors import check_number
    from ..files import write_json
    from ..problems.spec import source_record
    from ..training import save_checkpoint, train
    from ..training.checkpoint import load_epoch_checkpoint
    from ._progress import TrainProgress, print_summary
    from ._signals import interrupts_as_keyboard_interrupt

    config = config_from_args(args)
    problem = load_problem(args, config)
    config = config.resolve_for(problem)
    out = Path(args.out or problem_dir("train", problem.name))
    check_number("nproc", args.nproc, low=1, integer=True)
    from ..distributed.data_parallel import launched_by_torchrun, torchrun_rank

    rank = torchrun_rank()
    checkpoint = checkpoint_path(args, out, launched_by_torchrun())
    resumed = load_epoch_checkpoint(checkpoint, config.to_dict()) if checkpoint is not None and rank == 0 else None
    if resumed is not None and not args.quiet:
        print(f"gradtune train: resuming after epoch {resumed['epoch']} from {checkpoint}", file=sys.stderr)
    progress = TrainProgress(problem, enabled=not args.quiet and rank == 0)
    try:
        with interrupts_as_keyboard_interrupt(), progress:
            if args.nproc > 1 or launched_by_torchrun():
                from ..distributed.data_parallel import train_parallel

                result = train_parallel(problem, config, args.nproc, callbacks=[progress], checkpoint=checkpoint)
            else:
                result = train(problem, config, callbacks=[progress], checkpoint=checkpoint)
    except KeyboardInterrupt:
        if checkpoint is None or rank != 0 or not checkpoint.is_file():
            raise
        print(f"gradtune train: interrupted; the same command resumes from {checkpoint}", file=sys.stderr)
        return 130
    if rank != 0:
        return 0  # rank 0 writes the results
    out.mkdir(parents=True, exist_ok=True)
    record = {**result.to_json(), **source_record(problem)}  # a user problem: its spec, options and file hash
    write_json(out / "result.json", record)
    save_checkpoint(out / "model.pt", model_state=result.model.state_dict(),
                    optimizer_state=result.optimizer.state_dict(), config=result.config, seed=config.seed,
                    epoch=result.epochs_run, status=result.status)
    if checkpoint is not None:  # the run has ended and its results are written: a rerun trains afresh
        checkpoint.unlink(missing_ok=True)
    if not args.quiet:
        print_summary(result, out)
    return 0


def checkpoint_path(args: argparse.Namespace, out: Path, under_torchrun: bool) -> Path | None:
    """Where the run keeps its checkpoint: ``--checkpoint``, else ``OUT/checkpoint.pt``; none for ``off``, or
    under torchrun unless given, where ranks on other machines may not see OUT (every rank resumes from it)."""
    if args.checkpoint == "off" or (args.checkpoint is None and under_torchrun):
        return None
    return Path(args.checkpoint) if args.checkpoint is not None else out / "checkpoint.pt"
