"""The verification keys a verifier trusts, by key id, with validity periods."""

from __future__ import annotations

import _thread
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from .authority import Refusal, Signer, header_refusal
from .claims import TokenClaims, check_name
from .clock import check_window, in_window, to_unix
from .cose import Typ, protected_header
from .errors import InvalidRequest
from .keys import VerificationKey
from .reasons import Reason


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustedKey:
    """A verification key, the issuer name it speaks for, and when it may be used.

    A token verifies under this key only if its ``iss`` equals ``issuer`` and the
    verification time lies in ``[not_before, not_after)``, so that keys rotate
    with an overlap and a retired key stops working on schedule.
    """

    key: VerificationKey
    issuer: str
    not_before: int | None = None
    not_after: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, VerificationKey):
            raise InvalidRequest("TrustedKey.key must be a VerificationKey")
        check_name(self.issuer, "issuer")
        check_window(self.not_before, self.not_after, "TrustedKey")

    @classmethod
    def create(
        cls, key: VerificationKey, issuer: str, *, not_before: int | datetime | None = None,
        not_after: int | datetime | None = None,
    ) -> TrustedKey:
        return cls(
            key=key,
            issuer=issuer,
            not_before=None if not_before is None else to_unix(not_before),
            not_after=None if not_after is None else to_unix(not_after),
        )

    @property
    def kid(self) -> bytes:
        return self.key.kid

    def valid_at(self, now: int) -> bool:
        return in_window(now, self.not_before, self.not_after)


def _unknown_key(kid: bytes) -> Refusal:
    return Refusal(reason=Reason.UNKNOWN_KEY, detail=f"no trusted key {kid.hex()}")


_NO_ANCHORS = Refusal(reason=Reason.CHAIN_INVALID, detail="verifier holds no consent anchors")


class TrustStore:
    """Keys by kid. Safe to share between threads; updates replace whole snapshots.

    A :class:`~trunkkey.authority.TokenAuthority` for tokens signed by a
    trusted key directly (no consent chain).
    """

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._lock = _thread.allocate_lock()  # threading.Lock, without threading (cold_start)
        self._by_kid: dict[bytes, TrustedKey] = {}
        self._by_token_header: dict[bytes, Signer] = {}
        self._allowance = 0
        for entry in keys:
            self.add(entry)

    def add(self, entry: TrustedKey) -> None:
        """Trust ``entry``; refuse a second key with the same kid."""
        if not isinstance(entry, TrustedKey):
            raise InvalidRequest("TrustStore holds TrustedKey entries")
        with self._lock:
            if entry.kid in self._by_kid:
                raise InvalidRequest(f"a key with kid {entry.kid.hex()} is already trusted")
            by_kid = dict(self._by_kid)
            by_kid[entry.kid] = entry
            self._publish(by_kid)

    def remove(self, kid: bytes) -> TrustedKey:
        """Stop trusting the key ``kid`` (e.g. after a compromise); return its entry."""
        if type(kid) is not bytes:
            # A hex string raised AttributeError: the compromised key stayed trusted.
            raise InvalidRequest("kid must be bytes (bytes.fromhex for a hex key id)")
        with self._lock:
            by_kid = dict(self._by_kid)
            try:
                entry = by_kid.pop(kid)
            except KeyError:
                raise InvalidRequest(f"no trusted key with kid {kid.hex()}") from None
            self._publish(by_kid)
            return entry

    def _publish(self, by_kid: dict[bytes, TrustedKey]) -> None:
        # The verifier's fast path looks a token's protected header up by its
        # exact bytes: one dict probe proves alg, kid and typ are all right.
        by_header = {}
        for e in by_kid.values():
            header = protected_header(e.key.algorithm, Typ.TOKEN, e.kid)
            by_header[header] = Signer(trusted=e, token_header=header)
        self._by_kid, self._by_token_header = by_kid, by_header
        self._allowance = max(
            (e.key.algorithm.signature_length - 64 for e in by_kid.values()), default=0
        )

    @property
    def signature_allowance(self) -> int:
        """How much longer than 64 bytes the longest signature of a key held here is.

        A verifier's token size cap counts a signature as 64 bytes: a car that
        trusts an ML-DSA-44 key (2420-byte signatures) takes tokens 2356 bytes
        longer, one that trusts only Ed25519 or P-256 keys not one byte more.
        """
        return self._allowance

    def get(self, kid: bytes) -> TrustedKey | None:
        return self._by_kid.get(kid)

    def token_signer(
        self, protected: bytes, chain: bytes | None, *, now: int, vehicle_id: str, skew: int,
    ) -> Signer | Refusal:
        """The trusted key whose exact token header this is, or why none is."""
        del now, vehicle_id, skew  # a directly trusted key's signer depends on none of them
        if chain is not None:
            return _NO_ANCHORS
        signer = self._by_token_header.get(protected)
        if signer is not None:
            return signer
        return header_refusal(protected, self._by_kid.get, _unknown_key)

    def check_claims(self, claims: TokenClaims, signer: Signer) -> Refusal | None:
        """A directly trusted key adds no condition to its tokens' claims."""
        del claims, signer
        return None

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(list(self._by_kid.values()))

    def __len__(self) -> int:
        return len(self._by_kid)

    def __repr__(self) -> str:
        return f"TrustStore({len(self)} keys)"
