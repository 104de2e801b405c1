"""Post-quantum keys: ML-DSA-44 tokens and the hybrid (EdDSA + ML-DSA-65) carmaker root.

ML-DSA-44 tokens go through the verifier's one path and its reason codes; a
hybrid root signs trust updates and revocation lists that verify only with
both halves of its signature, and a car holding one accepts nothing less.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support import ISSUER, NOW, VEHICLE, make_world
from trunkkey import (
    Algorithm,
    Issuer,
    ManualClock,
    MemoryLedger,
    Reason,
    SigningKey,
    TrustedKey,
    TrustStore,
    VerificationKey,
    Verifier,
    cbor,
)
from trunkkey.consent import (
    KeyEntry,
    RevocationState,
    Role,
    RootKey,
    TrustUpdater,
    UpdateRefused,
    VehicleAnchors,
    encode_chain,
    sign_revocation_list,
    sign_root_grant,
    sign_trust_update,
)
from trunkkey.consent.chain import MAX_CHAIN_BYTES
from trunkkey.consent.grant import MAX_GRANT_BYTES
from trunkkey.cose import SIGNATURE_LENGTHS, Typ, parse_sign1, protected_header, sign1
from trunkkey.errors import DecodeError, InvalidRequest
from trunkkey.keys import MAX_COSE_KEY_BYTES, algorithm_of_raw_key
from trunkkey.testing.consent import build_world, retailer_consent

ML_SIG, ED_SIG = 3309, 64
YEAR = 365 * 86400


def _with_signature(signed: bytes, signature: bytes) -> bytes:
    """``signed`` (a strict COSE_Sign1) carrying ``signature`` instead of its own."""
    parts = parse_sign1(signed)
    return (b"\xd2\x84" + parts.protected_item + b"\xa0" + parts.payload_item
            + cbor.head(2, len(signature)) + signature)


def _hybrid_and_its_ed25519_half() -> tuple[SigningKey, SigningKey]:
    """A hybrid root, and its Ed25519 half as an attacker who broke Ed25519 would hold it."""
    hybrid = SigningKey.generate(Algorithm.EDDSA_MLDSA65)
    seed = cbor.decode(hybrid.private_cose_key())[-2]
    ed_half = SigningKey.from_cose_key(
        cbor.encode({1: 1, -1: 6, -2: hybrid.public_key.raw[-32:], -4: seed[32:]})
    )
    assert ed_half.public_key.raw == hybrid.public_key.raw[-32:]
    return hybrid, ed_half


# -- keys -----------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "public", "signature"), [
    (Algorithm.MLDSA44, 1312, 2420), (Algorithm.EDDSA_MLDSA65, 1984, 3373),
])
def test_pq_keys_have_their_fips_204_sizes_and_round_trip_as_akp_cose_keys(
    algorithm: Algorithm, public: int, signature: int
) -> None:
    key = SigningKey.generate(algorithm)
    assert len(key.public_key.raw) == public
    assert algorithm.signature_length == signature == len(key.sign(b"m"))
    assert signature in SIGNATURE_LENGTHS
    assert algorithm_of_raw_key(key.public_key.raw) is algorithm
    cose_key = key.public_key.to_cose_key()
    assert cbor.decode(cose_key)[1] == 7  # AKP
    assert cbor.decode(cose_key)[3] == int(algorithm)
    assert VerificationKey.from_cose_key(cose_key) == key.public_key
    private = key.private_cose_key()
    assert len(private) <= MAX_COSE_KEY_BYTES
    assert SigningKey.from_cose_key(private).public_key == key.public_key
    assert "seed" not in repr(key)
    assert private.hex() not in repr(key)


def test_akp_cose_key_with_another_keys_seed_or_an_unknown_alg_is_refused() -> None:
    key, other = SigningKey.generate(Algorithm.MLDSA44), SigningKey.generate(Algorithm.MLDSA44)
    members = cbor.decode(key.private_cose_key())
    members[-2] = cbor.decode(other.private_cose_key())[-2]
    with pytest.raises(DecodeError, match="does not match its public part"):
        SigningKey.from_cose_key(cbor.encode(members))
    public = cbor.decode(key.public_key.to_cose_key())
    with pytest.raises(DecodeError, match="unsupported AKP COSE_Key alg"):
        VerificationKey.from_cose_key({**public, 3: -49})
    with pytest.raises(DecodeError, match="expected a public key"):
        VerificationKey.from_cose_key(members)


def test_ml_dsa_keys_are_saved_as_cose_keys_and_have_no_pem(tmp_path: Path) -> None:
    key = SigningKey.generate(Algorithm.MLDSA44)
    key.save(tmp_path / "k")
    assert SigningKey.load(tmp_path / "k").public_key == key.public_key
    with pytest.raises(InvalidRequest, match="COSE_Key, not PEM"):
        key.private_pem()
    with pytest.raises(InvalidRequest, match="COSE_Key, not PEM"):
        key.public_key.to_pem()


@pytest.mark.parametrize("algorithm", [Algorithm.MLDSA44, Algorithm.EDDSA_MLDSA65])
def test_an_ml_dsa_private_key_cannot_be_pickled_or_printed(algorithm: Algorithm) -> None:
    key = SigningKey.generate(algorithm)
    seed = cbor.decode(key.private_cose_key())[-2]
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)
    secret = key._SigningKey__secret  # type: ignore[attr-defined]  # the test looks inside
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    assert seed.hex() not in repr(key) + str(key) + repr(secret)


def test_a_composite_signature_needs_both_halves() -> None:
    hybrid, ed_half = _hybrid_and_its_ed25519_half()
    message = b"both or nothing"
    good = hybrid.sign(message)
    public = hybrid.public_key
    assert public.is_valid_unique_signature(good, message)
    forged_ed = good[:ML_SIG] + ed_half.sign(b"another message")
    for bad in (good[:ML_SIG], good[ML_SIG:], good[ML_SIG:] + good[:ML_SIG], forged_ed,
                bytes(ML_SIG) + good[ML_SIG:], good[:ML_SIG] + bytes(ED_SIG)):
        assert not public.is_valid_unique_signature(bad, message)


# -- ML-DSA-44 tokens -------------------------------------------------------------


def _reason(verifier: Verifier, token: bytes, **kw: object) -> Reason:
    request: dict[str, object] = {"vehicle_id": VEHICLE, "action": "trunk", **kw}
    return verifier.verify(token, **request).reason  # type: ignore[arg-type]


def test_ml_dsa_44_token_verifies_end_to_end_once() -> None:
    world = make_world(Algorithm.MLDSA44)
    token = world.mint()
    assert 2420 < len(token) <= 1024 + 2356
    assert _reason(world.verifier, token) is Reason.ALLOWED
    assert _reason(world.verifier, token) is Reason.ALREADY_USED


def test_ml_dsa_44_token_refusals_use_the_same_reason_codes() -> None:
    world = make_world(Algorithm.MLDSA44)
    token = world.mint()
    parts = parse_sign1(token)
    flipped = bytearray(token)
    flipped[-100] ^= 1
    assert _reason(world.verifier, bytes(flipped)) is Reason.BAD_SIGNATURE
    # An Ed25519-length signature under an ML-DSA-44 key: the key decides its length.
    assert _reason(world.verifier, _with_signature(token, bytes(64))) is Reason.BAD_SIGNATURE
    assert _reason(world.verifier, token[:-1]) is Reason.MALFORMED
    stranger = Issuer(SigningKey.generate(Algorithm.MLDSA44), ISSUER, clock=world.clock)
    assert _reason(world.verifier, stranger.mint(
        vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 600,
    )) is Reason.UNKNOWN_KEY
    # The ML-DSA-44 key's kid under EdDSA's alg: the key, not the message, names the algorithm.
    as_eddsa = protected_header(Algorithm.EDDSA, Typ.TOKEN, world.key.kid)
    swapped_alg = (b"\xd2\x84" + cbor.head(2, len(as_eddsa)) + as_eddsa + b"\xa0"
                   + parts.payload_item + cbor.head(2, 64) + bytes(64))
    assert _reason(world.verifier, swapped_alg) is Reason.ALG_MISMATCH
    assert _reason(world.verifier, token, vehicle_id="ANOTHER-VIN") is Reason.WRONG_VEHICLE
    assert _reason(world.verifier, token, action="unlock-relock") is Reason.WRONG_ACTION
    world.clock.advance(5 * 3600)
    assert _reason(world.verifier, token) is Reason.EXPIRED
    lapsed = Verifier(trust_store=TrustStore([TrustedKey.create(
        world.key.public_key, ISSUER, not_before=NOW - 100, not_after=NOW - 1)]),
        ledger=MemoryLedger(), clock=ManualClock(NOW))
    assert _reason(lapsed, token) is Reason.KEY_NOT_VALID


def test_token_size_cap_grows_by_the_longest_trusted_signature_and_no_more() -> None:
    world = make_world(Algorithm.MLDSA44)
    cap = world.verifier.policy.max_token_size + world.store.signature_allowance
    assert world.store.signature_allowance == 2420 - 64
    assert _reason(world.verifier, b"\xff" * (cap + 1)) is Reason.TOO_LARGE
    assert _reason(world.verifier, b"\xff" * cap) is Reason.MALFORMED
    classical = make_world(Algorithm.EDDSA)
    assert classical.store.signature_allowance == 0
    at_pq_size = b"\xff" * (classical.verifier.policy.max_token_size + 1)
    assert _reason(classical.verifier, at_pq_size) is Reason.TOO_LARGE
    assert _reason(classical.verifier, world.mint()) is Reason.TOO_LARGE


# -- trust updates: from Ed25519 to ML-DSA-44 token keys, and hybrid roots ---------


def _car(root: SigningKey, issuer: SigningKey | None = None,
         path: Path | None = None) -> tuple[VehicleAnchors, TrustStore, TrustUpdater]:
    anchors = VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(),
                             roots=[RootKey(key=root.public_key)])
    store = TrustStore([] if issuer is None else [TrustedKey.create(issuer.public_key, ISSUER)])
    return anchors, store, TrustUpdater(anchors=anchors, trust_store=store, path=path)


def _entry(key: SigningKey, role: Role, name: str = ISSUER) -> KeyEntry:
    return KeyEntry(role=role, name=name, key=key.public_key, not_before=0,
                    not_after=NOW + YEAR)


def _token(key: SigningKey) -> bytes:
    return Issuer(key, ISSUER, clock=ManualClock(NOW)).mint(
        vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 600)


@pytest.mark.parametrize("root_algorithm", [Algorithm.EDDSA, Algorithm.EDDSA_MLDSA65])
def test_a_signed_trust_update_moves_token_keys_from_ed25519_to_ml_dsa_44(
    root_algorithm: Algorithm, tmp_path: Path,
) -> None:
    root, old, new = (SigningKey.generate(root_algorithm), SigningKey.generate(),
                      SigningKey.generate(Algorithm.MLDSA44))
    _anchors, store, updater = _car(root, old, tmp_path / "trust.cbor")
    verifier = Verifier(trust_store=store, ledger=MemoryLedger(), clock=ManualClock(NOW))
    assert _reason(verifier, _token(new)) is Reason.TOO_LARGE  # before: an Ed25519 car's cap
    updater.apply(sign_trust_update(root, version=1, issued_at=NOW,
                                    set_keys=[_entry(new, Role.ISSUER)], remove=[old.kid]),
                  now=NOW)
    assert _reason(verifier, _token(new)) is Reason.ALLOWED
    assert _reason(verifier, _token(old)) is Reason.UNKNOWN_KEY
    # The car reboots: the persisted state holds the ML-DSA-44 key (and the root).
    _, rebooted, _ = _car(root, old, tmp_path / "trust.cbor")
    assert [entry.key for entry in rebooted] == [new.public_key]


def test_a_classical_car_becomes_hybrid_in_one_update_and_then_refuses_classical_ones() -> None:
    classical, (hybrid, ed_half) = SigningKey.generate(), _hybrid_and_its_ed25519_half()
    anchors, _, updater = _car(classical)
    mixed = sign_trust_update(classical, version=1, issued_at=NOW,
                              set_keys=[_entry(hybrid, Role.ROOT, "root")])
    with pytest.raises(UpdateRefused) as refused:
        updater.apply(mixed, now=NOW)
    assert refused.value.reason is Reason.ROLLBACK
    updater.apply(sign_trust_update(classical, version=1, issued_at=NOW,
                                    set_keys=[_entry(hybrid, Role.ROOT, "root")],
                                    remove=[classical.kid]), now=NOW)
    assert [root.key for root in anchors.roots()] == [hybrid.public_key]
    for attacker, reason in ((classical, Reason.UNKNOWN_KEY), (ed_half, Reason.UNKNOWN_KEY)):
        with pytest.raises(UpdateRefused) as refused:
            updater.apply(sign_trust_update(attacker, version=2, issued_at=NOW), now=NOW)
        assert refused.value.reason is reason
    # And back to classical is a downgrade, even signed by the hybrid root itself.
    back = sign_trust_update(hybrid, version=2, issued_at=NOW,
                             set_keys=[_entry(classical, Role.ROOT, "root")])
    with pytest.raises(UpdateRefused) as refused:
        updater.apply(back, now=NOW)
    assert refused.value.reason is Reason.ROLLBACK
    assert updater.version == 1


def test_a_car_is_never_provisioned_with_hybrid_and_classical_roots_together() -> None:
    roots = [RootKey(key=SigningKey.generate(Algorithm.EDDSA_MLDSA65).public_key),
             RootKey(key=SigningKey.generate().public_key)]
    with pytest.raises(InvalidRequest, match="hybrid roots only"):
        VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(), roots=roots)


def test_hybrid_root_signs_revocation_lists_and_root_rotations() -> None:
    hybrid, next_root = (SigningKey.generate(Algorithm.EDDSA_MLDSA65),
                         SigningKey.generate(Algorithm.EDDSA_MLDSA65))
    anchors, _, updater = _car(hybrid)
    revocations = RevocationState()
    revoked = bytes(16)
    listed = revocations.apply(sign_revocation_list(hybrid, version=1, issued_at=NOW,
                                                    tokens=[revoked]), anchors, now=NOW)
    assert revoked in listed.tokens
    updater.apply(sign_trust_update(hybrid, version=1, issued_at=NOW,
                                    set_keys=[_entry(next_root, Role.ROOT, "root")],
                                    remove=[hybrid.kid]), now=NOW)
    updater.apply(sign_trust_update(next_root, version=2, issued_at=NOW), now=NOW)
    assert updater.version == 2


def test_a_hybrid_root_grant_opens_a_delivery_and_its_cap_grows_only_on_a_hybrid_car() -> None:
    hybrid = build_world(root_algorithm=Algorithm.EDDSA_MLDSA65)
    assert hybrid.anchors.signature_allowance == 3373 - 64
    assert len(hybrid.root_grant) > MAX_GRANT_BYTES
    assert len(hybrid.root_grant) <= MAX_GRANT_BYTES + hybrid.anchors.signature_allowance
    assert hybrid.present(hybrid.token(), hybrid.chain).reason is Reason.ALLOWED
    classical = build_world()
    assert classical.anchors.signature_allowance == 0
    # A hybrid root grant on a classical car: too large before a signer is even looked up.
    decision = classical.present(classical.token(), encode_chain([
        hybrid.root_grant, classical.carrier_grant]))
    assert decision.reason is Reason.CHAIN_INVALID
    assert "bounded size" in decision.detail
    cap = MAX_CHAIN_BYTES + hybrid.anchors.signature_allowance
    assert cap == 2061 + 3309
    at_cap = hybrid.present(hybrid.token(), b"\xff" * cap)
    assert "bounded size" not in at_cap.detail
    assert "bounded size" in hybrid.present(hybrid.token(), b"\xff" * (cap + 1)).detail
    # On a hybrid car, a root grant signed by the Ed25519 half alone names no root.
    forged = sign_root_grant(_ED_HALF, retailer_consent(hybrid.retailer, NOW))
    decision = hybrid.present(hybrid.token(), encode_chain([forged, hybrid.carrier_grant]))
    assert decision.reason is Reason.CHAIN_INVALID


# -- the property: either half missing, swapped or invalid is refused ------------

_HYBRID, _ED_HALF = _hybrid_and_its_ed25519_half()
_OTHER_HYBRID = SigningKey.generate(Algorithm.EDDSA_MLDSA65)


def _tampered(signed: bytes, how: str, at: int, other: bytes) -> bytes:
    signature = parse_sign1(signed).signature
    ml, ed = signature[:ML_SIG], signature[ML_SIG:]
    other_signature = parse_sign1(other).signature
    if how == "no ML-DSA half":
        return _with_signature(signed, ed)
    if how == "no Ed25519 half":
        return _with_signature(signed, ml)
    if how == "halves swapped":
        return _with_signature(signed, ed + ml)
    if how == "ML-DSA half invalid":
        return _with_signature(signed, ml[:at % ML_SIG] + bytes([ml[at % ML_SIG] ^ 1])
                               + ml[at % ML_SIG + 1:] + ed)
    if how == "Ed25519 half invalid":
        return _with_signature(signed, ml + ed[:at % ED_SIG] + bytes([ed[at % ED_SIG] ^ 1])
                               + ed[at % ED_SIG + 1:])
    if how == "ML-DSA half from another update":
        return _with_signature(signed, other_signature[:ML_SIG] + ed)
    if how == "Ed25519 half from another update":
        return _with_signature(signed, ml + other_signature[ML_SIG:])
    if how == "Ed25519 half alone, as EdDSA under the root's kid":
        payload = parse_sign1(signed).payload
        forged = sign1(_ED_HALF, payload, typ=Typ.TRUST_UPDATE, include_kid=False)
        header = protected_header(Algorithm.EDDSA, Typ.TRUST_UPDATE, _HYBRID.kid)
        return (b"\xd2\x84" + cbor.head(2, len(header)) + header + b"\xa0"
                + parse_sign1(forged).payload_item + cbor.head(2, ED_SIG)
                + _ED_HALF.sign(b"anything"))
    assert how == "Ed25519 half alone, under its own kid"
    return sign1(_ED_HALF, parse_sign1(signed).payload, typ=Typ.TRUST_UPDATE)


#: Each tampering, and the reason the car gives: the one it gives any object so damaged.
TAMPERINGS = {
    "no ML-DSA half": Reason.BAD_SIGNATURE,  # 64 bytes: a length trunkkey knows, not the key's
    "no Ed25519 half": Reason.MALFORMED,  # 3309 bytes: no trunkkey algorithm's length
    "halves swapped": Reason.BAD_SIGNATURE,
    "ML-DSA half invalid": Reason.BAD_SIGNATURE,
    "Ed25519 half invalid": Reason.BAD_SIGNATURE,
    "ML-DSA half from another update": Reason.BAD_SIGNATURE,
    "Ed25519 half from another update": Reason.BAD_SIGNATURE,
    "Ed25519 half alone, as EdDSA under the root's kid": Reason.ALG_MISMATCH,
    "Ed25519 half alone, under its own kid": Reason.UNKNOWN_KEY,
}


@settings(max_examples=60, deadline=None)
@given(how=st.sampled_from(sorted(TAMPERINGS)), at=st.integers(0, 10_000),
       version=st.integers(1, 2**20), other_version=st.integers(1, 2**20))
def test_hybrid_root_refuses_an_update_with_either_signature_missing_swapped_or_invalid(
    how: str, at: int, version: int, other_version: int,
) -> None:
    anchors, store, updater = _car(_HYBRID)
    newcomer = SigningKey.generate()
    signed = sign_trust_update(_HYBRID, version=version, issued_at=NOW,
                               set_keys=[_entry(newcomer, Role.ISSUER)])
    signer = _OTHER_HYBRID if other_version % 2 else _HYBRID
    other = sign_trust_update(signer, version=other_version, issued_at=NOW)
    with pytest.raises(UpdateRefused) as refused:
        updater.apply(_tampered(signed, how, at, other), now=NOW)
    assert refused.value.reason is TAMPERINGS[how]
    assert updater.version == 0
    assert len(store) == 0
    assert [root.key for root in anchors.roots()] == [_HYBRID.public_key]
    # The untampered update is accepted: the refusal was the tampering's.
    updater.apply(signed, now=NOW)
    assert newcomer.kid in store
