"""Offline chain verification in the car: carmaker root -> grants -> the token's signer.

:class:`ConsentVerifier` is what a :class:`~trunkkey.Verifier` consults when a
token is presented with a chain. It runs, for each link in order, every
check with its own reason code, and fails closed:

1. the link's bytes (a grant, or the digest of one the car already holds);
2. the signer: the first grant's ``kid`` must name a carmaker root valid now,
   each later grant must be signed by the grantee of the one before, with the
   exact protected header ``{alg of that key, typ grant}``;
3. the signature (skipped only when these very bytes were verified before
   under this very signer, in this very place: first link or delegation);
4. revocation: the grant's identity (the SHA-256 of what was signed, so no
   re-encoding of its signature escapes a revocation), its signer's and its
   grantee's key ids;
5. narrowing: the link states nothing wider than the chain so far;
6. its window at ``now``, and the car's vehicle among its vehicles;
7. daily limits: collected here, checked and counted by the ledger in the
   same atomic step that spends the token (see :meth:`~trunkkey.ledger.base.Ledger.spend`).

It returns the leaf grantee as a :class:`~trunkkey.TrustedKey` plus the
narrowest scope; the verifier then requires the token to be signed by that
key and to lie inside that scope (:meth:`ConsentVerifier.check_claims`).

The grant cache holds only what a signature check proved: that these bytes
were signed by that key. Revocation, windows, narrowing and vehicle are
checked again on every use, so a cached grant is never a shortcut past them.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass

from .. import cbor
from .._sodium import equal
from ..authority import Refusal, Signer, header_refusal
from ..claims import TokenClaims, access_bits
from ..cose import (
    HeaderProblem,
    Typ,
    decode_protected,
    identity_of,
    protected_header,
    signature_holds,
    split_sign1,
)
from ..errors import DecodeError, InvalidRequest
from ..keys import Algorithm, VerificationKey
from ..ledger.base import DailyLimit
from ..reasons import Reason
from ..trust import TrustedKey
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
from .revocation import RevocationList, RevocationState

#: A chain holds at most MAX_DEPTH + 1 grants.
MAX_CHAIN_BYTES = (MAX_DEPTH + 1) * (MAX_GRANT_BYTES + 3) + 1
DEFAULT_CACHE_SIZE = 1024

#: Why a chain (or a token under it) was refused: the verifier's own refusal type.
ChainDenial = Refusal


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedChain(Signer):
    """A chain that verified at one instant: its leaf signer, limits and narrowest scope."""

    scope: Scope
    #: Grant identities, root first.
    digests: tuple[bytes, ...]

    @property
    def signer(self) -> TrustedKey:
        """The leaf grantee, as the trusted key the token must be signed by."""
        return self.trusted


@dataclass(frozen=True, slots=True)
class _Verified:
    signer: VerificationKey
    grant: Grant
    #: The signature that was checked: another one over the same content is
    #: checked afresh, never taken on trust from the cache.
    signature: bytes
    #: Verified as a chain's first grant (under its root's header) rather than as a
    #: delegation (under the previous grantee's): it is taken only in that place again.
    first: bool

    def holds_for(self, parent: VerificationKey | None) -> bool:
        """Whether this entry may stand where the previous grantee is ``parent``
        (``None``: first in the chain) -- the place, and the signer, it was verified for.

        A root key can also be a grantee (the carmaker's own service): then its
        delegations verify under it too, and one taken from the cache as a first
        link would shed its parent's scope, revocation and daily limit.
        """
        if parent is None:
            return self.first
        return not self.first and self.signer == parent


class GrantCache:
    """Grants whose signature verified, by identity: a bounded LRU, safe between threads."""

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


#: The one protected header of a delegated grant, by the delegator's algorithm.
_DELEGATED_HEADERS = {alg: protected_header(alg, Typ.GRANT, None) for alg in Algorithm}
_WHERE = tuple(f"link {index}" for index in range(MAX_DEPTH + 1))
_NOT_LEAF = Refusal(
    reason=Reason.CHAIN_INVALID, detail="token is not signed by the chain's last grantee"
)

#: A car hears its own id over and over: hash it once.
_vehicle_tag = functools.lru_cache(maxsize=64)(vehicle_tag)


def _deny(reason: Reason, detail: str) -> Refusal:
    return Refusal(reason=reason, detail=detail)


def _key_revoked(revoked: RevocationList, *keys: VerificationKey) -> bool:
    """Whether the list revokes any of ``keys``: a revoked kid signs nothing the car
    accepts, neither a grant anywhere in a chain nor a token, chain or no chain."""
    listed = revoked.keys
    return bool(listed) and any(key.kid in listed for key in keys)


class ConsentVerifier:
    """Resolves consent chains against the car's anchors, revocations and cache.

    A :class:`~trunkkey.authority.TokenAuthority`: the verifier asks it for the
    signer of a token presented with a chain, and asks it to check every
    authentic token (with a chain or without) against the revocation list.
    """

    def __init__(
        self,
        *,
        anchors: VehicleAnchors,
        revocations: RevocationState,
        cache: GrantCache | None = None,
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
        self._anchors = anchors
        self._revocations = revocations
        self._cache = cache
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
        if type(chain) is not bytes or len(chain) > (
            MAX_CHAIN_BYTES + self._anchors.signature_allowance
        ):
            return _deny(Reason.CHAIN_INVALID, "chain is not bytes of a bounded size")
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
        limits: list[DailyLimit] = []
        for index, link in enumerate(links):
            where = _WHERE[index]
            got = self._open_link(link, signer, now, where)
            if isinstance(got, ChainDenial):
                return got
            digest, link_signer, grant = got
            # Revocation, from the moment the list was applied.
            if digest in revoked.grants:
                return _deny(Reason.GRANT_REVOKED, f"{where}: grant {digest.hex()[:16]} revoked")
            if _key_revoked(revoked, link_signer, grant.grantee):
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
                # Counted by the ledger in the step that spends the token: a
                # count checked here would race with every other presentation.
                limits.append(DailyLimit(digest, grant.daily_limit))
            digests.append(digest)
            signer, leaf = grant.grantee, grant
        if scope is None or leaf is None:  # unreachable: links is non-empty
            return _deny(Reason.CHAIN_INVALID, "empty chain")
        header = protected_header(leaf.grantee.algorithm, Typ.TOKEN, leaf.grantee.kid)
        return ResolvedChain(
            trusted=TrustedKey(key=leaf.grantee, issuer=leaf.grantee_name),
            token_header=header,
            limits=tuple(limits),
            scope=scope,
            digests=tuple(digests),
        )

    def _open_link(
        self, link: bytes, parent: VerificationKey | None, now: int, where: str
    ) -> tuple[bytes, VerificationKey, Grant] | Refusal:
        """Authenticate one link: its identity, the key that signed it, its grant."""
        cache = self._cache
        if len(link) == DIGEST_LENGTH:
            # By reference: the identity of a grant the car verified before.
            held = cache._get(link) if cache is not None else None
            if held is None or not held.holds_for(parent):
                return _deny(Reason.CHAIN_INVALID, f"{where}: grant {link.hex()[:16]} not held")
            return self._signed_by(link, held, parent, now, where)
        # A grant's cap counts its signature as 64 bytes: a hybrid root's is longer.
        if len(link) > MAX_GRANT_BYTES + (self._anchors.signature_allowance if parent is None
                                          else 0):
            return _deny(Reason.CHAIN_INVALID, f"{where}: grant too large")
        try:
            protected, payload, signature, protected_item, payload_item = split_sign1(link)
        except DecodeError as exc:
            return _deny(Reason.CHAIN_INVALID, f"{where}: {exc}")
        digest = identity_of(protected_item, payload_item)
        cached = cache._get(digest) if cache is not None else None
        if cached is not None and equal(cached.signature, signature) and cached.holds_for(parent):
            # These very bytes verified before under this signer, in this place.
            return self._signed_by(digest, cached, parent, now, where)
        if parent is None:
            root = self._anchors._root_for_grant_header(protected)
            if root is None:
                return _deny(Reason.CHAIN_INVALID, f"{where}: {self._why_not_root(protected)}")
            if not root.valid_at(now):
                return _deny(Reason.KEY_NOT_VALID, f"{where}: root outside its validity period")
            key = root.key
        else:
            # A delegated grant names no signer: the chain does. Its header is
            # therefore one exact byte string, compared whole.
            if protected != _DELEGATED_HEADERS[parent.algorithm]:
                return _deny(
                    Reason.CHAIN_INVALID,
                    f"{where}: header is not {{alg of the delegator, typ grant}}",
                )
            key = parent
        if not signature_holds(key, signature, protected_item, payload_item):
            return _deny(
                Reason.CHAIN_INVALID,
                f"{where}: root signature does not verify" if parent is None
                else f"{where}: not signed by the previous grantee",
            )
        try:
            grant = decode_grant(payload)
        except DecodeError as exc:
            return _deny(Reason.CHAIN_INVALID, f"{where}: {exc}")
        if cache is not None:
            cache._put(digest, _Verified(key, grant, signature, parent is None))
        return digest, key, grant

    def _signed_by(
        self, digest: bytes, held: _Verified, parent: VerificationKey | None, now: int, where: str
    ) -> tuple[bytes, VerificationKey, Grant] | Refusal:
        """A grant verified before: a root grant's signer must still be a root valid now."""
        if parent is not None:
            return digest, parent, held.grant
        root = self._anchors.root(held.signer.kid)
        if root is None or root.key != held.signer:
            return _deny(Reason.CHAIN_INVALID, f"{where}: signed by a root no longer held")
        if not root.valid_at(now):
            return _deny(Reason.KEY_NOT_VALID, f"{where}: root outside its validity period")
        return digest, root.key, held.grant

    def _why_not_root(self, protected: bytes) -> str:
        """Why a first grant's header is not the exact header of a held root."""
        header = decode_protected(protected)
        if isinstance(header, HeaderProblem) or header.typ != Typ.GRANT or header.kid is None:
            return "not a grant from a named root"
        if self._anchors.root(header.kid) is None:
            return f"{header.kid.hex()} is not a root"
        return "header is not {root alg, kid, grant}"

    # -- the token under it (TokenAuthority) ----------------------------------
    def token_signer(
        self, protected: bytes, chain: bytes | None, *, now: int, vehicle_id: str, skew: int
    ) -> Signer | Refusal:
        """The chain's leaf grantee, if ``protected`` is exactly its token header."""
        if chain is None:
            return _deny(Reason.CHAIN_INVALID, "no consent chain was presented")
        resolved = self.resolve(chain, now=now, vehicle_id=vehicle_id, skew=skew)
        if not isinstance(resolved, ResolvedChain):
            return resolved
        if protected == resolved.token_header:
            return resolved
        leaf = resolved.trusted
        return header_refusal(
            protected, lambda kid: leaf if kid == leaf.kid else None, lambda _: _NOT_LEAF
        )

    def check_claims(self, claims: TokenClaims, signer: Signer) -> Refusal | None:
        """Revocation and supersession of any authentic token; under a chain, its scope."""
        revoked = self._revocations.current
        if claims.token_id in revoked.tokens:
            return _deny(Reason.TOKEN_REVOKED, "token id revoked")
        if revoked.superseded(claims.order_ref, claims.issued_at):
            return _deny(Reason.SUPERSEDED, "a newer token was issued for this order")
        if not isinstance(signer, ResolvedChain):
            # A directly trusted issuer: under a chain, resolve checked the leaf already.
            if _key_revoked(revoked, signer.trusted.key):
                return _deny(Reason.KEY_REVOKED, "the token's signing key is revoked")
            return None
        scope = signer.scope
        if access_bits(claims.action, claims.purpose) & ~scope.access:
            return _deny(Reason.SCOPE_WIDENED, "action or purpose outside the consent")
        if claims.not_before < scope.not_before or claims.expires > scope.expires:
            return _deny(Reason.SCOPE_WIDENED, "token window outside the consent window")
        if not scope.allows_place(claims.geofence):
            return _deny(Reason.SCOPE_WIDENED, "token geofence outside the consented places")
        if _vehicle_tag(claims.vehicle_id) not in scope.vehicles:
            return _deny(Reason.WRONG_VEHICLE, "token is for a vehicle outside the consent")
        return None
