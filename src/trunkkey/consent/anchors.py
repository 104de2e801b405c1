"""The vehicle's trust anchors: its carmaker's root key(s) and its own key.

Provisioned at enrolment; nothing else is trusted a priori. Roots change only
through a :mod:`~trunkkey.consent.rotation` update signed by a current root.

A **hybrid** root (:attr:`~trunkkey.Algorithm.hybrid`: Ed25519 *and* ML-DSA-65,
:attr:`~trunkkey.Algorithm.EDDSA_MLDSA65`, or P-256 *and* ML-DSA-65,
:attr:`~trunkkey.Algorithm.ES256_MLDSA65`; both halves required in every
signature) makes a car hybrid for good: its roots are then hybrid only
(:func:`mixed_roots_problem`), so every grant, revocation list and trust update
it accepts carries both signatures, and a break of either algorithm alone
cannot take it over. The two composites may stand side by side and replace
each other through a signed update (a carmaker moving its root into a P-256
HSM): each is hybrid. A classical-only object names a key that is no root of
the car (``unknown_key``) or a hybrid root's kid under another ``alg``
(``alg_mismatch``).
Readers take a snapshot (one attribute read), writers replace it whole, so a
verification never sees half an update.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from ..claims import check_name
from ..clock import check_window, in_window
from ..cose import (
    HeaderProblem,
    Typ,
    decode_protected,
    parse_sign1,
    protected_header,
    signature_holds,
)
from ..errors import DecodeError, InvalidRequest
from ..keys import VerificationKey
from ..reasons import Reason
from ..signing import SigningBackend, signing_backend
from .errors import UpdateRefused


@dataclass(frozen=True, slots=True, kw_only=True)
class RootKey:
    """A carmaker root key and the period ``[not_before, not_after)`` it may sign in."""

    key: VerificationKey
    not_before: int | None = None
    not_after: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, VerificationKey):
            raise InvalidRequest("RootKey.key must be a VerificationKey")
        check_window(self.not_before, self.not_after, "RootKey")

    @property
    def kid(self) -> bytes:
        return self.key.kid

    def valid_at(self, now: int) -> bool:
        return in_window(now, self.not_before, self.not_after)


def mixed_roots_problem(roots: Iterable[RootKey]) -> str | None:
    """Why a car may not hold these roots together, or ``None``: hybrid and classical.

    Either composite is hybrid: EdDSA + ML-DSA-65 and ES256 + ML-DSA-65 roots mix freely.

    Beside a hybrid root, a classical one would accept what the hybrid root
    exists to refuse: objects an Ed25519 (or P-256) forgery alone can sign.
    """
    hybrid = {root.key.algorithm.hybrid for root in roots}
    if hybrid == {True, False}:
        return "a car with a hybrid root holds hybrid roots only"
    return None


class VehicleAnchors:
    """A car's anchors: carmaker roots by kid, plus the car's own id and key."""

    def __init__(
        self, *, vehicle_id: str, vehicle_key: SigningBackend, roots: Iterable[RootKey],
    ) -> None:
        self._vehicle_key = signing_backend(vehicle_key, "vehicle_key")
        self._vehicle_id = check_name(vehicle_id, "vehicle_id")
        self._lock = threading.Lock()
        by_kid: dict[bytes, RootKey] = {}
        for root in roots:
            if not isinstance(root, RootKey):
                raise InvalidRequest("roots must be RootKey entries")
            if root.kid in by_kid:
                raise InvalidRequest(f"root {root.kid.hex()} given twice")
            by_kid[root.kid] = root
        if not by_kid:
            raise InvalidRequest("a vehicle needs at least one carmaker root")
        self._publish(by_kid)

    def _publish(self, by_kid: dict[bytes, RootKey]) -> None:
        problem = mixed_roots_problem(by_kid.values())
        if problem is not None:
            raise InvalidRequest(problem)
        # One attribute, so a reader never pairs new roots with old headers.
        # The chain's fast path looks a root grant's protected header up by
        # its exact bytes: one probe proves alg, kid and typ are all right.
        by_header = {
            protected_header(root.key.algorithm, Typ.GRANT, root.kid): root
            for root in by_kid.values()
        }
        allowance = max(root.key.algorithm.signature_length - 64 for root in by_kid.values())
        self._state = (by_kid, by_header, allowance)

    @property
    def vehicle_id(self) -> str:
        return self._vehicle_id

    @property
    def vehicle_key(self) -> SigningBackend:
        """The car's own key (signs receipts; never leaves the car)."""
        return self._vehicle_key

    def root(self, kid: bytes) -> RootKey | None:
        return self._state[0].get(kid)

    def _root_for_grant_header(self, protected: bytes) -> RootKey | None:
        return self._state[1].get(protected)

    @property
    def signature_allowance(self) -> int:
        """How much longer than 64 bytes a root's signature is: 3309 for a hybrid root, else 0.

        A root grant's size cap counts its signature as 64 bytes, so a hybrid
        car takes root grants that much longer and a classical car not one byte more.
        """
        return self._state[2]

    def roots(self) -> tuple[RootKey, ...]:
        return tuple(self._state[0].values())

    def replace_roots(self, roots: Iterable[RootKey]) -> None:
        """Swap in a whole new root set (used by a verified trust update)."""
        by_kid = {root.kid: root for root in roots}
        if not by_kid:
            # Removing the last root would brick the car's consent path for good.
            raise InvalidRequest("an update may not remove every carmaker root")
        with self._lock:
            self._publish(by_kid)

    def __repr__(self) -> str:
        return f"VehicleAnchors({self._vehicle_id!r}, {len(self._state[0])} roots)"


MAX_UPDATE_BYTES = 64 * 1024


def open_root_signed(data: bytes, anchors: VehicleAnchors, *, typ: Typ, now: int) -> bytes:
    """Verify a root-signed object of type ``typ`` and return its payload.

    Raises :class:`UpdateRefused`: the signer must be a root in ``anchors``
    valid at ``now``, named by ``kid`` in the protected header, whose own
    algorithm the header repeats.
    """
    if type(data) is not bytes or len(data) > MAX_UPDATE_BYTES:
        raise UpdateRefused(Reason.MALFORMED, "not bytes of a bounded size")
    try:
        parts = parse_sign1(data)
    except DecodeError as exc:
        raise UpdateRefused(Reason.MALFORMED, str(exc)) from None
    header = decode_protected(parts.protected)
    if isinstance(header, HeaderProblem):
        raise UpdateRefused(Reason.MALFORMED, "protected header refused")
    if header.typ != typ:
        raise UpdateRefused(Reason.WRONG_TYPE, f"typ {header.typ} is not {typ.name}")
    if header.kid is None:
        raise UpdateRefused(Reason.CHAIN_INVALID, "no kid: cannot tell which root signed")
    root = anchors.root(header.kid)
    if root is None:
        raise UpdateRefused(Reason.UNKNOWN_KEY, f"{header.kid.hex()} is not a carmaker root")
    if not root.valid_at(now):
        raise UpdateRefused(Reason.KEY_NOT_VALID, "root outside its validity period")
    if parts.protected != protected_header(root.key.algorithm, typ, root.kid):
        raise UpdateRefused(Reason.ALG_MISMATCH, "header is not {root's alg, kid, typ}")
    if not signature_holds(root.key, parts.signature, parts.protected_item, parts.payload_item):
        raise UpdateRefused(Reason.BAD_SIGNATURE, "signature does not verify")
    return parts.payload
