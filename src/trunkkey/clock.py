"""Clocks, injected everywhere time matters.

trunkkey reads time through a :class:`Clock` passed in by the caller, once per
decision, so tests never sleep and never patch global time.
"""

from __future__ import annotations

import _thread
import time
from datetime import datetime
from typing import Protocol, runtime_checkable

from .errors import InvalidRequest


@runtime_checkable
class Clock(Protocol):
    """Anything with a ``now()`` that returns Unix time in whole seconds."""

    def now(self) -> int: ...


class SystemClock:
    """The host's wall clock (``time.time()``), floored to whole seconds."""

    def now(self) -> int:
        return int(time.time())

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to: for tests and simulations."""

    def __init__(self, start: int | datetime) -> None:
        self._now = to_unix(start)
        self._lock = _thread.allocate_lock()  # threading.Lock, without threading (cold_start)

    def now(self) -> int:
        return self._now

    def set(self, when: int | datetime) -> None:
        with self._lock:
            self._now = to_unix(when)

    def advance(self, seconds: int) -> int:
        with self._lock:
            self._now += int(seconds)
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now})"


def check_clock(clock: object, what: str) -> Clock:
    """Refuse, when a component is built, a clock it could not read: ``time.time``
    or ``None`` would otherwise fail on the first token, at the car."""
    if not isinstance(clock, Clock):
        raise InvalidRequest(
            f"{what} must be a trunkkey.Clock: an object whose now() gives Unix seconds"
        )
    return clock


def to_unix(when: int | datetime) -> int:
    """Whole Unix seconds from an int or a timezone-aware datetime.

    A naive datetime is refused: its meaning depends on the host's time zone,
    and a token window off by hours is a security bug.
    """
    if isinstance(when, bool):
        raise InvalidRequest("a time is an int of Unix seconds or an aware datetime")
    if isinstance(when, int):
        return when
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise InvalidRequest("naive datetime refused: give it a timezone")
        return int(when.timestamp())
    raise InvalidRequest("a time is an int of Unix seconds or an aware datetime")


def check_window(not_before: int | None, not_after: int | None, what: str) -> None:
    """Refuse a validity period ``[not_before, not_after)`` that contains no instant,
    or whose bounds are not whole seconds: a NaN bound compares false with every
    instant, so a key meant to start next year would be valid at once, for ever."""
    for bound in (not_before, not_after):
        if bound is not None and type(bound) is not int:
            raise InvalidRequest(f"{what} validity period bounds are ints of Unix seconds or None")
    if not_before is not None and not_after is not None and not_after <= not_before:
        raise InvalidRequest(f"{what} validity period is empty")


def in_window(now: int, not_before: int | None, not_after: int | None) -> bool:
    """True when ``now`` lies in ``[not_before, not_after)``; ``None`` is unbounded."""
    if not_before is not None and now < not_before:
        return False
    return not_after is None or now < not_after
