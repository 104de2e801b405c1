"""Attacks on the core's public API that no other test file covers.

Each test is named for the promise it protects; the attacker is either
someone holding the bytes a car reads, or a careless operator building the
objects (trust entries, key files, tokens) the car and the backend use.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import ISSUER, NOW, VEHICLE, World
from trunkkey import (
    Algorithm,
    InsecureKeyFile,
    InvalidRequest,
    MemoryLedger,
    SigningKey,
    TrustedKey,
    TrustStore,
    Verifier,
)
from trunkkey.ledger.base import SpendOutcome
from trunkkey.reasons import Reason


@pytest.mark.parametrize("bound", [float("nan"), 1.5, "5", True, -float("inf")])
@pytest.mark.parametrize("side", ["not_before", "not_after"])
def test_a_trusted_keys_validity_bounds_are_whole_seconds_or_nothing(
    bound: object, side: str,
) -> None:
    # A NaN not_before compared false with every instant: a key meant to start
    # trusting next year was trusted at once, for ever (and a text bound turned
    # every later decision into an unexpected-error `malformed`).
    key = SigningKey.generate().public_key
    with pytest.raises(InvalidRequest, match=r"^TrustedKey validity period bounds are ints"):
        TrustedKey(key=key, issuer=ISSUER, **{side: bound})  # type: ignore[arg-type]


def test_a_key_not_yet_valid_stays_refused_until_its_start(ed_world: World) -> None:
    key = ed_world.key.public_key
    store = TrustStore([TrustedKey(key=key, issuer=ISSUER, not_before=NOW + 3600)])
    verifier = Verifier(trust_store=store, ledger=MemoryLedger(), clock=ed_world.clock)
    token = ed_world.mint()
    assert verifier.verify_at(
        token, now=NOW, vehicle_id=VEHICLE, action="trunk"
    ).reason is Reason.KEY_NOT_VALID


def test_a_key_file_owned_by_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Mode 0600 keeps a file from others only if we own it: its owner can
    # read (and replace) the key whatever its mode.
    path = tmp_path / "issuer.pem"
    SigningKey.generate().save(path)
    if os.geteuid() == 0:
        os.chown(path, 4242, 4242)  # another user's file, readable by root
    else:
        monkeypatch.setattr(os, "geteuid", lambda: os.stat(path).st_uid + 1)
    with pytest.raises(InsecureKeyFile, match="owned by another user"):
        SigningKey.load(path)


def test_a_courier_key_is_ed25519_or_p256_or_the_issuer_refuses_it(ed_world: World) -> None:
    # An ML-DSA cnf key made a token past every car's cap: minted, never opened.
    for algorithm in (a for a in Algorithm if a.post_quantum):
        device = SigningKey.generate(algorithm).public_key
        with pytest.raises(InvalidRequest, match=r"^courier_key must be an Ed25519 or P-256"):
            ed_world.mint(courier_key=device)


class _Interrupted(BaseException):
    pass


class _InterruptedLedger(MemoryLedger):
    def spend(self, *args: object, **kwargs: object) -> SpendOutcome:
        raise _Interrupted


def test_a_ledger_that_raises_a_base_exception_leaves_no_decision_to_open_with(
    ed_world: World,
) -> None:
    # Fail closed for what is not an Exception: it propagates, so there is no
    # decision, allowed or not, and the car cannot open on one.
    seen: list[object] = []
    verifier = Verifier(trust_store=ed_world.store, ledger=_InterruptedLedger(),
                        clock=ed_world.clock, on_decision=seen.append)
    with pytest.raises(_Interrupted):
        verifier.verify(ed_world.mint(), vehicle_id=VEHICLE, action="trunk")
    assert seen == []
