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

Every other key is left exactly as it was. Rotation with overlap is one
update: ``set`` the new key from ``T``, and ``set`` the old one again with
``not_after`` = ``T + overlap``; tokens and grants signed by either verify
through the overlap, so a retailer's rotation fails no delivery. A root is
rotated the same way, signed by the old root; the new root then signs the
next update. An update may not remove the last root.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from .. import cbor
from ..claims import MAX_TIME, check_name
from ..cose import Typ, sign1
from ..errors import DecodeError, InvalidRequest
from ..keys import KID_LENGTH, VerificationKey, algorithm_of_raw_key
from ..reasons import Reason
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

VERSION, ISSUED_AT, SET, REMOVE = 1, 2, 3, 4
MAX_CHANGES = 256


class Role(IntEnum):
    ROOT = 0  #: a carmaker root: signs grants, revocation lists and trust updates
    ISSUER = 1  #: a token issuer trusted directly (tokens presented without a chain)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyEntry:
    role: Role
    name: str
    key: VerificationKey
    not_before: int
    not_after: int

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        if not (0 <= self.not_before < self.not_after < MAX_TIME):
            raise InvalidRequest("key validity must be a non-empty window")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustUpdate:
    version: int
    issued_at: int
    set: tuple[KeyEntry, ...] = ()
    remove: tuple[bytes, ...] = ()


def _encode(update: TrustUpdate) -> bytes:
    return cbor.encode({
        VERSION: update.version,
        ISSUED_AT: update.issued_at,
        SET: [[int(e.role), e.name, e.key.raw, e.not_before, e.not_after] for e in update.set],
        REMOVE: sorted(update.remove),
    })


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
    if type(members) is not dict or set(members) != {VERSION, ISSUED_AT, SET, REMOVE}:
        raise DecodeError("a trust update has exactly members 1 to 4")
    entries, removed = members[SET], members[REMOVE]
    if type(entries) is not list or type(removed) is not list:
        raise DecodeError("set and remove are lists")
    if len(entries) + len(removed) > MAX_CHANGES:
        raise DecodeError("too many changes in one update")
    out = []
    for row in entries:
        if type(row) is not list or len(row) != 5:
            raise DecodeError("a set entry is [role, name, key, not_before, not_after]")
        role, name, raw, nbf, naf = row
        if type(raw) is not bytes or type(name) is not str:
            raise DecodeError("a set entry needs a text name and a raw key")
        try:
            key = VerificationKey(algorithm_of_raw_key(raw), raw)
            out.append(KeyEntry(
                role=Role(_int(role, "role", 0, 2)), name=name, key=key,
                not_before=_int(nbf, "not_before", 0, MAX_TIME),
                not_after=_int(naf, "not_after", 0, MAX_TIME),
            ))
        except (InvalidRequest, ValueError) as exc:
            raise DecodeError(f"bad set entry: {exc}") from None
    kids = [e.key.kid for e in out]
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
    )


def _state_entry(row: Any, role: Role) -> KeyEntry:
    if type(row) is not list or len(row) != 4 or type(row[1]) is not bytes:
        raise DecodeError("a state entry is [name, raw_key, not_before, not_after]")
    name, raw, nbf, naf = row
    try:
        key = VerificationKey(algorithm_of_raw_key(raw), raw)
        return KeyEntry(role=role, name=name, key=key, not_before=nbf, not_after=naf)
    except (InvalidRequest, ValueError, TypeError) as exc:
        raise DecodeError(f"bad state entry: {exc}") from None


def sign_trust_update(
    root_key: SigningBackend, *, version: int, issued_at: int,
    set_keys: Sequence[KeyEntry] = (), remove: Sequence[bytes] = (),
) -> bytes:
    """The carmaker's side: sign an update with a root the car currently holds."""
    signing_backend(root_key, "root_key")
    update = TrustUpdate(
        version=version, issued_at=issued_at, set=tuple(set_keys), remove=tuple(sorted(remove)),
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
    """

    def __init__(
        self, *, anchors: VehicleAnchors, trust_store: TrustStore, path: str | Path | None = None,
    ) -> None:
        self._anchors = anchors
        self._trust = trust_store
        self._path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._version = 0
        if self._path is not None and self._path.exists():
            self._restore(self._path)

    def _restore(self, path: Path) -> None:
        """Put back what the last applied update left: version, roots, issuer keys."""
        try:
            state = cbor.decode(path.read_bytes())
            if type(state) is not list or len(state) != 3:
                raise DecodeError("state is [version, roots, issuers]")
            version = _int(state[0], "version", 0, 2**63)
            roots = [_state_entry(row, Role.ROOT) for row in state[1]]
            issuers = [_state_entry(row, Role.ISSUER) for row in state[2]]
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

    @staticmethod
    def _snapshot(
        version: int, roots: Sequence[RootKey], issuers: Sequence[TrustedKey]
    ) -> bytes:
        def window(nbf: int | None, naf: int | None) -> list[int]:
            return [0 if nbf is None else nbf, MAX_TIME - 1 if naf is None else naf]

        return cbor.encode([
            version,
            [["root", r.key.raw, *window(r.not_before, r.not_after)] for r in roots],
            [[t.issuer, t.key.raw, *window(t.not_before, t.not_after)] for t in issuers],
        ])

    @property
    def version(self) -> int:
        return self._version

    def apply(self, signed: bytes, *, now: int) -> TrustUpdate:
        """Verify and apply ``signed``, or raise :class:`UpdateRefused` and change nothing."""
        payload = open_root_signed(signed, self._anchors, typ=Typ.TRUST_UPDATE, now=now)
        try:
            update = decode_update(payload)
        except DecodeError as exc:
            raise UpdateRefused(Reason.MALFORMED, f"trust update: {exc}") from None
        with self._lock:
            if update.version <= self._version:
                raise UpdateRefused(
                    Reason.ROLLBACK, f"version {update.version} is not newer than {self._version}"
                )
            roots = {r.kid: r for r in self._anchors.roots()}
            for kid in update.remove:
                roots.pop(kid, None)
            for e in update.set:
                if e.role is Role.ROOT:
                    roots[e.key.kid] = RootKey(
                        key=e.key, not_before=e.not_before, not_after=e.not_after
                    )
            if not roots:
                raise UpdateRefused(Reason.MALFORMED, "update would remove every carmaker root")
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
                                               list(issuers.values()))
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
        return update
