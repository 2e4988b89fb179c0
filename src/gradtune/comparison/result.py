"""What ``compare`` returns, and ``result.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import write_json

__all__ = ["CompareResult"]


@dataclass
class CompareResult:
    """Per optimiser (``optimizers``): final_mean, final_std, epochs_to_target, seconds_to_target,
    lr_sensitivity, diverged_fraction, best_config; then ``ranking`` and ``recommendation``."""

    problem: str
    study: str
    epochs: int
    budget: int
    seeds: int
    summary: dict[str, Any]

    @property
    def optimizers(self) -> dict[str, dict[str, Any]]:
        return self.summary["optimizers"]

    @property
    def ranking(self) -> list[str]:
        return self.summary["ranking"]

    @property
    def recommendation(self) -> str:
        return self.summary["recommendation"]

    @property
    def recommended(self) -> str | None:
        return self.summary["recommended"]

    def to_json(self) -> dict[str, Any]:
        return {"problem": self.problem, "study": self.study, "epochs": self.epochs, "budget": self.budget,
                "seeds": self.seeds, **self.summary}

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "result.json", self.to_json())
        return out
