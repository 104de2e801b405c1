"""Offline chain verification in the car: the end-to-end delivery, the attack scenes,
tampering with links, the narrowest-link property and the grant cache."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from trunkkey import Action, Algorithm, Geofence, Location, Purpose, Reason, SigningKey
from trunkkey.consent import (
    Grant,
    GrantCache,
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
    story,
)
from trunkkey.consent.story import DAY, HOME, VEHICLE, ConsentWorld, build_world, sign_unchecked


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
    assert story.scene_widened_scope(ed_world).reason is Reason.SCOPE_WIDENED


def test_scene_expired_consent(ed_world: ConsentWorld) -> None:
    assert story.scene_expired_consent(ed_world).reason is Reason.GRANT_EXPIRED


def test_scene_revoked_consent(ed_world: ConsentWorld) -> None:
    assert story.scene_revoked_consent(ed_world).reason is Reason.GRANT_REVOKED


def test_scene_carrier_outside_retailer_grant(ed_world: ConsentWorld) -> None:
    assert story.scene_carrier_outside_grant(ed_world).reason is Reason.SCOPE_WIDENED


def test_scene_rolled_back_revocation_list(ed_world: ConsentWorld) -> None:
    refused, decision = story.scene_rolled_back_list(ed_world)
    assert refused is not None
    assert refused.reason is Reason.ROLLBACK
    assert ed_world.revocations.version == 2
    assert decision.reason is Reason.GRANT_REVOKED


def test_scene_superseded_token(ed_world: ConsentWorld) -> None:
    assert story.scene_superseded_token(ed_world).reason is Reason.SUPERSEDED


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
        proof=story.make_proof(w.courier, token=token, vehicle_id=VEHICLE, challenge=challenge),
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
    assert story.scene_delivery(w).allowed


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
