"""The Verifier with a consent resolver: the chain path is additive, the old path unchanged."""

from __future__ import annotations

from typing import NoReturn

import pytest

from support import NOW, VEHICLE, make_world
from trunkkey import (
    Geofence,
    InvalidRequest,
    Issuer,
    Location,
    MemoryLedger,
    Reason,
    TrustedKey,
    TrustStore,
    Verifier,
    inspect_unverified,
    make_proof,
)
from trunkkey.consent import ConsentVerifier, RevocationState, sign_revocation_list
from trunkkey.testing.consent import build_world


def test_without_a_resolver_a_chain_is_refused_and_the_old_path_is_intact() -> None:
    world = make_world()
    token = world.mint()
    decision = world.verifier.verify(token, vehicle_id=VEHICLE, action="trunk", chain=b"\x80")
    assert decision.reason is Reason.CHAIN_INVALID
    assert world.verifier.verify(token, vehicle_id=VEHICLE, action="trunk").allowed


def test_the_trust_store_path_still_works_beside_a_resolver() -> None:
    w = build_world()
    direct = w.retailer  # here also trusted directly, as before consent chains existed
    store = TrustStore([TrustedKey.create(direct.public_key, "amazon")])
    verifier = Verifier(trust_store=store, ledger=w.ledger, clock=w.clock, consent=w.consent)
    token = Issuer(direct, "amazon", clock=w.clock).mint(
        vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 600)
    assert verifier.verify(token, vehicle_id=VEHICLE, action="trunk").allowed
    # With a resolver configured, revocation lists reach direct tokens too.
    other = Issuer(direct, "amazon", clock=w.clock).mint(
        vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 600)
    w.revocations.apply(
        sign_revocation_list(w.root, version=1, issued_at=NOW,
                             tokens=[inspect_unverified(other).claims.token_id]),
        w.anchors, now=NOW)
    assert verifier.verify(other, vehicle_id=VEHICLE, action="trunk").reason is Reason.TOKEN_REVOKED


def test_resolver_type_is_checked() -> None:
    w = build_world()
    with pytest.raises(InvalidRequest):
        Verifier(trust_store=TrustStore(), ledger=w.ledger, clock=w.clock,
                 consent="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        ConsentVerifier(anchors=w.anchors, revocations=RevocationState(),
                        cache="no")  # type: ignore[arg-type]


def test_the_token_checks_after_the_chain_still_run() -> None:
    w = build_world()
    token = w.token()
    chain = w.chain
    # A grant presented as the token: wrong typ, refused before any signature.
    assert w.present(w.carrier_grant, chain).reason in {Reason.WRONG_TYPE, Reason.CHAIN_INVALID}
    no_proof = w.verifier.verify_at(token, now=NOW, vehicle_id=VEHICLE, action="trunk",
                                    location=None, chain=chain)
    assert no_proof.reason is Reason.LOCATION_UNKNOWN
    from trunkkey.testing.consent import HOME

    no_proof = w.verifier.verify_at(token, now=NOW, vehicle_id=VEHICLE, action="trunk",
                                    location=HOME.centre, chain=chain)
    assert no_proof.reason is Reason.PROOF_MISSING
    # Nothing above spent the token: the ledger is last.
    assert w.present(token, chain).allowed


def test_a_denied_chain_never_spends_the_token() -> None:
    w = build_world()
    token = w.token()
    w.clock.advance(10)
    assert w.present(token, w.chain[:-1]).reason is Reason.CHAIN_INVALID
    assert w.present(token, w.chain).allowed
    assert w.present(token, w.chain).reason is Reason.ALREADY_USED


def test_faults_inside_the_consent_verifier_fail_closed_with_exact_details() -> None:
    from trunkkey.consent import ConsentVerifier
    from trunkkey.testing.consent import build_world

    class Exploding(ConsentVerifier):
        def resolve(self, *args: object, **kwargs: object) -> NoReturn:
            raise RuntimeError("boom")

    cw = build_world()
    token, chain = cw.token(), cw.chain
    for cls, reason, text in (
        (Exploding, Reason.MALFORMED, "unexpected error while checking: RuntimeError"),
    ):
        consent = cls(anchors=cw.anchors, revocations=cw.revocations)
        for use_verify_at in (False, True):
            v = Verifier(trust_store=TrustStore(), ledger=MemoryLedger(), clock=cw.clock,
                         consent=consent)
            challenge = bytes(16)
            proof = make_proof(cw.courier, token=token, vehicle_id=cw_vehicle(),
                               challenge=challenge)
            args: dict[str, object] = {
                "vehicle_id": cw_vehicle(), "action": "trunk", "chain": chain,
                "location": Location(lat_e7=cw_home().lat_e7, lon_e7=cw_home().lon_e7),
                "proof": proof, "challenge": challenge,
            }
            d = (v.verify_at(token, now=cw.clock.now(), **args)  # type: ignore[arg-type]
                 if use_verify_at else v.verify(token, **args))  # type: ignore[arg-type]
            assert (d.reason, d.detail) == (reason, text)


def cw_vehicle() -> str:
    from trunkkey.testing.consent import VEHICLE as STORY_VEHICLE

    return STORY_VEHICLE


def cw_home() -> Geofence:
    from trunkkey.testing.consent import HOME

    return HOME
