"""The COSE working group's published examples, read in place.

Two layers are under test, and they differ on purpose:

* :func:`trunkkey.cose.verify_sign1`, the standard RFC 9052 verifier, must
  accept every ``sign-pass-*``, ``eddsa-sig-01`` and RFC 8392 ``CWT/A_3`` with
  the key in the file, and reject every ``sign-fail-*``;
* the strict token profile (:func:`trunkkey.cose.parse_sign1` and the
  :class:`~trunkkey.Verifier`) must refuse these same messages, because none
  of them is a trunkkey token: they carry an unprotected header, no tag, or no
  ``typ``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import cbor2
import pytest

import _vectors
from trunkkey import (
    Algorithm,
    DecodeError,
    ManualClock,
    MemoryLedger,
    Reason,
    SignatureError,
    TrustedKey,
    TrustStore,
    VerificationKey,
    Verifier,
)
from trunkkey.cose import HeaderProblem, decode_protected, parse_sign1, sig_structure, verify_sign1

COSE_WG = "cose-wg"
_ROOT = _vectors.vector_dir(COSE_WG)


def _files(pattern: str) -> list[Any]:
    if _ROOT is None:
        return [_vectors.MISSING]
    found = sorted(_ROOT.glob(pattern))
    return [pytest.param(path, id=path.stem) for path in found]


PASS_FILES = (
    _files("sign1-tests/sign-pass-*.json")
    + _files("eddsa-examples/eddsa-sig-01.json")
    + _files("CWT/A_3.json")
)
FAIL_FILES = _files("sign1-tests/sign-fail-*.json")


def _need(path: Path | None) -> dict[str, Any]:
    if path is None:
        _vectors.missing(COSE_WG)
    assert path is not None
    return _vectors.load_json(path)  # type: ignore[no-any-return]


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _coordinate(jwk: dict[str, str], name: str) -> bytes:
    if f"{name}_hex" in jwk:
        return bytes.fromhex(jwk[f"{name}_hex"])
    return _b64url(jwk[name])


def key_from_example(example: dict[str, Any]) -> VerificationKey:
    """The public half of the example's signing key, as a trunkkey key.

    The key fixes the algorithm, as trunkkey's standard verifier requires.
    """
    jwk = example["input"]["sign0"]["key"]
    if jwk["kty"] == "EC":
        assert jwk["crv"] == "P-256"
        return VerificationKey(Algorithm.ES256, _coordinate(jwk, "x") + _coordinate(jwk, "y"))
    assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
    return VerificationKey(Algorithm.EDDSA, _coordinate(jwk, "x"))


def _plaintext(example: dict[str, Any]) -> bytes:
    given = example["input"]
    if "plaintext_hex" in given:
        return bytes.fromhex(given["plaintext_hex"])
    return str(given["plaintext"]).encode("utf-8")


def _external(example: dict[str, Any]) -> bytes:
    return bytes.fromhex(example["input"]["sign0"].get("external", ""))


def _message(example: dict[str, Any]) -> bytes:
    return bytes.fromhex(example["output"]["cbor"])


@pytest.mark.parametrize("path", PASS_FILES)
def test_pass_example_verifies_and_returns_the_payload(path: Path | None) -> None:
    example = _need(path)
    assert not example.get("fail", False)
    payload = verify_sign1(
        _message(example), key_from_example(example), external_aad=_external(example)
    )
    assert payload == _plaintext(example)


@pytest.mark.parametrize("path", PASS_FILES)
def test_pass_example_to_be_signed_bytes(path: Path | None) -> None:
    """trunkkey builds the published Sig_structure, and the key verifies over it."""
    example = _need(path)
    item = cbor2.loads(_message(example))
    protected, _unprotected, payload, signature = (
        item.value if isinstance(item, cbor2.CBORTag) else item
    )
    expected = bytes.fromhex(example["intermediates"]["ToBeSign_hex"])
    # RFC 9052 section 4.4: a protected bucket with no attributes enters the
    # Sig_structure as a zero-length bstr, even if the message sent h'A0'
    # (that is what sign-pass-01, "Redo protected", tests).
    body_protected = protected if protected and cbor2.loads(protected) else b""
    assert sig_structure(body_protected, payload, _external(example)) == expected
    assert key_from_example(example).is_valid_signature(signature, expected)


@pytest.mark.parametrize("path", PASS_FILES)
def test_pass_example_is_not_a_trunkkey_token(path: Path | None) -> None:
    """The strict profile refuses what RFC 9052 allows: that is the point of it."""
    example = _need(path)
    message = _message(example)
    item = cbor2.loads(message)
    tagged = isinstance(item, cbor2.CBORTag)
    unprotected = (item.value if tagged else item)[1]
    if unprotected or not tagged:
        # Unprotected headers are unsigned, and the tag names the structure:
        # the token parser refuses both before anything else is looked at.
        with pytest.raises(DecodeError):
            parse_sign1(message)
        return
    # RFC 8392 A.3 has the strict envelope (tag 18, empty unprotected header,
    # 64-byte signature) but no typ: a genuine CWT, and still not a token.
    parts = parse_sign1(message)
    assert decode_protected(parts.protected) is HeaderProblem.WRONG_TYPE
    key = key_from_example(example)
    verifier = Verifier(
        trust_store=TrustStore([TrustedKey.create(key, "coap://as.example.com")]),
        ledger=MemoryLedger(),
        clock=ManualClock(1443944944),
    )
    decision = verifier.verify(message, vehicle_id="coap://light.example.com", action="trunk")
    assert decision.reason is Reason.WRONG_TYPE
    assert decision.claims is None


@pytest.mark.parametrize("path", FAIL_FILES)
def test_fail_example_is_rejected(path: Path | None) -> None:
    example = _need(path)
    assert example.get("fail") is True
    with pytest.raises((DecodeError, SignatureError)):
        verify_sign1(_message(example), key_from_example(example), external_aad=_external(example))


@pytest.mark.parametrize("path", FAIL_FILES)
def test_fail_example_is_rejected_by_the_token_parser(path: Path | None) -> None:
    example = _need(path)
    with pytest.raises(DecodeError):
        parse_sign1(_message(example))


def test_cwt_a3_claims_are_rfc8392s() -> None:
    """The A.3 payload, once verified, is the claims set RFC 8392 A.1 prints."""
    if _ROOT is None:
        _vectors.missing(COSE_WG)
    assert _ROOT is not None
    example = _vectors.load_json(_ROOT / "CWT" / "A_3.json")
    payload = verify_sign1(_message(example), key_from_example(example))
    assert cbor2.loads(payload) == {
        1: "coap://as.example.com",
        2: "erikw",
        3: "coap://light.example.com",
        4: 1444064944,
        5: 1443944944,
        6: 1443944944,
        7: bytes.fromhex("0b71"),
    }


def test_pass_02_needs_its_external_aad() -> None:
    """Without the external AAD it was signed with, sign-pass-02 must not verify."""
    if _ROOT is None:
        _vectors.missing(COSE_WG)
    assert _ROOT is not None
    example = _vectors.load_json(_ROOT / "sign1-tests" / "sign-pass-02.json")
    assert _external(example)
    with pytest.raises(SignatureError):
        verify_sign1(_message(example), key_from_example(example))


def test_key_decides_the_algorithm() -> None:
    """An ES256 example checked with an Ed25519 key is refused as an alg mismatch,
    never re-interpreted under the message's alg."""
    if _ROOT is None:
        _vectors.missing(COSE_WG)
    assert _ROOT is not None
    example = _vectors.load_json(_ROOT / "sign1-tests" / "sign-pass-03.json")
    eddsa = _vectors.load_json(_ROOT / "eddsa-examples" / "eddsa-sig-01.json")
    with pytest.raises(SignatureError, match="alg"):
        verify_sign1(_message(example), key_from_example(eddsa))


def test_expected_examples_are_present() -> None:
    """The glob found what the README promises, so a renamed file cannot pass vacuously."""
    if _ROOT is None:
        _vectors.missing(COSE_WG)
    assert _ROOT is not None
    names = {p.stem for p in (_ROOT / "sign1-tests").glob("*.json")}
    assert {"sign-pass-01", "sign-pass-02", "sign-pass-03"} <= names
    assert {n for n in names if n.startswith("sign-fail-")} >= {
        "sign-fail-01", "sign-fail-02", "sign-fail-03", "sign-fail-04", "sign-fail-06",
        "sign-fail-07",
    }
    assert (_ROOT / "eddsa-examples" / "eddsa-sig-01.json").is_file()
    assert (_ROOT / "CWT" / "A_3.json").is_file()
