"""A storage that cannot be reached gives one clear line and exit code 1, never a hang or a traceback.

"Unreachable" is a listener that completes TCP's handshake and then never
answers, as a firewalled or hung server does: only a connection timeout ends the
wait. (A closed port is refused at once and proves nothing about timeouts.)
"""

from __future__ import annotations

import socket

import pytest

from gradtune.cli.main import main

pytestmark = pytest.mark.postgres


@pytest.fixture
def silent_server():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"postgresql://gradtune:secret@127.0.0.1:{listener.getsockname()[1]}/gradtune"


def _wrong_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user = rest.split(":", 1)[0]
    return f"{scheme}://{user}:not-the-password@{rest.split('@', 1)[1]}"


@pytest.mark.parametrize("command", [["worker", "--study", "s"], ["tune", "linreg", "--study", "s", "--quiet"]])
@pytest.mark.parametrize("case", ["misspelt scheme", "wrong password", "unreachable host"])
def test_storage_failure_is_one_line_with_exit_1(cli, tmp_path, monkeypatch, capsys, postgres_url, silent_server,
                                                command, case):
    url = {"misspelt scheme": postgres_url.replace("postgresql://", "postgressql://"),
           "wrong password": _wrong_password(postgres_url),
           "unreachable host": silent_server}[case]
    if case == "unreachable host":
        # A real process with a timeout, so that a hang fails this test instead of stalling the suite; the
        # connection timeout itself is 5 s.
        done = cli(*command, "--storage", url, timeout=60)
        code, stderr = done.returncode, done.stderr
    else:  # refused at once: main(), what the command runs, in this process spares a fresh interpreter's imports
        monkeypatch.chdir(tmp_path)
        code, stderr = main([*command, "--storage", url]), capsys.readouterr().err
    assert code == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"gradtune {command[0]}: error: Could not open the storage")
    assert "not-the-password" not in lines[0] and "secret" not in lines[0]
    expected = {"misspelt scheme": "unknown database scheme 'postgressql'",
                "wrong password": "password authentication failed",
                "unreachable host": "timeout expired"}[case]
    assert expected in lines[0]
