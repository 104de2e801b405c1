"""A unit's state directory: one live unit per directory, and neither the ledger
nor the time floor silently replaced by a first install's.

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
from ..ledger.sqlite import SqliteLedger
from .timekeeping import FileTimeStore, TimeState

LOCK_FILE = "unit.lock"
LEDGER_FILE = "ledger.sqlite"
TIME_FILE = "time.json"

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


def open_ledger(state_dir: str | os.PathLike[str]) -> SqliteLedger:
    """The unit's ledger in ``state_dir`` (held); after a loss, one that refuses older tokens.

    A ledger missing from a directory a unit has booted in before (its time
    file is there: the ledger is always made first) was lost, not never made.
    Made empty it would have forgotten every spent token, and each would open
    again for the rest of its window. It is started afresh instead
    (:meth:`~trunkkey.SqliteLedger.start_afresh`) from the stored floor: every
    decision's time is stored before it is made, so no token spent here was
    issued later than the floor plus the verifier's skew, which the restart
    margin covers. Without a readable floor that cannot be done: refused.
    """
    ledger = os.path.join(state_dir, LEDGER_FILE)
    time_file = os.path.join(state_dir, TIME_FILE)
    if os.path.lexists(ledger) or not os.path.lexists(time_file):
        return SqliteLedger(ledger)
    try:
        state = FileTimeStore(time_file).load()
    except Exception:  # noqa: BLE001 -- unreadable, damaged or wrong: no floor
        state = None
    if state is None:
        raise LedgerError(
            f"ledger {ledger} is missing beside a time floor ({time_file}) that cannot be "
            f"read; run 'trunkkey ledger recover {ledger} --at <trusted time>' "
            "(see docs/operations.md, 'Recovering a damaged ledger')"
        )
    return SqliteLedger.start_afresh(ledger, now=state.floor)


class _LostFloor(FileTimeStore):
    """A time file lost after the unit had run: unknown floor, untrusted until a sync."""

    def load(self) -> TimeState | None:
        state = super().load()
        return TimeState(untrusted=True) if state is None else state


def time_store(state_dir: str | os.PathLike[str], ledger: SqliteLedger) -> FileTimeStore:
    """The unit's time store in ``state_dir``, given its (already open) ledger.

    A missing time file reads as a first install: floor 0, trusted. Beside a
    ledger whose journal has entries (a unit has booted here: each boot logs
    one, after its time store was written) it was lost instead, and trusting
    the clock at floor 0 would let one set back revive expired tokens. So
    the unit comes up untrusted then, until the carmaker's time sync.
    """
    path = os.path.join(state_dir, TIME_FILE)
    if os.path.lexists(path) or ledger.journal.size() == 0:
        return FileTimeStore(path)
    return _LostFloor(path)
