"""python-cwt, an independent CWT/COSE implementation, reads trunkkey tokens.

Only trunkkey's *public* key crosses over, exported the two ways a partner
would receive it (COSE_Key and PEM). python-cwt checks ``exp``/``nbf`` against
the host's real clock and offers no way to inject one, so these tokens are
minted with a window around the real current time; reading ``time.time()``
once is not sleeping, and the window is hours wide.

python-cwt pins cbor2 below 6, so these tests run in their own environment and
the main suite never collects them (tests/conftest.py)::

    python3 -m venv .venv-interop && .venv-interop/bin/python -m pip install '.[interop]'
    .venv-interop/bin/python -m pytest tests/interop
"""

from __future__ import annotations

import time

import cbor2
import cwt
import pytest
from cwt import COSEKey

from trunkkey import (
    Action,
    Algorithm,
    Geofence,
    Issuer,
    ManualClock,
    MemoryLedger,
    Purpose,
    Reason,
    SigningKey,
    TrustedKey,
    TrustStore,
    VerificationKey,
    Verifier,
)
from trunkkey.claims import ACCESS, GEOFENCE, ORDER, access_bits
from trunkkey.cose import verify_sign1

VEHICLE = "WVWZZZ1JZXW000001"
ISSUER = "retailer.example"
# RFC 8392 claim keys as python-cwt returns them.
ISS, AUD, EXP, NBF, IAT, CTI = 1, 3, 4, 5, 6, 7

ALGORITHMS = pytest.mark.parametrize(
    "algorithm", [Algorithm.EDDSA, Algorithm.ES256], ids=["EdDSA", "ES256"]
)


def _cose_key(public: VerificationKey) -> COSEKey:
    return COSEKey.from_bytes(public.to_cose_key())


def _pem_key(public: VerificationKey) -> COSEKey:
    # A PEM carries no algorithm or kid: the receiver states both, as it should.
    return COSEKey.from_pem(public.to_pem(), alg=public.algorithm.cose_name, kid=public.kid)


KEY_FORMS = pytest.mark.parametrize("export", [_cose_key, _pem_key], ids=["cose_key", "pem"])


def _mint_now(signing_key: SigningKey, **extra: object) -> tuple[bytes, int, bytes]:
    now = int(time.time())
    token_id = bytes(range(16))
    issuer = Issuer(signing_key, ISSUER, clock=ManualClock(now), _token_ids=lambda n: token_id)
    token = issuer.mint(
        vehicle_id=VEHICLE,
        action=extra.pop("action", Action.TRUNK),  # type: ignore[arg-type]
        not_before=now - 600,
        expires=now + 4 * 3600,
        **extra,  # type: ignore[arg-type]
    )
    return token, now, token_id


@ALGORITHMS
@KEY_FORMS
def test_python_cwt_verifies_and_decodes_a_trunkkey_token(algorithm: Algorithm, export) -> None:
    signer = SigningKey.generate(algorithm)
    token, now, token_id = _mint_now(signer)
    claims = cwt.decode(token, export(signer.public_key))
    assert claims == {
        ISS: ISSUER,
        AUD: VEHICLE,
        EXP: now + 4 * 3600,
        NBF: now - 600,
        IAT: now,
        CTI: token_id,
        ACCESS: access_bits(Action.TRUNK, Purpose.DELIVERY),
    }


@ALGORITHMS
def test_python_cwt_reads_the_optional_profile_claims(algorithm: Algorithm) -> None:
    signer = SigningKey.generate(algorithm)
    fence = Geofence(lat_e7=481_374_300, lon_e7=115_754_900, radius_m=150)
    courier = SigningKey.generate(Algorithm.EDDSA).public_key
    token, _now, _id = _mint_now(
        signer, action=Action.UNLOCK_RELOCK, purpose=Purpose.RETURN_PICKUP, geofence=fence,
        courier_key=courier, order_ref=b"order-0001",
    )
    claims = cwt.decode(token, _cose_key(signer.public_key))
    assert claims[ACCESS] == access_bits(Action.UNLOCK_RELOCK, Purpose.RETURN_PICKUP)
    assert claims[GEOFENCE] == [481_374_300, 115_754_900, 150]
    assert claims[ORDER] == b"order-0001"
    # RFC 8747: cnf (8) holds the courier's COSE_Key under label 1.
    assert claims[8] == {1: courier.cose_key_map()}


@ALGORITHMS
@pytest.mark.parametrize("where", ["signature", "payload", "protected"])
def test_python_cwt_rejects_a_flipped_bit(algorithm: Algorithm, where: str) -> None:
    signer = SigningKey.generate(algorithm)
    token, _now, _id = _mint_now(signer)
    # Positions: the last signature byte; a byte inside the vehicle id; the
    # last byte of the protected header (the typ value).
    index = {
        "signature": len(token) - 1,
        "payload": token.index(VEHICLE.encode()) + 3,
        "protected": 2 + token[2] - 0x40,
    }[where]
    tampered = bytearray(token)
    tampered[index] ^= 0x01
    with pytest.raises(cwt.CWTError):
        cwt.decode(bytes(tampered), _cose_key(signer.public_key))
    # trunkkey's own verifier agrees.
    verifier = Verifier(
        trust_store=TrustStore([TrustedKey.create(signer.public_key, ISSUER)]),
        ledger=MemoryLedger(),
        clock=ManualClock(int(time.time())),
    )
    decision = verifier.verify(bytes(tampered), vehicle_id=VEHICLE, action="trunk")
    assert not decision.allowed


@ALGORITHMS
def test_python_cwt_refuses_another_key(algorithm: Algorithm) -> None:
    signer = SigningKey.generate(algorithm)
    token, _now, _id = _mint_now(signer)
    other = SigningKey.generate(algorithm).public_key
    # Under its own kid, python-cwt finds no key for the token's kid; it says
    # so with a bare ValueError, outside its own error tree.
    with pytest.raises((cwt.CWTError, ValueError), match="key is not found"):
        cwt.decode(token, _cose_key(other))
    # Relabelled with the token's kid, the signature check itself must refuse it.
    impostor = COSEKey.from_pem(other.to_pem(), alg=algorithm.cose_name, kid=signer.kid)
    with pytest.raises(cwt.VerifyError):
        cwt.decode(token, impostor)


def test_python_cwt_applies_the_window_too() -> None:
    """An expired trunkkey token is refused by python-cwt's own clock check,
    so the interop above is not passing by ignoring time."""
    signer = SigningKey.generate(Algorithm.EDDSA)
    now = int(time.time())
    issuer = Issuer(signer, ISSUER, clock=ManualClock(now - 10 * 3600))
    token = issuer.mint(
        vehicle_id=VEHICLE, action="trunk", not_before=now - 10 * 3600,
        expires=now - 6 * 3600,
    )
    with pytest.raises(cwt.VerifyError, match="expired"):
        cwt.decode(token, _cose_key(signer.public_key))


@ALGORITHMS
def test_trunkkey_verifies_what_python_cwt_signs(algorithm: Algorithm) -> None:
    """The other direction, at the COSE layer: python-cwt signs a CWT with a
    key trunkkey exported; trunkkey's standard verifier accepts it, and the
    strict token verifier refuses it (no trunkkey typ, kid outside the
    protected header)."""
    signer = SigningKey.generate(algorithm)
    private = COSEKey.from_bytes(signer.private_cose_key())
    now = int(time.time())
    minted = cwt.encode({ISS: ISSUER, AUD: VEHICLE, EXP: now + 3600, NBF: now, IAT: now},
                        private)
    payload = verify_sign1(minted, signer.public_key)
    assert cbor2.loads(payload) == cwt.decode(minted, _cose_key(signer.public_key))
    assert cbor2.loads(payload)[AUD] == VEHICLE
    verifier = Verifier(
        trust_store=TrustStore([TrustedKey.create(signer.public_key, ISSUER)]),
        ledger=MemoryLedger(),
        clock=ManualClock(now),
    )
    decision = verifier.verify(minted, vehicle_id=VEHICLE, action="trunk")
    # python-cwt puts the kid in the unsigned header, which the profile refuses first.
    assert decision.reason is Reason.MALFORMED
    assert "unprotected" in decision.detail
