"""Attacks on consent and delegation through the public API only: widening by encoding
tricks, geofence unions, stripped hybrid root signatures riding the grant cache, and
the narrowing rule under random chains of every length."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from trunkkey import (
    Algorithm,
    Issuer,
    Reason,
    SigningKey,
    TrustedKey,
    TrustStore,
    Verifier,
    cbor,
)
from trunkkey.consent import (
    ConsentVerifier,
    Grant,
    GrantCache,
    RevocationState,
    Scope,
    decode_grant,
    encode_chain,
    grant_digest,
    make_grant,
    narrow,
    root_scope,
    sign_delegation,
    sign_revocation_list,
    sign_root_grant,
)
from trunkkey.consent.chain import ChainDenial, ResolvedChain
from trunkkey.consent.errors import UpdateRefused
from trunkkey.consent.grant import MAX_DEPTH, encode_grant, vehicle_tag
from trunkkey.consent.rotation import KeyEntry, Role, TrustUpdater, sign_trust_update
from trunkkey.cose import Typ, parse_sign1, protected_header, sign1
from trunkkey.errors import DecodeError
from trunkkey.geo import Geofence, distance_m
from trunkkey.ledger.memory import MemoryLedger
from trunkkey.testing.consent import START, VEHICLE, build_world

DAY = 86_400
KEY = SigningKey.generate()
VEHICLES = ("1HGCM82633A004352", "WVWZZZ1JZXW000001", "WAUZZZ8V0KA000001", "VF1RFB00X12345678")
#: Centres a few hundred metres apart, so random circles nest, overlap and miss.
CENTRES = [(481371540 + 20_000 * i, 115761240 + 30_000 * j) for i in range(3) for j in range(3)]
ACCESS = [a | p for a in (1, 2, 3) for p in (4, 8, 12)]


# -- encoding tricks: "empty" or "absent" never means "everything" -----------------


def test_an_empty_list_of_places_or_vehicles_is_refused_never_read_as_everywhere() -> None:
    members = cbor.decode(encode_grant(make_grant(
        grantee=KEY.public_key, grantee_name="dhl", access=5, not_before=START,
        expires=START + DAY,
    )))
    for label in (7, 8):
        with pytest.raises(DecodeError):
            decode_grant(cbor.encode({**members, label: []}))


def test_a_child_place_inside_the_union_of_two_overlapping_parent_places_is_widening() -> None:
    west = Geofence(lat_e7=481371540, lon_e7=115761240, radius_m=300)
    east = Geofence(lat_e7=481371540, lon_e7=115841240, radius_m=300)  # ~600 m east
    assert west.within(west)
    assert not east.within(west)
    parent = root_scope(make_grant(
        grantee=KEY.public_key, grantee_name="shop", access=5, not_before=START,
        expires=START + DAY, depth=1, vehicle_ids=[VEHICLES[0]], places=[west, east],
    ))
    assert isinstance(parent, Scope)
    # Centred between the two, small enough to lie in their union, in neither alone.
    between = Geofence(lat_e7=481371540, lon_e7=115801240, radius_m=20)
    assert not between.within(west)
    assert not between.within(east)
    child = make_grant(grantee=KEY.public_key, grantee_name="dhl", access=5,
                       not_before=START, expires=START + DAY, places=[between])
    assert narrow(parent, child) == "a place is not inside any of the parent's"
    inside = Geofence(lat_e7=481371540, lon_e7=115761240, radius_m=100)
    ok = narrow(parent, make_grant(grantee=KEY.public_key, grantee_name="dhl", access=5,
                                   not_before=START, expires=START + DAY, places=[inside]))
    assert isinstance(ok, Scope)
    assert ok.places == (inside,)


# -- hybrid roots: a stripped composite signature rides no cache --------------------


def _resigned(signed: bytes, protected: bytes, signature: bytes) -> bytes:
    payload_item = parse_sign1(signed).payload_item
    return (b"\xd2\x84" + cbor.head(2, len(protected)) + protected + b"\xa0" + payload_item
            + cbor.head(2, len(signature)) + signature)


#: Each composite and its classical half's own algorithm.
COMPOSITES = {Algorithm.EDDSA_MLDSA65: Algorithm.EDDSA, Algorithm.ES256_MLDSA65: Algorithm.ES256}


@pytest.mark.parametrize("composite", sorted(COMPOSITES))
def test_a_hybrid_root_grant_with_a_half_stripped_opens_nothing_even_once_cached(
    composite: Algorithm,
) -> None:
    w = build_world(root_algorithm=composite)
    assert w.present(w.token(), w.chain).allowed  # the whole grant is now in the cache
    assert grant_digest(w.root_grant) in w.consent.cache  # type: ignore[operator]
    parts = parse_sign1(w.root_grant)
    classical = 64
    ml, cl = parts.signature[:-classical], parts.signature[-classical:]
    forgeries = {
        "no ML-DSA half": _resigned(w.root_grant, parts.protected, cl),
        "no classical half": _resigned(w.root_grant, parts.protected, ml),
        "halves swapped": _resigned(w.root_grant, parts.protected, cl + ml),
        # The classical half alone, signing under its own alg and the hybrid root's kid.
        "classical alg, hybrid kid": _resigned(
            w.root_grant, protected_header(COMPOSITES[composite], Typ.GRANT, w.root.kid),
            bytes(classical)),
    }
    for how, forged in forgeries.items():
        decision = w.present(w.token(), encode_chain([forged, w.carrier_grant]))
        assert decision.reason is Reason.CHAIN_INVALID, how
    assert w.present(w.token(), w.chain).allowed  # nothing was poisoned


# -- the grant cache: a grant is taken only where its header was checked -------------


def test_the_cache_takes_a_grant_only_in_the_place_it_was_verified_for() -> None:
    """When the carmaker's own service holds the root key as a grantee, the root signs
    delegations (no kid) as well as root grants (kid). A delegation, cached once it
    verified inside its chain, is no root grant: presented alone it would shed its
    parent's scope, revocation and daily limit. Fresh, cached or named by digest,
    the car decides the same."""
    w = build_world()
    now = w.clock.now()
    own = make_grant(grantee=w.root.public_key, grantee_name="carmaker", access=5,
                     not_before=now - 60, expires=now + DAY, depth=1, vehicle_ids=[VEHICLE],
                     daily_limit=1)
    under_own = make_grant(grantee=w.carrier.public_key, grantee_name="dhl", access=5,
                           not_before=now - 60, expires=now + 3600, vehicle_ids=[VEHICLE])
    own_scope = root_scope(own)
    assert isinstance(own_scope, Scope)
    parent = sign_root_grant(w.root, own)
    delegation = sign_delegation(w.root, own_scope, under_own)
    as_root = sign_root_grant(w.root, under_own)
    # Both verify where they belong, and are cached there.
    for chain in ([parent, delegation], [as_root]):
        assert isinstance(w.consent.resolve(encode_chain(chain), now=now, vehicle_id=VEHICLE),
                          ResolvedChain)
    for misplaced in ([delegation], [parent, as_root]):
        for links in (misplaced, [grant_digest(link) for link in misplaced]):
            got = w.consent.resolve(encode_chain(links), now=now, vehicle_id=VEHICLE)
            assert isinstance(got, ChainDenial), links
            assert got.reason is Reason.CHAIN_INVALID
    fresh = ConsentVerifier(anchors=w.anchors, revocations=w.revocations)
    for misplaced in ([delegation], [parent, as_root]):
        got = fresh.resolve(encode_chain(misplaced), now=now, vehicle_id=VEHICLE)
        assert isinstance(got, ChainDenial)
        assert got.reason is Reason.CHAIN_INVALID


_POOL = build_world()  # its root, retailer and carrier keys; the anchors hold only the root
_KEYS = (_POOL.root, _POOL.retailer, _POOL.carrier)


@st.composite
def _signed_chains(draw: st.DrawFn) -> list[bytes]:
    """1 to 3 links, each signed by the previous grantee (the first by the root), with
    grantees drawn from the root, retailer and carrier keys, and each link's header
    drawn as a root grant's (kid) or a delegation's (none), fitting its place or not."""
    now = _POOL.clock.now()
    count = draw(st.integers(1, 3))
    signer: SigningKey = _POOL.root
    links = []
    for index in range(count):
        grantee = draw(st.sampled_from(_KEYS))
        grant = make_grant(
            grantee=grantee.public_key, grantee_name="x", access=5, not_before=now - 60,
            expires=now + DAY - index, depth=draw(st.integers(0, 3)), vehicle_ids=[VEHICLE],
            daily_limit=draw(st.none() | st.just(3)),
        )
        as_root = draw(st.booleans()) if index else draw(st.sampled_from([True, True, False]))
        links.append(sign1(signer, encode_grant(grant), typ=Typ.GRANT, include_kid=as_root))
        signer = grantee
    return links


@settings(max_examples=200, deadline=None)
@given(chain=_signed_chains(), cuts=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 3)),
                                             min_size=1, max_size=5))
def test_the_grant_cache_never_changes_what_the_car_decides(
    chain: list[bytes], cuts: list[tuple[int, int]],
) -> None:
    """Any run of a chain's links, presented in turn to a car that caches (by the links'
    bytes, then by their digests) and to one that does not: the same decisions."""
    now = _POOL.clock.now()
    fresh = ConsentVerifier(anchors=_POOL.anchors, revocations=RevocationState())
    cached = ConsentVerifier(anchors=_POOL.anchors, revocations=RevocationState(),
                             cache=GrantCache())
    for start, length in [*cuts, (0, len(chain))]:
        links = chain[start:start + length]
        if not links:
            continue
        want = fresh.resolve(encode_chain(links), now=now, vehicle_id=VEHICLE)
        event("resolved" if isinstance(want, ResolvedChain) else f"refused: {want.reason.value}")
        assert cached.resolve(encode_chain(links), now=now, vehicle_id=VEHICLE) == want
        by_digest = cached.resolve(encode_chain([grant_digest(link) for link in links]),
                                   now=now, vehicle_id=VEHICLE)
        if isinstance(want, ResolvedChain):
            assert by_digest == want  # every link was verified, in its place, just above
        else:
            assert isinstance(by_digest, ChainDenial)


# -- revocation: a revoked key id opens nothing, chain or no chain -----------------


def test_a_revoked_key_id_opens_nothing_without_a_chain_either() -> None:
    """A carmaker that revokes a kid means that key: a retailer also trusted directly
    (tokens without a chain) may not keep opening cars once its kid is revoked."""
    w = build_world()
    direct = SigningKey.generate()
    verifier = Verifier(trust_store=TrustStore([TrustedKey.create(direct.public_key, "shop")]),
                        ledger=MemoryLedger(), clock=w.clock, consent=w.consent)
    issuer = Issuer(direct, "shop", clock=w.clock)

    def present() -> Reason:
        now = w.clock.now()
        token = issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=now,
                            expires=now + 600)
        return verifier.verify(token, vehicle_id=VEHICLE, action="trunk").reason

    assert present() is Reason.ALLOWED
    w.revocations.apply(sign_revocation_list(w.root, version=1, issued_at=w.clock.now(),
                                             keys=[direct.kid]), w.anchors, now=w.clock.now())
    assert present() is Reason.KEY_REVOKED
    # Under a chain, as before: the leaf grantee's kid revoked is key_revoked too.
    w.revocations.apply(sign_revocation_list(w.root, version=2, issued_at=w.clock.now(),
                                             keys=[direct.kid, w.carrier.kid]),
                        w.anchors, now=w.clock.now())
    assert w.present(w.token(), w.chain).reason is Reason.KEY_REVOKED


# -- trust updates: none may leave the car a root that can never sign again --------


def _root(key: SigningKey, not_before: int, not_after: int) -> KeyEntry:
    return KeyEntry(role=Role.ROOT, name="carmaker", key=key.public_key,
                    not_before=not_before, not_after=not_after)


def test_an_update_may_not_leave_the_car_only_roots_whose_window_has_ended() -> None:
    """Ending every root's window bricks the consent path as surely as removing every
    root: no key could ever sign another grant, revocation list or trust update."""
    w = build_world()
    now = w.clock.now()
    updater = TrustUpdater(anchors=w.anchors, trust_store=TrustStore())
    typo = SigningKey.generate()
    for version, keys, remove in (
        (1, [_root(w.root, 0, now)], ()),  # the one root re-dated to end now
        (2, [_root(typo, 0, now - DAY)], (w.root.kid,)),  # rotated to a root already over
        (3, [_root(w.root, 0, now), _root(typo, now - DAY, now - 1)], ()),
    ):
        with pytest.raises(UpdateRefused) as refused:
            updater.apply(sign_trust_update(w.root, version=version, issued_at=now,
                                            set_keys=keys, remove=remove), now=now)
        assert refused.value.reason is Reason.MALFORMED
        assert refused.value.detail == (
            "update would leave the car no carmaker root valid now or later")
        assert updater.version == 0
        assert [(r.key, r.not_after) for r in w.anchors.roots()] == [(w.root.public_key, None)]
    assert w.present(w.token(), w.chain).allowed
    # A root that still signs for one more second, or only from tomorrow, is a root.
    updater.apply(sign_trust_update(w.root, version=4, issued_at=now,
                                    set_keys=[_root(w.root, 0, now + 1)]), now=now)
    updater.apply(sign_trust_update(w.root, version=5, issued_at=now, remove=[w.root.kid],
                                    set_keys=[_root(typo, now + DAY, now + 2 * DAY)]), now=now)
    assert [r.key for r in w.anchors.roots()] == [typo.public_key]
    # The same rule still refuses an update that removes every root outright.
    with pytest.raises(UpdateRefused) as refused:
        updater.apply(sign_trust_update(typo, version=6, issued_at=now, remove=[typo.kid]),
                      now=now + DAY)
    assert refused.value.reason is Reason.MALFORMED


# -- the rule itself: no chain's scope is ever wider than any of its links ----------


@dataclass(frozen=True)
class _Link:
    access: int
    not_before: int
    expires: int
    depth: int
    vehicles: tuple[str, ...] | None
    places: tuple[Geofence, ...] | None
    daily_limit: int | None

    def grant(self) -> Grant:
        return make_grant(
            grantee=KEY.public_key, grantee_name="x", access=self.access,
            not_before=self.not_before, expires=self.expires, depth=self.depth,
            vehicle_ids=self.vehicles, places=self.places, daily_limit=self.daily_limit,
        )


_fences = st.builds(
    lambda centre, radius: Geofence(lat_e7=centre[0], lon_e7=centre[1], radius_m=radius),
    st.sampled_from(CENTRES), st.integers(5, 6000),
)


def _shrunk(draw: st.DrawFn, fence: Geofence) -> Geofence:
    """A circle drawn inside ``fence`` (same centre, smaller radius): a child that narrows."""
    radius = draw(st.integers(min(5, fence.radius_m), fence.radius_m))
    return Geofence(lat_e7=fence.lat_e7, lon_e7=fence.lon_e7, radius_m=radius)


@st.composite
def _link(draw: st.DrawFn, parent: _Link | None, vehicles: tuple[str, ...] = ()) -> _Link:
    """A link: free (the first, or one in ten), else drawn to narrow ``parent`` (under
    ``vehicles``, those the chain allows so far), each dimension now and then drawn
    free, so that chains of every length both verify and widen one dimension at a time."""
    free = parent is None or draw(st.integers(0, 9)) == 0
    if free or parent is None:
        nbf = START + draw(st.integers(0, 10)) * DAY
        exp = nbf + draw(st.integers(1, 10)) * DAY - draw(st.sampled_from([0, 1]))
        return _Link(
            access=draw(st.sampled_from(ACCESS)), not_before=nbf, expires=exp,
            depth=draw(st.sampled_from([MAX_DEPTH, *range(MAX_DEPTH + 1)])),
            vehicles=draw((st.nothing() if parent is None else st.none()) | st.lists(
                st.sampled_from(VEHICLES), min_size=1, max_size=4, unique=True).map(tuple)),
            places=draw(st.none() | st.lists(_fences, min_size=1, max_size=3).map(tuple)),
            daily_limit=draw(st.none() | st.integers(1, 6)),
        )
    wild = draw(st.sampled_from(["none"] * 6 + ["access", "window", "depth", "vehicles", "places",
                                 "limit"]))
    narrower = [a for a in ACCESS if a & ~parent.access == 0]
    nbf = parent.not_before + draw(st.integers(0, parent.expires - parent.not_before - 1))
    exp = parent.expires - draw(st.integers(0, parent.expires - nbf - 1))
    places = parent.places and tuple(_shrunk(draw, p) for p in parent.places)
    return _Link(
        access=draw(st.sampled_from(ACCESS if wild == "access" else narrower)),
        not_before=nbf - (DAY if wild == "window" else 0),
        expires=exp + (draw(st.integers(0, 1)) if wild == "window" else 0),
        depth=draw(st.integers(0, MAX_DEPTH) if wild == "depth" or parent.depth < 1
                   else st.sampled_from([parent.depth - 1, *range(parent.depth)])),
        vehicles=draw(st.none() | st.lists(
            st.sampled_from(VEHICLES if wild == "vehicles" else vehicles),
            min_size=1, max_size=4, unique=True).map(tuple)),
        places=(draw(st.lists(_fences, min_size=1, max_size=3).map(tuple)) if wild == "places"
                else draw(st.sampled_from([None, places or None]))),
        daily_limit=draw(st.none() | st.integers(1, 6) if wild == "limit" or not
                         parent.daily_limit else st.integers(1, parent.daily_limit)),
    )


@st.composite
def _chains(draw: st.DrawFn) -> list[Grant]:
    links = [draw(_link(None))]
    vehicles = links[0].vehicles or ()
    # Mostly as many links as the root's depth allows; now and then more.
    count = draw(st.sampled_from([links[0].depth + 1] * 3 + list(range(1, MAX_DEPTH + 2))))
    while len(links) < count:
        links.append(draw(_link(links[-1], vehicles)))
        vehicles = links[-1].vehicles or vehicles
    return [link.grant() for link in links]


#: Float rounding in a great-circle distance; a metre is a thousand times more than it.
_EPSILON_M = 1e-6


def _inside(inner: Geofence, outer: Geofence) -> bool:
    return distance_m(inner.centre, outer.centre) + inner.radius_m <= outer.radius_m + _EPSILON_M


@settings(max_examples=400, deadline=None)
@given(chain=_chains())
def test_the_narrowed_scope_lies_inside_every_link_in_every_dimension(chain: list[Grant]) -> None:
    scope: Scope | str = root_scope(chain[0])
    for grant in chain[1:]:
        if isinstance(scope, str):
            break
        scope = narrow(scope, grant)
    event(f"{len(chain)} links: {'narrowed' if isinstance(scope, Scope) else 'refused'}")
    if isinstance(scope, str):
        return
    for position, grant in enumerate(chain):
        assert scope.access & ~grant.access == 0
        assert grant.not_before <= scope.not_before < scope.expires <= grant.expires
        # Depth counts down by at least one per delegation after this link.
        assert scope.depth <= grant.depth - (len(chain) - 1 - position)
        if grant.vehicles is not None:
            assert scope.vehicles <= grant.vehicles
        if grant.places is not None:
            assert scope.places is not None
            assert all(any(_inside(p, q) for q in grant.places) for p in scope.places)
            assert not scope.allows_place(None)
        if grant.daily_limit is not None:
            assert scope.daily_limit is not None
            assert scope.daily_limit <= grant.daily_limit
    assert scope.vehicles <= frozenset(vehicle_tag(v) for v in VEHICLES)
