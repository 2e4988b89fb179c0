"""Files written atomically, with the user's umask, as other command-line tools write theirs; JSON numbers.

A reader sees the old file or the whole new one, never half of it, even if the
process is killed mid-write: the bytes go to a temporary file beside the target,
which is then renamed over it (atomic on POSIX).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .errors import invalid_value
from .interrupts import HeldInterrupts

__all__ = ["atomic_replace", "atomic_write_bytes", "write_json", "json_number", "writable_dir"]


def _default_mode() -> int:
    """What ``open()`` would give a new file: 0o666 less the umask. (``mkstemp`` makes 0o600 files, readable by
    their owner alone.) The umask can only be read by setting it, so it is set back at once."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_replace(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write(handle)`` to a temporary file beside ``path``, then rename it over ``path``.

    A Ctrl-C (or SIGTERM turned into one) that comes meanwhile waits until the file is in place, then raises
    KeyboardInterrupt: ``torch.save`` cut in the middle of its writes raises ``RuntimeError`` from its zip
    writer instead of the interrupt, and may abort the process when that writer is freed after the file is
    closed. (A writer's own error still removes the temporary file.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with HeldInterrupts():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, _default_mode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_replace(path, lambda handle: handle.write(data))


def write_json(path: str | Path, value: Any) -> None:
    """``value`` as indented JSON, atomically: every result file gradtune writes."""
    atomic_write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())


def json_number(value: Any) -> Any:
    """NaN and inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def writable_dir(name: str, path: str | Path) -> Path:
    """``path`` made (with its parents) and checked writable now, for a directory the run writes in later, so that
    a bad one is refused in one line naming the parameter ``name`` before any work rather than when a trial first
    writes there (a FileNotFoundError, or a PermissionError, after minutes of training)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise invalid_value(name, str(path), f"a directory gradtune can create and write in ({error.strerror})"
                            ) from None
    return path
