"""What a study produced: the leaderboard, the best configuration and the best model, and their files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..config import TrainConfig
from ..files import json_number, write_json
from ..problems import Problem
from ..storage.keys import METADATA_KEY
from ..storage.trials import trial_rows
from ..training import save_checkpoint, train

__all__ = ["TuneResult", "best_model_for"]


@dataclass
class TuneResult:
    """What :func:`gradtune.tune` returns; ``to_json()`` is ``result.json``."""

    study: str
    strategy: str
    metric: str
    direction: str
    best_config: dict[str, Any] | None
    best_value: float | None
    best_trial: int | None
    trials: list[dict[str, Any]]
    interrupted: bool = False
    best_model: Any = field(default=None, repr=False)
    best_model_trial: int | None = None
    pbt: dict[str, Any] | None = None  # population-based training: lineage and the best member's schedule
    auto: dict[str, Any] | None = None  # --strategy auto: range tests, narrowed space, advice, explanation
    problem_spec: dict[str, Any] | None = None  # a user problem's spec, options and file hash, as the study stores

    @classmethod
    def from_study(cls, study: optuna.Study, strategy: str, metric: str, interrupted: bool = False) -> TuneResult:
        """The stored study's trials and best trial (the strategy adds its own section: see ``Strategy.report``)."""
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = study.best_trial if completed else None
        return cls(study.study_name, strategy, metric, study.direction.name.lower(),
                   best.user_attrs.get("config") if best else None, best.value if best else None,
                   best.number if best else None, trial_rows(study), interrupted,
                   problem_spec=(study.user_attrs.get(METADATA_KEY) or {}).get("problem_spec"))

    def leaderboard(self, top: int = 10) -> list[dict[str, Any]]:
        done = [t for t in self.trials if t["state"] == "completed" and t["value"] is not None]
        done.sort(key=lambda t: t["value"], reverse=self.direction == "maximize")
        return done[:top]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t["state"]] = out.get(t["state"], 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "strategy": self.strategy, "metric": self.metric,
                "best_config": self.best_config, "best_value": json_number(self.best_value),
                "best_trial": self.best_trial, "direction": self.direction, "interrupted": self.interrupted,
                "trials": self.trials, **({"pbt": self.pbt} if self.pbt is not None else {}),
                **({"auto": self.auto} if self.auto is not None else {}),
                **({"problem_spec": self.problem_spec} if self.problem_spec is not None else {})}

    def files(self) -> list[str]:
        """What :meth:`save` writes: ``result.json``, and the best trial's config and model where there is one."""
        return ["result.json", *(["best_config.json"] if self.best_config is not None else []),
                *(["best_model.pt"] if self.best_model is not None else [])]

    def save(self, out: str | Path) -> Path:
        out, files = Path(out), self.files()
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "result.json", self.to_json())
        if "best_config.json" in files:
            write_json(out / "best_config.json", self.best_config)
        if "best_model.pt" in files:
            save_checkpoint(out / "best_model.pt", model_state=self.best_model.state_dict(), optimizer_state={},
                            config=self.best_config, seed=self.best_config.get("seed", 0),
                            epoch=self.best_config.get("epochs") or 0, trial=self.best_model_trial)
        return out


def best_model_for(result: TuneResult, problem: Problem, best_in_process) -> tuple[Any, int | None]:
    """The best trial's trained model: kept from this process, or trained again from its config.

    A resumed study's best trial may come from an earlier run or another worker;
    training its config again with its seed reproduces its model.
    """
    if result.best_config is None:
        return None, None
    if best_in_process is not None and best_in_process[0] == result.best_trial:
        return best_in_process[2].model, result.best_trial
    config = TrainConfig.from_mapping(result.best_config, "best configuration")
    return train(problem, config).model, result.best_trial
