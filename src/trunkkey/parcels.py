"""Parcels: a token bound to the parcels of its order, and the courier's scan.

The issuer commits to each parcel identifier of the order with a keyed hash
under a random salt that lives only in the token:
``commitment = HMAC-SHA-256(salt, identifier)[:16]``. A reader of the token
learns how many parcels the order has, and can confirm an identifier only by
guessing it (the salt defeats precomputed tables and links between tokens,
not a guess: docs/threat-model.md, "What a scan proves"). A receipt or an
access-log entry carries the commitments of the parcels scanned but never
the salt, so their readers cannot test guesses at all.

At the car, the courier's proof of possession carries the identifiers the
handheld scanned (:mod:`trunkkey.proof`); :func:`match_scan` finds each one
among the commitments, comparing in constant time.

Rules (``docs/token-format.md``): an order has 1 to :data:`MAX_PARCELS`
parcels; an identifier is text of 1 to :data:`MAX_PARCEL_ID_BYTES` bytes of
UTF-8 with no control characters; no identifier appears twice in an order or
in a scan. A scan may name fewer parcels than the order: a partial delivery
(or pickup), allowed and recorded as partial.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import cbor
from .errors import DecodeError, InvalidRequest
from .reasons import Reason

MAX_PARCELS = 16  #: parcels one token may commit to (and one scan may name)
MAX_PARCEL_ID_BYTES = 64  #: a parcel identifier, UTF-8 (a barcode's text)
PARCEL_SALT_BYTES = 16  #: 128 random bits per token
COMMITMENT_BYTES = 16  #: 128 bits: a second preimage costs 2**128 guesses
#: The longest record of scanned parcels (a receipt's or a log entry's member):
#: ``[16, [16 commitments of 16 bytes]]``.
MAX_RECORD_BYTES = 3 + MAX_PARCELS * (1 + COMMITMENT_BYTES)
#: The longest scan payload, ``[challenge of 32 bytes, [16 identifiers of 64
#: bytes]]``, is 1 091 bytes; anything longer is refused unread.
MAX_SCAN_BYTES = 40 + MAX_PARCELS * (2 + MAX_PARCEL_ID_BYTES)


def check_parcel_id(value: object) -> bytes:
    """The UTF-8 bytes of a parcel identifier supplied by a caller (or a scan).

    Raises :class:`InvalidRequest` unless ``value`` is text of 1 to
    :data:`MAX_PARCEL_ID_BYTES` bytes with no control characters.
    """
    if not isinstance(value, str) or not value:
        raise InvalidRequest("a parcel identifier must be a non-empty string")
    data = value.encode("utf-8")
    if len(data) > MAX_PARCEL_ID_BYTES:
        raise InvalidRequest(f"a parcel identifier must be at most {MAX_PARCEL_ID_BYTES} bytes")
    if not value.isprintable():
        raise InvalidRequest("a parcel identifier must not contain control characters")
    return data


def check_parcel_ids(values: Iterable[object], what: str, *, order: bool) -> tuple[str, ...]:
    """Valid identifiers: an order's (1 to :data:`MAX_PARCELS`, distinct), or a
    scan's (0 to :data:`MAX_PARCELS`: the car, not the handheld, judges an
    empty scan or a parcel scanned twice)."""
    if isinstance(values, str | bytes):
        raise InvalidRequest(f"{what} must be a sequence of identifiers, not one string")
    given = tuple(values)
    if not int(order) <= len(given) <= MAX_PARCELS:
        raise InvalidRequest(f"{what} must name {int(order)} to {MAX_PARCELS} parcels")
    for value in given:
        check_parcel_id(value)
    ids = tuple(str(value) for value in given)  # each is a str: checked above
    if order and len(set(ids)) != len(ids):
        raise InvalidRequest(f"{what} names a parcel twice")
    return ids


#: XOR with HMAC's ipad and opad bytes, as ``bytes.translate`` tables.
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def committer(salt: bytes) -> Callable[[str], bytes]:
    """The commitment function of one token's salt: ``HMAC-SHA-256(salt, id)[:16]``.

    HMAC (RFC 2104) with its padded keys hashed once per salt, not once per
    identifier: ``hmac.digest`` rebuilds them on every call and costs about
    three times as much, which a scan of 16 parcels pays 16 times.
    ``tests/test_parcels.py`` holds it equal to ``hmac.digest``.
    """
    # Imported here, not at module level: hashlib loads OpenSSL's libcrypto,
    # which a car's cold start pays only for a parcel-bound token.
    import hashlib  # noqa: PLC0415

    key = salt.ljust(64, b"\0")  # a salt is 16 bytes: shorter than SHA-256's block
    inner = hashlib.sha256(key.translate(_IPAD))
    outer = hashlib.sha256(key.translate(_OPAD))

    def commit(identifier: str) -> bytes:
        first = inner.copy()
        first.update(identifier.encode("utf-8"))
        second = outer.copy()
        second.update(first.digest())
        return second.digest()[:COMMITMENT_BYTES]

    return commit


def commit_parcel(salt: bytes, identifier: str) -> bytes:
    """The commitment to one identifier under a token's salt."""
    return committer(salt)(identifier)


@dataclass(frozen=True, slots=True, kw_only=True)
class Parcels:
    """What a token commits to: its salt and one commitment per parcel, in order."""

    salt: bytes
    commitments: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if type(self.salt) is not bytes or len(self.salt) != PARCEL_SALT_BYTES:
            raise InvalidRequest(f"the parcel salt must be {PARCEL_SALT_BYTES} bytes")
        if not 0 < len(self.commitments) <= MAX_PARCELS or any(
            type(c) is not bytes or len(c) != COMMITMENT_BYTES for c in self.commitments
        ):
            raise InvalidRequest(
                f"1 to {MAX_PARCELS} parcel commitments of {COMMITMENT_BYTES} bytes each"
            )
        if len(set(self.commitments)) != len(self.commitments):
            raise InvalidRequest("a parcel is committed to twice")

    def __repr__(self) -> str:
        return f"Parcels({len(self.commitments)} committed)"

    @classmethod
    def commit(cls, identifiers: Iterable[str], *, salt: bytes) -> Parcels:
        """The issuer's side: commit to an order's identifiers (1 to 16, distinct)."""
        ids = check_parcel_ids(identifiers, "the order", order=True)
        if type(salt) is not bytes or len(salt) != PARCEL_SALT_BYTES:
            raise InvalidRequest(f"the parcel salt must be {PARCEL_SALT_BYTES} bytes")
        commit = committer(salt)
        return cls(salt=salt, commitments=tuple(commit(i) for i in ids))

    def to_cbor(self) -> list[Any]:
        return [self.salt, list(self.commitments)]

    def position(self, identifier: str, commit: Callable[[str], bytes] | None = None) -> int | None:
        """Where ``identifier`` is in the order, or ``None``; constant time over the order.

        ``commit``: this salt's :func:`committer`, when the caller matches several.
        """
        import hmac  # noqa: PLC0415 (see committer)

        candidate = (commit or committer(self.salt))(identifier)
        found = -1
        # Every commitment is compared, whichever matches: the time taken says
        # nothing about which parcel of the order was scanned.
        for index, commitment in enumerate(self.commitments):
            if hmac.compare_digest(candidate, commitment):
                found = index
        return None if found < 0 else found


def read_parcels(value: Any) -> Parcels:
    """The ``parcels`` claim, strictly decoded."""
    if type(value) is not list or len(value) != 2 or type(value[1]) is not list:
        raise DecodeError("parcels must be [salt, [commitments]]")
    try:
        return Parcels(salt=value[0], commitments=tuple(value[1]))
    except InvalidRequest as exc:
        raise DecodeError(f"parcels: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParcelRecord:
    """Which of the order's parcels were scanned at an opening (receipt, log).

    ``scanned``: their commitments, in the order's order; ``of``: how many
    parcels the order has. Never an identifier.
    """

    scanned: tuple[bytes, ...]
    of: int

    def __post_init__(self) -> None:
        if type(self.of) is not int or not 0 < self.of <= MAX_PARCELS:
            raise InvalidRequest(f"an order has 1 to {MAX_PARCELS} parcels")
        if not 0 < len(self.scanned) <= self.of or any(
            type(c) is not bytes or len(c) != COMMITMENT_BYTES for c in self.scanned
        ):
            raise InvalidRequest(
                f"1 to {self.of} scanned commitments of {COMMITMENT_BYTES} bytes each"
            )
        if len(set(self.scanned)) != len(self.scanned):
            raise InvalidRequest("a parcel is recorded twice")

    @property
    def partial(self) -> bool:
        """Fewer parcels were scanned than the order has."""
        return len(self.scanned) < self.of

    def describe(self) -> str:
        return f"{len(self.scanned)} of {self.of} parcels" + (" (partial)" if self.partial else "")

    def to_cbor(self) -> list[Any]:
        return [self.of, list(self.scanned)]


def read_record(value: Any) -> ParcelRecord:
    """A receipt's or log entry's record of scanned parcels, strictly decoded."""
    if type(value) is not list or len(value) != 2 or type(value[1]) is not list:
        raise DecodeError("a parcel record must be [count, [commitments]]")
    try:
        return ParcelRecord(of=value[0], scanned=tuple(value[1]))
    except InvalidRequest as exc:
        raise DecodeError(f"parcel record: {exc}") from None


def match_scan(
    parcels: Parcels, scan: tuple[str, ...] | None
) -> ParcelRecord | tuple[Reason, str]:
    """The record of a scan every identifier of which is in the order, or the refusal.

    ``parcel_missing`` when nothing was scanned; ``wrong_parcel`` for an
    identifier outside the order or one scanned twice (one parcel must not
    be counted as two in the receipt).
    """
    if not scan:
        return Reason.PARCEL_MISSING, "token is bound to parcels; no scan given"
    positions: set[int] = set()
    commit = committer(parcels.salt)
    for number, identifier in enumerate(scan, 1):
        position = parcels.position(identifier, commit)
        if position is None:
            return Reason.WRONG_PARCEL, f"scanned parcel {number} is not in the order"
        if position in positions:
            return Reason.WRONG_PARCEL, f"scanned parcel {number} was scanned twice"
        positions.add(position)
    return ParcelRecord(
        scanned=tuple(parcels.commitments[p] for p in sorted(positions)),
        of=len(parcels.commitments),
    )


def encode_scan(challenge: bytes, scan: tuple[str, ...]) -> bytes:
    """A scan proof's payload: ``[challenge, [identifiers]]`` in deterministic CBOR."""
    return cbor.encode([challenge, list(scan)])


def read_scan(payload: bytes) -> tuple[bytes, tuple[str, ...]]:
    """A scan proof's payload, strictly decoded: the challenge and the identifiers.

    Refuses anything but ``bytes`` of at most :data:`MAX_SCAN_BYTES` before parsing.
    """
    cbor.refuse_oversized(payload, MAX_SCAN_BYTES, "scan")
    value = cbor.decode(payload)
    if (
        type(value) is not list or len(value) != 2 or type(value[0]) is not bytes
        or type(value[1]) is not list
    ):
        raise DecodeError("a scan must be [challenge, [identifiers]]")
    try:
        scan = check_parcel_ids(value[1], "a scan", order=False)
    except InvalidRequest as exc:
        raise DecodeError(str(exc)) from None
    return value[0], scan
