"""A worker's log lines reach stdout whole: workers of ``gradtune tune --workers N`` share one pipe."""

from __future__ import annotations

import io

from gradtune.cli._live import TrialLog
from gradtune.tuning.record import TrialOutcome


class _Writes(io.StringIO):
    """stdout that records each write call, as an unbuffered stream passes each to the pipe."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def test_each_trial_line_is_one_write_with_its_newline(monkeypatch):
    # print() writes the text and the newline separately; under PYTHONUNBUFFERED=1 another worker's
    # line could land between them (seen in tests/distributed/test_workers.py).
    out = _Writes()
    monkeypatch.setattr("sys.stdout", out)
    log = TrialLog("valid_accuracy")
    for number in range(3):
        log.on_trial_end(TrialOutcome(number, {}, "completed", 0.5, 1, 0.1), study=None)
    assert len(out.calls) == 3
    assert all(call.startswith("worker ") and call.endswith(" epochs=1\n") for call in out.calls)
