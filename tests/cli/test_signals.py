"""``interrupts_as_keyboard_interrupt``: SIGTERM and SIGINT stop a run as Ctrl-C does, and the handlers come back."""

from __future__ import annotations

import signal

import pytest

from gradtune.cli._signals import interrupts_as_keyboard_interrupt


@pytest.fixture
def ignored_signals():
    """SIGTERM and SIGINT ignored, as a shell may start a background job; the test's own handlers after."""
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN), signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGTERM, before[0])
    signal.signal(signal.SIGINT, before[1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_inside_raises_keyboard_interrupt_and_the_handlers_are_restored(ignored_signals, signum):
    with pytest.raises(KeyboardInterrupt), interrupts_as_keyboard_interrupt():
        signal.raise_signal(signum)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.raise_signal(signum)  # ignored again: nothing happens


def test_the_handlers_are_restored_after_a_block_that_ends_normally(ignored_signals):
    with interrupts_as_keyboard_interrupt():
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN and signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_compare_hears_sigterm_as_ctrl_c(main_cli, monkeypatch):
    # 'kill' of a compare ended it with exit 143 and no line, where tune and train stop as on Ctrl-C (exit 130).
    import gradtune.comparison

    heard = []

    def compare(*args, **kwargs):
        heard.append(signal.getsignal(signal.SIGTERM))
        raise KeyboardInterrupt  # what the handler raises on SIGTERM

    monkeypatch.setattr(gradtune.comparison, "compare", compare)
    done = main_cli("compare", "linreg", "--quiet")
    assert heard and heard[0] not in (signal.SIG_DFL, signal.SIG_IGN, None)
    assert done.returncode == 130 and "interrupted" in done.stderr
