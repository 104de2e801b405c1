"""Proof of possession: how a handheld answers a car's challenge, and every refusal."""

from __future__ import annotations

import pytest

from trunkkey import Algorithm, InvalidRequest, SigningKey, cbor, make_proof
from trunkkey.cose import verify_sign1
from trunkkey.proof import check_proof, check_scan_proof


def _proof_world() -> tuple[SigningKey, bytes]:
    device = SigningKey.generate()
    return device, b"\xd2token-bytes"


def test_make_proof_refusals_say_why() -> None:
    device, token = _proof_world()
    with pytest.raises(
        InvalidRequest,
        match=r"^device_key must be a trunkkey\.SigningKey or another SigningBackend$",
    ):
        make_proof(device.public_key, token=token, vehicle_id="V",  # type: ignore[arg-type]
                   challenge=bytes(16))
    with pytest.raises(InvalidRequest, match=r"^challenge must be 16 to 32 bytes$"):
        make_proof(device, token=token, vehicle_id="V", challenge=bytes(15))
    # A number raised AttributeError; a control character made a proof no car takes.
    for vehicle_id in (12345, "", "VIN\x00", "V" * 65):
        with pytest.raises(InvalidRequest, match=r"^vehicle_id must "):
            make_proof(device, token=token, vehicle_id=vehicle_id,  # type: ignore[arg-type]
                       challenge=bytes(16))


def test_check_proof_details_name_the_failed_check() -> None:
    device, token = _proof_world()
    challenge = bytes(range(16))
    good = make_proof(device, token=token, vehicle_id="V", challenge=challenge)
    p256 = SigningKey.generate(Algorithm.ES256)
    by_p256 = make_proof(p256, token=token, vehicle_id="V", challenge=challenge)

    def problem(proof: bytes, **over: object) -> str | None:
        args: dict[str, object] = {"key": device.public_key, "token": token, "vehicle_id": "V",
                                   "challenge": challenge}
        args.update(over)
        return check_proof(proof, **args)  # type: ignore[arg-type]

    assert problem(good) is None
    assert problem(by_p256) == "proof header is not {alg of the cnf key, typ proof}"
    assert problem(good, token=token + b"x") == (
        "proof signature does not verify for this token, vehicle and key"
    )
    assert problem(good, vehicle_id="W") == (
        "proof signature does not verify for this token, vehicle and key"
    )
    assert problem(good, challenge=bytes(16)) == "proof answers another challenge"
    assert problem(bytearray(good)) == "proof is not bytes of a bounded size"  # type: ignore[arg-type]


@pytest.mark.parametrize("vehicle_id", ["V", "v" * 23, "v" * 24, "é" * 32])
def test_proof_aad_is_the_documented_cbor_array(vehicle_id: str) -> None:
    import hashlib

    from trunkkey.proof import proof_aad

    token = b"\xd2any token bytes"
    assert proof_aad(token, vehicle_id) == cbor.encode(
        [vehicle_id, hashlib.sha256(token).digest()]
    )
    # So a standard COSE verifier given the documented AAD accepts the proof.
    device = SigningKey.generate()
    proof = make_proof(device, token=token, vehicle_id=vehicle_id, challenge=bytes(16))
    aad = cbor.encode([vehicle_id, hashlib.sha256(token).digest()])
    assert verify_sign1(proof, device.public_key, external_aad=aad) == bytes(16)


def test_check_scan_proof_details_name_the_failed_check() -> None:
    device, token = _proof_world()
    challenge = bytes(range(16))

    def problem(proof: bytes) -> str | None:
        return check_scan_proof(proof, key=device.public_key, token=token, vehicle_id="V",
                                challenge=challenge)[0]

    assert problem(b"\xd2\x84\x40") == "proof is malformed: truncated COSE_Sign1"
    # A scan signed by another algorithm's key: the header names the wrong alg.
    other = SigningKey.generate(Algorithm.ES256)
    foreign = make_proof(other, token=token, vehicle_id="V", challenge=challenge, scan=["P-1"])
    assert problem(foreign) == "proof header is not {alg of the cnf key, typ proof}"
    own = make_proof(device, token=token, vehicle_id="V", challenge=challenge, scan=["P-1"])
    assert check_scan_proof(own, key=device.public_key, token=token, vehicle_id="V",
                            challenge=challenge) == (None, ("P-1",))
