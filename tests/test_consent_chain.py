"""Offline chain verification in the car: the end-to-end delivery, the attack scenes,
tampering with links, the narrowest-link property, the grant cache, and every
denial of the consent verifier with its exact reason and detail."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from support import example, sign_unchecked
from trunkkey import (
    Action,
    Algorithm,
    Geofence,
    InvalidRequest,
    Location,
    Purpose,
    Reason,
    SigningKey,
    cbor,
    make_proof,
)
from trunkkey.authority import Signer
from trunkkey.consent import (
    ConsentVerifier,
    Grant,
    GrantCache,
    RevocationState,
    Scope,
    access_mask,
    encode_chain,
    grant_digest,
    make_grant,
    narrow,
    root_scope,
    sign_delegation,
    sign_revocation_list,
    sign_root_grant,
)
from trunkkey.consent.anchors import RootKey, VehicleAnchors
from trunkkey.consent.chain import DEFAULT_CACHE_SIZE, MAX_CHAIN_BYTES, ChainDenial, ResolvedChain
from trunkkey.consent.grant import encode_grant
from trunkkey.cose import Typ, sign1
from trunkkey.ledger.base import DailyLimit, SpendOutcome
from trunkkey.ledger.memory import MemoryLedger
from trunkkey.testing import consent as story
from trunkkey.testing.consent import (
    DAY,
    HOME,
    START,
    VEHICLE,
    ConsentWorld,
    build_world,
    carrier_delegation,
)

#: The consent story's scenes, as examples/consent_story.py plays them.
scenes = example("world")


@pytest.fixture(params=[Algorithm.EDDSA, Algorithm.ES256], ids=["ed25519", "p256"])
def world(request: pytest.FixtureRequest) -> ConsentWorld:
    return build_world(algorithm=request.param)


@pytest.fixture
def ed_world() -> ConsentWorld:
    return build_world()


# -- the end-to-end ------------------------------------------------------------

def test_courier_token_under_carrier_retailer_consent_root_opens_offline(
    world: ConsentWorld,
) -> None:
    # The car's trust store is empty: only the carmaker root is an anchor.
    assert len(world.verifier.trust_store) == 0
    token = world.token()
    decision = world.present(token, world.chain)
    assert decision.reason is Reason.ALLOWED
    assert decision.claims is not None
    assert decision.claims.issuer == "dhl"
    # Single use still holds under a chain.
    assert world.present(token, world.chain).reason is Reason.ALREADY_USED


def test_presentation_size_is_measured(ed_world: ConsentWorld) -> None:
    for sizes in (ed_world.presentation_size(), story.minimal_presentation_size(ed_world)):
        assert sizes["total"] == sizes["chain"] + sizes["token"] + sizes["proof"]
        # By reference (grants already verified and cached in the car) it fits 512 bytes.
        assert sizes["total_by_reference"] <= 512
    lean = story.minimal_presentation_size(ed_world)
    # Four Ed25519 signatures (264 bytes) and three public keys (111) are most of it;
    # this bound catches any regression in what the grants add (docs/consent.md).
    assert lean["chain"] <= 301
    assert lean["total"] <= 594


def test_without_a_chain_the_token_needs_a_trusted_key(ed_world: ConsentWorld) -> None:
    assert ed_world.present(ed_world.token(), None).reason is Reason.UNKNOWN_KEY


# -- one test per attack scene --------------------------------------------------

def test_scene_widened_scope(ed_world: ConsentWorld) -> None:
    assert scenes.scene_widened_scope(ed_world).reason is Reason.SCOPE_WIDENED


def test_scene_expired_consent(ed_world: ConsentWorld) -> None:
    assert scenes.scene_expired_consent(ed_world).reason is Reason.GRANT_EXPIRED


def test_scene_revoked_consent(ed_world: ConsentWorld) -> None:
    assert scenes.scene_revoked_consent(ed_world).reason is Reason.GRANT_REVOKED


def test_scene_carrier_outside_retailer_grant(ed_world: ConsentWorld) -> None:
    assert scenes.scene_carrier_outside_grant(ed_world).reason is Reason.SCOPE_WIDENED


def test_scene_rolled_back_revocation_list(ed_world: ConsentWorld) -> None:
    refused, decision = scenes.scene_rolled_back_list(ed_world)
    assert refused is not None
    assert refused.reason is Reason.ROLLBACK
    assert ed_world.revocations.version == 2
    assert decision.reason is Reason.GRANT_REVOKED


def test_scene_superseded_token(ed_world: ConsentWorld) -> None:
    assert scenes.scene_superseded_token(ed_world).reason is Reason.SUPERSEDED


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        # Ends after the carrier's week is over.
        ({"not_before": story.START + 7 * DAY - 3600, "expires": story.START + 7 * DAY + 3600},
         Reason.SCOPE_WIDENED),
        ({"geofence": None}, Reason.SCOPE_WIDENED),  # anywhere, where consent names a place
        ({"geofence": Geofence(lat_e7=HOME.lat_e7, lon_e7=HOME.lon_e7, radius_m=250)},
         Reason.SCOPE_WIDENED),  # a fence bigger than the carrier's 200 m
        ({"purpose": Purpose.RETURN_PICKUP}, Reason.SCOPE_WIDENED),
    ],
)
def test_carrier_token_outside_its_grant(
    ed_world: ConsentWorld, overrides: dict[str, object], reason: Reason
) -> None:
    token = ed_world.token(**overrides)
    assert ed_world.present(token, ed_world.chain).reason is reason


def test_grant_not_yet_valid_and_vehicle_out_of_scope(ed_world: ConsentWorld) -> None:
    w = ed_world
    early = make_grant(grantee=w.carrier.public_key, grantee_name="dhl",
                       access=access_mask(["trunk"], ["delivery"]), not_before=w.clock.now() + DAY,
                       expires=w.clock.now() + 2 * DAY)
    chain = encode_chain([w.root_grant, sign_delegation(w.retailer, w.retailer_scope, early)])
    assert w.present(w.token(), chain).reason is Reason.GRANT_NOT_YET_VALID
    other_car = make_grant(grantee=w.retailer.public_key, grantee_name="amazon", access=0x05,
                           not_before=w.clock.now() - DAY, expires=w.clock.now() + 30 * DAY,
                           depth=1, vehicle_ids=["WVWZZZ1JZXW000001"])
    scope = root_scope(other_car)
    assert isinstance(scope, Scope)
    chain = encode_chain([
        sign_root_grant(w.root, other_car),
        sign_delegation(w.retailer, scope, story.carrier_delegation(w.carrier, w.clock.now())),
    ])
    assert w.present(w.token(), chain).reason is Reason.WRONG_VEHICLE


def test_daily_limit_counts_only_allowed_opens(ed_world: ConsentWorld) -> None:
    w = ed_world  # the owner's consent allows 5 opens a day
    replayed = w.token()
    assert w.present(replayed, w.chain).allowed
    for _ in range(10):  # replays are refused and must not use up the allowance
        assert w.present(replayed, w.chain).reason is Reason.ALREADY_USED
    for _ in range(4):
        assert w.present(w.token(), w.chain).allowed
    assert w.present(w.token(), w.chain).reason is Reason.DAILY_LIMIT_REACHED
    w.clock.advance(DAY)
    assert w.present(w.token(), w.chain).allowed


# -- tampering with links ---------------------------------------------------------

def _other_chain(w: ConsentWorld) -> tuple[bytes, bytes, SigningKey]:
    """A second, valid chain for the same car through another retailer."""
    other_retailer = SigningKey.generate()
    consent = story.retailer_consent(other_retailer, w.clock.now())
    scope = root_scope(consent)
    assert isinstance(scope, Scope)
    return (
        sign_root_grant(w.root, consent),
        sign_delegation(other_retailer, scope, story.carrier_delegation(w.carrier, w.clock.now())),
        other_retailer,
    )


def test_replacing_reordering_dropping_or_resigning_links_is_denied(
    ed_world: ConsentWorld,
) -> None:
    w = ed_world
    root_grant, carrier_grant = w.root_grant, w.carrier_grant
    other_root_grant, other_carrier_grant, _ = _other_chain(w)
    stranger = SigningKey.generate()
    scope = w.retailer_scope
    delegation = story.carrier_delegation(w.carrier, w.clock.now())
    consent = story.retailer_consent(w.retailer, w.clock.now())
    tampered = {
        "replace root": [other_root_grant, carrier_grant],
        "replace carrier": [root_grant, other_carrier_grant],
        "reorder": [carrier_grant, root_grant],
        "drop carrier": [root_grant],
        "drop root": [carrier_grant],
        "duplicate root": [root_grant, root_grant, carrier_grant],
        "re-sign root by a stranger": [sign_root_grant(stranger, consent), carrier_grant],
        "re-sign carrier by a stranger": [root_grant, sign_delegation(stranger, scope, delegation)],
        "re-sign carrier by itself": [root_grant, sign_delegation(w.carrier, scope, delegation)],
        "re-sign carrier by the root": [root_grant, sign_unchecked(w.root, delegation)],
    }
    token = w.token()
    for name, links in tampered.items():
        decision = w.present(token, encode_chain(links))
        assert not decision.allowed, name
        assert decision.reason in {Reason.CHAIN_INVALID, Reason.SCOPE_WIDENED}, name
    # The untampered chain still opens, with the same token: nothing was spent.
    assert w.present(token, w.chain).allowed


def test_every_single_bit_flip_of_a_valid_chain_is_denied(ed_world: ConsentWorld) -> None:
    w = ed_world
    chain = w.chain
    token = w.token()
    for bit in range(len(chain) * 8):
        flipped = bytearray(chain)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not w.present(token, bytes(flipped)).allowed, bit
    # The cache was not poisoned by any of them.
    assert w.present(token, chain).allowed


def test_a_token_by_another_key_is_denied(ed_world: ConsentWorld) -> None:
    w = ed_world
    from trunkkey import Issuer

    forged = Issuer(w.retailer, "dhl", clock=w.clock).mint(
        vehicle_id=VEHICLE, action="trunk", not_before=w.clock.now(),
        expires=w.clock.now() + 3600, courier_key=w.courier.public_key,
        geofence=Geofence(lat_e7=HOME.lat_e7, lon_e7=HOME.lon_e7, radius_m=100),
    )
    assert w.present(forged, w.chain).reason is Reason.CHAIN_INVALID
    misnamed = Issuer(w.carrier, "ups", clock=w.clock).mint(
        vehicle_id=VEHICLE, action="trunk", not_before=w.clock.now(),
        expires=w.clock.now() + 3600, courier_key=w.courier.public_key,
        geofence=Geofence(lat_e7=HOME.lat_e7, lon_e7=HOME.lon_e7, radius_m=100),
    )
    assert w.present(misnamed, w.chain).reason is Reason.WRONG_ISSUER


def test_oversized_or_malformed_chains_are_denied(ed_world: ConsentWorld) -> None:
    w = ed_world
    token = w.token()
    for chain in (b"", b"\x80", b"\xa0", b"\x81\x01", b"\x81" + b"\x59\xff\xff",
                  encode_chain([b"x" * 600]), b"\x85" + b"\x41\x00" * 5, b"\x00" * 5000):
        assert w.present(token, chain).reason is Reason.CHAIN_INVALID


# -- the property: no chain grants more than its narrowest link ----------------

ACCESS = [a | p for a in (1, 2, 3) for p in (4, 8, 12)]
NOW = story.START
WORLD = build_world()
SPOT = Location(lat_e7=HOME.lat_e7, lon_e7=HOME.lon_e7 + 300)  # where the car is parked


def _fence(radius: int) -> Geofence:
    return Geofence(lat_e7=SPOT.lat_e7, lon_e7=SPOT.lon_e7, radius_m=radius)


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    access: int
    not_before: int
    expires: int
    places: list[Geofence] | None

    def grant(self, key: SigningKey, name: str, depth: int, vehicles: list[str] | None) -> Grant:
        return make_grant(grantee=key.public_key, grantee_name=name, access=self.access,
                          not_before=self.not_before, expires=self.expires, depth=depth,
                          vehicle_ids=vehicles, places=self.places)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    root: Link
    child: Link
    depth: int
    child_depth: int
    action: Action
    purpose: Purpose
    token_start: int
    token_end: int
    radius: int | None


@st.composite
def links(draw: st.DrawFn, parent: Link | None = None) -> Link:
    """A link's scope: free, or (often) drawn inside ``parent`` so that chains verify."""
    if parent is None or draw(st.booleans()):
        nbf = NOW - draw(st.integers(-600, 3 * DAY))
        return Link(
            access=draw(st.sampled_from(ACCESS)),
            not_before=nbf,
            expires=max(nbf + 1, NOW + draw(st.integers(-600, 3 * DAY))),
            places=draw(st.none() | st.integers(5, 2000).map(lambda r: [_fence(r)])),
        )
    nbf, exp = parent.not_before, parent.expires
    start = nbf + draw(st.integers(0, max(0, min(exp - 1, NOW) - nbf)))
    narrower = parent.access & draw(st.sampled_from(ACCESS))
    radius = parent.places[0].radius_m if parent.places else 2000
    return Link(
        access=narrower if narrower & 3 and narrower & 12 else parent.access,
        not_before=start,
        expires=exp - draw(st.integers(0, max(0, exp - max(start + 1, NOW)))),
        places=draw(st.none() | st.integers(5, radius).map(lambda r: [_fence(r)])),
    )


@st.composite
def presentations(draw: st.DrawFn) -> Case:
    """A two-link chain and a token: as often honest (inside the chain) as not."""
    root = draw(links())
    child = draw(links(root))
    depth = draw(st.integers(0, 2))
    honest = draw(st.booleans())
    if honest:
        depth = max(depth, 1)
        child_depth = draw(st.integers(0, depth - 1))
        bits = child.access
        action = draw(st.sampled_from([a for a in Action if a.bit & bits]))
        purpose = draw(st.sampled_from([p for p in Purpose if p.bit & bits]))
        token_start = max(child.not_before, NOW - 3600) + draw(st.integers(0, 60))
        token_end = min(child.expires, token_start + 6 * 3600) - draw(st.integers(0, 60))
        places = [x.places for x in (root, child) if x.places]
        biggest = min([ps[0].radius_m for ps in places], default=1000)
        radius = draw(st.none() | st.integers(5, biggest)) if not places else draw(
            st.integers(5, biggest))
    else:
        child_depth = draw(st.integers(0, 2))
        action = draw(st.sampled_from(list(Action)))
        purpose = draw(st.sampled_from(list(Purpose)))
        token_start = NOW + draw(st.integers(-3600, 0))
        token_end = token_start + draw(st.integers(60, 6 * 3600))
        radius = draw(st.none() | st.integers(5, 1000))
    return Case(root=root, child=child, depth=depth, child_depth=child_depth, action=action,
                purpose=purpose, token_start=token_start,
                token_end=max(token_end, token_start + 1), radius=radius)


@settings(max_examples=200)
@given(case=presentations())
def test_no_chain_ever_grants_more_than_its_narrowest_link(case: Case) -> None:
    w = WORLD
    w.clock.set(NOW)
    action, purpose = case.action, case.purpose
    token_start, token_end = case.token_start, case.token_end
    root_grant = case.root.grant(w.retailer, "amazon", case.depth, [VEHICLE])
    child_grant = case.child.grant(w.carrier, "dhl", case.child_depth, None)
    signed = encode_chain([sign_root_grant(w.root, root_grant),
                           sign_unchecked(w.retailer, child_grant)])
    fence = None if case.radius is None else _fence(case.radius)
    if token_end <= NOW:
        return  # the issuer refuses to mint a token that is already over
    token = w.carrier_issuer.mint(
        vehicle_id=VEHICLE, action=action, purpose=purpose, not_before=token_start,
        expires=token_end, courier_key=w.courier.public_key, geofence=fence,
    )
    challenge = b"c" * 16
    decision = w.verifier.verify_at(
        token, now=NOW, vehicle_id=VEHICLE, action=action, purpose=purpose, location=SPOT,
        proof=make_proof(w.courier, token=token, vehicle_id=VEHICLE, challenge=challenge),
        challenge=challenge, chain=signed,
    )
    event(f"decision: {decision.reason.value}")
    if not decision.allowed:
        return
    wanted = action.bit | purpose.bit
    scope = root_scope(root_grant)
    assert isinstance(scope, Scope)
    assert isinstance(narrow(scope, child_grant), Scope)
    for link in (root_grant, child_grant):
        assert wanted & ~link.access == 0
        assert link.not_before <= token_start
        assert token_end <= link.expires
        # The car allows its policy's clock skew on grant windows, as on tokens.
        skew = w.verifier.policy.max_skew
        assert link.not_before - skew <= NOW < link.expires + skew
        if link.places is not None:
            assert fence is not None
            assert any(fence.within(place) for place in link.places)
    assert child_grant.depth < case.depth


def test_the_property_world_can_allow() -> None:
    """Guard against the property above passing vacuously."""
    w = WORLD
    w.clock.set(NOW)
    assert scenes.scene_delivery(w).allowed


# -- the grant cache ---------------------------------------------------------------

def test_cache_pays_once_and_never_lets_a_revoked_or_expired_grant_through() -> None:
    w = build_world()
    cache = w.consent.cache
    assert isinstance(cache, GrantCache)
    assert w.present(w.token(), w.chain).allowed
    assert grant_digest(w.root_grant) in cache
    assert grant_digest(w.carrier_grant) in cache
    by_reference = encode_chain([grant_digest(w.root_grant), grant_digest(w.carrier_grant)])
    assert w.present(w.token(), by_reference).allowed
    # Revoke after caching: refused at once, in full and by reference.
    w.revocations.apply(
        sign_revocation_list(w.root, version=1, issued_at=w.clock.now(),
                             grants=[grant_digest(w.carrier_grant)]),
        w.anchors, now=w.clock.now(),
    )
    assert w.present(w.token(), w.chain).reason is Reason.GRANT_REVOKED
    assert w.present(w.token(), by_reference).reason is Reason.GRANT_REVOKED
    # Expiry after caching: refused too.
    w2 = build_world()
    token = w2.token()
    assert w2.present(w2.token(), w2.chain).allowed
    w2.clock.advance(8 * DAY)
    assert w2.present(token, w2.chain).reason is Reason.GRANT_EXPIRED


def test_a_digest_the_car_does_not_hold_is_denied() -> None:
    w = build_world(cache=False)
    by_reference = encode_chain([grant_digest(w.root_grant), grant_digest(w.carrier_grant)])
    assert w.present(w.token(), by_reference).reason is Reason.CHAIN_INVALID
    w2 = build_world()
    # A cached grant is only reused under the signer that was verified for it.
    assert w2.present(w2.token(), w2.chain).allowed
    other_root, _, _ = _other_chain(w2)
    mixed = encode_chain([other_root, grant_digest(w2.carrier_grant)])
    assert w2.present(w2.token(), mixed).reason is Reason.CHAIN_INVALID


def test_cache_is_bounded_lru() -> None:
    cache = GrantCache(max_entries=2)
    w = build_world()
    consent = type(w.consent)(anchors=w.anchors, revocations=w.revocations, cache=cache)
    for _ in range(3):
        consent.resolve(_other_chain(w)[0] and encode_chain(list(_other_chain(w)[:2])),
                        now=w.clock.now(), vehicle_id=VEHICLE)
    assert len(cache) == 2
    with pytest.raises(ValueError, match="positive"):
        GrantCache(0)


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_chains_of_every_allowed_length_are_read_link_by_link(
    ed_world: ConsentWorld, count: int,
) -> None:
    # Links of short, 1- and 2-byte lengths: the chain is read, and link 0 is judged.
    links = [bytes([i]) * (20 + 100 * i) for i in range(count)]
    denial = ed_world.consent.resolve(encode_chain(links), now=ed_world.clock.now(),
                                      vehicle_id=VEHICLE)
    assert denial.reason is Reason.CHAIN_INVALID
    assert denial.detail.startswith("link 0: "), denial.detail


@pytest.mark.parametrize("chain", [
    bytes([0x80]),  # no links
    bytes([0x85]) + b"\x41a" * 5,  # five links: one more than a chain may have
    bytes([0x81, 0x01]),  # a link that is not a byte string
    bytes([0x81, 0x58, 0x05]) + b"abcde",  # a length not in its shortest form
    bytes([0x81, 0x43]) + b"ab",  # truncated
    bytes([0x81, 0x41]) + b"ab",  # trailing bytes
])
def test_a_chain_that_is_not_a_list_of_one_to_four_byte_strings_is_refused_unread(
    ed_world: ConsentWorld, chain: bytes,
) -> None:
    denial = ed_world.consent.resolve(chain, now=ed_world.clock.now(), vehicle_id=VEHICLE)
    assert denial.reason is Reason.CHAIN_INVALID
    assert not denial.detail.startswith("link "), denial.detail


# -- resolve: the chain as a whole, exactly --------------------------------------------


TRUNK = access_mask([Action.TRUNK], [Purpose.DELIVERY])


def _resolve(w: ConsentWorld, chain: object, *, now: int = START, skew: int = 0,
             vehicle_id: str = VEHICLE) -> ResolvedChain | ChainDenial:
    return w.consent.resolve(chain, now=now, vehicle_id=vehicle_id, skew=skew)  # type: ignore[arg-type]


def _denial(w: ConsentWorld, chain: object, **kw: object) -> tuple[Reason, str]:
    got = _resolve(w, chain, **kw)  # type: ignore[arg-type]
    assert isinstance(got, ChainDenial), got
    return got.reason, got.detail


def test_chain_size_bound_is_exact() -> None:
    w = build_world()
    assert MAX_CHAIN_BYTES == 4 * (512 + 3) + 1
    # At the cap the chain is parsed (and refused for what it is); one byte more is not read.
    at_cap = cbor.encode([b"\x00" * (MAX_CHAIN_BYTES - 4)])
    assert len(at_cap) == MAX_CHAIN_BYTES
    assert _denial(w, at_cap) == (Reason.CHAIN_INVALID, "link 0: grant too large")
    over = cbor.encode([b"\x00" * (MAX_CHAIN_BYTES - 3)])
    assert _denial(w, over) == (Reason.CHAIN_INVALID, "chain is not bytes of a bounded size")
    assert _denial(w, bytearray(w.chain)) == (
        Reason.CHAIN_INVALID, "chain is not bytes of a bounded size")


def test_chain_shape_refusals_say_why() -> None:
    w = build_world()
    shape = (Reason.CHAIN_INVALID, "a chain is a list of 1 to 4 grants")
    assert _denial(w, cbor.encode([])) == shape
    assert _denial(w, cbor.encode([w.root_grant] * 5)) == shape
    assert _denial(w, cbor.encode({1: w.root_grant})) == shape
    assert _denial(w, cbor.encode([w.root_grant, 7])) == shape
    assert _denial(w, b"\x82\x40") == (Reason.CHAIN_INVALID, "chain: truncated array")
    # Four links is within the bound: refused for its content, not its length.
    four = _denial(w, cbor.encode([w.root_grant, w.carrier_grant, w.carrier_grant,
                                   w.carrier_grant]))
    assert four[1].startswith("link ")


def test_a_resolved_chain_names_its_leaf_scope_and_limits() -> None:
    w = build_world()
    got = _resolve(w, w.chain)
    assert isinstance(got, ResolvedChain)
    assert got.signer.key == w.carrier.public_key
    assert got.signer.issuer == "dhl"
    assert got.digests == (grant_digest(w.root_grant), grant_digest(w.carrier_grant))
    assert got.limits == (DailyLimit(grant_digest(w.root_grant), 5),)
    assert got.token_header == cbor.encode({1: -8, 4: w.carrier.kid, 16: int(Typ.TOKEN)})
    assert isinstance(got.scope, Scope)
    assert got.scope.access == TRUNK
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.trusted = got.trusted  # type: ignore[misc]


def test_a_chain_without_limits_names_none() -> None:
    w = build_world(daily_limit=None)
    got = _resolve(w, w.chain)
    assert isinstance(got, ResolvedChain)
    assert got.limits == ()


def test_p256_chain_resolves_with_its_own_header() -> None:
    w = build_world(algorithm=Algorithm.ES256)
    got = _resolve(w, w.chain)
    assert isinstance(got, ResolvedChain)
    assert got.token_header == cbor.encode({1: -7, 4: w.carrier.kid, 16: int(Typ.TOKEN)})


def test_chain_results_are_frozen_slotted_and_keyword_only() -> None:
    # A resolved chain's scope and a denial are what the verifier acts on; a cache
    # entry is what a signature check proved. None of them may change afterwards.
    from trunkkey.consent.chain import _Verified

    w = build_world()
    got = _resolve(w, w.chain)
    assert isinstance(got, ResolvedChain)
    denial = ChainDenial(reason=Reason.CHAIN_INVALID, detail="x")
    for obj in (got, denial):
        assert not hasattr(obj, "__dict__")
        assert all(f.kw_only for f in dataclasses.fields(obj))  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        denial.reason = Reason.ALLOWED  # type: ignore[misc]
    with pytest.raises(TypeError):
        ChainDenial(Reason.CHAIN_INVALID, "x")  # type: ignore[misc]
    cache = w.consent.cache
    assert cache is not None
    entry = cache._get(grant_digest(w.root_grant))
    assert isinstance(entry, _Verified)
    assert entry.signer == w.root.public_key
    assert not hasattr(entry, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.signer = w.carrier.public_key  # type: ignore[misc]


# -- each link: the exact refusal ------------------------------------------------------


def test_root_link_refusals_say_which_link_and_why() -> None:
    w = build_world(cache=False)
    stranger = SigningKey.generate()
    consent = make_grant(grantee=w.retailer.public_key, grantee_name="amazon", access=TRUNK,
                         not_before=START - DAY, expires=START + DAY, depth=1,
                         vehicle_ids=[VEHICLE])
    by_stranger = sign_root_grant(stranger, consent)
    assert _denial(w, encode_chain([by_stranger])) == (
        Reason.CHAIN_INVALID, f"link 0: {stranger.kid.hex()} is not a root")
    # No kid, or not typ grant: not a grant from a named root.
    no_kid = sign1(w.root, b"\xa0", typ=Typ.GRANT, include_kid=False)
    assert _denial(w, encode_chain([no_kid])) == (
        Reason.CHAIN_INVALID, "link 0: not a grant from a named root")
    wrong_typ = sign1(w.root, b"\xa0", typ=Typ.RECEIPT)
    assert _denial(w, encode_chain([wrong_typ])) == (
        Reason.CHAIN_INVALID, "link 0: not a grant from a named root")
    garbled = b"\xd2\x84\x43\xa1\x01\x27\xa0\x40\x58\x40" + bytes(64)
    assert _denial(w, encode_chain([garbled])) == (
        Reason.CHAIN_INVALID, "link 0: not a grant from a named root")
    tampered = bytearray(w.root_grant)
    tampered[-1] ^= 1
    assert _denial(w, encode_chain([bytes(tampered)])) == (
        Reason.CHAIN_INVALID, "link 0: root signature does not verify")
    assert _denial(w, encode_chain([b"\xd2\x84"])) == (
        Reason.CHAIN_INVALID, "link 0: truncated COSE_Sign1")
    digest = grant_digest(w.root_grant)
    assert _denial(w, encode_chain([digest])) == (
        Reason.CHAIN_INVALID, f"link 0: grant {digest.hex()[:16]} not held")
    # Signed by the root but not a grant inside: the decoder's reason, with the link.
    bad_payload = sign1(w.root, b"\xa0", typ=Typ.GRANT)
    reason, detail = _denial(w, encode_chain([bad_payload]))
    assert reason is Reason.CHAIN_INVALID
    assert detail.startswith("link 0: ")
    assert detail != "link 0: root signature does not verify"


def test_a_root_link_whose_header_is_not_the_canonical_one_is_refused() -> None:
    # Right root, right typ, right kid, but the header is not the exact canonical one.
    w = build_world(cache=False)
    header = cbor.encode({1: -8, 4: w.root.kid, 16: int(Typ.GRANT)})
    from trunkkey.cose import parse_sign1, sig_structure

    parts = parse_sign1(w.root_grant)
    assert parts.protected == header
    es_header = cbor.encode({1: -7, 4: w.root.kid, 16: int(Typ.GRANT)})
    sig = w.root.sign(sig_structure(es_header, parts.payload))
    forged = (b"\xd2\x84" + cbor.head(2, len(es_header)) + es_header + b"\xa0"
              + parts.payload_item + b"\x58\x40" + sig)
    assert _denial(w, encode_chain([forged])) == (
        Reason.CHAIN_INVALID, "link 0: header is not {root alg, kid, grant}")


def test_delegated_link_refusals_say_which_link_and_why() -> None:
    w = build_world(cache=False)
    # Signed by someone other than the previous grantee.
    by_carrier = sign_unchecked(w.carrier, carrier_delegation(w.carrier, START))
    assert _denial(w, encode_chain([w.root_grant, by_carrier])) == (
        Reason.CHAIN_INVALID, "link 1: not signed by the previous grantee")
    # A delegation that names a kid has a header other than {alg of the delegator, typ grant}.
    with_kid = sign1(w.retailer, b"\xa0", typ=Typ.GRANT, include_kid=True)
    assert _denial(w, encode_chain([w.root_grant, with_kid])) == (
        Reason.CHAIN_INVALID, "link 1: header is not {alg of the delegator, typ grant}")
    assert _denial(w, encode_chain([w.root_grant, b"\xd2\x85"])) == (
        Reason.CHAIN_INVALID, "link 1: COSE_Sign1 must be an array of four items")
    digest = grant_digest(w.carrier_grant)
    assert _denial(w, encode_chain([w.root_grant, digest])) == (
        Reason.CHAIN_INVALID, f"link 1: grant {digest.hex()[:16]} not held")
    assert _denial(w, encode_chain([w.root_grant, b"\xd2" * 513])) == (
        Reason.CHAIN_INVALID, "link 1: grant too large")
    # 512 bytes is a grant-sized link: parsed, and refused for what it is.
    assert _denial(w, encode_chain([w.root_grant, b"\xd2\x84" + bytes(510)]))[1] != (
        "link 1: grant too large")


def test_revoked_grants_and_keys_and_an_unlisted_vehicle_are_denied_naming_the_link() -> None:
    w = build_world()
    revoked = RevocationState()
    consent = ConsentVerifier(anchors=w.anchors, revocations=revoked)
    root_digest = grant_digest(revoked_grant := w.root_grant)
    revoked.apply(sign_revocation_list(w.root, version=1, issued_at=START,
                                       grants=[root_digest]), w.anchors, now=START)
    got = consent.resolve(encode_chain([revoked_grant]), now=START, vehicle_id=VEHICLE)
    assert got == ChainDenial(reason=Reason.GRANT_REVOKED,
                              detail=f"link 0: grant {root_digest.hex()[:16]} revoked")
    for key in (w.retailer, w.carrier):
        state = RevocationState()
        state.apply(sign_revocation_list(w.root, version=1, issued_at=START, keys=[key.kid]),
                    w.anchors, now=START)
        got = ConsentVerifier(anchors=w.anchors, revocations=state).resolve(
            w.chain, now=START, vehicle_id=VEHICLE)
        assert got == ChainDenial(reason=Reason.KEY_REVOKED,
                                  detail=f"link {0 if key is w.retailer else 1}: "
                                  "a key of this grant is revoked")
    assert _denial(w, w.chain, vehicle_id="OTHER-CAR") == (
        Reason.WRONG_VEHICLE, "link 0: this vehicle is not in scope")


def test_narrowing_denials_name_the_link_and_what_widened() -> None:
    w = build_world(cache=False)
    deeper = make_grant(grantee=w.carrier.public_key, grantee_name="dhl", access=TRUNK,
                        not_before=START - 3600, expires=START + DAY, depth=1)
    chain = encode_chain([w.root_grant, sign_unchecked(w.retailer, deeper)])
    assert _denial(w, chain) == (
        Reason.SCOPE_WIDENED, "link 1: depth 1 is not below the parent's 1")
    nowhere = make_grant(grantee=w.retailer.public_key, grantee_name="amazon", access=TRUNK,
                         not_before=START - DAY, expires=START + DAY, depth=1)
    # sign_root_grant refuses it; a carmaker's own bug signing it anyway is caught here.
    unchecked = sign1(w.root, encode_grant(nowhere), typ=Typ.GRANT)
    assert _denial(w, encode_chain([unchecked])) == (
        Reason.CHAIN_INVALID, "link 0: the first grant of a chain must name its vehicles")


# -- windows, skew, limits and the revocation list's age -------------------------------


def test_grant_windows_are_exact_with_and_without_skew() -> None:
    w = build_world()
    root_nbf, carrier_nbf, carrier_exp = START - DAY, START - 3600, START + 7 * DAY
    assert _denial(w, w.chain, now=root_nbf - 1) == (
        Reason.GRANT_NOT_YET_VALID, "link 0: grant not yet valid")
    assert _denial(w, w.chain, now=carrier_nbf - 1) == (
        Reason.GRANT_NOT_YET_VALID, "link 1: grant not yet valid")
    assert isinstance(_resolve(w, w.chain, now=carrier_nbf - 1, skew=1), ResolvedChain)
    assert isinstance(_resolve(w, w.chain, now=carrier_nbf), ResolvedChain)
    assert isinstance(_resolve(w, w.chain, now=carrier_exp - 1), ResolvedChain)
    assert _denial(w, w.chain, now=carrier_exp) == (
        Reason.GRANT_EXPIRED, "link 1: grant has expired")
    # The skew is lenient at both ends, by exactly its size.
    assert isinstance(_resolve(w, w.chain, now=carrier_exp, skew=1), ResolvedChain)
    assert _denial(w, w.chain, now=carrier_exp + 1, skew=1) == (
        Reason.GRANT_EXPIRED, "link 1: grant has expired")
    assert _denial(w, w.chain, now=carrier_nbf - 2, skew=1) == (
        Reason.GRANT_NOT_YET_VALID, "link 1: grant not yet valid")


def test_resolve_has_no_skew_unless_given() -> None:
    w = build_world()
    carrier_nbf, carrier_exp = START - 3600, START + 7 * DAY
    assert w.consent.resolve(w.chain, now=carrier_exp, vehicle_id=VEHICLE) == ChainDenial(
        reason=Reason.GRANT_EXPIRED, detail="link 1: grant has expired")
    assert w.consent.resolve(w.chain, now=carrier_nbf - 1, vehicle_id=VEHICLE) == ChainDenial(
        reason=Reason.GRANT_NOT_YET_VALID, detail="link 1: grant not yet valid")


def test_grant_window_edges_take_the_verifiers_skew_exactly() -> None:

    skew = 60
    carrier_nbf, carrier_exp = START - 3600, START + 7 * 86_400

    def at(now: int, window: tuple[int, int]) -> Reason:
        cw = build_world()
        if now < START:
            cw.clock.advance(now - START)
        token = cw.token(not_before=window[0], expires=window[1])  # minted before it ends
        if now > START:
            cw.clock.advance(now - START)
        return cw.present(token, cw.chain).reason

    first = (carrier_nbf, carrier_nbf + 600)
    last = (carrier_exp - 600, carrier_exp)
    assert at(carrier_nbf - skew - 1, first) is Reason.GRANT_NOT_YET_VALID
    assert at(carrier_nbf - skew, first) is Reason.ALLOWED
    assert at(carrier_exp + skew - 1, last) is Reason.ALLOWED
    assert at(carrier_exp + skew, last) is Reason.GRANT_EXPIRED


def test_daily_limit_is_exact_and_resets_with_the_utc_day() -> None:
    w = build_world(daily_limit=2)
    got = _resolve(w, w.chain)
    assert isinstance(got, ResolvedChain)
    # The chain names its limits; the ledger counts them as it spends tokens.
    assert got.limits == (DailyLimit(grant_digest(w.root_grant), 2),)
    ledger = MemoryLedger()

    def spend(n: int, at: int) -> SpendOutcome:
        return ledger.spend(VEHICLE, n.to_bytes(16, "big"), at + 3600, issued_at=START, at=at,
                            limits=got.limits)

    next_day = (START // DAY + 1) * DAY
    assert spend(1, START) is SpendOutcome.FIRST_USE
    assert spend(2, START) is SpendOutcome.FIRST_USE
    assert spend(3, START) is SpendOutcome.LIMIT_REACHED
    assert spend(3, next_day - 1) is SpendOutcome.LIMIT_REACHED
    # The next UTC day starts afresh.
    assert spend(3, next_day) is SpendOutcome.FIRST_USE


def test_stale_revocation_list_bound_is_exact() -> None:
    w = build_world()
    state = RevocationState()
    state.apply(sign_revocation_list(w.root, version=2, issued_at=START), w.anchors, now=START)
    consent = ConsentVerifier(anchors=w.anchors, revocations=state, max_list_age=DAY)
    assert isinstance(consent.resolve(w.chain, now=START + DAY, vehicle_id=VEHICLE),
                      ResolvedChain)
    assert consent.resolve(w.chain, now=START + DAY + 1, vehicle_id=VEHICLE) == ChainDenial(
        reason=Reason.REVOCATIONS_STALE, detail=f"revocation list v2 is older than {DAY} s")
    for bad in (0, -1, 1.5):
        with pytest.raises(InvalidRequest,
                           match=r"^max_list_age must be a positive number of seconds$"):
            ConsentVerifier(anchors=w.anchors, revocations=state, max_list_age=bad)  # type: ignore[arg-type]


def test_one_second_is_a_valid_list_age_bound() -> None:
    w = build_world()
    consent = ConsentVerifier(anchors=w.anchors, revocations=w.revocations, max_list_age=1)
    # The empty initial list (issued at 0) is far older than a second.
    assert consent.resolve(w.chain, now=START, vehicle_id=VEHICLE) == ChainDenial(
        reason=Reason.REVOCATIONS_STALE, detail="revocation list v0 is older than 1 s")


# -- the consent verifier and its grant cache ------------------------------------------


def test_consent_verifier_refuses_wrong_parts_and_shows_them() -> None:
    w = build_world()
    good = {"anchors": w.anchors, "revocations": w.revocations}
    cases: list[tuple[dict[str, object], str]] = [
        ({"anchors": object()}, r"^anchors must be VehicleAnchors$"),
        ({"revocations": object()}, r"^revocations must be a RevocationState$"),
        ({"cache": object()}, r"^cache must be a GrantCache$"),
    ]
    for change, message in cases:
        with pytest.raises(InvalidRequest, match=message):
            ConsentVerifier(**{**good, **change})  # type: ignore[arg-type]
    cache = GrantCache()
    consent = ConsentVerifier(**good, cache=cache)  # type: ignore[arg-type]
    assert consent.anchors is w.anchors
    assert consent.revocations is w.revocations
    assert consent.cache is cache
    assert ConsentVerifier(**good).cache is None  # type: ignore[arg-type]
    assert repr(consent) == f"ConsentVerifier({w.anchors!r}, {w.revocations!r}, {cache!r})"


def test_cached_root_grant_is_rechecked_against_the_roots_held() -> None:
    w = build_world()
    assert isinstance(_resolve(w, w.chain), ResolvedChain)
    digest = grant_digest(w.root_grant)
    assert digest in w.consent.cache  # type: ignore[operator]
    # By reference, once cached, the chain resolves from digests alone.
    by_ref = encode_chain([digest, grant_digest(w.carrier_grant)])
    assert isinstance(_resolve(w, by_ref), ResolvedChain)
    # The same cache under anchors without that root: refused, not shortcut.
    other_root = SigningKey.generate()
    anchors = VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(),
                             roots=[RootKey(key=other_root.public_key)])
    consent = ConsentVerifier(anchors=anchors, revocations=RevocationState(),
                              cache=w.consent.cache)
    assert consent.resolve(by_ref, now=START, vehicle_id=VEHICLE) == ChainDenial(
        reason=Reason.CHAIN_INVALID, detail="link 0: signed by a root no longer held")
    # A root held but outside its validity period.
    expired = VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(),
                             roots=[RootKey(key=w.root.public_key, not_after=START - 1)])
    consent = ConsentVerifier(anchors=expired, revocations=RevocationState(),
                              cache=w.consent.cache)
    want = ChainDenial(reason=Reason.KEY_NOT_VALID,
                       detail="link 0: root outside its validity period")
    assert consent.resolve(by_ref, now=START, vehicle_id=VEHICLE) == want
    fresh = ConsentVerifier(anchors=expired, revocations=RevocationState())
    assert fresh.resolve(w.chain, now=START, vehicle_id=VEHICLE) == want


def test_a_cached_grant_is_only_reused_under_the_same_signer() -> None:
    w = build_world()
    assert isinstance(_resolve(w, w.chain), ResolvedChain)
    # The carrier grant is cached under the retailer; a chain whose previous
    # grantee is someone else may not pick it up by reference.
    impostor = SigningKey.generate()
    consent = make_grant(grantee=impostor.public_key, grantee_name="amazon", access=TRUNK,
                         not_before=START - DAY, expires=START + DAY, depth=1,
                         vehicle_ids=[VEHICLE])
    chain = encode_chain([sign_root_grant(w.root, consent), grant_digest(w.carrier_grant)])
    digest = grant_digest(w.carrier_grant)
    assert _denial(w, chain) == (
        Reason.CHAIN_INVALID, f"link 1: grant {digest.hex()[:16]} not held")


def test_grant_cache_bounds_and_eviction_order() -> None:
    assert DEFAULT_CACHE_SIZE == 1024
    assert repr(GrantCache()) == "GrantCache(0/1024)"
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidRequest, match=r"^max_entries must be a positive int$"):
            GrantCache(bad)  # type: ignore[arg-type]
    w = build_world(cache=False)
    one = GrantCache(1)
    consent = ConsentVerifier(anchors=w.anchors, revocations=w.revocations, cache=one)
    assert isinstance(consent.resolve(w.chain, now=START, vehicle_id=VEHICLE), ResolvedChain)
    assert len(one) == 1
    assert grant_digest(w.carrier_grant) in one  # the newest stays
    assert grant_digest(w.root_grant) not in one
    assert repr(one) == "GrantCache(1/1)"
    two = GrantCache(2)
    consent = ConsentVerifier(anchors=w.anchors, revocations=w.revocations, cache=two)
    consent.resolve(w.chain, now=START, vehicle_id=VEHICLE)
    # A hit refreshes the entry: the root grant, used again, outlives the carrier grant.
    consent.resolve(encode_chain([w.root_grant]), now=START, vehicle_id=VEHICLE)
    other = build_world(cache=False)
    consent.resolve(encode_chain([grant_digest(w.root_grant), other.carrier_grant]),
                    now=START, vehicle_id=VEHICLE)
    assert grant_digest(w.root_grant) in two


# -- the token under the chain ---------------------------------------------------------


def test_token_header_denials_name_the_mismatch() -> None:
    w = build_world()
    got = _resolve(w, w.chain)
    assert isinstance(got, ResolvedChain)
    carrier_kid = w.carrier.kid

    def header(members: dict[int, object] | bytes) -> tuple[Reason, str]:
        protected = members if isinstance(members, bytes) else cbor.encode(members)
        d = w.consent.token_signer(protected, w.chain, now=START, vehicle_id=VEHICLE, skew=0)
        assert isinstance(d, ChainDenial)
        return d.reason, d.detail

    assert header({1: -8, 4: carrier_kid, 16: int(Typ.GRANT)}) == (
        Reason.WRONG_TYPE, f"typ {int(Typ.GRANT)} is not a trunkkey token")
    assert header({1: -8, 4: w.retailer.kid, 16: int(Typ.TOKEN)}) == (
        Reason.CHAIN_INVALID, "token is not signed by the chain's last grantee")
    assert header({1: -7, 4: carrier_kid, 16: int(Typ.TOKEN)}) == (
        Reason.ALG_MISMATCH, "alg -7 is not the key's EdDSA")
    assert header({1: -8, 2: [1], 16: int(Typ.TOKEN)}) == (
        Reason.UNSUPPORTED_HEADER, "protected header refused")
    assert header(b"\xff") == (Reason.MALFORMED, "protected header refused")
    assert header({1: -8, 16: int(Typ.TOKEN)}) == (Reason.MALFORMED, "token has no kid")


def test_token_under_the_chain_denials_are_exact() -> None:
    from trunkkey import Geofence
    from trunkkey.claims import decode_claims
    from trunkkey.cose import parse_sign1

    w = build_world()
    resolved = _resolve(w, w.chain)
    assert isinstance(resolved, ResolvedChain)
    claims = decode_claims(parse_sign1(w.token()).payload)
    scope = resolved.scope
    # A token signed by a directly trusted key: no chain, no scope.
    plain = Signer(trusted=resolved.trusted, token_header=resolved.token_header)
    assert w.consent.check_claims(claims, resolved) is None
    assert w.consent.check_claims(claims, plain) is None

    def denial(**changes: object) -> tuple[Reason, str] | None:
        got = w.consent.check_claims(dataclasses.replace(claims, **changes), resolved)  # type: ignore[arg-type]
        return None if got is None else (got.reason, got.detail)

    assert denial(action=Action.UNLOCK_RELOCK) == (
        Reason.SCOPE_WIDENED, "action or purpose outside the consent")
    assert denial(purpose=Purpose.RETURN_PICKUP) == (
        Reason.SCOPE_WIDENED, "action or purpose outside the consent")
    window = (Reason.SCOPE_WIDENED, "token window outside the consent window")
    assert denial(not_before=scope.not_before) is None
    assert denial(not_before=scope.not_before - 1) == window
    assert denial(expires=scope.expires) is None
    assert denial(expires=scope.expires + 1) == window
    far = Geofence.from_degrees(52.52, 13.405, 100)
    assert denial(geofence=far) == (
        Reason.SCOPE_WIDENED, "token geofence outside the consented places")
    assert denial(vehicle_id="OTHER-CAR") == (
        Reason.WRONG_VEHICLE, "token is for a vehicle outside the consent")
    # Revocation and supersession apply with or without a chain.
    assert claims.order_ref is not None
    w.revocations.apply(sign_revocation_list(
        w.root, version=1, issued_at=START, supersede={claims.order_ref: claims.issued_at + 1},
    ), w.anchors, now=START)
    want = ChainDenial(reason=Reason.SUPERSEDED, detail="a newer token was issued for this order")
    assert w.consent.check_claims(claims, plain) == want
    w.revocations.apply(sign_revocation_list(
        w.root, version=2, issued_at=START, tokens=[claims.token_id],
    ), w.anchors, now=START)
    assert w.consent.check_claims(claims, resolved) == ChainDenial(
        reason=Reason.TOKEN_REVOKED, detail="token id revoked")


def test_the_consent_verifier_names_no_signer_without_a_chain() -> None:
    from trunkkey.authority import Refusal

    w = build_world()
    got = w.consent.token_signer(b"\xa0", None, now=START, vehicle_id=VEHICLE, skew=0)
    assert got == Refusal(reason=Reason.CHAIN_INVALID, detail="no consent chain was presented")
