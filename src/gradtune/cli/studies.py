"""``gradtune studies``: the studies in a storage, with trials done and best value."""

from __future__ import annotations

import argparse

from ._flags import add_storage_flag


def add_parser(sub) -> None:
    parser = sub.add_parser("studies", help="list the studies in a storage",
                            description="List the studies in a storage: name, trials done, best value.")
    add_storage_flag(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import optuna
    from optuna.trial import TrialState
    from rich.table import Table

    from ..errors import UsageError
    from ..storage.open import DEFAULT_STORAGE, missing_file, open_storage
    from ._console import make_console

    missing = missing_file(args.storage)
    if missing is not None:
        url = args.storage or f"{DEFAULT_STORAGE} (the default)"
        raise UsageError(f"The 'storage' parameter must name an existing storage: listing studies only reads. "
                         f"Got {url}, and {missing} does not exist.")
    storage = open_storage(args.storage)
    table = Table(title="gradtune studies")
    # The metric names what "best value" is: a study may tune on the user's own (valid_f1, say).
    for column in ("study", "problem", "metric", "direction", "trials done", "best value"):
        table.add_column(column)
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=True):
        meta = summary.user_attrs.get("gradtune", {})
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        best = summary.best_trial.value if summary.best_trial is not None else None
        table.add_row(summary.study_name, meta.get("problem", "-"), meta.get("metric", "-"),
                      summary.direction.name.lower(), str(done),
                      "-" if best is None else f"{best:.6g}")
    make_console().print(table)
    return 0
