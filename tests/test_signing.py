"""Anything that implements SigningBackend signs every trunkkey object, exactly as a SigningKey.

These tests need no hardware: a backend that wraps a :class:`SigningKey`
stands in for a token (``tests/test_pkcs11.py`` runs the real one). Ed25519
is deterministic, so a backend and the key it wraps must produce the same
bytes through every signing entry point: nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkkey import (
    Action,
    Algorithm,
    InvalidRequest,
    Issuer,
    ManualClock,
    MemoryLedger,
    Purpose,
    Reason,
    SignatureError,
    SigningBackend,
    SigningKey,
    TrustedKey,
    TrustStore,
    Typ,
    VerificationKey,
    Verifier,
)
from trunkkey.checkpoint import Checkpoint, sign_checkpoint, sign_log_ack
from trunkkey.consent import (
    KeyEntry,
    Role,
    access_mask,
    make_grant,
    root_scope,
    sign_delegation,
    sign_revocation_list,
    sign_root_grant,
    sign_trust_update,
)
from trunkkey.cose import open_sign1, parse_sign1, sign1
from trunkkey.keys import unique_signature
from trunkkey.proof import make_proof
from trunkkey.vehicle import Receipt, sign_receipt
from trunkkey.vehicle.timekeeping import make_time_sync

START = 1_812_000_000
_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class Wrapped:
    """A backend around a key in memory; ``transform`` changes what it returns."""

    def __init__(self, key: SigningKey, transform: Callable[[bytes], bytes] = bytes) -> None:
        self.key, self.transform, self.calls = key, transform, 0

    @property
    def algorithm(self) -> Algorithm:
        return self.key.algorithm

    @property
    def kid(self) -> bytes:
        return self.key.kid

    @property
    def public_key(self) -> VerificationKey:
        return self.key.public_key

    def sign(self, message: bytes) -> bytes:
        self.calls += 1
        return self.transform(self.key.sign(message))


def _high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (_ORDER - s).to_bytes(32, "big")


def test_a_signing_key_is_a_signing_backend() -> None:
    for algorithm in Algorithm:
        assert isinstance(SigningKey.generate(algorithm), SigningBackend)
    assert not isinstance(SigningKey.generate().public_key, SigningBackend)


def _grant(key: SigningBackend, **kw: object) -> object:
    fields: dict[str, object] = {
        "grantee": key.public_key, "grantee_name": "retailer.example",
        "access": access_mask([Action.TRUNK], [Purpose.DELIVERY]), "not_before": START,
        "expires": START + 3600, "depth": 1, "vehicle_ids": ["VIN-1"],
    }
    fields.update(kw)
    return make_grant(**fields)  # type: ignore[arg-type]


_CHECKPOINT = {"vehicle_id": "VIN-1", "size": 0, "root": b"\x00" * 32, "time": START}


#: Every public way trunkkey signs an object, as a function of the signing key.
SIGNERS: dict[str, Callable[[SigningBackend], bytes]] = {
    "token": lambda k: Issuer(k, "retailer.example", clock=ManualClock(START),
                              _token_ids=lambda n: b"\x07" * n).mint(
        vehicle_id="VIN-1", action="trunk", not_before=START, expires=START + 60),
    "proof": lambda k: make_proof(k, token=b"token", vehicle_id="VIN-1", challenge=b"c" * 16),
    "root grant": lambda k: sign_root_grant(k, _grant(k)),  # type: ignore[arg-type]
    "delegation": lambda k: sign_delegation(
        k, root_scope(_grant(k)), _grant(k, depth=0, vehicle_ids=None)),  # type: ignore[arg-type]
    "revocation list": lambda k: sign_revocation_list(k, version=1, issued_at=START),
    "trust update": lambda k: sign_trust_update(
        k, version=1, issued_at=START,
        set_keys=[KeyEntry(role=Role.ROOT, name="root", key=k.public_key, not_before=0,
                           not_after=START)]),
    "receipt": lambda k: sign_receipt(k, Receipt(
        vehicle_id="VIN-1", token_id=b"\x01" * 16, action=Action.TRUNK,
        purpose=Purpose.DELIVERY, opened_at=1, closed_at=2, relocked_at=2,
        relock_cause="closed")),
    "time sync": lambda k: make_time_sync(k, vehicle_id="VIN-1", nonce=b"n" * 16, time=START),
    "checkpoint": lambda k: sign_checkpoint(k, Checkpoint(**_CHECKPOINT)),
    "log ack": lambda k: sign_log_ack(k, Checkpoint(**_CHECKPOINT)),
}


@pytest.mark.parametrize("what", sorted(SIGNERS))
def test_every_signed_object_comes_out_the_same_from_a_backend_as_from_the_key(
    what: str,
) -> None:
    key = SigningKey.generate()  # Ed25519: deterministic, so the bytes must match
    backend = Wrapped(key)
    assert SIGNERS[what](backend) == SIGNERS[what](key)
    assert backend.calls == 1


def test_a_token_from_a_backend_verifies() -> None:
    backend = Wrapped(SigningKey.generate(Algorithm.ES256))
    clock = ManualClock(START)
    token = Issuer(backend, "retailer.example", clock=clock).mint(
        vehicle_id="VIN-1", action="trunk", not_before=START, expires=START + 60)
    verifier = Verifier(
        trust_store=TrustStore([TrustedKey.create(backend.public_key, "retailer.example")]),
        ledger=MemoryLedger(), clock=clock,
    )
    assert verifier.verify(token, vehicle_id="VIN-1", action="trunk").reason is Reason.ALLOWED


def test_a_high_s_signature_from_a_backend_leaves_sign1_in_the_low_s_form() -> None:
    key = SigningKey.generate(Algorithm.ES256)
    message = sign1(Wrapped(key, _high_s), b"payload", typ=Typ.RECEIPT)
    signature = parse_sign1(message).signature
    assert int.from_bytes(signature[32:], "big") <= _ORDER // 2
    assert open_sign1(message, key.public_key, typ=Typ.RECEIPT, kid=key.kid).payload == b"payload"


@given(st.binary(max_size=64))
def test_the_unique_form_is_the_same_for_both_s_and_leaves_ed25519_alone(message: bytes) -> None:
    p256, ed = SigningKey.generate(Algorithm.ES256), SigningKey.generate()
    low = p256.sign(message)
    assert unique_signature(Algorithm.ES256, _high_s(low)) == low
    assert unique_signature(Algorithm.ES256, low) == low
    assert p256.public_key.is_valid_unique_signature(low, message)
    assert unique_signature(Algorithm.EDDSA, ed.sign(message)) == ed.sign(message)


def test_a_backend_that_signs_with_another_key_fails_at_signing() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    liar = Wrapped(key, lambda _: other.sign(b"anything"))
    with pytest.raises(SignatureError, match="does not verify under its key"):
        Issuer(liar, "retailer.example").mint(
            vehicle_id="VIN-1", action="trunk", not_before=START, expires=START + 60)


@pytest.mark.parametrize("returned", [b"", b"\x01" * 63, b"\x01" * 65, bytearray(64)])
def test_a_backend_that_returns_no_signature_fails_at_signing(returned: bytes) -> None:
    backend = Wrapped(SigningKey.generate(), lambda _: returned)
    with pytest.raises(SignatureError, match=r"^a EdDSA signature is 64 bytes$"):
        sign1(backend, b"payload", typ=Typ.RECEIPT)


def test_a_backend_that_names_another_kid_or_algorithm_is_refused_before_it_signs() -> None:
    class OtherKid(Wrapped):
        @property
        def kid(self) -> bytes:
            return b"\x00" * 8

    class OtherAlgorithm(Wrapped):
        @property
        def algorithm(self) -> Algorithm:
            return Algorithm.ES256

    for backend in (OtherKid(SigningKey.generate()), OtherAlgorithm(SigningKey.generate())):
        with pytest.raises(InvalidRequest, match="names another algorithm or kid"):
            Issuer(backend, "retailer.example")
        assert backend.calls == 0


def test_something_that_cannot_sign_is_refused_by_name() -> None:
    public = SigningKey.generate().public_key
    with pytest.raises(
        InvalidRequest,
        match=r"^signing_key must be a trunkkey\.SigningKey or another SigningBackend$",
    ):
        Issuer(public, "retailer.example")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"^root_key must be"):
        sign_revocation_list(public, version=1, issued_at=START)  # type: ignore[arg-type]
