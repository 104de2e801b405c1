"""Signed trust-store updates: add keys with validity windows, remove compromised ones.

An update is a strict-profile COSE_Sign1 (``typ`` = :attr:`Typ.TRUST_UPDATE`)
signed by a carmaker root the car holds *now*, with a version strictly above
the last one applied (no rollback, no replay). It lists only what changes:

* ``set``: entries ``[role, name, raw_key, not_before, not_after]`` — a new
  key, or new validity dates for a key already held (same kid). The raw
  key's length names its algorithm: 32 bytes Ed25519, 64 P-256, 1312
  ML-DSA-44 (so an update moves a car's token keys to ML-DSA-44), 1984 the
  EdDSA + ML-DSA-65 composite root, 2016 the ES256 + ML-DSA-65 one. Role 0 is a
  carmaker root (in the :class:`VehicleAnchors`), role 1 a token issuer (in
  the verifier's :class:`~trunkkey.TrustStore`, for tokens without a chain);
* ``remove``: key ids to drop at once (compromise).

An update may also be **bound to one vehicle** (member 5, its id): a car
refuses one bound to another (``wrong_vehicle``). Only a bound update may
carry role 2, the car's own KEM public keys (sealed tokens; the raw key's
length names the suite: 32 bytes X25519, 1216 ML-KEM-768 + X25519). When it
lists any, the car's KEM keys become exactly those, each with its window —
and each must be a key whose private half the car holds, or the whole
update is refused (``unknown_key``). ``remove`` drops KEM keys by
:func:`~trunkkey.sealed.kem_key_id` as well.

Every other key is left exactly as it was. Rotation with overlap is one
update: ``set`` the new key from ``T``, and ``set`` the old one again with
``not_after`` = ``T + overlap``; tokens and grants signed by either verify
through the overlap, so a retailer's rotation fails no delivery. A root is
rotated the same way, signed by the old root; the new root then signs the
next update. An update may not remove the last root, nor leave only roots
whose window has ended.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol

from .. import cbor
from ..claims import MAX_TIME, check_name
from ..cose import Typ, sign1
from ..errors import DecodeError, InvalidRequest
from ..keys import KID_LENGTH, VerificationKey, algorithm_of_raw_key
from ..reasons import Reason
from ..sealed import CarPublicKey, kem_key_id, kem_public_key
from ..sealed_pq import CarHybridPublicKey
from ..signing import SigningBackend, signing_backend
from ..trust import TrustedKey, TrustStore
from ._files import write_atomically
from .anchors import (
    MAX_UPDATE_BYTES,
    RootKey,
    VehicleAnchors,
    mixed_roots_problem,
    open_root_signed,
)
from .errors import UpdateRefused

VERSION, ISSUED_AT, SET, REMOVE, VEHICLE = 1, 2, 3, 4, 5
MAX_CHANGES = 256


class Role(IntEnum):
    ROOT = 0  #: a carmaker root: signs grants, revocation lists and trust updates
    ISSUER = 1  #: a token issuer trusted directly (tokens presented without a chain)
    CAR_KEM = 2  #: the car's own KEM public key (sealed tokens); only in a bound update


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyEntry:
    role: Role
    name: str
    key: VerificationKey
    not_before: int
    not_after: int

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        if self.role not in (Role.ROOT, Role.ISSUER):
            # A car's KEM key is no verification key: it has its own entry type.
            raise InvalidRequest("a KeyEntry is a root or an issuer (a KEM key: KemKeyEntry)")
        _check_window(self.not_before, self.not_after)


def _check_window(not_before: int, not_after: int) -> None:
    # Whole seconds only: a bool or float compares like one, and would be
    # refused only once the update is encoded (or not at all in memory).
    if not (type(not_before) is int and type(not_after) is int
            and 0 <= not_before < not_after < MAX_TIME):
        raise InvalidRequest("key validity must be a non-empty window of Unix seconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class KemKeyEntry:
    """A car's KEM public key (role 2) and the window in which it opens tokens."""

    name: str
    key: CarPublicKey | CarHybridPublicKey
    not_before: int
    not_after: int

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        if not isinstance(self.key, CarPublicKey | CarHybridPublicKey):
            raise InvalidRequest("a KEM entry's key is a CarPublicKey or CarHybridPublicKey")
        _check_window(self.not_before, self.not_after)

    @property
    def kid(self) -> bytes:
        return kem_key_id(self.key)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustUpdate:
    version: int
    issued_at: int
    set: tuple[KeyEntry, ...] = ()
    remove: tuple[bytes, ...] = ()
    #: The one vehicle this update is for (member 5); ``None``: any car of the carmaker's.
    vehicle: str | None = None
    #: The car's KEM keys (role 2 entries of member 3); only with ``vehicle``.
    kem_keys: tuple[KemKeyEntry, ...] = ()

    def __post_init__(self) -> None:
        # An issuer's Ed25519 key and an X25519 KEM key are both 32 bytes: an
        # entry in the wrong list would be signed under the other role.
        if type(self.set) is not tuple or not all(type(e) is KeyEntry for e in self.set):
            raise InvalidRequest("set holds KeyEntry (roots, issuers); a KEM key: kem_keys")
        if type(self.kem_keys) is not tuple or not all(
            type(e) is KemKeyEntry for e in self.kem_keys
        ):
            raise InvalidRequest("kem_keys holds KemKeyEntry (a car's KEM keys)")


class KemKeyHolder(Protocol):
    """The car's store of KEM private keys, which a bound update's KEM entries name."""

    def holds(self, key: CarPublicKey | CarHybridPublicKey) -> bool:
        """Whether the car holds this key's private half (current or pending)."""
        ...

    def adopt(self, entries: Sequence[KemKeyEntry]) -> None:
        """Open tokens with exactly these keys from now on (called once they are
        persisted, and when the updater is made: the restored keys, or none)."""
        ...


def _encode(update: TrustUpdate) -> bytes:
    members: dict[int, Any] = {
        VERSION: update.version,
        ISSUED_AT: update.issued_at,
        SET: [[int(e.role), e.name, e.key.raw, e.not_before, e.not_after] for e in update.set]
        + [[int(Role.CAR_KEM), e.name, e.key.raw, e.not_before, e.not_after]
           for e in update.kem_keys],
        REMOVE: sorted(update.remove),
    }
    if update.vehicle is not None:
        # Absent, not null, when unbound: an unbound update encodes as it always has.
        members[VEHICLE] = update.vehicle
    return cbor.encode(members)


def _int(value: Any, what: str, lower: int, upper: int) -> int:
    if type(value) is not int or not (lower <= value < upper):
        raise DecodeError(f"{what} out of range")
    return value


def decode_update(payload: bytes) -> TrustUpdate:
    """Strictly decode a trust update payload; raise :class:`DecodeError` if off-profile.

    Refuses anything but ``bytes`` of at most ``MAX_UPDATE_BYTES`` (the cap on
    the signed update that carries it) before parsing.
    """
    cbor.refuse_oversized(payload, MAX_UPDATE_BYTES, "trust update")
    members = cbor.decode(payload)
    if type(members) is not dict or not (
        {VERSION, ISSUED_AT, SET, REMOVE} <= set(members) <= {VERSION, ISSUED_AT, SET, REMOVE,
                                                              VEHICLE}
    ):
        raise DecodeError("a trust update has members 1 to 4, and 5 if bound to a vehicle")
    entries, removed = members[SET], members[REMOVE]
    if type(entries) is not list or type(removed) is not list:
        raise DecodeError("set and remove are lists")
    if len(entries) + len(removed) > MAX_CHANGES:
        raise DecodeError("too many changes in one update")
    vehicle = members.get(VEHICLE)
    if VEHICLE in members:
        try:
            check_name(vehicle, "vehicle")
        except InvalidRequest as exc:
            raise DecodeError(f"bad vehicle binding: {exc}") from None
    out, kem = [], []
    for row in entries:
        entry = _set_entry(row)
        if isinstance(entry, KemKeyEntry):
            kem.append(entry)
        else:
            out.append(entry)
    if kem and vehicle is None:
        raise DecodeError("a car's KEM key may only be set by an update bound to that car")
    kids = [e.key.kid for e in out] + [e.kid for e in kem]
    if len(set(kids)) != len(kids):
        raise DecodeError("a key is set twice")
    previous = b""
    for kid in removed:
        if type(kid) is not bytes or len(kid) != KID_LENGTH or kid <= previous:
            raise DecodeError("removed key ids must be sorted, distinct, 8 bytes")
        previous = kid
    if set(removed) & set(kids):
        raise DecodeError("a key is both set and removed")
    return TrustUpdate(
        version=_int(members[VERSION], "version", 1, 2**63),
        issued_at=_int(members[ISSUED_AT], "issued_at", 0, MAX_TIME),
        set=tuple(out),
        remove=tuple(removed),
        vehicle=vehicle,
        kem_keys=tuple(kem),
    )


def _set_entry(row: Any) -> KeyEntry | KemKeyEntry:
    if type(row) is not list or len(row) != 5:
        raise DecodeError("a set entry is [role, name, key, not_before, not_after]")
    role, name, raw, nbf, naf = row
    if type(raw) is not bytes or type(name) is not str:
        raise DecodeError("a set entry needs a text name and a raw key")
    try:
        role = Role(_int(role, "role", 0, 3))
        nbf = _int(nbf, "not_before", 0, MAX_TIME)
        naf = _int(naf, "not_after", 0, MAX_TIME)
        if role is Role.CAR_KEM:
            return KemKeyEntry(name=name, key=kem_public_key(raw), not_before=nbf, not_after=naf)
        key = VerificationKey(algorithm_of_raw_key(raw), raw)
        return KeyEntry(role=role, name=name, key=key, not_before=nbf, not_after=naf)
    except (InvalidRequest, ValueError) as exc:
        raise DecodeError(f"bad set entry: {exc}") from None


def _state_entry(row: Any, role: Role) -> KeyEntry:
    if type(row) is not list or len(row) != 4 or type(row[1]) is not bytes:
        raise DecodeError("a state entry is [name, raw_key, not_before, not_after]")
    name, raw, nbf, naf = row
    try:
        key = VerificationKey(algorithm_of_raw_key(raw), raw)
        return KeyEntry(role=role, name=name, key=key, not_before=nbf, not_after=naf)
    except (InvalidRequest, ValueError, TypeError) as exc:
        raise DecodeError(f"bad state entry: {exc}") from None


def _state_kem_entry(row: Any) -> KemKeyEntry:
    if type(row) is not list or len(row) != 4:
        raise DecodeError("a KEM state entry is [name, raw_key, not_before, not_after]")
    name, raw, nbf, naf = row
    try:
        return KemKeyEntry(name=name, key=kem_public_key(raw), not_before=nbf, not_after=naf)
    except (InvalidRequest, ValueError, TypeError) as exc:
        raise DecodeError(f"bad KEM state entry: {exc}") from None


def sign_trust_update(
    root_key: SigningBackend, *, version: int, issued_at: int,
    set_keys: Sequence[KeyEntry] = (), remove: Sequence[bytes] = (),
    vehicle: str | None = None, kem_keys: Sequence[KemKeyEntry] = (),
) -> bytes:
    """The carmaker's side: sign an update with a root the car currently holds.

    ``vehicle`` binds the update to that one car; ``kem_keys`` (only with
    ``vehicle``) are then the car's KEM keys, each one it proposed
    (:func:`trunkkey.vehicle.verify_kem_proposal`).
    """
    signing_backend(root_key, "root_key")
    update = TrustUpdate(
        version=version, issued_at=issued_at, set=tuple(set_keys), remove=tuple(sorted(remove)),
        vehicle=vehicle, kem_keys=tuple(kem_keys),
    )
    payload = _encode(update)
    try:
        decode_update(payload)
    except DecodeError as exc:
        raise InvalidRequest(f"invalid trust update: {exc}") from None
    return sign1(root_key, payload, typ=Typ.TRUST_UPDATE, include_kid=True)


class TrustUpdater:
    """Applies updates to a car's anchors and trust store, holding the version floor.

    With a ``path``, the version floor is persisted (atomically, before the
    update takes effect) so that a reboot cannot be used to replay an old update.
    With ``kem``, the car's store of KEM private keys, updates bound to this
    car set its KEM keys too; they persist in the same state file.
    """

    def __init__(
        self, *, anchors: VehicleAnchors, trust_store: TrustStore, path: str | Path | None = None,
        kem: KemKeyHolder | None = None,
    ) -> None:
        self._anchors = anchors
        self._trust = trust_store
        self._path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._version = 0
        self._kem_holder = kem
        self._kem: tuple[KemKeyEntry, ...] = ()
        if self._path is not None and self._path.exists():
            self._restore(self._path)
        if kem is not None:
            # Always, even with no state yet (then: no key endorsed): until the
            # holder learns what is endorsed, its pending file may hold a key an
            # update persisted just before a crash, and it cannot tell.
            kem.adopt(self._kem)

    def _restore(self, path: Path) -> None:
        """Put back what the last applied update left: version, roots, issuer keys, KEM keys."""
        try:
            state = cbor.decode(path.read_bytes())
            # Three members in a state written before cars had KEM keys to rotate.
            if type(state) is not list or len(state) not in (3, 4):
                raise DecodeError("state is [version, roots, issuers, car KEM keys]")
            version = _int(state[0], "version", 0, 2**63)
            roots = [_state_entry(row, Role.ROOT) for row in state[1]]
            issuers = [_state_entry(row, Role.ISSUER) for row in state[2]]
            kem = tuple(_state_kem_entry(row) for row in state[3]) if len(state) == 4 else ()
        except (DecodeError, TypeError) as exc:
            raise InvalidRequest(f"trust update state {path} is damaged: {exc}") from None
        self._anchors.replace_roots(
            RootKey(key=e.key, not_before=e.not_before, not_after=e.not_after) for e in roots
        )
        for kid in [entry.kid for entry in self._trust]:
            self._trust.remove(kid)
        for e in issuers:
            self._trust.add(
                TrustedKey(key=e.key, issuer=e.name, not_before=e.not_before, not_after=e.not_after)
            )
        self._version = version
        self._kem = kem

    @staticmethod
    def _snapshot(
        version: int, roots: Sequence[RootKey], issuers: Sequence[TrustedKey],
        kem: Sequence[KemKeyEntry],
    ) -> bytes:
        def window(nbf: int | None, naf: int | None) -> list[int]:
            return [0 if nbf is None else nbf, MAX_TIME - 1 if naf is None else naf]

        return cbor.encode([
            version,
            [["root", r.key.raw, *window(r.not_before, r.not_after)] for r in roots],
            [[t.issuer, t.key.raw, *window(t.not_before, t.not_after)] for t in issuers],
            [[e.name, e.key.raw, e.not_before, e.not_after] for e in kem],
        ])

    @property
    def version(self) -> int:
        return self._version

    @property
    def kem_keys(self) -> tuple[KemKeyEntry, ...]:
        """The car's KEM keys as the last bound update set them (none before one)."""
        return self._kem

    def _kem_after(self, update: TrustUpdate, now: int) -> tuple[KemKeyEntry, ...]:
        """The car's KEM keys once ``update`` applies at ``now``, or :class:`UpdateRefused`."""
        if update.vehicle is None:
            return self._kem  # only an update bound to this car touches its KEM keys
        removed = set(update.remove)
        kept = tuple(e for e in update.kem_keys or self._kem if e.kid not in removed)
        holder = self._kem_holder
        for entry in update.kem_keys:
            if holder is None or not holder.holds(entry.key):
                # Endorsing a key the car cannot open with would strand every
                # token sealed to it: refuse the whole update instead.
                raise UpdateRefused(
                    Reason.UNKNOWN_KEY,
                    f"KEM key {entry.kid.hex()} ({entry.name}) is not one this car holds",
                )
        if self._kem and kept != self._kem and not any(e.not_after > now for e in kept):
            # A key whose window is over opens nothing ever again: keeping only
            # such keys strands the car as surely as keeping none. An update that
            # leaves the KEM keys as they were is not judged by them.
            raise UpdateRefused(
                Reason.MALFORMED, "update would leave the car no KEM key that opens now or later"
            )
        return kept

    def apply(self, signed: bytes, *, now: int) -> TrustUpdate:
        """Verify and apply ``signed``, or raise :class:`UpdateRefused` and change nothing."""
        payload = open_root_signed(signed, self._anchors, typ=Typ.TRUST_UPDATE, now=now)
        try:
            update = decode_update(payload)
        except DecodeError as exc:
            raise UpdateRefused(Reason.MALFORMED, f"trust update: {exc}") from None
        if update.vehicle is not None and update.vehicle != self._anchors.vehicle_id:
            raise UpdateRefused(Reason.WRONG_VEHICLE, "trust update is bound to another vehicle")
        with self._lock:
            if update.version <= self._version:
                raise UpdateRefused(
                    Reason.ROLLBACK, f"version {update.version} is not newer than {self._version}"
                )
            kem = self._kem_after(update, now)
            roots = {r.kid: r for r in self._anchors.roots()}
            for kid in update.remove:
                roots.pop(kid, None)
            for e in update.set:
                if e.role is Role.ROOT:
                    roots[e.key.kid] = RootKey(
                        key=e.key, not_before=e.not_before, not_after=e.not_after
                    )
            if not any(r.not_after is None or r.not_after > now for r in roots.values()):
                # No root, or only roots whose window is over: none could ever sign
                # another update, list or grant, and the car's consent path is gone for good.
                raise UpdateRefused(
                    Reason.MALFORMED, "update would leave the car no carmaker root valid now "
                    "or later")
            mixed = mixed_roots_problem(roots.values())
            if mixed is not None:
                # A classical root beside a hybrid one is a downgrade of the car's root of trust.
                raise UpdateRefused(Reason.ROLLBACK, f"update would mix roots: {mixed}")
            issuers = {t.kid: t for t in self._trust}
            for kid in update.remove:
                issuers.pop(kid, None)
            for e in update.set:
                if e.role is Role.ISSUER:
                    issuers[e.key.kid] = TrustedKey(
                        key=e.key, issuer=e.name, not_before=e.not_before, not_after=e.not_after
                    )
            if self._path is not None:
                # Persist first: a crash after this point replays nothing old.
                write_atomically(
                    self._path, self._snapshot(update.version, list(roots.values()),
                                               list(issuers.values()), kem)
                )
            self._anchors.replace_roots(roots.values())
            for kid in [t.kid for t in self._trust]:
                if kid not in issuers or issuers[kid] != self._trust.get(kid):
                    self._trust.remove(kid)
            for kid, entry in issuers.items():
                # The trust store refuses two keys under one kid, so a changed
                # window is remove-then-add; keys not named stay untouched.
                if kid not in self._trust:
                    self._trust.add(entry)
            self._version = update.version
            if kem != self._kem and self._kem_holder is not None:
                self._kem_holder.adopt(kem)
            self._kem = kem
        return update
