"""Result files are written atomically and with the user's umask, as other command-line tools write theirs."""

from __future__ import annotations

import os
import signal
import stat

import pytest
import torch

from ctrl_c import python_sigint
from gradtune.files import atomic_replace, atomic_write_bytes, json_number
from gradtune.training import load_checkpoint, save_checkpoint


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_written_file_takes_the_umask_like_open(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "result.json", b"{}")
        with open(tmp_path / "plain.json", "wb") as handle:
            handle.write(b"{}")
    finally:
        os.umask(previous)
    written = stat.S_IMODE((tmp_path / "result.json").stat().st_mode)
    assert written == mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode)
    assert (tmp_path / "result.json").read_bytes() == b"{}"


def test_json_number_writes_nan_and_inf_as_null():
    assert [json_number(v) for v in (1.5, float("nan"), float("inf"), -float("inf"), 3, None)] == \
        [1.5, None, None, None, 3, None]


class _CtrlCMidWrite:
    """A file that receives Ctrl-C (a real SIGINT to this process) on its third write, as a user's may arrive
    while ``torch.save`` streams a checkpoint."""

    def __init__(self, handle):
        self.handle, self.writes = handle, 0

    def write(self, data) -> int:
        self.writes += 1
        if self.writes == 3:
            signal.raise_signal(signal.SIGINT)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def test_ctrl_c_during_a_checkpoint_write_waits_for_the_whole_file_then_interrupts(tmp_path):
    # Unheld, the interrupt lands inside torch.save's zip writer, which then raises RuntimeError ("unexpected
    # pos") from its own cleanup, so the interrupt is lost, and the file is never written.
    state = {f"w{i}": torch.full((64, 64), float(i)) for i in range(8)}
    save_checkpoint(tmp_path / "ckpt.pt", model_state=state, optimizer_state={}, config={}, seed=0, epoch=1)
    with python_sigint(), pytest.raises(KeyboardInterrupt):
        atomic_replace(tmp_path / "ckpt.pt", lambda handle: torch.save(
            {"format": "gradtune-checkpoint-1", "model_state": {k: v + 1 for k, v in state.items()},
             "optimizer_state": {}, "config": {}, "seed": 0, "epoch": 2}, _CtrlCMidWrite(handle)))
    written = load_checkpoint(tmp_path / "ckpt.pt")
    assert written["epoch"] == 2 and torch.equal(written["model_state"]["w7"], state["w7"] + 1)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left beside it
