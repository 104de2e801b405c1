"""A revoked grant stays revoked and a daily limit holds, whatever the presenter does.

The attacks: re-encode a P-256 grant's signature (its high-s twin) so that
its bytes, and so a name computed from them, change; and present several
tokens under one limited grant at the same moment, so that each sees room.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from trunkkey import Action, Algorithm, Purpose, Reason, Verifier
from trunkkey.consent import encode_chain, grant_digest, sign_revocation_list
from trunkkey.cose import Typ, sign1, signed_identity, split_sign1
from trunkkey.ledger.base import Ledger
from trunkkey.ledger.memory import MemoryLedger
from trunkkey.ledger.sqlite import SqliteLedger
from trunkkey.ledger.sqlite_group import GroupCommitSqliteLedger
from trunkkey.proof import make_proof
from trunkkey.testing.consent import HOME, START, VEHICLE, ConsentWorld, build_world

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def high_s_twin(signed: bytes) -> bytes:
    r, s = signed[-64:-32], int.from_bytes(signed[-32:], "big")
    assert s <= P256_N // 2, "trunkkey signs in low-s form"
    return signed[:-64] + r + (P256_N - s).to_bytes(32, "big")


def revoke(w: ConsentWorld, *grants: bytes) -> None:
    w.revocations.apply(
        sign_revocation_list(w.root, version=w.revocations.version + 1, issued_at=START,
                             grants=[grant_digest(g) for g in grants]),
        w.anchors, now=START,
    )


@pytest.mark.parametrize("which", ["root_grant", "carrier_grant"])
def test_the_high_s_twin_of_a_revoked_p256_grant_does_not_open(which: str) -> None:
    w = build_world(algorithm=Algorithm.ES256, cache=False)
    original = getattr(w, which)
    twin = high_s_twin(original)
    # The twin names the same grant: a revocation of one is a revocation of both.
    assert grant_digest(twin) == grant_digest(original)
    revoke(w, original)
    links = {"root_grant": w.root_grant, "carrier_grant": w.carrier_grant, which: twin}
    d = w.present(w.token(), encode_chain([links["root_grant"], links["carrier_grant"]]))
    assert d.reason in (Reason.CHAIN_INVALID, Reason.GRANT_REVOKED)
    assert not d.allowed
    # And the twin alone, unrevoked, is refused as a signature that is not the one form.
    w2 = build_world(algorithm=Algorithm.ES256, cache=False)
    twin2 = high_s_twin(getattr(w2, which))
    links2 = {"root_grant": w2.root_grant, "carrier_grant": w2.carrier_grant, which: twin2}
    d2 = w2.present(w2.token(), encode_chain([links2["root_grant"], links2["carrier_grant"]]))
    assert d2.reason is Reason.CHAIN_INVALID
    assert "signature" in d2.detail or "signed" in d2.detail


def test_the_high_s_twin_of_a_limited_grant_gets_no_fresh_daily_count() -> None:
    w = build_world(algorithm=Algorithm.ES256, daily_limit=1)
    assert w.present(w.token(), w.chain).allowed
    twin_chain = encode_chain([high_s_twin(w.root_grant), w.carrier_grant])
    assert not w.present(w.token(), twin_chain).allowed
    # Identity does not depend on the signature, so even a fresh signature by
    # the root over the same grant shares the count.
    assert signed_identity(high_s_twin(w.root_grant)) == signed_identity(w.root_grant)
    refused = w.present(w.token(), w.chain)
    assert refused.reason is Reason.DAILY_LIMIT_REACHED
    # The detail says which promise held, in words a courier's support desk reads.
    assert refused.detail == "a daily limit of the consent has no opening left today"


def _ledger(kind: str, tmp_path: Path) -> Ledger:
    if kind == "memory":
        return MemoryLedger()
    if kind == "sqlite":
        return SqliteLedger(tmp_path / "limits.db")
    return GroupCommitSqliteLedger(tmp_path / "limits-group.db")


@pytest.mark.parametrize("kind", ["memory", "sqlite", "sqlite_group"])
def test_concurrent_presentations_never_exceed_a_daily_limit(kind: str, tmp_path: Path) -> None:
    """8 couriers' tokens under one grant with limit 1, presented at the same instant."""
    rounds, threads = 25, 8
    ledger = _ledger(kind, tmp_path)
    try:
        for _ in range(rounds):
            w = build_world(daily_limit=1)
            verifier = Verifier(trust_store=w.verifier.trust_store, ledger=ledger, clock=w.clock,
                                consent=w.consent)
            chain = w.chain
            presentations = []
            for _ in range(threads):
                token = w.token()
                challenge = bytes(16)
                proof = make_proof(w.courier, token=token, vehicle_id=VEHICLE,
                                   challenge=challenge)
                presentations.append((token, proof, challenge))
            start = threading.Barrier(threads)
            reasons: list[Reason] = []

            def present(token: bytes, proof: bytes, challenge: bytes,  # noqa: PLR0917
                        v: Verifier = verifier, c: bytes = chain,
                        gate: threading.Barrier = start, out: list[Reason] = reasons) -> None:
                gate.wait()
                d = v.verify_at(token, now=START, vehicle_id=VEHICLE, action=Action.TRUNK,
                                purpose=Purpose.DELIVERY, location=HOME.centre, proof=proof,
                                challenge=challenge, chain=c)
                out.append(d.reason)

            workers = [threading.Thread(target=present, args=p) for p in presentations]
            for t in workers:
                t.start()
            for t in workers:
                t.join(timeout=60)
            assert len(reasons) == threads
            assert reasons.count(Reason.ALLOWED) == 1, reasons
            assert set(reasons) == {Reason.ALLOWED, Reason.DAILY_LIMIT_REACHED}
    finally:
        ledger.close()


def test_a_cached_grant_is_checked_once_and_other_signature_bytes_are_checked_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The grant cache holds what one signature check proved, for those very bytes."""
    import trunkkey.consent.chain as chain_module

    w = build_world(algorithm=Algorithm.ES256)
    checked: list[bytes] = []
    real = chain_module.signature_holds

    def counting(key: object, signature: bytes, *rest: bytes) -> bool:
        checked.append(signature)
        return real(key, signature, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(chain_module, "signature_holds", counting)
    assert w.present(w.token(), w.chain).allowed
    assert len(checked) == 2  # the root grant and the carrier's grant
    assert w.present(w.token(), w.chain).allowed
    assert len(checked) == 2  # both from the cache: no grant signature checked again
    # The same grants signed afresh (ECDSA: other bytes, same identity) are
    # checked again, not taken on trust from the cache, and still open.
    payload = split_sign1(w.carrier_grant)[1]
    fresh = sign1(w.retailer, payload, typ=Typ.GRANT, include_kid=False)
    assert fresh != w.carrier_grant
    assert w.present(w.token(), encode_chain([w.root_grant, fresh])).allowed
    assert checked[-1] == fresh[-64:]
    assert len(checked) == 3
