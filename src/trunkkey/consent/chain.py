"""Offline chain verification in the car: carmaker root -> grants -> the token's signer.

:class:`ConsentVerifier` is what a :class:`~trunkkey.Verifier` consults when a
token is presented with a chain. It runs, for each link in order, every
check with its own reason code, and fails closed:

1. the link's bytes (a grant, or the digest of one the car already holds);
2. the signer: the first grant's ``kid`` must name a carmaker root valid now,
   each later grant must be signed by the grantee of the one before, with the
   exact protected header ``{alg of that key, typ grant}``;
3. the signature (skipped only when this very grant, by digest, was verified
   before under this very signer);
4. revocation: the grant's digest, its signer's and its grantee's key ids;
5. narrowing: the link states nothing wider than the chain so far;
6. its window at ``now``, and the car's vehicle among its vehicles;
7. daily limits, counted per grant per UTC day.

It returns the leaf grantee as a :class:`~trunkkey.TrustedKey` plus the
narrowest scope; the verifier then requires the token to be signed by that
key and to lie inside that scope (:meth:`ConsentVerifier.check_token`).

The grant cache holds only what a signature check proved: that these bytes
were signed by that key. Revocation, windows, narrowing and vehicle are
checked again on every use, so a cached grant is never a shortcut past them.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import cbor
from ..claims import TokenClaims, access_bits, slot_setters
from ..cose import (
    HeaderProblem,
    Typ,
    _bstr_at,
    decode_protected,
    protected_header,
    split_sign1,
)
from ..errors import DecodeError, InvalidRequest
from ..keys import Algorithm, VerificationKey
from ..reasons import Reason
from ..trust import TrustedKey
from ._files import write_atomically
from .anchors import VehicleAnchors
from .grant import (
    DIGEST_LENGTH,
    MAX_DEPTH,
    MAX_GRANT_BYTES,
    Grant,
    Scope,
    decode_grant,
    narrow,
    root_scope,
    vehicle_tag,
)
from .revocation import RevocationState

#: A chain holds at most MAX_DEPTH + 1 grants.
MAX_CHAIN_BYTES = (MAX_DEPTH + 1) * (MAX_GRANT_BYTES + 3) + 1
DEFAULT_CACHE_SIZE = 1024
_DAY = 86_400
_SIG = b"\x84\x6aSignature1"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainDenial:
    """Why a chain (or a token under it) was refused."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedChain:
    """A chain that verified at one instant: its leaf signer and narrowest scope."""

    signer: TrustedKey
    scope: Scope
    #: Grant digests, root first.
    digests: tuple[bytes, ...]
    #: Digests of the grants that carry a daily limit, with that limit.
    limits: tuple[tuple[bytes, int], ...]
    #: The exact protected header a token by the leaf grantee must carry.
    token_header: bytes


@dataclass(frozen=True, slots=True)
class _Verified:
    signer: VerificationKey
    grant: Grant


class GrantCache:
    """Grants whose signature verified, by digest: a bounded LRU, safe between threads."""

    def __init__(self, max_entries: int = DEFAULT_CACHE_SIZE) -> None:
        if type(max_entries) is not int or max_entries < 1:
            raise InvalidRequest("max_entries must be a positive int")
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, _Verified] = OrderedDict()

    def _get(self, digest: bytes) -> _Verified | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                self._entries.move_to_end(digest)
            return entry

    def _put(self, digest: bytes, entry: _Verified) -> None:
        with self._lock:
            self._entries[digest] = entry
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __contains__(self, digest: object) -> bool:
        return digest in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"GrantCache({len(self)}/{self._max})"


class UsageCounter:
    """Opens per grant per UTC day, for daily limits; optionally persisted.

    Recorded only after access was allowed (the ledger accepted the token), so
    a replayed or refused token cannot use up an owner's daily allowance.
    """

    def __init__(self, *, path: str | Path | None = None) -> None:
        self._path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._counts: dict[tuple[bytes, int], int] = {}
        if self._path is not None and self._path.exists():
            try:
                rows = cbor.decode(self._path.read_bytes())
                for digest, day, count in rows:
                    self._counts[(bytes(digest), int(day))] = int(count)
            except (DecodeError, TypeError, ValueError) as exc:
                raise InvalidRequest(f"usage state {self._path} is damaged: {exc}") from None

    def count(self, digest: bytes, now: int) -> int:
        return self._counts.get((digest, now // _DAY), 0)

    def record(self, digests: tuple[bytes, ...], now: int) -> None:
        day = now // _DAY
        with self._lock:
            counts = {k: v for k, v in self._counts.items() if k[1] >= day - 1}
            for digest in digests:
                counts[(digest, day)] = counts.get((digest, day), 0) + 1
            if self._path is not None:
                rows = [[d, dy, c] for (d, dy), c in sorted(counts.items())]
                write_atomically(self._path, cbor.encode(rows))
            self._counts = counts


#: The one protected header of a delegated grant, by the delegator's algorithm.
_DELEGATED_HEADERS = {alg: protected_header(alg, Typ.GRANT, None) for alg in Algorithm}
_WHERE = tuple(f"link {index}" for index in range(MAX_DEPTH + 1))
_new = object.__new__
_set_key, _set_issuer, _set_not_before, _set_not_after = slot_setters(
    TrustedKey, "key issuer not_before not_after")
_set_signer, _set_scope, _set_digests, _set_limits, _set_token_header = slot_setters(
    ResolvedChain, "signer scope digests limits token_header")

#: A car hears its own id over and over: hash it once.
_vehicle_tag = functools.lru_cache(maxsize=64)(vehicle_tag)


def _split_chain(chain: bytes) -> list[Any] | None:
    """The links of a chain in its usual encoding, or ``None`` for the generic decoder."""
    try:
        count = chain[0] - 0x80
        if not 1 <= count <= MAX_DEPTH + 1:
            return None
        links, pos = [], 1
        for _ in range(count):
            start, pos = _bstr_at(chain, pos)
            links.append(chain[start:pos])
    except (IndexError, DecodeError):
        return None
    return links if pos == len(chain) else None


def _deny(reason: Reason, detail: str) -> ChainDenial:
    return ChainDenial(reason=reason, detail=detail)


class ConsentVerifier:
    """Resolves consent chains against the car's anchors, revocations and cache."""

    def __init__(
        self,
        *,
        anchors: VehicleAnchors,
        revocations: RevocationState,
        cache: GrantCache | None = None,
        usage: UsageCounter | None = None,
        max_list_age: int | None = None,
    ) -> None:
        """``max_list_age``: refuse every chain while the newest revocation list the
        car holds was issued more than this many seconds ago. ``None`` (the
        default) keeps an offline car working on the list it has; a number trades
        availability in a dead zone for a bound on how stale revocation can be."""
        if not isinstance(anchors, VehicleAnchors):
            raise InvalidRequest("anchors must be VehicleAnchors")
        if not isinstance(revocations, RevocationState):
            raise InvalidRequest("revocations must be a RevocationState")
        if cache is not None and not isinstance(cache, GrantCache):
            raise InvalidRequest("cache must be a GrantCache")
        if usage is not None and not isinstance(usage, UsageCounter):
            raise InvalidRequest("usage must be a UsageCounter")
        self._anchors = anchors
        self._revocations = revocations
        self._cache = cache
        self._usage = usage if usage is not None else UsageCounter()
        if max_list_age is not None and (type(max_list_age) is not int or max_list_age <= 0):
            raise InvalidRequest("max_list_age must be a positive number of seconds")
        self._max_list_age = max_list_age

    @property
    def anchors(self) -> VehicleAnchors:
        return self._anchors

    @property
    def revocations(self) -> RevocationState:
        return self._revocations

    @property
    def cache(self) -> GrantCache | None:
        return self._cache

    def __repr__(self) -> str:
        return f"ConsentVerifier({self._anchors!r}, {self._revocations!r}, {self._cache!r})"

    # -- the chain ------------------------------------------------------------
    def resolve(
        self, chain: bytes, *, now: int, vehicle_id: str, skew: int = 0
    ) -> ResolvedChain | ChainDenial:
        """Verify ``chain`` for ``vehicle_id`` at ``now``; the leaf and scope, or a denial."""
        if type(chain) is not bytes or len(chain) > MAX_CHAIN_BYTES:
            return _deny(Reason.CHAIN_INVALID, "chain is not bytes of a bounded size")
        links = _split_chain(chain)
        if links is None:
            try:
                links = cbor.decode(chain)
            except DecodeError as exc:
                return _deny(Reason.CHAIN_INVALID, f"chain: {exc}")
            if (
                type(links) is not list
                or not (1 <= len(links) <= MAX_DEPTH + 1)
                or any(type(link) is not bytes for link in links)
            ):
                return _deny(
                    Reason.CHAIN_INVALID, f"a chain is a list of 1 to {MAX_DEPTH + 1} grants"
                )
        revoked = self._revocations.current
        if self._max_list_age is not None and now - revoked.issued_at > self._max_list_age:
            return _deny(
                Reason.REVOCATIONS_STALE,
                f"revocation list v{revoked.version} is older than {self._max_list_age} s",
            )
        tag = _vehicle_tag(vehicle_id)
        scope: Scope | None = None
        signer: VerificationKey | None = None
        leaf: Grant | None = None
        digests: list[bytes] = []
        limits: list[tuple[bytes, int]] = []
        for index, link in enumerate(links):
            where = _WHERE[index]
            got = self._open_link(link, signer, now, where)
            if isinstance(got, ChainDenial):
                return got
            digest, link_signer, grant = got
            # Revocation, from the moment the list was applied.
            if digest in revoked.grants:
                return _deny(Reason.GRANT_REVOKED, f"{where}: grant {digest.hex()[:16]} revoked")
            if revoked.keys and (
                link_signer.kid in revoked.keys or grant.grantee.kid in revoked.keys
            ):
                return _deny(Reason.KEY_REVOKED, f"{where}: a key of this grant is revoked")
            # Narrowing (the first grant sets the scope every later one narrows).
            narrowed = root_scope(grant) if scope is None else narrow(scope, grant)
            if isinstance(narrowed, str):
                reason = Reason.CHAIN_INVALID if scope is None else Reason.SCOPE_WIDENED
                return _deny(reason, f"{where}: {narrowed}")
            scope = narrowed
            # When, for which car.
            if now + skew < grant.not_before:
                return _deny(Reason.GRANT_NOT_YET_VALID, f"{where}: grant not yet valid")
            if now - skew >= grant.expires:
                return _deny(Reason.GRANT_EXPIRED, f"{where}: grant has expired")
            if tag not in scope.vehicles:
                return _deny(Reason.WRONG_VEHICLE, f"{where}: this vehicle is not in scope")
            if grant.daily_limit is not None:
                if self._usage.count(digest, now) >= grant.daily_limit:
                    return _deny(
                        Reason.DAILY_LIMIT_REACHED,
                        f"{where}: {grant.daily_limit} opens today already",
                    )
                limits.append((digest, grant.daily_limit))
            digests.append(digest)
            signer, leaf = grant.grantee, grant
        if scope is None or leaf is None:  # unreachable: links is non-empty
            return _deny(Reason.CHAIN_INVALID, "empty chain")
        # Built field by field: every value was validated when its grant was
        # decoded, and this runs on every chained verification.
        signer_entry: TrustedKey = _new(TrustedKey)
        _set_key(signer_entry, leaf.grantee)
        _set_issuer(signer_entry, leaf.grantee_name)
        _set_not_before(signer_entry, None)
        _set_not_after(signer_entry, None)
        resolved: ResolvedChain = _new(ResolvedChain)
        _set_signer(resolved, signer_entry)
        _set_scope(resolved, scope)
        _set_digests(resolved, tuple(digests))
        _set_limits(resolved, tuple(limits))
        _set_token_header(
            resolved, protected_header(leaf.grantee.algorithm, Typ.TOKEN, leaf.grantee.kid)
        )
        return resolved

    def _open_link(
        self, link: bytes, parent: VerificationKey | None, now: int, where: str
    ) -> tuple[bytes, VerificationKey, Grant] | ChainDenial:
        """Authenticate one link: its digest, the key that signed it, its grant."""
        by_reference = len(link) == DIGEST_LENGTH
        if not by_reference and len(link) > MAX_GRANT_BYTES:
            return _deny(Reason.CHAIN_INVALID, f"{where}: grant too large")
        digest = link if by_reference else hashlib.sha256(link).digest()
        cache = self._cache
        cached = cache._get(digest) if cache is not None else None
        if parent is None:
            return self._open_root(link, digest, cached, now, where)
        if cached is not None and cached.signer == parent:
            return digest, parent, cached.grant
        if by_reference:
            return _deny(Reason.CHAIN_INVALID, f"{where}: grant {digest.hex()[:16]} not held")
        try:
            protected, payload, signature, protected_item, payload_item = split_sign1(link)
        except DecodeError as exc:
            return _deny(Reason.CHAIN_INVALID, f"{where}: {exc}")
        # A delegated grant names no signer: the chain does. Its header is
        # therefore one exact byte string, compared whole.
        if protected != _DELEGATED_HEADERS[parent.algorithm]:
            return _deny(
                Reason.CHAIN_INVALID, f"{where}: header is not {{alg of the delegator, typ grant}}"
            )
        if not parent.is_valid_signature(signature, _SIG + protected_item + b"\x40" + payload_item):
            return _deny(Reason.CHAIN_INVALID, f"{where}: not signed by the previous grantee")
        return self._decoded(digest, parent, payload, where)

    def _open_root(
        self, link: bytes, digest: bytes, cached: _Verified | None, now: int, where: str
    ) -> tuple[bytes, VerificationKey, Grant] | ChainDenial:
        if cached is not None:
            root = self._anchors.root(cached.signer.kid)
            if root is None or root.key != cached.signer:
                return _deny(Reason.CHAIN_INVALID, f"{where}: signed by a root no longer held")
            if not root.valid_at(now):
                return _deny(Reason.KEY_NOT_VALID, f"{where}: root outside its validity period")
            return digest, root.key, cached.grant
        if len(link) == DIGEST_LENGTH:
            return _deny(Reason.CHAIN_INVALID, f"{where}: grant {digest.hex()[:16]} not held")
        try:
            protected, payload, signature, protected_item, payload_item = split_sign1(link)
        except DecodeError as exc:
            return _deny(Reason.CHAIN_INVALID, f"{where}: {exc}")
        root = self._anchors._root_for_grant_header(protected)
        if root is None:
            # Not the exact header of a held root: say precisely why.
            header = decode_protected(protected)
            if isinstance(header, HeaderProblem) or header.typ != Typ.GRANT or header.kid is None:
                return _deny(Reason.CHAIN_INVALID, f"{where}: not a grant from a named root")
            if self._anchors.root(header.kid) is None:
                return _deny(Reason.CHAIN_INVALID, f"{where}: {header.kid.hex()} is not a root")
            return _deny(Reason.CHAIN_INVALID, f"{where}: header is not {{root alg, kid, grant}}")
        if not root.valid_at(now):
            return _deny(Reason.KEY_NOT_VALID, f"{where}: root outside its validity period")
        if not root.key.is_valid_signature(
            signature, _SIG + protected_item + b"\x40" + payload_item
        ):
            return _deny(Reason.CHAIN_INVALID, f"{where}: root signature does not verify")
        return self._decoded(digest, root.key, payload, where)

    def _decoded(
        self, digest: bytes, signer: VerificationKey, payload: bytes, where: str
    ) -> tuple[bytes, VerificationKey, Grant] | ChainDenial:
        try:
            grant = decode_grant(payload)
        except DecodeError as exc:
            return _deny(Reason.CHAIN_INVALID, f"{where}: {exc}")
        if self._cache is not None:
            self._cache._put(digest, _Verified(signer, grant))
        return digest, signer, grant

    # -- the token under it ---------------------------------------------------
    def token_header_denial(self, protected: bytes, resolved: ResolvedChain) -> ChainDenial:
        """Say why a token's header is not the one the chain's leaf grantee must use."""
        header = decode_protected(protected)
        if isinstance(header, HeaderProblem):
            return _deny(
                Reason.UNSUPPORTED_HEADER if header is HeaderProblem.UNSUPPORTED
                else Reason.MALFORMED,
                "protected header refused",
            )
        if header.typ != Typ.TOKEN:
            return _deny(Reason.WRONG_TYPE, f"typ {header.typ} is not a trunkkey token")
        if header.kid != resolved.signer.kid:
            return _deny(Reason.CHAIN_INVALID, "token is not signed by the chain's last grantee")
        if header.alg != int(resolved.signer.key.algorithm):
            return _deny(Reason.ALG_MISMATCH, "alg is not the leaf grantee key's")
        return _deny(Reason.MALFORMED, "protected header not deterministically encoded")

    def check_token(
        self, claims: TokenClaims, resolved: ResolvedChain | None
    ) -> ChainDenial | None:
        """Revocation and supersession of an authentic token; with a chain, its scope."""
        revoked = self._revocations.current
        if claims.token_id in revoked.tokens:
            return _deny(Reason.TOKEN_REVOKED, "token id revoked")
        if revoked.superseded(claims.order_ref, claims.issued_at):
            return _deny(Reason.SUPERSEDED, "a newer token was issued for this order")
        if resolved is None:
            return None
        scope = resolved.scope
        if access_bits(claims.action, claims.purpose) & ~scope.access:
            return _deny(Reason.SCOPE_WIDENED, "action or purpose outside the consent")
        if claims.not_before < scope.not_before or claims.expires > scope.expires:
            return _deny(Reason.SCOPE_WIDENED, "token window outside the consent window")
        if not scope.allows_place(claims.geofence):
            return _deny(Reason.SCOPE_WIDENED, "token geofence outside the consented places")
        if _vehicle_tag(claims.vehicle_id) not in scope.vehicles:
            return _deny(Reason.WRONG_VEHICLE, "token is for a vehicle outside the consent")
        return None

    def record_use(self, resolved: ResolvedChain, now: int) -> None:
        """Count an allowed open against every daily limit in the chain."""
        if resolved.limits:
            self._usage.record(tuple(d for d, _ in resolved.limits), now)
