"""One live unit per state directory.

Two units over one directory would each keep "one opening at a time" on the
same car, count the same boot twice, and fork the access log (each builds
its tree from the journal once, at boot, then appends to it unseen by the
other, so receipts carry proofs the journal does not hold). The ledger alone
stays single-use across them; nothing else does. So a unit holds an
exclusive ``flock`` on a file in its directory while it runs: the kernel
drops it when the process dies, however it dies, so a crash never leaves the
directory held.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from typing import TypeVar

from ..errors import LedgerError

LOCK_FILE = "unit.lock"

T = TypeVar("T")


def hold(state_dir: str | os.PathLike[str]) -> int:
    """Take ``state_dir`` for this unit; return the descriptor that holds it.

    Raises :class:`~trunkkey.errors.LedgerError` if another running unit
    (in this process or any other) holds it, or the lock file cannot be opened.
    """
    path = os.path.join(state_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise LedgerError(f"cannot open {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise LedgerError(
            f"state directory {os.fspath(state_dir)} is held by another running unit; "
            "stop it before booting another over the same state"
        ) from None
    return fd


def release(fd: int | None) -> None:
    """Give the directory back (closing the descriptor drops the lock); ``None``."""
    if fd is not None:
        os.close(fd)


def holding(state_dir: str | os.PathLike[str], build: Callable[[], T]) -> tuple[T, int]:
    """``build()`` with ``state_dir`` held; the directory is given back if it raises."""
    fd = hold(state_dir)
    try:
        return build(), fd
    except BaseException:
        os.close(fd)
        raise
