"""Trusted time for the vehicle unit: a persisted floor and signed re-synchronisation.

A car's real-time clock can be set back (a flat battery, a workshop tool, an
attacker); set back far enough, an expired token looks valid again — Uptane's
freeze attack. The unit therefore keeps a *floor*: the latest time it has
trusted, persisted across reboots. Time never goes below the floor; a clock
reading more than the allowed skew below it makes the unit fail closed
(``clock_untrusted``) until the carmaker's time server re-synchronises it
with a message signed by the carmaker's key and bound to a nonce the unit
issued (so an old sync message cannot be replayed).

Every time a decision relies on comes from :meth:`TimeKeeper.decision_time`,
which puts the floor on the store first: a power cut can lose only floor that
no decision relied on, so no decision is ever made at an earlier time than
one before it — across clock steps, reboots and power cuts — and a token
refused as expired stays refused.

A clock that runs *fast* is not detected: it makes tokens expire early (a
failed delivery, never an extra opening), and the floor it leaves behind can
only be brought back by the carmaker's service — see ``docs/vehicle.md``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn, Protocol

from .. import cbor
from ..claims import MAX_TIME, check_name
from ..clock import Clock
from ..cose import Typ, open_sign1, sign1
from ..errors import DecodeError, InvalidRequest, SignatureError
from ..keys import VerificationKey
from ..signing import SigningBackend, signing_backend

SYNC_NONCE_BYTES = 16
MAX_SYNC_BYTES = 256
#: Payload labels of a time-sync message.
_SYNC_VEHICLE, _SYNC_NONCE, _SYNC_TIME = 1, 2, 3
#: Without decisions, the floor is still written when it has moved this much,
#: so that a power cut takes at most this much off what rollback detection
#: measures against. (A decision's time is always written first.)
DEFAULT_PERSIST_EVERY = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeState:
    """What the unit persists about time (and how many times it has booted)."""

    floor: int = 0
    offset: int = 0
    untrusted: bool = False
    boot: int = 0


class TimeStateStore(Protocol):
    """Where the :class:`TimeState` lives between boots."""

    def load(self) -> TimeState | None:
        """The saved state; ``None`` if never saved. Raise if unreadable."""
        ...

    def save(self, state: TimeState) -> None: ...


class MemoryTimeStore:
    """A store for tests and simulations; share one between 'reboots'."""

    def __init__(self) -> None:
        self._state: TimeState | None = None

    def load(self) -> TimeState | None:
        return self._state

    def save(self, state: TimeState) -> None:
        self._state = state

    def __repr__(self) -> str:
        return f"MemoryTimeStore({self._state!r})"


class FileTimeStore:
    """A small JSON file, replaced atomically and fsynced on every save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"FileTimeStore({str(self._path)!r})"

    def load(self) -> TimeState | None:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return None
        data = json.loads(raw)
        fields = {"floor": int, "offset": int, "untrusted": bool, "boot": int}
        if type(data) is not dict or set(data) != set(fields):
            raise DecodeError("time state file has the wrong fields")
        for name, kind in fields.items():
            if type(data[name]) is not kind:
                raise DecodeError(f"time state field {name} has the wrong type")
        return TimeState(**data)

    def save(self, state: TimeState) -> None:
        data = json.dumps(
            {"floor": state.floor, "offset": state.offset,
             "untrusted": state.untrusted, "boot": state.boot},
            sort_keys=True,
        ).encode()
        tmp = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        # Rename is atomic: after a crash the file holds the old or the new state.
        os.replace(tmp, self._path)
        with contextlib.suppress(OSError):
            dir_fd = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


# -- The time-sync message ---------------------------------------------------

def make_time_sync(
    carmaker_key: SigningBackend, *, vehicle_id: str, nonce: bytes, time: int
) -> bytes:
    """The carmaker's time server's answer to ``nonce`` from ``vehicle_id``."""
    signing_backend(carmaker_key, "carmaker_key")
    check_name(vehicle_id, "vehicle_id")
    if type(nonce) is not bytes or len(nonce) != SYNC_NONCE_BYTES:
        raise InvalidRequest(f"nonce must be {SYNC_NONCE_BYTES} bytes")
    if type(time) is not int or not (0 <= time < MAX_TIME):
        raise InvalidRequest("time must be an int of Unix seconds")
    payload = cbor.encode({_SYNC_VEHICLE: vehicle_id, _SYNC_NONCE: nonce, _SYNC_TIME: time})
    return sign1(carmaker_key, payload, typ=Typ.TIME_SYNC)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeSync:
    """A verified time-sync message's content."""

    vehicle_id: str
    nonce: bytes
    time: int


def read_time_sync(message: bytes, carmaker_key: VerificationKey) -> TimeSync:
    """Verify ``message`` under ``carmaker_key``; raise DecodeError/SignatureError."""
    if type(message) is not bytes or len(message) > MAX_SYNC_BYTES:
        raise DecodeError("time-sync message is not bytes of a bounded size")
    opened = open_sign1(message, carmaker_key, typ=Typ.TIME_SYNC, kid=carmaker_key.kid)
    body = cbor.decode(opened.payload)
    if type(body) is not dict or set(body) != {_SYNC_VEHICLE, _SYNC_NONCE, _SYNC_TIME}:
        raise DecodeError("time-sync payload has the wrong members")
    vehicle, nonce, time = body[_SYNC_VEHICLE], body[_SYNC_NONCE], body[_SYNC_TIME]
    if type(vehicle) is not str or type(nonce) is not bytes or type(time) is not int:
        raise DecodeError("time-sync payload members have the wrong types")
    if not (0 <= time < MAX_TIME):
        raise DecodeError("time-sync time out of range")
    return TimeSync(vehicle_id=vehicle, nonce=nonce, time=time)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncOutcome:
    """What the unit did with a time-sync message. Test ``.accepted``, not the object."""

    accepted: bool
    detail: str
    time: int | None = None

    def __bool__(self) -> NoReturn:
        # A refused sync is still an object: as a bool it would read "accepted".
        raise TypeError("test sync_outcome.accepted, not the outcome itself")


# -- The keeper ----------------------------------------------------------------

class TimeKeeper:
    """The unit's view of time.

    :meth:`now` is trusted time, or ``None`` (fail closed), held in memory;
    :meth:`decision_time` is the same time once the floor covering it is on
    the store — the only time a decision may rely on.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        store: TimeStateStore,
        carmaker_key: VerificationKey,
        vehicle_id: str,
        max_skew: int,
        randomness: Callable[[int], bytes],
        persist_every: int = DEFAULT_PERSIST_EVERY,
    ) -> None:
        if not isinstance(carmaker_key, VerificationKey):
            raise InvalidRequest("carmaker_key must be a trunkkey.VerificationKey")
        self._clock = clock
        self._store = store
        self._carmaker = carmaker_key
        self._vehicle = check_name(vehicle_id, "vehicle_id")
        self._skew = max_skew
        self._random = randomness
        self._persist_every = persist_every
        self._nonce: bytes | None = None
        try:
            loaded = store.load()
        except Exception:  # noqa: BLE001 -- an unreadable floor is an unknown floor
            loaded = TimeState(untrusted=True)
        state = loaded if loaded is not None else TimeState()
        self._state = self._persisted = state
        # A boot that cannot be written is still counted in memory: the unit
        # must come up (and lock the car) even on a failing store, and the
        # next checkpoint writes the count with the floor.
        self._write(replace(state, boot=state.boot + 1))
        #: The last good reading; ``None`` until the clock has answered once.
        self._last_clock: int | None = None
        #: Whether the last read failed (raised, or answered no whole seconds).
        self.unreadable = False
        self._elapsed = 0
        # Read the clock at boot, so the floor starts from what the unit first saw.
        self.now()

    def __repr__(self) -> str:
        s = self._state
        return f"TimeKeeper(floor={s.floor}, trusted={not s.untrusted}, boot={s.boot})"

    @property
    def boot(self) -> int:
        """How many times a unit has started over this store (1 for the first)."""
        return self._state.boot

    @property
    def floor(self) -> int:
        return self._state.floor

    @property
    def trusted(self) -> bool:
        return not self._state.untrusted

    def now(self) -> int | None:
        """Trusted time, never below the floor; ``None`` if the clock went back.

        The floor it raises is in memory (written every ``persist_every``
        seconds of it): use :meth:`decision_time` for anything decided on it.
        """
        state = self._state
        if state.untrusted:
            return None
        raw = self._read()
        if raw is None:
            return None
        reading = raw + state.offset
        if reading < state.floor - self._skew:
            # Untrusted in memory even if the store refuses the write: this
            # boot stays closed, and the next boot sees the same rollback.
            self._write(replace(state, untrusted=True))
            return None
        if reading > state.floor:
            new = replace(state, floor=reading)
            if reading - self._persisted.floor >= self._persist_every:
                self._write(new)
            else:
                self._state = new
        return self._state.floor

    def decision_time(self) -> int | None:
        """Trusted time for a decision, on the store before it is returned.

        ``None`` if the clock is untrusted or the store cannot take the floor:
        a decision made at a time the store does not hold could be undone by a
        power cut and a clock set back within the skew (an expired token
        allowed again). Writes only when the floor has moved, so it costs at
        most one write per second of clock however often it is called.
        """
        now = self.now()
        if now is None or not self.checkpoint():
            return None
        return now

    def reading(self) -> int:
        """The raw clock reading (with the sync offset), not held up by the floor.

        The relock timeout uses it: measured on the floored time, a clock set
        back within the skew just before an opening would keep the trunk open
        that much longer.
        """
        raw = self._read()
        # An unreadable clock makes now() None, which relocks at once anyway.
        last = raw if raw is not None else self._last_clock or 0
        return last + self._state.offset

    def monotonic(self) -> int:
        """Seconds the clock ran forward while the unit watched it, this boot.

        A step back counts as no time at all, so an interval measured on it (a
        challenge's lifetime) is never shortened by setting the clock back
        between two readings the unit took; a sync does not move it.
        """
        self._read()
        return self._elapsed

    def checkpoint(self) -> bool:
        """Put the state held in memory on the store; ``False`` if the store refused."""
        if self._state == self._persisted:
            return True
        return self._write(self._state)

    def sync_nonce(self) -> bytes:
        """A nonce for the carmaker's time server; a newer one replaces the older."""
        nonce = self._random(SYNC_NONCE_BYTES)
        if type(nonce) is not bytes or len(nonce) != SYNC_NONCE_BYTES:
            raise InvalidRequest("randomness source returned the wrong length")
        self._nonce = nonce
        return nonce

    def apply_sync(self, message: bytes) -> SyncOutcome:
        """Re-synchronise from a signed, nonce-bound time-sync message."""
        try:
            sync = read_time_sync(message, self._carmaker)
        except (DecodeError, SignatureError) as exc:
            return SyncOutcome(accepted=False, detail=str(exc))
        if sync.vehicle_id != self._vehicle:
            return SyncOutcome(accepted=False, detail="time sync is for another vehicle")
        if self._nonce is None or not hmac.compare_digest(sync.nonce, self._nonce):
            return SyncOutcome(
                accepted=False, detail="time sync answers no outstanding nonce (replayed?)"
            )
        self._nonce = None
        raw = self._read()
        if raw is None:
            return SyncOutcome(accepted=False, detail="the clock cannot be read", time=sync.time)
        state = self._state
        if sync.time < state.floor - self._skew:
            # The floor never moves back, not even for the carmaker: spent
            # ledger entries are kept by time, and an earlier time revives them.
            return SyncOutcome(
                accepted=False, detail="time sync is below the trusted floor", time=sync.time
            )
        synced = replace(
            state,
            offset=sync.time - raw,
            floor=max(state.floor, sync.time),
            untrusted=False,
        )
        try:
            self._store.save(synced)
        except Exception as exc:  # noqa: BLE001 -- any store failure: stay as we were
            # Trusted only in memory, a power cut would bring back the old state
            # under a unit that already acted on the new one.
            return SyncOutcome(
                accepted=False,
                detail=f"synchronised time could not be persisted ({type(exc).__name__})",
                time=sync.time,
            )
        self._state = self._persisted = synced
        return SyncOutcome(accepted=True, detail="clock re-synchronised", time=sync.time)

    def _read(self) -> int | None:
        """The clock's reading, or ``None`` if it raised or answered no Unix seconds.

        A real-time clock that fails is no reason for the unit to fail: it
        still boots and locks, refuses to decide (``clock_untrusted``) and
        relocks at once, as for a clock that went back — but only while it
        fails, since a failed read says nothing about the time.
        """
        try:
            clock: object = self._clock.now()
        except Exception:  # noqa: BLE001 -- whatever the hardware raises: no time
            clock = None
        # A glitch that reads negative or beyond any NumericDate is no time either:
        # believed, it would set the floor where no sync could bring it back.
        if type(clock) is not int or not 0 <= clock < MAX_TIME:
            self.unreadable = True
            return None
        self.unreadable = False
        if self._last_clock is not None:
            self._elapsed += max(0, clock - self._last_clock)
        self._last_clock = clock
        return clock

    def _write(self, state: TimeState) -> bool:
        """Hold ``state`` in memory and try to store it; ``False`` if the store refused."""
        self._state = state
        try:
            self._store.save(state)
        except Exception:  # noqa: BLE001 -- the caller fails closed on False
            return False
        self._persisted = state
        return True
