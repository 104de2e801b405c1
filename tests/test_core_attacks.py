"""Attacks on the core's public API that no other test file covers.

Each test is named for the promise it protects; the attacker is either
someone holding the bytes a car reads, or a careless operator building the
objects (trust entries, key files, tokens) the car and the backend use.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from support import ISSUER, NOW, VEHICLE, World, make_world
from trunkkey import (
    Algorithm,
    Geofence,
    InsecureKeyFile,
    InvalidRequest,
    Issuer,
    KeyFileError,
    Location,
    MemoryLedger,
    SigningKey,
    TrustedKey,
    TrustStore,
    VerificationKey,
    Verifier,
    VerifierPolicy,
    make_proof,
)
from trunkkey.errors import DecodeError
from trunkkey.ledger.base import SpendOutcome
from trunkkey.reasons import Reason


@pytest.mark.parametrize("bound", [float("nan"), 1.5, "5", True, -float("inf")])
@pytest.mark.parametrize("side", ["not_before", "not_after"])
def test_a_trusted_keys_validity_bounds_are_whole_seconds_or_nothing(
    bound: object, side: str,
) -> None:
    # A NaN not_before compared false with every instant: a key meant to start
    # trusting next year was trusted at once, for ever (and a text bound turned
    # every later decision into an unexpected-error `malformed`).
    key = SigningKey.generate().public_key
    with pytest.raises(InvalidRequest, match=r"^TrustedKey validity period bounds are ints"):
        TrustedKey(key=key, issuer=ISSUER, **{side: bound})  # type: ignore[arg-type]


def test_a_key_not_yet_valid_stays_refused_until_its_start(ed_world: World) -> None:
    key = ed_world.key.public_key
    store = TrustStore([TrustedKey(key=key, issuer=ISSUER, not_before=NOW + 3600)])
    verifier = Verifier(trust_store=store, ledger=MemoryLedger(), clock=ed_world.clock)
    token = ed_world.mint()
    assert verifier.verify_at(
        token, now=NOW, vehicle_id=VEHICLE, action="trunk"
    ).reason is Reason.KEY_NOT_VALID


def test_a_key_file_owned_by_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Mode 0600 keeps a file from others only if we own it: its owner can
    # read (and replace) the key whatever its mode.
    path = tmp_path / "issuer.pem"
    SigningKey.generate().save(path)
    if os.geteuid() == 0:
        os.chown(path, 4242, 4242)  # another user's file, readable by root
    else:
        monkeypatch.setattr(os, "geteuid", lambda: os.stat(path).st_uid + 1)
    with pytest.raises(InsecureKeyFile, match="owned by another user"):
        SigningKey.load(path)


def test_a_courier_key_is_ed25519_or_p256_or_the_issuer_refuses_it(ed_world: World) -> None:
    # An ML-DSA cnf key made a token past every car's cap: minted, never opened.
    for algorithm in (a for a in Algorithm if a.post_quantum):
        device = SigningKey.generate(algorithm).public_key
        with pytest.raises(InvalidRequest, match=r"^courier_key must be an Ed25519 or P-256"):
            ed_world.mint(courier_key=device)


class _Interrupted(BaseException):
    pass


class _InterruptedLedger(MemoryLedger):
    def spend(self, *args: object, **kwargs: object) -> SpendOutcome:
        raise _Interrupted


def test_a_ledger_that_raises_a_base_exception_leaves_no_decision_to_open_with(
    ed_world: World,
) -> None:
    # Fail closed for what is not an Exception: it propagates, so there is no
    # decision, allowed or not, and the car cannot open on one.
    seen: list[object] = []
    verifier = Verifier(trust_store=ed_world.store, ledger=_InterruptedLedger(),
                        clock=ed_world.clock, on_decision=seen.append)
    with pytest.raises(_Interrupted):
        verifier.verify(ed_world.mint(), vehicle_id=VEHICLE, action="trunk")
    assert seen == []


@pytest.mark.parametrize("password", [b"", "secret", bytearray(b"secret")])
def test_a_key_is_never_written_unencrypted_for_a_password_that_is_no_password(
    tmp_path: Path, password: object,
) -> None:
    # b"" wrote a plain PKCS#8 PEM: an unset password variable gave an
    # unencrypted key file to a caller who believed it encrypted.
    key = SigningKey.generate()
    with pytest.raises(InvalidRequest, match=r"^password must be non-empty bytes"):
        key.private_pem(password=password)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"^password must be non-empty bytes"):
        key.save(tmp_path / "k.pem", password=password)  # type: ignore[arg-type]
    assert not (tmp_path / "k.pem").exists()
    assert b"ENCRYPTED" in key.private_pem(password=b"secret")


def _forged_ml_dsa_44_signature(public: bytes, message: bytes) -> bytes:
    """A signature with z = 0 and no hint: it holds for any message under a key
    whose t1 is all zero, since then w' = A z - c t1 2^13 = 0 whatever c is."""
    tr = hashlib.shake_256(public).digest(64)
    mu = hashlib.shake_256(tr + b"\x00\x00" + message).digest(64)
    c_tilde = hashlib.shake_256(mu + bytes(768)).digest(32)  # w1 = 0: 4 rows of 6-bit zeros
    gamma1 = 1 << 17  # each z coefficient is stored as gamma1 - z, in 18 bits
    z = sum(gamma1 << (18 * i) for i in range(4 * 256)).to_bytes(2304, "little")
    return c_tilde + z + bytes(84)


def test_the_forgery_a_weak_ml_dsa_key_allows_is_real() -> None:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    public = bytes(1312)
    message = b"any token at all"
    raw_key = mldsa.MLDSA44PublicKey.from_public_bytes(public)
    raw_key.verify(_forged_ml_dsa_44_signature(public, message), message)  # no InvalidSignature


@pytest.mark.parametrize("t1", [
    bytes(1280),  # t1 = 0
    b"\xff" * 1280,  # every coefficient 1023: t1 * 2^13 = -1 mod q
    os.urandom(960) + bytes(320),  # one row of zeros is enough
])
def test_an_ml_dsa_key_anyone_can_sign_for_is_refused_when_built(t1: bytes) -> None:
    # The ML-DSA analogue of an Ed25519 key of small order: refused wherever
    # a key is built (a trust store entry, a root, a trust update's key).
    rho = os.urandom(32)
    with pytest.raises(InvalidRequest, match="anyone can sign for it"):
        VerificationKey(Algorithm.MLDSA44, rho + t1)
    cose_key = {1: 7, 3: int(Algorithm.MLDSA44), -1: rho + t1}
    with pytest.raises(DecodeError, match="anyone can sign for it"):
        VerificationKey.from_cose_key(cose_key)
    composite = SigningKey.generate(Algorithm.EDDSA_MLDSA65).public_key.raw
    weak_65 = composite[:32] + bytes(1920) + composite[1952:]
    with pytest.raises(InvalidRequest, match="anyone can sign for it"):
        VerificationKey(Algorithm.EDDSA_MLDSA65, weak_65)


@pytest.mark.parametrize("presented", [
    "CAFE\u0301-1",  # the same text decomposed (NFD)
    "CAF\u00c9-\uff11",  # a fullwidth digit: NFKC folds it to "1"
    "CAF\u00c9-1 ",  # a trailing space
    "caf\u00e9-1",  # another case
])
def test_a_vehicle_id_matches_only_its_exact_code_points(
    ed_world: World, presented: str,
) -> None:
    # Ids are compared as given, never normalised: two spellings that a
    # normaliser would fold together are two cars.
    token = ed_world.mint(vehicle_id="CAF\u00c9-1")
    decision = ed_world.verifier.verify_at(token, now=NOW, vehicle_id=presented, action="trunk")
    assert decision.reason is Reason.WRONG_VEHICLE
    assert ed_world.verifier.verify_at(
        token, now=NOW, vehicle_id="CAF\u00c9-1", action="trunk"
    ).allowed


@pytest.mark.parametrize("name", [ISSUER + " ", "\uff52etailer", ISSUER.upper(), "r\u0435tailer"])
def test_an_issuer_name_that_only_looks_like_the_trusted_one_is_another_issuer(
    ed_world: World, name: str,
) -> None:
    lookalike = Issuer(ed_world.key, name, clock=ed_world.clock)
    token = lookalike.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 60)
    decision = ed_world.verifier.verify_at(token, now=NOW, vehicle_id=VEHICLE, action="trunk")
    assert decision.reason is Reason.WRONG_ISSUER


@pytest.mark.parametrize(("centre", "car"), [
    ((0, 1_800_000_000), (0, -1_799_999_990)),  # across the antimeridian, about 11 cm
    ((0, -1_800_000_000), (0, 1_800_000_000)),  # one meridian written twice
    ((900_000_000, 0), (900_000_000, 1_234_567_890)),  # the north pole: every longitude
    ((-899_999_990, 0), (-899_999_990, 1_800_000_000)),  # 1.1 cm from the south pole, 2.2 cm
])
def test_a_geofence_holds_across_the_antimeridian_and_at_the_poles(
    centre: tuple[int, int], car: tuple[int, int],
) -> None:
    fence = Geofence(lat_e7=centre[0], lon_e7=centre[1], radius_m=5)
    assert fence.contains(Location(lat_e7=car[0], lon_e7=car[1]))
    far = Location(lat_e7=car[0] - 1_000 if car[0] > 0 else car[0] + 1_000, lon_e7=car[1])
    assert not fence.contains(far)  # 11 m away is outside 5 m, even there


@pytest.mark.parametrize("now", [-(2**63), -1, 2**40, 2**63, 2**64 + 1])
def test_a_time_far_outside_every_window_is_denied_never_raised(
    ed_world: World, now: int,
) -> None:
    token = ed_world.mint()
    decision = ed_world.verifier.verify_at(token, now=now, vehicle_id=VEHICLE, action="trunk")
    assert decision.reason in {Reason.NOT_YET_VALID, Reason.EXPIRED}
    assert ed_world.ledger.count() == 0


class _FixedClock:
    def __init__(self, value: object) -> None:
        self._value = value

    def now(self) -> object:
        return self._value


@pytest.mark.parametrize("reading", [NOW + 0.5, float(NOW), True, -5, 2**40, "1800000000", None])
def test_an_issuer_mints_only_with_a_clock_that_reads_whole_unix_seconds(
    ed_world: World, reading: object,
) -> None:
    # The reading becomes iat: a float crashed the encoder with struct.error,
    # True minted a token issued at 1970-01-01 00:00:01.
    issuer = Issuer(ed_world.key, ISSUER, clock=_FixedClock(reading))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"^the issuer's clock gave .*, not int Unix seconds$"):
        issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 60)


_EDIT_DEVICE = SigningKey.generate()


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["replace", "insert", "delete", "truncate", "append"]),
    where=st.integers(min_value=0), value=st.integers(0, 255), rich=st.booleans(),
)
def test_any_edit_of_a_minted_token_is_refused_and_never_raises(
    kind: str, where: int, value: int, rich: bool,
) -> None:
    # The bit-flip test changes one bit in place; this one changes any byte to
    # any other value, or moves every byte after it, on the richest token too.
    world = make_world()
    options: dict[str, object] = {}
    if rich:
        options = {"courier_key": _EDIT_DEVICE.public_key, "order_ref": b"order-7",
                   "geofence": Geofence(lat_e7=0, lon_e7=0, radius_m=50),
                   "parcels": ["PARCEL-1", "PARCEL-2"]}
    token = world.mint(**options)
    i = where % len(token)
    if kind == "replace":
        assume(token[i] != value)
        edited = token[:i] + bytes([value]) + token[i + 1:]
    elif kind == "insert":
        edited = token[:i] + bytes([value]) + token[i:]
    elif kind == "delete":
        edited = token[:i] + token[i + 1:]
    elif kind == "truncate":
        edited = token[:i]
    else:
        edited = token + bytes([value])
    challenge = b"c" * 16
    proof = make_proof(_EDIT_DEVICE, token=edited, vehicle_id=VEHICLE, challenge=challenge,
                       scan=["PARCEL-1"] if rich else None)
    decision = world.verifier.verify_at(
        edited, now=NOW, vehicle_id=VEHICLE, action="trunk",
        location=Location(lat_e7=0, lon_e7=0), proof=proof, challenge=challenge,
    )
    assert not decision.allowed
    assert "unexpected" not in decision.detail
    assert world.ledger.count() == 0
    proof = make_proof(_EDIT_DEVICE, token=token, vehicle_id=VEHICLE, challenge=challenge,
                       scan=["PARCEL-1"] if rich else None)
    assert world.verifier.verify_at(  # the token as minted opens: the edit is what refused
        token, now=NOW, vehicle_id=VEHICLE, action="trunk",
        location=Location(lat_e7=0, lon_e7=0), proof=proof, challenge=challenge,
    ).allowed


def test_a_key_file_is_written_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A filling disk answers a write with a short count, then ENOSPC: the key
    # was saved in part, and save() said nothing.
    key = SigningKey.generate()
    real_write = os.write
    calls: list[int] = []

    def short_write(fd: int, data: object) -> int:
        calls.append(fd)
        return real_write(fd, bytes(data)[:7])  # type: ignore[call-overload]

    monkeypatch.setattr(os, "write", short_write)
    key.save(tmp_path / "short.pem")
    assert len(calls) > 1
    monkeypatch.undo()
    assert SigningKey.load(tmp_path / "short.pem").public_key == key.public_key

    def full_disk(fd: int, data: object) -> int:
        if calls:
            calls.clear()
            return real_write(fd, bytes(data)[:7])  # type: ignore[call-overload]
        raise OSError(28, "No space left on device")

    calls.append(0)
    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(KeyFileError, match="No space left on device"):
        key.save(tmp_path / "full.pem")
    assert not (tmp_path / "full.pem").exists()


def test_a_token_spent_under_a_small_skew_is_not_taken_again_under_a_larger_one(
    ed_world: World,
) -> None:
    # One fleet ledger, two verifiers (or one whose policy was raised): the
    # record was kept until exp + 0 s, pruned, and the 300 s verifier opened
    # the same token a second time.
    ledger = MemoryLedger()
    strict = Verifier(trust_store=ed_world.store, ledger=ledger, clock=ed_world.clock,
                      policy=VerifierPolicy(max_skew=0))
    lenient = Verifier(trust_store=ed_world.store, ledger=ledger, clock=ed_world.clock,
                       policy=VerifierPolicy(max_skew=300))
    token = ed_world.mint(expires=NOW + 600)
    assert strict.verify_at(token, now=NOW + 590, vehicle_id=VEHICLE, action="trunk").allowed
    ledger.prune(NOW + 600 + 100)
    replay = lenient.verify_at(token, now=NOW + 600 + 100, vehicle_id=VEHICLE, action="trunk")
    assert replay.reason is Reason.ALREADY_USED
