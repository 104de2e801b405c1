"""Revocation lists: signed, versioned, never rolled back, persisted across a reboot."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkkey import InvalidRequest, Reason, SigningKey
from trunkkey.consent import (
    ConsentVerifier,
    GrantCache,
    RevocationState,
    UpdateRefused,
    grant_digest,
    sign_revocation_list,
)
from trunkkey.cose import Typ, sign1
from trunkkey.testing.consent import VEHICLE, build_world

NOW = 1_800_000_000


def test_a_revoked_grant_is_refused_from_the_moment_the_list_applies() -> None:
    w = build_world()
    assert w.present(w.token(), w.chain).allowed
    pending = w.token()
    w.revocations.apply(
        sign_revocation_list(w.root, version=1, issued_at=NOW, grants=[grant_digest(w.root_grant)]),
        w.anchors, now=NOW,
    )
    assert w.present(pending, w.chain).reason is Reason.GRANT_REVOKED


@pytest.mark.parametrize("which", ["retailer", "carrier", "root"])
def test_a_revoked_key_is_refused_anywhere_in_the_chain(which: str) -> None:
    w = build_world()
    key = {"retailer": w.retailer, "carrier": w.carrier, "root": w.root}[which]
    w.revocations.apply(
        sign_revocation_list(w.root, version=1, issued_at=NOW, keys=[key.kid]), w.anchors, now=NOW
    )
    assert w.present(w.token(), w.chain).reason is Reason.KEY_REVOKED


def test_a_revoked_token_id_is_refused() -> None:
    w = build_world()
    token = w.token()
    from trunkkey import inspect_unverified

    token_id = inspect_unverified(token).claims.token_id
    w.revocations.apply(
        sign_revocation_list(w.root, version=1, issued_at=NOW, tokens=[token_id]),
        w.anchors, now=NOW,
    )
    assert w.present(token, w.chain).reason is Reason.TOKEN_REVOKED
    assert w.present(w.token(), w.chain).allowed  # other tokens are untouched


def test_a_newer_token_for_the_same_order_supersedes_older_ones() -> None:
    w = build_world()
    captured = w.token(order_ref=b"order-1")
    w.clock.advance(30)
    fresh = w.token(order_ref=b"order-1")
    other_order = w.token(order_ref=b"order-2")
    w.revocations.apply(
        sign_revocation_list(w.root, version=1, issued_at=w.clock.now(),
                             supersede={b"order-1": w.clock.now()}),
        w.anchors, now=w.clock.now(),
    )
    assert w.present(captured, w.chain).reason is Reason.SUPERSEDED
    assert w.present(fresh, w.chain).allowed
    assert w.present(other_order, w.chain).allowed


@pytest.mark.parametrize("version", [1, 2])
def test_an_old_or_replayed_list_is_refused(version: int) -> None:
    w = build_world()
    newer = sign_revocation_list(w.root, version=2, issued_at=NOW, grants=[b"\x01" * 32])
    w.revocations.apply(newer, w.anchors, now=NOW)
    with pytest.raises(UpdateRefused) as refused:
        w.revocations.apply(sign_revocation_list(w.root, version=version, issued_at=NOW),
                            w.anchors, now=NOW)
    assert refused.value.reason is Reason.ROLLBACK
    assert w.revocations.current.grants == frozenset({b"\x01" * 32})


@settings(max_examples=40)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=12))
def test_an_older_list_never_replaces_a_newer_one(versions: list[int]) -> None:
    w = WORLD
    state = RevocationState()
    held = 0
    for version in versions:
        signed = LISTS[version]
        if version > held:
            state.apply(signed, w.anchors, now=NOW)
            held = version
        else:
            with pytest.raises(UpdateRefused):
                state.apply(signed, w.anchors, now=NOW)
        assert state.version == held
        # Each list revokes exactly its own marker: the state is the newest list's.
        assert state.current.grants == frozenset({bytes([held]) * 32})


WORLD = build_world()
LISTS = {
    v: sign_revocation_list(WORLD.root, version=v, issued_at=NOW, grants=[bytes([v]) * 32])
    for v in range(1, 21)
}


def test_lists_signed_by_anyone_but_a_current_root_are_refused() -> None:
    w = build_world()
    stranger = SigningKey.generate()
    cases = {
        Reason.UNKNOWN_KEY: sign_revocation_list(stranger, version=1, issued_at=NOW),
        Reason.WRONG_TYPE: sign1(w.root, b"\xa0", typ=Typ.TRUST_UPDATE),
        Reason.MALFORMED: b"\xd2\x84",
        Reason.CHAIN_INVALID: sign1(w.root, b"\xa0", typ=Typ.REVOCATION_LIST, include_kid=False),
    }
    for reason, signed in cases.items():
        with pytest.raises(UpdateRefused) as refused:
            w.revocations.apply(signed, w.anchors, now=NOW)
        assert refused.value.reason is reason
    forged = bytearray(sign_revocation_list(w.root, version=1, issued_at=NOW))
    forged[-1] ^= 1
    with pytest.raises(UpdateRefused) as refused:
        w.revocations.apply(bytes(forged), w.anchors, now=NOW)
    assert refused.value.reason is Reason.BAD_SIGNATURE
    assert w.revocations.version == 0


def test_state_survives_a_reboot_and_keeps_its_floor(tmp_path: Path) -> None:
    w = build_world()
    path = tmp_path / "revocations.cbor"
    state = RevocationState(path=path)
    v3 = sign_revocation_list(w.root, version=3, issued_at=NOW, grants=[grant_digest(w.root_grant)])
    state.apply(v3, w.anchors, now=NOW)
    # Reboot: a new unit process reads the file.
    rebooted = RevocationState(path=path)
    assert rebooted.version == 3
    consent = ConsentVerifier(anchors=w.anchors, revocations=rebooted, cache=GrantCache())
    denied = consent.resolve(w.chain, now=NOW, vehicle_id=VEHICLE)
    assert getattr(denied, "reason", None) is Reason.GRANT_REVOKED
    with pytest.raises(UpdateRefused):
        rebooted.apply(sign_revocation_list(w.root, version=2, issued_at=NOW), w.anchors, now=NOW)
    assert not list(tmp_path.glob(".revocations.cbor.*"))  # no temporary file left behind


def test_a_damaged_state_file_is_not_read_as_nothing_revoked(tmp_path: Path) -> None:
    path = tmp_path / "revocations.cbor"
    path.write_bytes(b"\xff\x00")
    with pytest.raises(InvalidRequest, match="damaged"):
        RevocationState(path=path)


def test_signing_refuses_an_invalid_list() -> None:
    with pytest.raises(InvalidRequest):
        sign_revocation_list(WORLD.root, version=0, issued_at=NOW)
    with pytest.raises(InvalidRequest):
        sign_revocation_list(WORLD.root, version=1, issued_at=NOW, grants=[b"short"])


def test_a_car_may_require_a_fresh_revocation_list() -> None:
    w = build_world()
    strict = ConsentVerifier(anchors=w.anchors, revocations=w.revocations, max_list_age=3600)
    denied = strict.resolve(w.chain, now=NOW, vehicle_id=VEHICLE)
    assert getattr(denied, "reason", None) is Reason.REVOCATIONS_STALE  # holds none yet
    w.revocations.apply(sign_revocation_list(w.root, version=1, issued_at=NOW - 60),
                        w.anchors, now=NOW)
    assert not hasattr(strict.resolve(w.chain, now=NOW, vehicle_id=VEHICLE), "reason")
    late = strict.resolve(w.chain, now=NOW + 3600, vehicle_id=VEHICLE)
    assert getattr(late, "reason", None) is Reason.REVOCATIONS_STALE
    with pytest.raises(InvalidRequest):
        ConsentVerifier(anchors=w.anchors, revocations=w.revocations, max_list_age=0)


REVOCABLE = ("root_grant", "carrier_grant", "retailer_key", "carrier_key", "token", "order")


@settings(max_examples=40)
@given(st.sets(st.sampled_from(REVOCABLE), min_size=1), st.integers(0, 3), st.booleans())
def test_nothing_revoked_is_ever_accepted_after_its_list_applied(
    revoked: set[str], uses_before: int, cached: bool
) -> None:
    w = build_world(cache=cached)
    from trunkkey import inspect_unverified

    for _ in range(uses_before):  # warm the cache (and the ledger) first
        assert w.present(w.token(), w.chain).allowed
    token = w.token()
    claims = inspect_unverified(token).claims
    w.clock.advance(1)
    w.revocations.apply(sign_revocation_list(
        w.root, version=1, issued_at=w.clock.now(),
        grants=[grant_digest(g) for name, g in (("root_grant", w.root_grant),
                                                ("carrier_grant", w.carrier_grant))
                if name in revoked],
        keys=[k.kid for name, k in (("retailer_key", w.retailer), ("carrier_key", w.carrier))
              if name in revoked],
        tokens=[claims.token_id] if "token" in revoked else [],
        supersede={claims.order_ref: w.clock.now()} if "order" in revoked and claims.order_ref
        else {},
    ), w.anchors, now=w.clock.now())
    decision = w.present(token, w.chain)
    assert not decision.allowed
    assert decision.reason in {Reason.GRANT_REVOKED, Reason.KEY_REVOKED, Reason.TOKEN_REVOKED,
                               Reason.SUPERSEDED}
    if revoked & {"root_grant", "carrier_grant", "retailer_key", "carrier_key"}:
        # Everything under a revoked grant or key stays refused, new tokens included.
        assert not w.present(w.token(), w.chain).allowed
