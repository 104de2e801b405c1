"""Signed, versioned revocation lists, and the car's revocation state.

A list is a strict-profile COSE_Sign1 (``typ`` = :attr:`Typ.REVOCATION_LIST`)
signed by a carmaker root, carrying a **complete snapshot**: every grant
digest, key id and token id revoked, and for each order the earliest
``iat`` still accepted ("a newer token for the same order supersedes the
older ones"). A snapshot rather than a delta means a car that missed ten
lists catches up with the eleventh, and the carmaker can prune an entry once
what it revoked has expired anyway.

The car applies a list only if its version is strictly greater than the one
it holds (equal is a replay, lower a rollback: both refused with
``Reason.ROLLBACK``), and from that moment refuses everything under a revoked
grant, key or token. The state is persisted as a small CBOR file written
atomically, so a reboot keeps both the revocations and the version floor.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import cbor
from ..claims import MAX_ORDER_BYTES, MAX_TIME, TOKEN_ID_LENGTH
from ..cose import Typ, sign1
from ..errors import DecodeError, InvalidRequest
from ..keys import KID_LENGTH
from ..reasons import Reason
from ..signing import SigningBackend, signing_backend
from ._files import write_atomically
from .anchors import MAX_UPDATE_BYTES, VehicleAnchors, open_root_signed
from .errors import UpdateRefused
from .grant import DIGEST_LENGTH

VERSION, ISSUED_AT, GRANTS, KEYS, TOKENS, SUPERSEDE = range(1, 7)
_KNOWN = frozenset({VERSION, ISSUED_AT, GRANTS, KEYS, TOKENS, SUPERSEDE})
#: Bounds each member list. In practice the 64 KiB cap on a signed list binds
#: first (about 2,000 grant digests); this bound is the backstop for the
#: smaller members (key ids, token ids) and for anyone raising the byte cap.
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class RevocationList:
    """A decoded revocation snapshot. Version 0 is the empty list a new car holds."""

    version: int = 0
    issued_at: int = 0
    grants: frozenset[bytes] = frozenset()
    keys: frozenset[bytes] = frozenset()
    tokens: frozenset[bytes] = frozenset()
    #: order reference -> earliest ``iat`` still accepted for that order
    supersede: Mapping[bytes, int] = field(default_factory=dict)

    def superseded(self, order_ref: bytes | None, issued_at: int) -> bool:
        if order_ref is None:
            return False
        floor = self.supersede.get(order_ref)
        return floor is not None and issued_at < floor


def encode_revocations(rl: RevocationList) -> bytes:
    return cbor.encode({
        VERSION: rl.version,
        ISSUED_AT: rl.issued_at,
        GRANTS: sorted(rl.grants),
        KEYS: sorted(rl.keys),
        TOKENS: sorted(rl.tokens),
        SUPERSEDE: [[ref, rl.supersede[ref]] for ref in sorted(rl.supersede)],
    })


def _ids(value: Any, length: int, what: str) -> frozenset[bytes]:
    if type(value) is not list or len(value) > MAX_ENTRIES:
        raise DecodeError(f"{what} must be a list of at most {MAX_ENTRIES}")
    previous = b""
    for item in value:
        if type(item) is not bytes or len(item) != length:
            raise DecodeError(f"each of {what} is {length} bytes")
        if item <= previous:
            raise DecodeError(f"{what} must be sorted and distinct")
        previous = item
    return frozenset(value)


def decode_revocations(payload: bytes) -> RevocationList:
    """Strictly decode a revocation list payload; raise :class:`DecodeError` if off-profile.

    Refuses anything but ``bytes`` of at most ``MAX_UPDATE_BYTES`` (the cap on
    the signed list that carries it) before parsing.
    """
    cbor.refuse_oversized(payload, MAX_UPDATE_BYTES, "revocation list")
    members = cbor.decode(payload)
    if type(members) is not dict or set(members) != _KNOWN:
        raise DecodeError("a revocation list has exactly members 1 to 6")
    version, issued_at = members[VERSION], members[ISSUED_AT]
    if type(version) is not int or not (1 <= version < 2**63):
        raise DecodeError("version must be a positive integer")
    if type(issued_at) is not int or not (0 <= issued_at < MAX_TIME):
        raise DecodeError("issued_at must be a NumericDate")
    pairs = members[SUPERSEDE]
    if type(pairs) is not list or len(pairs) > MAX_ENTRIES:
        raise DecodeError("supersede must be a list of [order_ref, min_iat]")
    supersede: dict[bytes, int] = {}
    previous = b""
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2:
            raise DecodeError("supersede entries are [order_ref, min_iat]")
        ref, floor = pair
        if type(ref) is not bytes or not (0 < len(ref) <= MAX_ORDER_BYTES) or ref <= previous:
            raise DecodeError("order references must be sorted, distinct, 1 to 64 bytes")
        if type(floor) is not int or not (0 <= floor < MAX_TIME):
            raise DecodeError("min_iat must be a NumericDate")
        supersede[ref] = floor
        previous = ref
    return RevocationList(
        version=version,
        issued_at=issued_at,
        grants=_ids(members[GRANTS], DIGEST_LENGTH, "grant digests"),
        keys=_ids(members[KEYS], KID_LENGTH, "key ids"),
        tokens=_ids(members[TOKENS], TOKEN_ID_LENGTH, "token ids"),
        supersede=supersede,
    )


def sign_revocation_list(
    root_key: SigningBackend,
    *,
    version: int,
    issued_at: int,
    grants: Iterable[bytes] = (),
    keys: Iterable[bytes] = (),
    tokens: Iterable[bytes] = (),
    supersede: Mapping[bytes, int] | None = None,
) -> bytes:
    """The carmaker's side: sign a complete revocation snapshot."""
    signing_backend(root_key, "root_key")
    rl = RevocationList(
        version=version, issued_at=issued_at, grants=frozenset(grants), keys=frozenset(keys),
        tokens=frozenset(tokens), supersede=dict(supersede or {}),
    )
    payload = encode_revocations(rl)
    try:
        if decode_revocations(payload) != rl:
            raise InvalidRequest("revocation list does not round-trip")
    except DecodeError as exc:
        raise InvalidRequest(f"invalid revocation list: {exc}") from None
    return sign1(root_key, payload, typ=Typ.REVOCATION_LIST, include_kid=True)


class RevocationState:
    """What the car currently holds: one snapshot, replaced only by a newer signed one.

    With a ``path``, every applied list is written there atomically before
    it takes effect in memory; a list that cannot be persisted is not applied
    (otherwise a reboot would silently bring back what it revoked).
    """

    def __init__(self, *, path: str | Path | None = None) -> None:
        self._path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._current = RevocationList()
        if self._path is not None and self._path.exists():
            try:
                self._current = decode_revocations(self._path.read_bytes())
            except DecodeError as exc:
                # A damaged state file must not mean "nothing is revoked".
                raise InvalidRequest(f"revocation state {self._path} is damaged: {exc}") from None

    @property
    def current(self) -> RevocationList:
        return self._current

    @property
    def version(self) -> int:
        return self._current.version

    def apply(self, signed: bytes, anchors: VehicleAnchors, *, now: int) -> RevocationList:
        """Verify and apply a signed list; raise :class:`UpdateRefused` otherwise."""
        payload = open_root_signed(signed, anchors, typ=Typ.REVOCATION_LIST, now=now)
        try:
            incoming = decode_revocations(payload)
        except DecodeError as exc:
            raise UpdateRefused(Reason.MALFORMED, f"revocation list: {exc}") from None
        with self._lock:
            held = self._current.version
            if incoming.version <= held:
                raise UpdateRefused(
                    Reason.ROLLBACK, f"version {incoming.version} is not newer than {held}"
                )
            if self._path is not None:
                write_atomically(self._path, payload)
            self._current = incoming
        return incoming

    def __repr__(self) -> str:
        return f"RevocationState(version={self._current.version})"
