"""Holding Ctrl-C and SIGTERM while something must be written whole: a study's bookkeeping, so that no trial is
left half-told, and a file (:func:`gradtune.files.atomic_replace`), so that a checkpoint is never cut in the middle
of ``torch.save``, which turns an interrupt there into a ``RuntimeError`` ("unexpected pos") or an abort."""

from __future__ import annotations

import signal
import threading

__all__ = ["HeldInterrupts"]


class HeldInterrupts:
    """Hold SIGINT (and SIGTERM where a handler turns it into KeyboardInterrupt) during a block that must end whole.

    A signal that comes meanwhile raises KeyboardInterrupt on leaving the block, or, where the block is inside
    another hold, on leaving the outermost one. Handlers can only be set from the main thread; elsewhere this
    does nothing.

    Example:
        >>> with HeldInterrupts():
        ...     study.tell(trial, value)    # told and recorded together; a Ctrl-C waits for the block's end
    """

    def __enter__(self) -> HeldInterrupts:
        self.saved, self.caught = {}, False
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handler = signal.getsignal(sig)
                if callable(handler):
                    self.saved[sig] = signal.signal(sig, self._hold)
        return self

    def _hold(self, signum, frame) -> None:
        self.caught = True

    def __exit__(self, kind, error, traceback) -> bool:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if self.caught and kind is None:
            outer = next((h.__self__ for h in self.saved.values() if isinstance(getattr(h, "__self__", None),
                                                                               HeldInterrupts)), None)
            if outer is None:
                raise KeyboardInterrupt
            outer.caught = True  # held inside another hold (a file written during bookkeeping): that one ends first
        return False
