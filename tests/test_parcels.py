"""Tokens bound to the parcels of their order (issue 19): the commitment, the
scan in the proof, the check before the spend, and what the verifier decides."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

import pytest

from support import VEHICLE, World, make_world
from trunkkey import Algorithm, DecodeError, InvalidRequest, Reason, SigningKey, cbor, make_proof
from trunkkey._fastpath import usual_claim_values
from trunkkey.claims import _LABELS, CNF, PARCELS, decode_claims, encode_claims
from trunkkey.cose import Typ, sign1
from trunkkey.inspect import inspect_unverified
from trunkkey.parcels import (
    COMMITMENT_BYTES,
    MAX_PARCEL_ID_BYTES,
    MAX_PARCELS,
    MAX_RECORD_BYTES,
    MAX_SCAN_BYTES,
    ParcelRecord,
    Parcels,
    commit_parcel,
    committer,
    encode_scan,
    read_record,
    read_scan,
)
from trunkkey.proof import MAX_SCAN_PROOF_BYTES, challenge_problem, check_scan_proof, proof_aad
from trunkkey.verifier import Decision

CHALLENGE = bytes(range(16))
ORDER = ("1Z999AA10123456784", "1Z999AA10123456785", "1Z999AA10123456786")


@pytest.fixture
def w() -> World:
    return make_world()


@pytest.fixture
def courier() -> SigningKey:
    return SigningKey.generate()


def mint(w: World, courier: SigningKey, parcels: Sequence[str] = ORDER, **extra: object) -> bytes:
    return w.mint(courier_key=courier.public_key, parcels=parcels, **extra)


def present(
    w: World, token: bytes, courier: SigningKey, scan: Sequence[str] | None,
    challenge: bytes = CHALLENGE,
) -> Decision:
    proof = make_proof(courier, token=token, vehicle_id=VEHICLE, challenge=challenge, scan=scan)
    return w.verifier.verify(
        token, vehicle_id=VEHICLE, action="trunk", proof=proof, challenge=challenge
    )


# -- the decision ------------------------------------------------------------------


def test_a_scan_of_the_whole_order_opens_and_is_recorded_as_complete(
    w: World, courier: SigningKey
) -> None:
    token = mint(w, courier)
    d = present(w, token, courier, list(reversed(ORDER)))
    assert d.reason is Reason.ALLOWED
    assert d.parcels is not None
    claims = inspect_unverified(token).claims
    assert claims.parcels is not None
    # In the order's order, whatever order the courier scanned in.
    assert d.parcels.scanned == claims.parcels.commitments
    assert (d.parcels.of, d.parcels.partial) == (3, False)


def test_a_partial_scan_opens_and_is_recorded_as_partial(w: World, courier: SigningKey) -> None:
    token = mint(w, courier)
    d = present(w, token, courier, [ORDER[2]])
    assert d.reason is Reason.ALLOWED
    assert d.parcels is not None
    assert d.parcels.partial
    assert d.parcels.scanned == (commit_parcel(_salt(token), ORDER[2]),)
    assert "1 of 3 parcels (partial)" in d.detail


def test_a_plain_proof_for_a_parcel_token_is_parcel_missing_and_spends_nothing(
    w: World, courier: SigningKey
) -> None:
    token = mint(w, courier)
    assert present(w, token, courier, None).reason is Reason.PARCEL_MISSING
    assert present(w, token, courier, []).reason is Reason.PARCEL_MISSING
    assert w.ledger.count() == 0
    assert present(w, token, courier, ORDER[:1]).reason is Reason.ALLOWED


def test_a_parcel_outside_the_order_is_wrong_parcel_and_spends_nothing(
    w: World, courier: SigningKey
) -> None:
    token = mint(w, courier)
    assert present(w, token, courier, ["1Z999AA10123456787"]).reason is Reason.WRONG_PARCEL
    # One right parcel does not carry a wrong one through.
    assert present(w, token, courier, [ORDER[0], "other"]).reason is Reason.WRONG_PARCEL
    assert w.ledger.count() == 0
    assert present(w, token, courier, ORDER).reason is Reason.ALLOWED
    assert present(w, token, courier, ORDER).reason is Reason.ALREADY_USED


def test_a_parcel_scanned_twice_is_refused_rather_than_counted_twice(
    w: World, courier: SigningKey
) -> None:
    token = mint(w, courier)
    d = present(w, token, courier, [ORDER[0], ORDER[0]])
    assert d.reason is Reason.WRONG_PARCEL
    assert "twice" in d.detail
    assert w.ledger.count() == 0


def test_the_parcel_check_comes_after_the_proof_and_before_the_spend(
    w: World, courier: SigningKey
) -> None:
    token = mint(w, courier)
    # No proof at all is still proof_missing: the scan rides on the proof.
    d = w.verifier.verify(token, vehicle_id=VEHICLE, action="trunk")
    assert d.reason is Reason.PROOF_MISSING
    # A scan signed by another device proves nothing about the parcels.
    thief = SigningKey.generate()
    assert present(w, token, thief, ORDER).reason is Reason.PROOF_INVALID
    assert present(w, token, courier, ORDER).reason is Reason.ALLOWED
    # Spent: a wrong scan is refused for the scan, before the ledger is asked.
    assert present(w, token, courier, ["nope"]).reason is Reason.WRONG_PARCEL


def test_the_scope_is_checked_before_the_parcels(w: World, courier: SigningKey) -> None:
    token = mint(w, courier)
    w.clock.advance(5 * 3600)
    assert present(w, token, courier, ["nope"]).reason is Reason.EXPIRED


def test_a_scan_answering_another_challenge_is_proof_invalid(
    w: World, courier: SigningKey
) -> None:
    token = mint(w, courier)
    proof = make_proof(courier, token=token, vehicle_id=VEHICLE, challenge=b"\x01" * 16,
                       scan=ORDER)
    d = w.verifier.verify(token, vehicle_id=VEHICLE, action="trunk", proof=proof,
                          challenge=CHALLENGE)
    assert d.reason is Reason.PROOF_INVALID
    assert w.ledger.count() == 0


def test_a_scan_lifted_from_another_delivery_is_proof_invalid(
    w: World, courier: SigningKey
) -> None:
    # The same order, two tokens (a redelivery): the scan of the first is
    # bound to the first token, and opens nothing with the second.
    first, second = mint(w, courier), mint(w, courier)
    proof = make_proof(courier, token=first, vehicle_id=VEHICLE, challenge=CHALLENGE, scan=ORDER)
    d = w.verifier.verify(second, vehicle_id=VEHICLE, action="trunk", proof=proof,
                          challenge=CHALLENGE)
    assert d.reason is Reason.PROOF_INVALID


def test_an_altered_scan_does_not_verify(w: World, courier: SigningKey) -> None:
    token = mint(w, courier)
    proof = make_proof(courier, token=token, vehicle_id=VEHICLE, challenge=CHALLENGE,
                       scan=["1Z999AA10123456789"])
    forged = proof.replace(b"1Z999AA10123456789", ORDER[0].encode())
    assert forged != proof
    d = w.verifier.verify(token, vehicle_id=VEHICLE, action="trunk", proof=forged,
                          challenge=CHALLENGE)
    assert d.reason is Reason.PROOF_INVALID


def test_a_scan_proof_for_a_token_without_parcels_is_proof_invalid(
    w: World, courier: SigningKey
) -> None:
    token = w.mint(courier_key=courier.public_key)
    d = present(w, token, courier, ORDER)
    assert d.reason is Reason.PROOF_INVALID
    assert present(w, token, courier, None).reason is Reason.ALLOWED


def test_a_token_without_parcels_decides_as_before(w: World, courier: SigningKey) -> None:
    token = w.mint(courier_key=courier.public_key)
    assert inspect_unverified(token).claims.parcels is None
    d = present(w, token, courier, None)
    assert (d.reason, d.detail, d.parcels) == (Reason.ALLOWED, "all checks passed", None)


def test_a_malformed_scan_signed_by_the_device_is_proof_invalid(
    w: World, courier: SigningKey
) -> None:
    token = mint(w, courier)
    for payload in (cbor.encode([CHALLENGE]), cbor.encode([CHALLENGE, ["a", 7]]),
                    cbor.encode([CHALLENGE, ["x" * (MAX_PARCEL_ID_BYTES + 1)]]),
                    cbor.encode([CHALLENGE, ["p"] * (MAX_PARCELS + 1)])):
        proof = sign1(courier, payload, typ=Typ.PROOF, include_kid=False,
                      external_aad=proof_aad(token, VEHICLE))
        d = w.verifier.verify(token, vehicle_id=VEHICLE, action="trunk", proof=proof,
                              challenge=CHALLENGE)
        assert d.reason is Reason.PROOF_INVALID, payload


@pytest.mark.parametrize("algorithm", [Algorithm.EDDSA, Algorithm.ES256])
def test_the_longest_scan_proof_fits_its_bound_and_one_byte_more_is_refused(
    w: World, algorithm: Algorithm
) -> None:
    device = SigningKey.generate(algorithm)
    order = [f"{i:02}" + "x" * (MAX_PARCEL_ID_BYTES - 2) for i in range(MAX_PARCELS)]
    token = mint(w, device, order)
    challenge = bytes(32)
    proof = make_proof(device, token=token, vehicle_id=VEHICLE, challenge=challenge, scan=order)
    assert len(proof) <= MAX_SCAN_PROOF_BYTES
    d = w.verifier.verify(token, vehicle_id=VEHICLE, action="trunk", proof=proof,
                          challenge=challenge)
    assert d.reason is Reason.ALLOWED
    problem, _ = check_scan_proof(bytes(MAX_SCAN_PROOF_BYTES + 1), key=device.public_key,
                                  token=token, vehicle_id=VEHICLE, challenge=challenge)
    assert problem == "proof is not bytes of a bounded size"
    problem, _ = check_scan_proof(bytes(MAX_SCAN_PROOF_BYTES), key=device.public_key,
                                  token=token, vehicle_id=VEHICLE, challenge=challenge)
    assert problem is not None
    assert "bounded size" not in problem


def test_a_scan_proof_is_judged_against_a_well_formed_challenge_first(
    w: World, courier: SigningKey
) -> None:
    token = mint(w, courier)
    proof = make_proof(courier, token=token, vehicle_id=VEHICLE, challenge=CHALLENGE, scan=ORDER)
    for bad in (b"", b"\x01" * 15, b"\x01" * 33, "not bytes"):
        problem, scan = check_scan_proof(proof, key=courier.public_key, token=token,
                                         vehicle_id=VEHICLE, challenge=bad)  # type: ignore[arg-type]
        assert problem == challenge_problem(bad)
        assert scan is None


def test_the_courier_device_refuses_to_sign_more_than_sixteen_scanned_parcels(
    courier: SigningKey,
) -> None:
    scan = [f"p{i}" for i in range(MAX_PARCELS + 1)]
    with pytest.raises(InvalidRequest, match="0 to 16"):
        make_proof(courier, token=b"t", vehicle_id=VEHICLE, challenge=CHALLENGE, scan=scan)
    make_proof(courier, token=b"t", vehicle_id=VEHICLE, challenge=CHALLENGE, scan=scan[:-1])


# -- minting -------------------------------------------------------------------------


def test_sixteen_parcels_mint_and_seventeen_are_refused(w: World, courier: SigningKey) -> None:
    order = [f"P{i}" for i in range(MAX_PARCELS + 1)]
    assert inspect_unverified(mint(w, courier, order[:-1])).claims.parcels is not None
    with pytest.raises(InvalidRequest, match="1 to 16"):
        mint(w, courier, order)


def test_an_identifier_of_64_bytes_mints_and_65_is_refused(
    w: World, courier: SigningKey
) -> None:
    mint(w, courier, ["é" * 32])  # 64 bytes of UTF-8
    with pytest.raises(InvalidRequest, match="at most 64 bytes"):
        mint(w, courier, ["é" * 32 + "x"])


@pytest.mark.parametrize(
    ("parcels", "match"),
    [
        ([], "1 to 16"),
        ([""], "non-empty"),
        (["A", "A"], "twice"),
        (["A\x1dB"], "control"),
        ([b"A"], "non-empty string"),
        ("ABC", "not one string"),
    ],
)
def test_an_order_that_cannot_be_scanned_is_refused_at_minting(
    w: World, courier: SigningKey, parcels: object, match: str
) -> None:
    with pytest.raises(InvalidRequest, match=match):
        mint(w, courier, parcels)  # type: ignore[arg-type]


def test_parcels_without_a_courier_key_are_refused_at_minting(w: World) -> None:
    with pytest.raises(InvalidRequest, match="courier_key"):
        w.mint(parcels=ORDER)


def test_a_token_costs_24_bytes_for_its_salt_and_17_per_parcel(
    w: World, courier: SigningKey
) -> None:
    plain = len(w.mint(courier_key=courier.public_key))
    for count in (1, 3, MAX_PARCELS):
        token = mint(w, courier, [f"P{i}" for i in range(count)])
        # Label, [salt, [commitments]]; a payload past 255 bytes takes one more head byte.
        assert 24 + 17 * count <= len(token) - plain <= 25 + 17 * count


def test_the_largest_parcel_token_fits_the_default_token_size(w: World) -> None:
    device = SigningKey.generate(Algorithm.ES256)
    token = mint(w, device, [f"{i:064}" for i in range(MAX_PARCELS)],
                 order_ref=b"o" * 64)
    assert len(token) <= w.verifier.policy.max_token_size


# -- decoding ------------------------------------------------------------------------


def _salt(token: bytes) -> bytes:
    parcels = inspect_unverified(token).claims.parcels
    assert parcels is not None
    return parcels.salt


def _with_parcels(w: World, courier: SigningKey, value: object, *, cnf: bool = True) -> bytes:
    payload = cbor.decode(encode_claims(inspect_unverified(mint(w, courier)).claims))
    payload[PARCELS] = value
    if not cnf:
        del payload[CNF]
    return cbor.encode(payload)


def test_a_parcel_token_round_trips(w: World, courier: SigningKey) -> None:
    claims = inspect_unverified(mint(w, courier)).claims
    assert decode_claims(encode_claims(claims)) == claims


@pytest.mark.parametrize(
    "value",
    [
        [bytes(15), [bytes(16)]],
        [bytes(16), []],
        [bytes(16), [bytes(15)]],
        [bytes(16), [bytes(16), bytes(16)]],
        [bytes(16), [bytes([i]) * 16 for i in range(MAX_PARCELS + 1)]],
        [bytes(16)],
        [bytes(16), bytes(16)],
        {1: bytes(16)},
    ],
    ids=["short-salt", "none", "short-commitment", "duplicate", "seventeen", "no-list",
         "not-a-list", "map"],
)
def test_an_off_profile_parcels_claim_is_malformed(
    w: World, courier: SigningKey, value: object
) -> None:
    with pytest.raises(DecodeError, match="parcels"):
        decode_claims(_with_parcels(w, courier, value))


def test_sixteen_commitments_decode(w: World, courier: SigningKey) -> None:
    value = [bytes(16), [bytes([i]) * 16 for i in range(MAX_PARCELS)]]
    parcels = decode_claims(_with_parcels(w, courier, value)).parcels
    assert parcels is not None
    assert len(parcels.commitments) == MAX_PARCELS


def test_parcels_without_a_cnf_key_are_malformed(w: World, courier: SigningKey) -> None:
    with pytest.raises(DecodeError, match="cnf"):
        decode_claims(_with_parcels(w, courier, [bytes(16), [bytes(16)]], cnf=False))


# -- the commitment ------------------------------------------------------------------


def test_the_token_holds_no_identifier_and_two_tokens_share_no_commitment(
    w: World, courier: SigningKey
) -> None:
    first, second = mint(w, courier), mint(w, courier)
    for identifier in ORDER:
        assert identifier.encode() not in first
    a, b = inspect_unverified(first).claims.parcels, inspect_unverified(second).claims.parcels
    assert a is not None
    assert b is not None
    assert a.salt != b.salt
    assert not set(a.commitments) & set(b.commitments)


def test_the_commitment_is_a_keyed_hash_under_the_token_salt() -> None:
    salt = bytes(range(16))
    expected = hmac.digest(salt, b"1Z999AA10123456784", "sha256")[:COMMITMENT_BYTES]
    assert commit_parcel(salt, "1Z999AA10123456784") == expected


def test_matching_compares_every_commitment_whichever_matches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = [f"P{i}" for i in range(MAX_PARCELS)]
    parcels = Parcels.commit(order, salt=bytes(16))
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # parcels imports hmac when it matches
    for identifier in (order[0], order[-1], "absent"):
        calls.clear()
        parcels.position(identifier)
        assert len(calls) == MAX_PARCELS


def test_the_commitments_repr_shows_no_salt() -> None:
    parcels = Parcels.commit(ORDER, salt=b"S" * 16)
    assert repr(parcels) == "Parcels(3 committed)"


# -- the record of what was scanned ---------------------------------------------------


def test_the_longest_record_fits_its_bound_and_round_trips() -> None:
    record = ParcelRecord(scanned=tuple(bytes([i]) * 16 for i in range(MAX_PARCELS)),
                          of=MAX_PARCELS)
    assert len(cbor.encode(record.to_cbor())) == MAX_RECORD_BYTES
    assert read_record(record.to_cbor()) == record
    assert not record.partial


@pytest.mark.parametrize(
    "value",
    [[0, []], [2, []], [1, [bytes(16), bytes([1]) * 16]], [2, [bytes(16), bytes(16)]],
     [17, [bytes(16)]], [1, [bytes(15)]], [1, bytes(16)], [bytes(16)]],
    ids=["empty-order", "nothing-scanned", "more-than-the-order", "twice", "seventeen",
         "short", "not-a-list", "no-count"],
)
def test_an_off_profile_record_is_refused(value: object) -> None:
    with pytest.raises(DecodeError, match="parcel record"):
        read_record(value)


def test_a_record_says_partial_when_fewer_than_the_order_were_scanned() -> None:
    record = ParcelRecord(scanned=(bytes(16),), of=2)
    assert record.partial
    assert record.describe() == "1 of 2 parcels (partial)"


def test_the_longest_scan_fits_the_scan_cap() -> None:
    scan = tuple("x" * MAX_PARCEL_ID_BYTES for _ in range(MAX_PARCELS))
    payload = encode_scan(bytes(32), scan)
    assert len(payload) <= MAX_SCAN_BYTES
    assert read_scan(payload) == (bytes(32), scan)


def test_a_parcel_token_takes_the_fast_path_and_reads_what_the_general_reader_reads(
    w: World, courier: SigningKey
) -> None:
    payload = encode_claims(inspect_unverified(mint(w, courier)).claims)
    read = usual_claim_values(payload)
    assert read is not None
    assert read == cbor.decode_map(payload, _LABELS, not_a_map="", unknown="{}")
    assert decode_claims(payload).parcels is not None


def test_the_committer_is_hmac_sha256_for_any_salt_and_identifier() -> None:
    for salt in (bytes(16), b"\xff" * 16, bytes(range(16))):
        commit = committer(salt)
        for identifier in ("A", "é" * 32, "1Z999AA10123456784", "x" * 64):
            expected = hmac.digest(salt, identifier.encode(), "sha256")[:COMMITMENT_BYTES]
            assert commit(identifier) == expected
