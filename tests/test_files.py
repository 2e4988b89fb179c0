"""Result files are written atomically and with the user's umask, as other command-line tools write theirs."""

from __future__ import annotations

import os
import stat

import pytest

from gradtune.files import atomic_write_bytes, json_number


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
