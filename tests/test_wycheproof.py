"""Project Wycheproof's Ed25519 and ECDSA P-256 (raw ``r || s``) vectors, read in place.

They go through trunkkey's own :class:`~trunkkey.VerificationKey` — the one
object both the COSE layer and the token verifier call to check a signature —
not through libsodium or OpenSSL directly, so any parsing trunkkey does in
front of the library (lengths, the range of ``r`` and ``s``, the point
encoding) is tested too. One test per ``tcId``, so a failure names its case.

The COSE layer signs a Sig_structure, which Wycheproof's messages are not, so
no vector can be replayed inside a COSE_Sign1 as is. Instead the last tests
show that :func:`~trunkkey.cose.verify_sign1` and :class:`~trunkkey.Verifier`
decide a signature by that same key method and nothing else, and replay
Wycheproof's malleability and range edge cases on real trunkkey tokens.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import _vectors
from trunkkey import (
    Algorithm,
    ManualClock,
    MemoryLedger,
    Reason,
    SignatureError,
    SigningKey,
    TrustedKey,
    TrustStore,
    VerificationKey,
    Verifier,
)
from trunkkey.cose import parse_sign1, sig_structure, to_be_signed, verify_sign1

WYCHEPROOF = "wycheproof"
FILES = {
    Algorithm.EDDSA: "ed25519_test.json",
    Algorithm.ES256: "ecdsa_secp256r1_sha256_p1363_test.json",
}
_ROOT = _vectors.vector_dir(WYCHEPROOF)
# Ed25519's group order L and P-256's order n.
ED25519_L = 2**252 + 27742317777372353535851937790883648493
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _public_raw(algorithm: Algorithm, group: dict[str, Any]) -> bytes:
    key = group["publicKey"]
    if algorithm is Algorithm.EDDSA:
        return bytes.fromhex(key["pk"])
    # wx / wy are big-endian integers in hex, sometimes with a leading 00.
    return int(key["wx"], 16).to_bytes(32, "big") + int(key["wy"], 16).to_bytes(32, "big")


def _cases() -> list[Any]:
    if _ROOT is None:
        return [_vectors.MISSING]
    cases = []
    for algorithm, name in FILES.items():
        data = _vectors.load_json(_ROOT / name)
        for group in data["testGroups"]:
            raw = _public_raw(algorithm, group)
            for test in group["tests"]:
                case = (algorithm, raw, test)
                cases.append(pytest.param(case, id=f"{algorithm.cose_name}-tc{test['tcId']}"))
    return cases


CASES = _cases()


@pytest.mark.parametrize("case", CASES)
def test_wycheproof_case(case: tuple[Algorithm, bytes, dict[str, Any]] | None) -> None:
    if case is None:
        _vectors.missing(WYCHEPROOF)
    assert case is not None
    algorithm, raw, test = case
    signature, message = bytes.fromhex(test["sig"]), bytes.fromhex(test["msg"])
    # Every public key in these two files is a valid point, so building the key
    # must succeed; a refusal here would hide cases rather than decide them.
    key = VerificationKey(algorithm, raw)
    accepted = key.is_valid_signature(signature, message)
    try:
        key.verify(signature, message)
        verified = True
    except SignatureError:
        verified = False
    assert accepted == verified, "is_valid_signature and verify disagree"
    result = test["result"]
    if result == "valid":
        assert accepted, f"valid case refused: {test['comment']} {test['flags']}"
    elif result == "invalid":
        assert not accepted, f"invalid case accepted: {test['comment']} {test['flags']}"
    else:
        # "acceptable" may go either way; the two methods agreeing is what we hold to.
        assert result == "acceptable"


def test_the_files_hold_what_the_readme_says() -> None:
    """Guard against a truncated or swapped file passing vacuously."""
    if _ROOT is None:
        _vectors.missing(WYCHEPROOF)
    counts = Counter(
        (case.values[0][0], case.values[0][2]["result"]) for case in CASES
    )
    assert counts[(Algorithm.EDDSA, "valid")] + counts[(Algorithm.EDDSA, "invalid")] == 151
    assert counts[(Algorithm.ES256, "valid")] + counts[(Algorithm.ES256, "invalid")] == 262
    assert counts[(Algorithm.EDDSA, "invalid")] > 0
    assert counts[(Algorithm.ES256, "invalid")] > 0


# -- The COSE layer and the verifier use exactly this key method ---------------


class _RecordingKey(VerificationKey):
    """A real key that also records what it was asked to verify."""

    __slots__ = ("calls", "forced")

    def __init__(self, algorithm: Algorithm, raw: bytes, forced: bool | None = None) -> None:
        super().__init__(algorithm, raw)
        self.calls: list[tuple[bytes, bytes]] = []
        self.forced = forced

    def _check_signature(self, signature: bytes, message: bytes, *, unique: bool) -> bool:
        # The one path under is_valid_signature and is_valid_unique_signature
        # (the latter also refuses high-s ECDSA twins on trunkkey objects).
        self.calls.append((signature, message))
        if self.forced is not None:
            return self.forced
        return super()._check_signature(signature, message, unique=unique)


#: Wycheproof's cases are Ed25519's and ECDSA's; ML-DSA has its own tests (test_pq.py).
CLASSICAL = [algorithm for algorithm in Algorithm if not algorithm.post_quantum]


@pytest.mark.parametrize("algorithm", CLASSICAL)
def test_cose_layer_decides_by_the_key_method(algorithm: Algorithm) -> None:
    signer = SigningKey.generate(algorithm)
    payload = b"wycheproof through COSE"
    protected = b"\xa1\x01" + (b"\x27" if algorithm is Algorithm.EDDSA else b"\x26")
    signature = signer.sign(sig_structure(protected, payload))
    message = b"\xd2\x84\x43" + protected + b"\xa0\x57" + payload + b"\x58\x40" + signature
    key = _RecordingKey(algorithm, signer.public_key.raw)
    assert verify_sign1(message, key) == payload
    assert key.calls == [(signature, sig_structure(protected, payload))]
    # Whatever the key method says is the COSE layer's answer: no second opinion.
    refusing = _RecordingKey(algorithm, signer.public_key.raw, forced=False)
    with pytest.raises(SignatureError):
        verify_sign1(message, refusing)
    assert len(refusing.calls) == 1


def _token_world(key: VerificationKey) -> Verifier:
    return Verifier(
        trust_store=TrustStore([TrustedKey.create(key, "retailer")]),
        ledger=MemoryLedger(),
        clock=ManualClock(1_800_000_000),
    )


def _mint(signer: SigningKey) -> bytes:
    from trunkkey import Issuer

    issuer = Issuer(signer, "retailer", clock=ManualClock(1_800_000_000))
    return issuer.mint(
        vehicle_id="VIN-1", action="trunk", not_before=1_800_000_000,
        expires=1_800_003_600,
    )


@pytest.mark.parametrize("algorithm", CLASSICAL)
def test_token_verifier_decides_by_the_key_method(algorithm: Algorithm) -> None:
    signer = SigningKey.generate(algorithm)
    token = _mint(signer)
    key = _RecordingKey(algorithm, signer.public_key.raw, forced=False)
    decision = _token_world(key).verify(token, vehicle_id="VIN-1", action="trunk")
    assert decision.reason is Reason.BAD_SIGNATURE
    assert len(key.calls) == 1
    assert key.calls[0][0] == token[-64:]


# -- Wycheproof's edge cases, replayed on real tokens ---------------------------


def _with_signature(token: bytes, signature: bytes) -> bytes:
    assert len(signature) == 64
    return token[:-64] + signature


def _denied(algorithm: Algorithm, signer: SigningKey, token: bytes) -> Reason:
    decision = _token_world(signer.public_key).verify(
        token, vehicle_id="VIN-1", action="trunk"
    )
    return decision.reason


def test_ed25519_non_canonical_s_is_refused_on_a_token() -> None:
    """S + L verifies under a lax check (Wycheproof "SignatureMalleability")."""
    signer = SigningKey.generate(Algorithm.EDDSA)
    token = _mint(signer)
    r, s = token[-64:-32], int.from_bytes(token[-32:], "little")
    malleated = r + (s + ED25519_L).to_bytes(32, "little")
    assert _denied(Algorithm.EDDSA, signer, _with_signature(token, malleated)) is (
        Reason.BAD_SIGNATURE
    )
    assert _denied(Algorithm.EDDSA, signer, token) is Reason.ALLOWED


_MAX = 2**256 - 1


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda r, s: (0, s), id="r=0"),
        pytest.param(lambda r, s: (r, 0), id="s=0"),
        pytest.param(lambda r, s: (0, 0), id="r=s=0"),
        pytest.param(lambda r, s: (P256_N, s), id="r=n"),
        pytest.param(lambda r, s: (r, P256_N), id="s=n"),
        pytest.param(lambda r, s: (_MAX, s), id="r=2^256-1"),
        pytest.param(lambda r, s: (r, _MAX), id="s=2^256-1"),
        pytest.param(lambda r, s: (1, 1), id="r=s=1"),
    ],
)
def test_es256_out_of_range_r_s_is_refused_on_a_token(mutate: Any) -> None:
    signer = SigningKey.generate(Algorithm.ES256)
    token = _mint(signer)
    r, s = int.from_bytes(token[-64:-32], "big"), int.from_bytes(token[-32:], "big")
    new_r, new_s = mutate(r, s)
    forged = new_r.to_bytes(32, "big") + new_s.to_bytes(32, "big")
    assert _denied(Algorithm.ES256, signer, _with_signature(token, forged)) is (
        Reason.BAD_SIGNATURE
    )


def test_es256_high_s_twin_of_a_token() -> None:
    """ECDSA's (r, n - s) twin is a *valid* signature for Wycheproof (tcId 1),
    so the key's general check accepts it. trunkkey signs only low-s, so a
    high-s token can only be someone's rewrite of a real one, and the strict
    profile refuses it outright: the twin never opens, first or second.
    """
    signer = SigningKey.generate(Algorithm.ES256)
    token = _mint(signer)
    r, s = token[-64:-32], int.from_bytes(token[-32:], "big")
    assert s <= P256_N // 2, "trunkkey signs in low-s form"
    twin = _with_signature(token, r + (P256_N - s).to_bytes(32, "big"))
    assert twin != token
    parts = parse_sign1(twin)
    assert signer.public_key.is_valid_signature(
        parts.signature, to_be_signed(parts.protected_item, parts.payload_item)
    )
    verifier = _token_world(signer.public_key)
    first = verifier.verify(token, vehicle_id="VIN-1", action="trunk")
    second = verifier.verify(twin, vehicle_id="VIN-1", action="trunk")
    assert first.reason is Reason.ALLOWED
    # The strict profile refuses the twin outright: one signature check, one form.
    assert second.reason is Reason.BAD_SIGNATURE


def test_vectors_root_is_resolvable(tmp_path: Path) -> None:
    """TRUNKKEY_VECTORS points the tests at another copy of the vectors."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(_vectors.ENV_VAR, str(tmp_path))
        assert _vectors.vectors_root() == tmp_path.resolve()
        assert _vectors.vector_dir(WYCHEPROOF) is None
