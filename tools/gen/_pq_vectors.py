"""The post-quantum part of ``docs/test-vectors.json``: ML-DSA-44 tokens and hybrid roots
(EdDSA + ML-DSA-65, and ES256 + ML-DSA-65).

ML-DSA keys come from fixed seeds (FIPS 204 key generation is deterministic
in its seed), but ``cryptography`` signs ML-DSA with fresh randomness only
(the "hedged" variant; it offers no deterministic one), and ECDSA with a random
nonce too. So the first run
signs, and stores each signature in ``tools/gen/pq-signatures.json`` under
the SHA-256 of the key id and the signed bytes; every later run finds it
there, checks it, and writes the same vector file byte for byte. A signature
that is missing or no longer verifies is made afresh (and the vector file is
then stale until written). Any valid signature is equally acceptable to a
verifier: the stored ones make the file reproducible, nothing more.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from tools import ROOT
from trunkkey import Algorithm, SigningKey, VerificationKey, cbor
from trunkkey.consent import (
    KeyEntry,
    Role,
    access_mask,
    make_grant,
    sign_root_grant,
    sign_trust_update,
)
from trunkkey.cose import Typ, parse_sign1, protected_header, sign1, to_be_signed

SIGNATURES = ROOT / "tools" / "gen" / "pq-signatures.json"


class StoredSignatures:
    """Signatures by ``sha256(kid || message)``: reused when they verify, else made."""

    def __init__(self) -> None:
        self.known: dict[str, str] = (
            json.loads(SIGNATURES.read_text(encoding="utf-8")) if SIGNATURES.exists() else {}
        )
        self.made = 0

    def signer(self, key: SigningKey) -> _StoredSigner:
        return _StoredSigner(key, self)

    def save(self) -> None:
        if self.made:
            SIGNATURES.write_text(json.dumps(self.known, indent=1, sort_keys=True) + "\n",
                                  encoding="utf-8")


class _StoredSigner:
    """A :class:`~trunkkey.signing.SigningBackend` that signs through the store."""

    def __init__(self, key: SigningKey, store: StoredSignatures) -> None:
        self._key, self._store = key, store

    @property
    def algorithm(self) -> Algorithm:
        return self._key.algorithm

    @property
    def kid(self) -> bytes:
        return self._key.kid

    @property
    def public_key(self) -> VerificationKey:
        return self._key.public_key

    def sign(self, message: bytes) -> bytes:
        name = hashlib.sha256(self._key.kid + message).hexdigest()
        held = self._store.known.get(name)
        if held is not None and self.public_key.is_valid_unique_signature(
                bytes.fromhex(held), message):
            return bytes.fromhex(held)
        signature = self._key.sign(message)
        self._store.known[name] = signature.hex()
        self._store.made += 1
        return signature


#: The label of a composite's classical half, after the key's own label.
_CLASSICAL_LABELS = {Algorithm.EDDSA_MLDSA65: " ed25519", Algorithm.ES256_MLDSA65: " p-256"}
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def pq_key(algorithm: Algorithm, seed: Callable[[str], bytes], label: str) -> SigningKey:
    """An ML-DSA-44 or composite key from the vectors' fixed seeds."""
    d = seed(label) if algorithm is Algorithm.MLDSA44 else seed(label + " ml-dsa-65") + seed(
        label + _CLASSICAL_LABELS[algorithm])
    return SigningKey._from_private_scalar(algorithm, d)


def _with_signature(signed: bytes, signature: bytes) -> bytes:
    parts = parse_sign1(signed)
    return (b"\xd2\x84" + parts.protected_item + b"\xa0" + parts.payload_item
            + cbor.head(2, len(signature)) + signature)


def root_signed_vectors(
    store: StoredSignatures, seed: Callable[[str], bytes],
    signed_as: Callable[[SigningKey, bytes, bytes], bytes], *, now: int, token_key: SigningKey,
) -> list[dict[str, Any]]:
    """Trust updates a car with one hybrid root must accept or refuse, with the reason.

    ``signed_as(key, protected, payload)`` is a COSE_Sign1 with any header, signed by ``key``.
    """
    root = pq_key(Algorithm.EDDSA_MLDSA65, seed, "hybrid root")
    move = [KeyEntry(role=Role.ISSUER, name="retailer.example", key=token_key.public_key,
                     not_before=now - 86400, not_after=now + 365 * 86400)]
    update = sign_trust_update(store.signer(root), version=1, issued_at=now, set_keys=move)
    payload, signature = parse_sign1(update).payload, parse_sign1(update).signature
    ml, ed = signature[:3309], signature[3309:]
    # Ed25519 broken: the attacker holds the root's Ed25519 half and signs alone.
    ed_half = SigningKey._from_private_scalar(Algorithm.EDDSA, seed("hybrid root ed25519"))
    if ed_half.public_key.raw != root.public_key.raw[-32:]:
        raise AssertionError("the composite's Ed25519 half is not the seed's key")
    as_root = protected_header(Algorithm.EDDSA, Typ.TRUST_UPDATE, root.kid)
    cases = [
        ("hybrid_update_accepted", "A trust update signed by the car's hybrid root (both "
         "halves), moving its token key to ML-DSA-44.", update, None),
        ("hybrid_update_no_mldsa_half", "The same update with only the Ed25519 half of the "
         "signature.", _with_signature(update, ed), "bad_signature"),
        ("hybrid_update_no_ed25519_half", "The same update with only the ML-DSA-65 half: a "
         "length no trunkkey algorithm has.", _with_signature(update, ml), "malformed"),
        ("hybrid_update_halves_swapped", "The two halves in the wrong order.",
         _with_signature(update, ed + ml), "bad_signature"),
        ("hybrid_update_mldsa_half_altered", "One bit of the ML-DSA-65 half flipped.",
         _with_signature(update, bytes([ml[0] ^ 1]) + ml[1:] + ed), "bad_signature"),
        ("classical_update_under_hybrid_kid", "The root's Ed25519 half alone signs the update "
         "as EdDSA under the hybrid root's kid.", signed_as(ed_half, as_root, payload),
         "alg_mismatch"),
        ("classical_update_own_kid", "The root's Ed25519 half alone signs the update under its "
         "own kid: no root of this car.",
         sign1(ed_half, payload, typ=Typ.TRUST_UPDATE), "unknown_key"),
    ]
    return [{
        "name": name, "description": description,
        "root_cose_key": root.public_key.to_cose_key().hex(),
        "typ": "TRUST_UPDATE", "now": now, "signed": signed.hex(),
        "reason": reason,
    } for name, description, signed, reason in cases] + _p256_root_vectors(
        store, seed, now=now, token_key=token_key, eddsa_root=root)


def _high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[-32:], "big")
    return signature[:-32] + (_P256_ORDER - s).to_bytes(32, "big")


def _stored_sign1(store: StoredSignatures, key: SigningKey, protected: bytes,
                  payload: bytes) -> bytes:
    """A COSE_Sign1 with any protected header, signed by ``key`` through the store."""
    protected_item = cbor.head(2, len(protected)) + protected
    payload_item = cbor.head(2, len(payload)) + payload
    signature = store.signer(key).sign(to_be_signed(protected_item, payload_item))
    return (b"\xd2\x84" + protected_item + b"\xa0" + payload_item
            + cbor.head(2, len(signature)) + signature)


def _p256_root_vectors(
    store: StoredSignatures, seed: Callable[[str], bytes], *, now: int,
    token_key: SigningKey, eddsa_root: SigningKey,
) -> list[dict[str, Any]]:
    """A car whose one root is the ES256 + ML-DSA-65 composite (an HSM's P-256 key)."""
    root = pq_key(Algorithm.ES256_MLDSA65, seed, "p256 hybrid root")
    move = [KeyEntry(role=Role.ISSUER, name="retailer.example", key=token_key.public_key,
                     not_before=now - 86400, not_after=now + 365 * 86400)]
    update = sign_trust_update(store.signer(root), version=1, issued_at=now, set_keys=move)
    grant = sign_root_grant(store.signer(root), make_grant(
        grantee=token_key.public_key, grantee_name="retailer.example",
        access=access_mask(["trunk"], ["delivery"]), not_before=now - 86400,
        expires=now + 30 * 86400, depth=0, vehicle_ids=["VIN-1"]))
    payload, signature = parse_sign1(update).payload, parse_sign1(update).signature
    ml, p256 = signature[:3309], signature[3309:]
    p256_half = SigningKey._from_private_scalar(Algorithm.ES256, seed("p256 hybrid root p-256"))
    if p256_half.public_key.raw != root.public_key.raw[-64:]:
        raise AssertionError("the composite's P-256 half is not the seed's key")
    as_root = protected_header(Algorithm.ES256_MLDSA65, Typ.TRUST_UPDATE, root.kid)
    cases = [
        ("p256_hybrid_update_accepted", "A trust update signed by the car's ES256 + ML-DSA-65 "
         "root (both halves), moving its token key to ML-DSA-44.", update, "TRUST_UPDATE",
         None),
        ("p256_hybrid_root_grant_accepted", "A root grant signed by the same root.", grant,
         "GRANT", None),
        ("p256_hybrid_update_high_s", "The update with its P-256 half in the high-s form "
         "(valid ECDSA, not trunkkey's one form).", _with_signature(update, _high_s(signature)),
         "TRUST_UPDATE", "bad_signature"),
        ("p256_hybrid_update_no_mldsa_half", "The update with only the P-256 half of the "
         "signature.", _with_signature(update, p256), "TRUST_UPDATE", "bad_signature"),
        ("p256_hybrid_update_halves_swapped", "The two halves in the wrong order.",
         _with_signature(update, p256 + ml), "TRUST_UPDATE", "bad_signature"),
        ("p256_hybrid_update_signed_by_eddsa_composite", "The same header (this root's alg "
         "and kid) and payload signed by an EdDSA + ML-DSA-65 root: a signature of the same "
         "length, of the other composite.", _stored_sign1(store, eddsa_root, as_root, payload),
         "TRUST_UPDATE", "bad_signature"),
        ("p256_classical_update_under_hybrid_kid", "The root's P-256 half alone signs the "
         "update as ES256 under the hybrid root's kid.", _stored_sign1(
             store, p256_half, protected_header(Algorithm.ES256, Typ.TRUST_UPDATE, root.kid),
             payload), "TRUST_UPDATE", "alg_mismatch"),
    ]
    return [{
        "name": name, "description": description,
        "root_cose_key": root.public_key.to_cose_key().hex(),
        "typ": typ, "now": now, "signed": signed.hex(), "reason": reason,
    } for name, description, signed, typ, reason in cases]
