"""The trust store: which keys a car believes, for which issuer, and when."""

from __future__ import annotations

import dataclasses

import pytest

from support import ISSUER, NOW
from trunkkey import InvalidRequest, SigningKey, TrustedKey, TrustStore
from trunkkey.authority import Refusal, Signer
from trunkkey.cose import Typ, protected_header
from trunkkey.reasons import Reason


def test_a_trusted_key_is_frozen_keyword_only_and_checked() -> None:
    key = SigningKey.generate().public_key
    entry = TrustedKey(key=key, issuer="shop", not_before=10, not_after=20)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.issuer = "other"  # type: ignore[misc]
    assert not hasattr(entry, "__dict__")
    with pytest.raises(TypeError):
        TrustedKey(key, "shop")  # type: ignore[misc]
    with pytest.raises(InvalidRequest, match=r"^TrustedKey.key must be a VerificationKey$"):
        TrustedKey(key=b"raw", issuer="shop")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"^issuer must be"):
        TrustedKey(key=key, issuer="")
    with pytest.raises(InvalidRequest, match=r"^TrustedKey validity period is empty$"):
        TrustedKey(key=key, issuer="shop", not_before=20, not_after=20)
    assert [entry.valid_at(t) for t in (9, 10, 19, 20)] == [False, True, True, False]


def test_a_store_refuses_strangers_and_duplicates_and_says_which() -> None:
    key = SigningKey.generate().public_key
    store = TrustStore([TrustedKey(key=key, issuer="shop")])
    assert repr(store) == "TrustStore(1 keys)"
    with pytest.raises(InvalidRequest, match=r"^TrustStore holds TrustedKey entries$"):
        store.add(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=rf"^a key with kid {key.kid.hex()} is already"):
        store.add(TrustedKey(key=key, issuer="other"))
    stranger = SigningKey.generate().kid
    with pytest.raises(InvalidRequest, match=rf"^no trusted key with kid {stranger.hex()}$"):
        store.remove(stranger)
    assert store.remove(key.kid).issuer == "shop"
    assert len(store) == 0


def test_the_store_names_a_token_signer_by_its_exact_header_only() -> None:
    key = SigningKey.generate().public_key
    entry = TrustedKey(key=key, issuer="shop")
    store = TrustStore([entry])
    header = protected_header(key.algorithm, Typ.TOKEN, key.kid)
    got = store.token_signer(header, None, now=0, vehicle_id="car", skew=0)
    assert got == Signer(trusted=entry, token_header=header)
    assert store.check_claims(None, got) is None  # type: ignore[arg-type]
    assert store.token_signer(header, b"chain", now=0, vehicle_id="car", skew=0) == Refusal(
        reason=Reason.CHAIN_INVALID, detail="verifier holds no consent anchors")
    grant_header = protected_header(key.algorithm, Typ.GRANT, key.kid)
    refused = store.token_signer(grant_header, None, now=0, vehicle_id="car", skew=0)
    assert isinstance(refused, Refusal)
    assert refused.reason is Reason.WRONG_TYPE


def test_removing_a_key_by_a_hex_id_says_how_rather_than_failing_obscurely() -> None:
    key = SigningKey.generate().public_key
    store = TrustStore([TrustedKey(key=key, issuer="shop")])
    hint = r"^kid must be bytes \(bytes\.fromhex for a hex key id\)$"
    with pytest.raises(InvalidRequest, match=hint):
        store.remove(key.kid.hex())  # type: ignore[arg-type]
    assert key.kid in store
    assert store.remove(bytes.fromhex(key.kid.hex())).key == key


def test_trust_store_refuses_duplicate_kids_and_unknown_removal() -> None:
    key = SigningKey.generate()
    store = TrustStore([TrustedKey.create(key.public_key, ISSUER)])
    with pytest.raises(InvalidRequest, match="already trusted"):
        store.add(TrustedKey.create(key.public_key, "someone-else"))
    with pytest.raises(InvalidRequest):
        store.remove(b"\x00" * 8)
    with pytest.raises(InvalidRequest, match="empty"):
        TrustedKey.create(key.public_key, ISSUER, not_before=NOW, not_after=NOW)
    assert len(store) == 1
    assert key.kid in store
    assert [e.kid for e in store] == [key.kid]


def test_a_store_without_keys_grows_no_token_cap_and_forgets_a_removed_keys_allowance() -> None:
    from trunkkey import Action, Algorithm, MemoryLedger, Reason, Verifier
    from trunkkey.clock import ManualClock

    store = TrustStore()
    verifier = Verifier(trust_store=store, ledger=MemoryLedger(), clock=ManualClock(NOW))
    one_past = b"\xd2" + bytes(verifier.policy.max_token_size)
    # Size first, before anything is parsed: the cap of a store with no key at all.
    assert store.signature_allowance == 0
    assert verifier.verify(one_past, vehicle_id="VIN-1", action=Action.TRUNK).reason is (
        Reason.TOO_LARGE)
    pq = SigningKey.generate(Algorithm.MLDSA44)
    store.add(TrustedKey(key=pq.public_key, issuer=ISSUER))
    assert store.signature_allowance == 2420 - 64
    store.remove(pq.kid)
    assert store.signature_allowance == 0
    assert verifier.verify(one_past, vehicle_id="VIN-1", action=Action.TRUNK).reason is (
        Reason.TOO_LARGE)
