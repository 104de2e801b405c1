"""Trust-store updates: overlap for rotation, surgical removal, root rotation, no rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from trunkkey import (
    Issuer,
    ManualClock,
    MemoryLedger,
    Reason,
    SigningKey,
    TrustedKey,
    TrustStore,
    Verifier,
)
from trunkkey.consent import (
    KeyEntry,
    Role,
    RootKey,
    Scope,
    TrustUpdater,
    UpdateRefused,
    VehicleAnchors,
    encode_chain,
    root_scope,
    sign_root_grant,
    sign_trust_update,
)
from trunkkey.consent.grant import sign_delegation
from trunkkey.testing.consent import DAY, VEHICLE, build_world, carrier_delegation, retailer_consent

NOW = 1_800_000_000
T = NOW + DAY  # the rotation instant
OVERLAP = 3600


def _car(tmp: Path | None = None) -> tuple[SigningKey, VehicleAnchors, TrustStore, TrustUpdater]:
    root = SigningKey.generate()
    anchors = VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(),
                             roots=[RootKey(key=root.public_key)])
    store = TrustStore()
    path = None if tmp is None else tmp / "trust.cbor"
    return root, anchors, store, TrustUpdater(anchors=anchors, trust_store=store, path=path)


def _entry(key: SigningKey, name: str, nbf: int, naf: int, role: Role = Role.ISSUER) -> KeyEntry:
    return KeyEntry(role=role, name=name, key=key.public_key, not_before=nbf, not_after=naf)


def _verify(store: TrustStore, key: SigningKey, name: str, at: int) -> Reason:
    clock = ManualClock(at)
    token = Issuer(key, name, clock=clock).mint(vehicle_id=VEHICLE, action="trunk",
                                                 not_before=at, expires=at + 600)
    verifier = Verifier(trust_store=store, ledger=MemoryLedger(), clock=clock)
    return verifier.verify(token, vehicle_id=VEHICLE, action="trunk").reason


def test_retailer_rotates_with_overlap_and_no_failed_delivery() -> None:
    root, _, store, updater = _car()
    old, new = SigningKey.generate(), SigningKey.generate()
    updater.apply(sign_trust_update(root, version=1, issued_at=NOW,
                                    set_keys=[_entry(old, "amazon", NOW - DAY, NOW + 365 * DAY)]),
                  now=NOW)
    # One update: the new key from T, the old one kept until T + overlap.
    updater.apply(sign_trust_update(root, version=2, issued_at=NOW, set_keys=[
        _entry(new, "amazon", T, NOW + 365 * DAY),
        _entry(old, "amazon", NOW - DAY, T + OVERLAP),
    ]), now=NOW)
    assert _verify(store, old, "amazon", T - 1) is Reason.ALLOWED
    assert _verify(store, new, "amazon", T - 1) is Reason.KEY_NOT_VALID
    for at in (T, T + OVERLAP - 1):  # the overlap: both keys work
        assert _verify(store, old, "amazon", at) is Reason.ALLOWED
        assert _verify(store, new, "amazon", at) is Reason.ALLOWED
    assert _verify(store, old, "amazon", T + OVERLAP) is Reason.KEY_NOT_VALID
    assert _verify(store, new, "amazon", T + OVERLAP) is Reason.ALLOWED


def test_a_compromised_key_is_removed_without_touching_the_others() -> None:
    root, anchors, store, updater = _car()
    a, b, c = (SigningKey.generate() for _ in range(3))
    updater.apply(sign_trust_update(root, version=1, issued_at=NOW, set_keys=[
        _entry(a, "amazon", 0, NOW + DAY), _entry(b, "zalando", 0, NOW + DAY),
        _entry(c, "otto", 0, NOW + DAY),
    ]), now=NOW)
    before = {e.kid: e for e in store}
    updater.apply(sign_trust_update(root, version=2, issued_at=NOW, remove=[b.kid]), now=NOW)
    assert b.kid not in store
    assert {e.kid: e for e in store} == {k: v for k, v in before.items() if k != b.kid}
    assert _verify(store, b, "zalando", NOW) is Reason.UNKNOWN_KEY
    assert _verify(store, a, "amazon", NOW) is Reason.ALLOWED
    assert [r.kid for r in anchors.roots()] == [root.kid]


def test_root_rotation_signed_by_the_old_root() -> None:
    w = build_world()
    old_root, new_root = w.root, SigningKey.generate()
    w.clock.set(NOW)
    updater = TrustUpdater(anchors=w.anchors, trust_store=TrustStore())
    updater.apply(sign_trust_update(old_root, version=1, issued_at=NOW, set_keys=[
        _entry(new_root, "carmaker", T, NOW + 3650 * DAY, Role.ROOT),
        _entry(old_root, "carmaker", 0, T + OVERLAP, Role.ROOT),
    ]), now=NOW)
    consent = retailer_consent(w.retailer, NOW)
    scope = root_scope(consent)
    assert isinstance(scope, Scope)
    carrier = sign_delegation(w.retailer, scope, carrier_delegation(w.carrier, NOW))
    under_new = encode_chain([sign_root_grant(new_root, consent), carrier])
    under_old = w.chain
    w.clock.set(T + 60)  # inside the overlap: both roots verify
    assert w.present(w.token(), under_old).allowed
    assert w.present(w.token(), under_new).allowed
    w.clock.set(T + OVERLAP)  # the old root has retired
    assert w.present(w.token(), under_old).reason is Reason.KEY_NOT_VALID
    assert w.present(w.token(), under_new).allowed
    # The old root can no longer sign updates; the new one can.
    with pytest.raises(UpdateRefused) as refused:
        updater.apply(sign_trust_update(old_root, version=2, issued_at=T), now=T + OVERLAP)
    assert refused.value.reason is Reason.KEY_NOT_VALID
    updater.apply(sign_trust_update(new_root, version=2, issued_at=T, remove=[old_root.kid]),
                  now=T + OVERLAP)
    assert [r.kid for r in w.anchors.roots()] == [new_root.kid]


def test_updates_are_never_rolled_back_and_never_remove_every_root() -> None:
    root, anchors, store, updater = _car()
    key = SigningKey.generate()
    v1 = sign_trust_update(root, version=1, issued_at=NOW,
                           set_keys=[_entry(key, "amazon", 0, NOW + DAY)])
    v2 = sign_trust_update(root, version=2, issued_at=NOW, remove=[key.kid])
    updater.apply(v1, now=NOW)
    updater.apply(v2, now=NOW)
    for replay in (v1, v2):
        with pytest.raises(UpdateRefused) as refused:
            updater.apply(replay, now=NOW)
        assert refused.value.reason is Reason.ROLLBACK
    assert key.kid not in store
    with pytest.raises(UpdateRefused):
        updater.apply(sign_trust_update(root, version=3, issued_at=NOW, remove=[root.kid]),
                      now=NOW)
    assert [r.kid for r in anchors.roots()] == [root.kid]
    with pytest.raises(UpdateRefused) as refused:
        updater.apply(sign_trust_update(SigningKey.generate(), version=9, issued_at=NOW), now=NOW)
    assert refused.value.reason is Reason.UNKNOWN_KEY


def test_trust_state_survives_a_reboot(tmp_path: Path) -> None:
    root, _, _, updater = _car(tmp_path)
    key, new_root = SigningKey.generate(), SigningKey.generate()
    updater.apply(sign_trust_update(root, version=4, issued_at=NOW, set_keys=[
        _entry(key, "amazon", 0, NOW + DAY), _entry(new_root, "carmaker", 0, NOW + DAY, Role.ROOT),
    ]), now=NOW)
    # Reboot: enrolment anchors and an empty store, then the persisted state is restored.
    anchors2 = VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(),
                              roots=[RootKey(key=root.public_key)])
    store2 = TrustStore()
    rebooted = TrustUpdater(anchors=anchors2, trust_store=store2, path=tmp_path / "trust.cbor")
    assert rebooted.version == 4
    assert {r.kid for r in anchors2.roots()} == {root.kid, new_root.kid}
    assert store2.get(key.kid) == TrustedKey(key=key.public_key, issuer="amazon", not_before=0,
                                             not_after=NOW + DAY)
    with pytest.raises(UpdateRefused):
        rebooted.apply(sign_trust_update(root, version=3, issued_at=NOW), now=NOW)
