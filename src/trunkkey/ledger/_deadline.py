"""One deadline per fleet-ledger call, enforced from outside the blocked thread.

A server that hangs with the request already acknowledged by TCP, a lock held
by another session, a pool with no free connection: each can keep a call
waiting, and per-step timeouts add up (pool wait, then connect, then the
statement, then a replica WAIT). The ledgers give every call one deadline
instead and register the call's socket here: one daemon thread sleeps until
the earliest deadline and shuts that socket down, which makes the blocked
read fail at once, so the call raises (and the verifier denies) in time.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable


class Watchdog:
    """Shuts down the socket of every call that outlives its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, Callable[[], int]]] = {}
        self._fired: set[int] = set()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        #: When the thread wakes next (monotonic); None: only when notified.
        self._wake: float | None = None

    def arm(self, key: object, deadline: float, fileno: Callable[[], int]) -> None:
        """Shut down ``fileno()``'s socket at ``deadline`` (monotonic) unless disarmed first."""
        with self._cond:
            if self._pid != os.getpid():
                # A forked child inherits the state but not the thread.
                self._armed.clear()
                self._fired.clear()
                self._thread, self._pid = None, os.getpid()
            self._armed[id(key)] = (deadline, fileno)
            self._fired.discard(id(key))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="trunkkey-ledger-deadline", daemon=True
                )
                self._thread.start()
            # Wake the thread only to move its alarm earlier: calls arm with
            # ever later deadlines, so on a busy ledger it sleeps undisturbed.
            if self._wake is None or deadline < self._wake:
                self._wake = deadline
                self._cond.notify()

    def disarm(self, key: object) -> bool:
        """Stop watching ``key``; ``True`` if its deadline had already fired."""
        with self._cond:
            self._armed.pop(id(key), None)
            if id(key) in self._fired:
                self._fired.discard(id(key))
                return True
            return False

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for key, (deadline, fileno) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[key]
                        self._fired.add(key)
                        _sever(fileno)
                self._wake = min((deadline for deadline, _ in self._armed.values()), default=None)
                self._cond.wait(None if self._wake is None else max(0.0, self._wake - now))


def _sever(fileno: Callable[[], int]) -> None:
    try:
        # shutdown() on a duplicate descriptor acts on the shared socket and
        # wakes the thread blocked on it; closing the duplicate leaves the
        # original descriptor to its client library to close.
        with socket.socket(fileno=socket.dup(fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError, ValueError):
        pass  # already closed: nothing is blocked on it


#: One thread for every ledger of the process.
WATCHDOG = Watchdog()


def remaining(deadline: float) -> float:
    """Seconds left before ``deadline`` (monotonic); never negative."""
    return max(0.0, deadline - time.monotonic())
