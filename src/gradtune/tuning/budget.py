"""Tuning budgets: a trial count, a wall-clock time, or both (``50``, ``90s``, ``5m``, ``2h``, ``50,5m``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import invalid_value

__all__ = ["Budget", "parse_budget"]

_UNITS = {"s": 1, "m": 60, "h": 3600}
_ACCEPTED = "a trial count (50), a time (90s, 5m, 2h) or both (50,5m)"


@dataclass(frozen=True)
class Budget:
    """``trials`` counts finished trials across every run of the study; ``seconds`` is per run."""

    trials: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        parts = [f"{self.trials} trials"] if self.trials else []
        if self.seconds:
            parts.append(f"{self.seconds:g}s")
        return ", ".join(parts) or "unbounded"


def parse_budget(text: str | int | Budget | None, default_trials: int = 50) -> Budget:
    if text is None:
        return Budget(trials=default_trials)
    if isinstance(text, Budget):
        return text
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        raise invalid_value("budget", text, _ACCEPTED)
    trials = seconds = None
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", part)
        if not match:
            raise invalid_value("budget", text, _ACCEPTED)
        number, unit = match.groups()
        if unit:
            if seconds is not None:
                raise invalid_value("budget", text, _ACCEPTED)
            seconds = float(number) * _UNITS[unit]
        else:
            if trials is not None or "." in number:
                raise invalid_value("budget", text, _ACCEPTED)
            trials = int(number)
    if (trials is not None and trials < 1) or (seconds is not None and seconds <= 0):
        raise invalid_value("budget", text, _ACCEPTED)
    return Budget(trials, seconds)
