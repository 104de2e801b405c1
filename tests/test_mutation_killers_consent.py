"""Tests written to kill mutants of ``consent/chain.py`` that survived ``scripts/mutation.py``.

Every denial of :meth:`ConsentVerifier.resolve` is pinned here with its reason
code and its detail (which link, and why), together with the size and count
bounds at their exact edges, the grant cache's bounds and the daily-limit
counter's day window and persistence. See docs/mutation-testing.md.
"""

from __future__ import annotations

import dataclasses

import pytest

from support import sign_unchecked
from trunkkey import Action, Algorithm, InvalidRequest, Purpose, Reason, SigningKey, cbor
from trunkkey.authority import Signer
from trunkkey.consent import (
    ConsentVerifier,
    GrantCache,
    RevocationState,
    Scope,
    access_mask,
    encode_chain,
    grant_digest,
    make_grant,
    sign_revocation_list,
    sign_root_grant,
)
from trunkkey.consent.anchors import RootKey, VehicleAnchors
from trunkkey.consent.chain import (
    DEFAULT_CACHE_SIZE,
    MAX_CHAIN_BYTES,
    ChainDenial,
    ResolvedChain,
)
from trunkkey.consent.grant import encode_grant
from trunkkey.cose import Typ, sign1
from trunkkey.ledger.base import DailyLimit, SpendOutcome
from trunkkey.ledger.memory import MemoryLedger
from trunkkey.testing.consent import (
    DAY,
    START,
    VEHICLE,
    ConsentWorld,
    build_world,
    carrier_delegation,
)

TRUNK = access_mask([Action.TRUNK], [Purpose.DELIVERY])


def _resolve(w: ConsentWorld, chain: object, *, now: int = START, skew: int = 0,
             vehicle_id: str = VEHICLE) -> ResolvedChain | ChainDenial:
    return w.consent.resolve(chain, now=now, vehicle_id=vehicle_id, skew=skew)  # type: ignore[arg-type]


def _denial(w: ConsentWorld, chain: object, **kw: object) -> tuple[Reason, str]:
    got = _resolve(w, chain, **kw)  # type: ignore[arg-type]
    assert isinstance(got, ChainDenial), got
    return got.reason, got.detail


# -- the chain as a whole ---------------------------------------------------------------


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


# -- each link: the exact refusal ---------------------------------------------------------


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


def test_a_root_header_with_extra_bytes_is_refused_whole() -> None:
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


def test_link_checks_in_order_with_their_reasons() -> None:
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


# -- the cache: what it may and may not shortcut ------------------------------------------


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


def test_a_chain_without_limits_names_none() -> None:
    w = build_world(daily_limit=None)
    got = _resolve(w, w.chain)
    assert isinstance(got, ResolvedChain)
    assert got.limits == ()


# -- the token under the chain ---------------------------------------------------------------


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


def test_resolve_has_no_skew_unless_given() -> None:
    w = build_world()
    carrier_nbf, carrier_exp = START - 3600, START + 7 * DAY
    assert w.consent.resolve(w.chain, now=carrier_exp, vehicle_id=VEHICLE) == ChainDenial(
        reason=Reason.GRANT_EXPIRED, detail="link 1: grant has expired")
    assert w.consent.resolve(w.chain, now=carrier_nbf - 1, vehicle_id=VEHICLE) == ChainDenial(
        reason=Reason.GRANT_NOT_YET_VALID, detail="link 1: grant not yet valid")


def test_one_second_is_a_valid_list_age_bound() -> None:
    w = build_world()
    consent = ConsentVerifier(anchors=w.anchors, revocations=w.revocations, max_list_age=1)
    # The empty initial list (issued at 0) is far older than a second.
    assert consent.resolve(w.chain, now=START, vehicle_id=VEHICLE) == ChainDenial(
        reason=Reason.REVOCATIONS_STALE, detail="revocation list v0 is older than 1 s")


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
