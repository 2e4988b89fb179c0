"""HeldInterrupts: Ctrl-C waits for the end of a block that must end whole, and of the outermost such block."""

from __future__ import annotations

import signal

import pytest

from ctrl_c import python_sigint
from gradtune.interrupts import HeldInterrupts


@pytest.fixture(autouse=True)
def _python_sigint():
    with python_sigint():
        yield


def test_ctrl_c_in_a_block_is_raised_when_the_block_ends():
    done = []
    with pytest.raises(KeyboardInterrupt), HeldInterrupts():
        signal.raise_signal(signal.SIGINT)
        done.append("rest of the block")
    assert done == ["rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_in_a_nested_block_waits_for_the_outer_one():
    # A file written atomically (its own hold) inside the tuning loop's bookkeeping (another hold): the
    # bookkeeping must still end whole, so the interrupt comes when the outer block ends.
    done = []
    with pytest.raises(KeyboardInterrupt), HeldInterrupts():
        with HeldInterrupts():
            signal.raise_signal(signal.SIGINT)
            done.append("inner")
        done.append("outer, after the inner block")
    assert done == ["inner", "outer, after the inner block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
