"""Post-quantum keys: ML-DSA-44 tokens and the hybrid carmaker roots.

ML-DSA-44 tokens go through the verifier's one path and its reason codes; a
hybrid root (EdDSA + ML-DSA-65, or ES256 + ML-DSA-65) signs trust updates and
revocation lists that verify only with both halves of its signature, and a car
holding one accepts nothing less. Every hybrid-root test runs for both composites.
"""

from __future__ import annotations

import pickle
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support import ISSUER, NOW, VEHICLE, make_world
from trunkkey import (
    Algorithm,
    CompositeSigner,
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
from trunkkey.consent.anchors import open_root_signed
from trunkkey.consent.chain import MAX_CHAIN_BYTES
from trunkkey.consent.grant import MAX_GRANT_BYTES
from trunkkey.cose import SIGNATURE_LENGTHS, Typ, parse_sign1, protected_header, sign1
from trunkkey.errors import DecodeError, InsecureKeyFile, InvalidRequest
from trunkkey.keys import MAX_COSE_KEY_BYTES, algorithm_of_raw_key, unique_signature
from trunkkey.testing.consent import build_world, retailer_consent

ML_SIG, CLASSICAL_SIG, ML_PUBLIC = 3309, 64, 1952
YEAR = 365 * 86400
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: The hybrid roots, and the classical algorithm of each one's second half.
COMPOSITES = {Algorithm.EDDSA_MLDSA65: Algorithm.EDDSA, Algorithm.ES256_MLDSA65: Algorithm.ES256}
each_composite = pytest.mark.parametrize("composite", list(COMPOSITES))


def _with_signature(signed: bytes, signature: bytes) -> bytes:
    """``signed`` (a strict COSE_Sign1) carrying ``signature`` instead of its own."""
    parts = parse_sign1(signed)
    return (b"\xd2\x84" + parts.protected_item + b"\xa0" + parts.payload_item
            + cbor.head(2, len(signature)) + signature)


def _hybrid_and_its_classical_half(composite: Algorithm) -> tuple[SigningKey, SigningKey]:
    """A hybrid root, and its classical half (Ed25519 or P-256) as an attacker who broke
    that algorithm would hold it: read from the composite's own private COSE_Key."""
    hybrid = SigningKey.generate(composite)
    seed = cbor.decode(hybrid.private_cose_key())[-2]
    raw = hybrid.public_key.raw[ML_PUBLIC:]
    public = ({1: 1, -1: 6, -2: raw} if composite is Algorithm.EDDSA_MLDSA65
              else {1: 2, -1: 1, -2: raw[:32], -3: raw[32:]})
    half = SigningKey.from_cose_key(cbor.encode({**public, -4: seed[32:]}))
    assert half.algorithm is COMPOSITES[composite]
    assert half.public_key.raw == raw
    return hybrid, half


# -- keys -----------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "public", "signature"), [
    (Algorithm.MLDSA44, 1312, 2420), (Algorithm.EDDSA_MLDSA65, 1984, 3373),
    (Algorithm.ES256_MLDSA65, 2016, 3373),
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
    assert algorithm.hybrid is (algorithm in COMPOSITES)


def test_every_algorithm_has_public_keys_of_its_own_length() -> None:
    # A trust update names a key's algorithm by its raw length alone.
    lengths = {a: len(SigningKey.generate(a).public_key.raw) for a in Algorithm}
    assert len(set(lengths.values())) == len(Algorithm)
    assert all(algorithm_of_raw_key(bytes(n)) is a for a, n in lengths.items())
    with pytest.raises(ValueError, match="2017-byte"):
        algorithm_of_raw_key(bytes(2017))


@each_composite
def test_a_composite_key_file_is_owner_only_and_its_secrets_never_show(
    composite: Algorithm, tmp_path: Path,
) -> None:
    key = SigningKey.generate(composite)
    key.save(tmp_path / "root.key")
    assert stat.S_IMODE((tmp_path / "root.key").stat().st_mode) == 0o600
    assert SigningKey.load(tmp_path / "root.key").public_key == key.public_key
    (tmp_path / "root.key").chmod(0o644)
    with pytest.raises(InsecureKeyFile):
        SigningKey.load(tmp_path / "root.key")
    secret = key._SigningKey__secret  # type: ignore[attr-defined]  # the test looks inside
    halves = cbor.decode(key.private_cose_key())[-2]
    shown = repr(key) + str(key) + repr(secret) + repr(key.public_key)
    assert halves[:32].hex() not in shown
    assert halves[32:].hex() not in shown


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


@pytest.mark.parametrize("algorithm", [Algorithm.MLDSA44, *COMPOSITES])
def test_an_ml_dsa_private_key_cannot_be_pickled_or_printed(algorithm: Algorithm) -> None:
    key = SigningKey.generate(algorithm)
    seed = cbor.decode(key.private_cose_key())[-2]
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)
    secret = key._SigningKey__secret  # type: ignore[attr-defined]  # the test looks inside
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    assert seed.hex() not in repr(key) + str(key) + repr(secret)


@each_composite
def test_a_composite_signature_needs_both_halves(composite: Algorithm) -> None:
    hybrid, half = _hybrid_and_its_classical_half(composite)
    message = b"both or nothing"
    good = hybrid.sign(message)
    public = hybrid.public_key
    assert public.is_valid_unique_signature(good, message)
    forged = good[:ML_SIG] + half.sign(b"another message")
    for bad in (good[:ML_SIG], good[ML_SIG:], good[ML_SIG:] + good[:ML_SIG], forged,
                bytes(ML_SIG) + good[ML_SIG:], good[:ML_SIG] + bytes(CLASSICAL_SIG)):
        assert not public.is_valid_unique_signature(bad, message)
        assert not public.is_valid_signature(bad, message)


def _same_ml_dsa_seed_in_both_composites() -> tuple[SigningKey, SigningKey]:
    """An EdDSA and an ES256 composite sharing one ML-DSA-65 key: the worst case for telling
    them apart, since only the context and the classical half then differ."""
    ml_seed = bytes(range(32))
    ed = SigningKey._from_private_scalar(Algorithm.EDDSA_MLDSA65, ml_seed + bytes(32))
    p256 = SigningKey._from_private_scalar(Algorithm.ES256_MLDSA65, ml_seed + bytes(31) + b"\x07")
    assert ed.public_key.raw[:ML_PUBLIC] == p256.public_key.raw[:ML_PUBLIC]
    return ed, p256


def test_a_composite_signature_of_one_kind_never_verifies_as_the_other() -> None:
    ed, p256 = _same_ml_dsa_seed_in_both_composites()
    message = b"one kind"
    by_ed, by_p256 = ed.sign(message), p256.sign(message)
    assert len(by_ed) == len(by_p256) == 3373  # one length: only the key can tell them apart
    assert ed.public_key.is_valid_unique_signature(by_ed, message)
    assert p256.public_key.is_valid_unique_signature(by_p256, message)
    for key, other in ((ed, by_p256), (p256, by_ed)):
        own = key.sign(message)
        for bad in (
            other,  # the other composite's whole signature
            other[:ML_SIG] + own[ML_SIG:],  # its ML-DSA-65 half (another context) and ours
            own[:ML_SIG] + other[ML_SIG:],  # our ML-DSA-65 half, the other classical half
            own[ML_SIG:] + own[:ML_SIG], other[ML_SIG:] + other[:ML_SIG],  # halves swapped
        ):
            assert not key.public_key.is_valid_signature(bad, message)


def test_the_protected_header_alg_not_the_signature_length_picks_the_composite() -> None:
    ed, p256 = _same_ml_dsa_seed_in_both_composites()
    anchors = VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(),
                             roots=[RootKey(key=ed.public_key), RootKey(key=p256.public_key)])
    signed = sign_trust_update(ed, version=1, issued_at=NOW)
    parts = parse_sign1(signed)
    for alg, kid, reason in ((Algorithm.ES256_MLDSA65, ed.kid, Reason.ALG_MISMATCH),
                             (Algorithm.ES256_MLDSA65, p256.kid, Reason.BAD_SIGNATURE)):
        header = protected_header(alg, Typ.TRUST_UPDATE, kid)
        relabelled = (b"\xd2\x84" + cbor.head(2, len(header)) + header + b"\xa0"
                      + parts.payload_item + cbor.head(2, len(parts.signature))
                      + parts.signature)
        with pytest.raises(UpdateRefused) as refused:
            open_root_signed(relabelled, anchors, typ=Typ.TRUST_UPDATE, now=NOW)
        assert refused.value.reason is reason
    assert open_root_signed(signed, anchors, typ=Typ.TRUST_UPDATE, now=NOW)


def _high_s(signature: bytes) -> bytes:
    """``signature`` with its trailing P-256 s replaced by n - s: ECDSA's other valid form."""
    s = int.from_bytes(signature[-32:], "big")
    return signature[:-32] + (P256_ORDER - s).to_bytes(32, "big")


def test_the_p256_half_of_a_composite_must_be_low_s() -> None:
    hybrid, half = _hybrid_and_its_classical_half(Algorithm.ES256_MLDSA65)
    message = b"one form"
    good = hybrid.sign(message)
    high = _high_s(good)
    # The high-s half is a valid ECDSA signature: only trunkkey's one-form rule refuses it.
    assert half.public_key.is_valid_signature(high[ML_SIG:], message)
    assert not half.public_key.is_valid_unique_signature(high[ML_SIG:], message)
    assert not hybrid.public_key.is_valid_unique_signature(high, message)
    assert not hybrid.public_key.is_valid_signature(high, message)  # the composite's one form
    assert unique_signature(Algorithm.ES256_MLDSA65, high) == good
    assert unique_signature(Algorithm.EDDSA_MLDSA65, high) == high  # no P-256 in it


class _HighSBackend:
    """A composite signing backend (an HSM, say) whose P-256 half comes back with high s."""

    def __init__(self, key: SigningKey) -> None:
        self.algorithm, self.kid, self.public_key = key.algorithm, key.kid, key.public_key
        self._key = key

    def sign(self, message: bytes) -> bytes:
        return _high_s(self._key.sign(message))


def test_a_high_s_p256_half_is_refused_in_an_update_and_made_low_by_sign1() -> None:
    hybrid, _ = _hybrid_and_its_classical_half(Algorithm.ES256_MLDSA65)
    _, _, updater = _car(hybrid)
    signed = sign_trust_update(hybrid, version=1, issued_at=NOW)
    high = _with_signature(signed, _high_s(parse_sign1(signed).signature))
    with pytest.raises(UpdateRefused) as refused:
        updater.apply(high, now=NOW)
    assert refused.value.reason is Reason.BAD_SIGNATURE
    from_backend = sign_trust_update(_HighSBackend(hybrid), version=1, issued_at=NOW)
    assert int.from_bytes(parse_sign1(from_backend).signature[-32:], "big") <= P256_ORDER // 2
    updater.apply(from_backend, now=NOW)
    assert updater.version == 1


@each_composite
def test_a_composite_signer_with_its_classical_half_elsewhere_is_the_same_root(
    composite: Algorithm,
) -> None:
    # The classical half as a separate backend (an HSM's key, here one in memory that
    # returns high-s P-256 signatures): the same key, the same signatures, as the composite
    # key made of both halves in memory.
    hybrid, half = _hybrid_and_its_classical_half(composite)
    seed = cbor.decode(hybrid.private_cose_key())[-2][:32]
    signer = CompositeSigner(seed, _HighSBackend(half) if composite is Algorithm.ES256_MLDSA65
                             else half)
    assert signer.algorithm is composite
    assert signer.public_key == hybrid.public_key
    assert signer.kid == hybrid.kid
    _, _, updater = _car(hybrid)
    updater.apply(sign_trust_update(signer, version=1, issued_at=NOW), now=NOW)
    assert updater.version == 1
    assert seed.hex() not in repr(signer) + str(signer)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(signer)


def test_a_composite_signer_needs_a_classical_half_and_a_32_byte_seed() -> None:
    for classical in (SigningKey.generate(Algorithm.MLDSA44),
                      SigningKey.generate(Algorithm.ES256_MLDSA65)):
        with pytest.raises(InvalidRequest, match="Ed25519 or P-256"):
            CompositeSigner(bytes(32), classical)
    with pytest.raises(InvalidRequest, match="32 bytes"):
        CompositeSigner(bytes(31), SigningKey.generate(Algorithm.ES256))
    with pytest.raises(InvalidRequest):
        CompositeSigner(bytes(32), object())  # type: ignore[arg-type]


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


@pytest.mark.parametrize("root_algorithm", [Algorithm.EDDSA, *COMPOSITES])
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


@each_composite
def test_a_classical_car_becomes_hybrid_in_one_update_and_then_refuses_classical_ones(
    composite: Algorithm,
) -> None:
    # The car's classical root is of the composite's own classical algorithm: the half
    # an attacker who broke it holds is then no better than the old root.
    classical = SigningKey.generate(COMPOSITES[composite])
    hybrid, half = _hybrid_and_its_classical_half(composite)
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
    for attacker in (classical, half):
        with pytest.raises(UpdateRefused) as refused:
            updater.apply(sign_trust_update(attacker, version=2, issued_at=NOW), now=NOW)
        assert refused.value.reason is Reason.UNKNOWN_KEY
    # And back to classical is a downgrade, even signed by the hybrid root itself.
    back = sign_trust_update(hybrid, version=2, issued_at=NOW,
                             set_keys=[_entry(classical, Role.ROOT, "root")])
    with pytest.raises(UpdateRefused) as refused:
        updater.apply(back, now=NOW)
    assert refused.value.reason is Reason.ROLLBACK
    assert updater.version == 1


@pytest.mark.parametrize(("composite", "classical"), [
    (composite, classical) for composite in COMPOSITES
    for classical in (Algorithm.EDDSA, Algorithm.ES256, Algorithm.MLDSA44)
])
def test_a_car_is_never_provisioned_with_hybrid_and_classical_roots_together(
    composite: Algorithm, classical: Algorithm,
) -> None:
    # ML-DSA-44 alone is no hybrid either: a break of ML-DSA would then suffice.
    roots = [RootKey(key=SigningKey.generate(composite).public_key),
             RootKey(key=SigningKey.generate(classical).public_key)]
    with pytest.raises(InvalidRequest, match="hybrid roots only"):
        VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(), roots=roots)


def test_the_two_composites_are_both_hybrid_and_may_stand_side_by_side() -> None:
    roots = [RootKey(key=SigningKey.generate(composite).public_key) for composite in COMPOSITES]
    anchors = VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(), roots=roots)
    assert {root.key.algorithm for root in anchors.roots()} == set(COMPOSITES)


@pytest.mark.parametrize(("old", "new"), [
    (Algorithm.EDDSA_MLDSA65, Algorithm.ES256_MLDSA65),
    (Algorithm.ES256_MLDSA65, Algorithm.EDDSA_MLDSA65),
])
def test_a_hybrid_car_moves_its_root_to_the_other_composite_by_a_signed_update(
    old: Algorithm, new: Algorithm,
) -> None:
    # A carmaker moving its root into an HSM that only does P-256 (or back out of one):
    # both composites are hybrid, so the car stays hybrid throughout.
    old_root, (new_root, new_half) = (SigningKey.generate(old),
                                      _hybrid_and_its_classical_half(new))
    anchors, store, updater = _car(old_root)
    updater.apply(sign_trust_update(old_root, version=1, issued_at=NOW,
                                    set_keys=[_entry(new_root, Role.ROOT, "root")],
                                    remove=[old_root.kid]), now=NOW)
    assert [root.key for root in anchors.roots()] == [new_root.public_key]
    token_key = SigningKey.generate(Algorithm.MLDSA44)
    updater.apply(sign_trust_update(new_root, version=2, issued_at=NOW,
                                    set_keys=[_entry(token_key, Role.ISSUER)]), now=NOW)
    assert token_key.kid in store
    for refused_signer, reason in ((old_root, Reason.UNKNOWN_KEY),
                                   (new_half, Reason.UNKNOWN_KEY)):
        with pytest.raises(UpdateRefused) as refused:
            updater.apply(sign_trust_update(refused_signer, version=3, issued_at=NOW), now=NOW)
        assert refused.value.reason is reason
    # The new root may not bring a classical one beside it either.
    with pytest.raises(UpdateRefused) as refused:
        updater.apply(sign_trust_update(new_root, version=3, issued_at=NOW, set_keys=[
            _entry(SigningKey.generate(COMPOSITES[new]), Role.ROOT, "root")]), now=NOW)
    assert refused.value.reason is Reason.ROLLBACK
    assert updater.version == 2


@each_composite
def test_hybrid_root_signs_revocation_lists_and_root_rotations(composite: Algorithm) -> None:
    hybrid, next_root = SigningKey.generate(composite), SigningKey.generate(composite)
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


@each_composite
def test_a_hybrid_root_grant_opens_a_delivery_and_its_cap_grows_only_on_a_hybrid_car(
    composite: Algorithm,
) -> None:
    hybrid = build_world(root_algorithm=composite)
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
    # On a hybrid car, a root grant signed by the classical half alone names no root.
    forged = sign_root_grant(ROOTS[composite].half, retailer_consent(hybrid.retailer, NOW))
    decision = hybrid.present(hybrid.token(), encode_chain([forged, hybrid.carrier_grant]))
    assert decision.reason is Reason.CHAIN_INVALID


@each_composite
def test_a_hybrid_car_signs_revocation_lists_and_trust_updates_in_the_testing_world(
    composite: Algorithm,
) -> None:
    world = build_world(root_algorithm=composite)
    token = world.token()
    listed = world.revocations.apply(sign_revocation_list(
        world.root, version=1, issued_at=NOW, grants=[]), world.anchors, now=NOW)
    assert listed.version == 1
    updater = TrustUpdater(anchors=world.anchors, trust_store=TrustStore())
    updater.apply(sign_trust_update(world.root, version=1, issued_at=NOW), now=NOW)
    assert updater.version == 1
    assert world.present(token, world.chain).reason is Reason.ALLOWED


# -- the property: either half missing, swapped or invalid is refused ------------


class _Root:
    """A hybrid root, its classical half (held by an attacker), and another root's key."""

    def __init__(self, composite: Algorithm) -> None:
        self.key, self.half = _hybrid_and_its_classical_half(composite)
        self.other = SigningKey.generate(composite)


ROOTS = {composite: _Root(composite) for composite in COMPOSITES}


def _tampered(root: _Root, signed: bytes, how: str, at: int, other: bytes) -> bytes:
    signature = parse_sign1(signed).signature
    ml, cl = signature[:ML_SIG], signature[ML_SIG:]
    other_signature = parse_sign1(other).signature
    if how == "no ML-DSA half":
        return _with_signature(signed, cl)
    if how == "no classical half":
        return _with_signature(signed, ml)
    if how == "halves swapped":
        return _with_signature(signed, cl + ml)
    if how == "ML-DSA half invalid":
        return _with_signature(signed, ml[:at % ML_SIG] + bytes([ml[at % ML_SIG] ^ 1])
                               + ml[at % ML_SIG + 1:] + cl)
    if how == "classical half invalid":
        i = at % CLASSICAL_SIG
        return _with_signature(signed, ml + cl[:i] + bytes([cl[i] ^ 1]) + cl[i + 1:])
    if how == "ML-DSA half from another update":
        return _with_signature(signed, other_signature[:ML_SIG] + cl)
    if how == "classical half from another update":
        return _with_signature(signed, ml + other_signature[ML_SIG:])
    if how == "classical half alone, under its own alg and the root's kid":
        payload = parse_sign1(signed).payload
        forged = sign1(root.half, payload, typ=Typ.TRUST_UPDATE, include_kid=False)
        header = protected_header(root.half.algorithm, Typ.TRUST_UPDATE, root.key.kid)
        return (b"\xd2\x84" + cbor.head(2, len(header)) + header + b"\xa0"
                + parse_sign1(forged).payload_item + cbor.head(2, CLASSICAL_SIG)
                + root.half.sign(b"anything"))
    assert how == "classical half alone, under its own kid"
    return sign1(root.half, parse_sign1(signed).payload, typ=Typ.TRUST_UPDATE)


#: Each tampering, and the reason the car gives: the one it gives any object so damaged.
TAMPERINGS = {
    "no ML-DSA half": Reason.BAD_SIGNATURE,  # 64 bytes: a length trunkkey knows, not the key's
    "no classical half": Reason.MALFORMED,  # 3309 bytes: no trunkkey algorithm's length
    "halves swapped": Reason.BAD_SIGNATURE,
    "ML-DSA half invalid": Reason.BAD_SIGNATURE,
    "classical half invalid": Reason.BAD_SIGNATURE,
    "ML-DSA half from another update": Reason.BAD_SIGNATURE,
    "classical half from another update": Reason.BAD_SIGNATURE,
    "classical half alone, under its own alg and the root's kid": Reason.ALG_MISMATCH,
    "classical half alone, under its own kid": Reason.UNKNOWN_KEY,
}


@each_composite
@settings(max_examples=45, deadline=None)
@given(how=st.sampled_from(sorted(TAMPERINGS)), at=st.integers(0, 10_000),
       version=st.integers(1, 2**20), other_version=st.integers(1, 2**20))
def test_hybrid_root_refuses_an_update_with_either_signature_missing_swapped_or_invalid(
    composite: Algorithm, how: str, at: int, version: int, other_version: int,
) -> None:
    root = ROOTS[composite]
    anchors, store, updater = _car(root.key)
    newcomer = SigningKey.generate()
    signed = sign_trust_update(root.key, version=version, issued_at=NOW,
                               set_keys=[_entry(newcomer, Role.ISSUER)])
    signer = root.other if other_version % 2 else root.key
    other = sign_trust_update(signer, version=other_version, issued_at=NOW)
    with pytest.raises(UpdateRefused) as refused:
        updater.apply(_tampered(root, signed, how, at, other), now=NOW)
    assert refused.value.reason is TAMPERINGS[how]
    assert updater.version == 0
    assert len(store) == 0
    assert [r.key for r in anchors.roots()] == [root.key.public_key]
    # The untampered update is accepted: the refusal was the tampering's.
    updater.apply(signed, now=NOW)
    assert newcomer.kid in store
