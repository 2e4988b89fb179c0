"""``gradtune space --show``: print the default search space in the space-file format."""

from __future__ import annotations

import argparse

from .tune import DEFAULT_STRATEGY


def add_parser(sub) -> None:
    parser = sub.add_parser("space", help="show the default search space",
                            description="Print the default search space as YAML, to start a --space file from.")
    parser.add_argument("--show", action="store_true", help="print the default space (the default action)")
    parser.add_argument("--strategy", default=DEFAULT_STRATEGY, help="grid shows the default grid")
    parser.add_argument("--format", default="yaml", choices=("yaml", "json"), help="output format")
    parser.add_argument("--optimizers", help="comma-separated optimisers to search instead of the default seven, "
                                             "each with its own learning-rate range (e.g. adamw,lion,muon,sf-adamw)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    import yaml

    from ..tuning import default_space
    from ..tuning.defaults import default_space_data, fitted_space

    if args.optimizers is not None:
        data = fitted_space(default_space_data(optimizers=args.optimizers.split(","))).to_data()
    else:
        data = default_space(None, args.strategy).to_data()
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0
