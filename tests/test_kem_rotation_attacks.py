"""Attacks on a car's KEM key rotation, through the public API only.

An attacker replays, reorders, crosses and malforms the signed objects of a
rotation (proposals, bound trust updates); a careless operator mixes up entry
types, signs windows that have ended, proposes before the unit has booted,
or leaves odd files in the state directory. Each test names the promise of
docs/operations.md#a-cars-kem-key-sealed-tokens (or docs/consent.md) that
it holds the code to; ``test_car_kem_rotation.py`` covers the ordinary path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_car_kem_rotation import DAY, START, VIN, YEAR, Car, _held_files
from trunkkey import (
    Algorithm,
    CarHybridKemKey,
    CarHybridPublicKey,
    CarKemKey,
    CarPublicKey,
    Issuer,
    MemoryLedger,
    Reason,
    SigningKey,
    TrustStore,
    cbor,
    kem_key_id,
    open_sealed,
    seal,
)
from trunkkey.consent import (
    KemKeyEntry,
    KeyEntry,
    Role,
    RootKey,
    TrustUpdater,
    UpdateRefused,
    VehicleAnchors,
    sign_trust_update,
)
from trunkkey.consent.rotation import TrustUpdate, decode_update
from trunkkey.cose import Typ, sign1
from trunkkey.errors import DecodeError, InvalidRequest, KeyFileError, SignatureError
from trunkkey.testing.vehicle import SimulatedBody, SimulatedGps
from trunkkey.vehicle import (
    CarKemKeys,
    KemProposal,
    VehicleUnit,
    read_kem_proposal,
    sign_kem_proposal,
    verify_kem_proposal,
    verify_receipt,
)
from trunkkey.vehicle.kemproposal import MAX_PROPOSAL_BYTES

OTHER = "VIN-KEM-2"


@pytest.fixture
def car(tmp_path: Path) -> Car:
    return Car(tmp_path / "car")


def _entry(key: CarPublicKey | object, nbf: int = START, naf: int = START + YEAR) -> KemKeyEntry:
    return KemKeyEntry(name="k", key=key, not_before=nbf, not_after=naf)  # type: ignore[arg-type]


# -- crossing cars ----------------------------------------------------------------


def test_car_a_genuine_update_is_wrong_vehicle_on_car_b_even_if_b_holds_the_key(
    tmp_path: Path,
) -> None:
    """Same carmaker root, two cars; B even holds A's key (its file copied over)."""
    root, vehicle_key = SigningKey.generate(), SigningKey.generate()
    a_kem = CarKemKeys(tmp_path / "a", vehicle_id=VIN, vehicle_key=vehicle_key)
    signed = a_kem.propose(now=START)
    key = verify_kem_proposal(signed, vehicle_key.public_key, vehicle_id=VIN)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "kem-pending.key").write_bytes((tmp_path / "a" / "kem-pending.key")
                                                     .read_bytes())
    (tmp_path / "b" / "kem-pending.key").chmod(0o600)
    b_kem = CarKemKeys(tmp_path / "b", vehicle_id=OTHER, vehicle_key=vehicle_key)
    assert b_kem.holds(key)
    b = TrustUpdater(
        anchors=VehicleAnchors(vehicle_id=OTHER, vehicle_key=vehicle_key,
                               roots=[RootKey(key=root.public_key)]),
        trust_store=TrustStore(), path=tmp_path / "b" / "trust.cbor", kem=b_kem)
    for_a = sign_trust_update(root, version=1, issued_at=START, vehicle=VIN,
                              kem_keys=[_entry(key)])
    with pytest.raises(UpdateRefused) as refused:
        b.apply(for_a, now=START)
    assert refused.value.reason is Reason.WRONG_VEHICLE
    assert b.version == 0
    assert b_kem.current(START) == ()
    assert not (tmp_path / "b" / "trust.cbor").exists()


# -- pending, endorsed, dropped -----------------------------------------------------


def test_a_superseded_pending_key_cannot_be_endorsed(car: Car) -> None:
    """docs: "if the carmaker never answered the first, only the second can be endorsed"."""
    first = car.propose()
    second = car.propose()
    outcome = car.unit.apply_trust_update(car.update((first, START, START + YEAR)))
    assert outcome.reason is Reason.UNKNOWN_KEY
    assert car.kem.pending == second
    assert car.opens(first) is Reason.CANNOT_OPEN
    # Its file waits, set aside, for the next adoption (an update checking it
    # when the second proposal came may still endorse it), then goes.
    assert _held_files(car.state) == sorted([f"kem-{kem_key_id(first).hex()}.key",
                                             "kem-pending.key"])
    assert car.unit.apply_trust_update(car.update((second, START, START + YEAR))).applied
    assert car.opens(second) is Reason.ALLOWED
    assert _held_files(car.state) == [f"kem-{kem_key_id(second).hex()}.key"]


def test_a_dropped_key_cannot_be_re_endorsed_by_a_newer_update(car: Car) -> None:
    """On compromise the old key's file is deleted: no later update brings it back."""
    old = car.propose()
    assert car.unit.apply_trust_update(car.update((old, START, START + YEAR))).applied
    new = car.propose()
    assert car.unit.apply_trust_update(car.update((new, START, START + YEAR))).applied
    car.reboot()
    outcome = car.unit.apply_trust_update(
        car.update((new, START, START + YEAR), (old, START, START + YEAR)))
    assert outcome.reason is Reason.UNKNOWN_KEY
    assert car.opens(old) is Reason.CANNOT_OPEN
    assert car.opens(new) is Reason.ALLOWED
    assert _held_files(car.state) == [f"kem-{kem_key_id(new).hex()}.key"]


def test_the_carmaker_refuses_a_replayed_older_proposal_of_a_key_the_car_dropped(
    car: Car,
) -> None:
    """The car refuses to re-endorse a dropped key, but the backend would seal to
    whatever the carmaker endorsed: a recorded proposal of a leaked key must not
    pass the carmaker's check again."""
    public = car.vehicle_key.public_key
    leaked_proposal = car.kem.propose(now=car.now)
    leaked = read_kem_proposal(leaked_proposal, public, vehicle_id=VIN)
    assert car.unit.apply_trust_update(car.update((leaked.key, START, START + YEAR))).applied
    car.advance(60)
    fresh = read_kem_proposal(car.kem.propose(now=car.now), public, vehicle_id=VIN,
                              newer_than=leaked.created_at)
    assert car.unit.apply_trust_update(car.update((fresh.key, START, START + YEAR))).applied
    for floor in (leaked.created_at, fresh.created_at):
        with pytest.raises(DecodeError, match="not after"):
            verify_kem_proposal(leaked_proposal, public, vehicle_id=VIN, newer_than=floor)
    for bad in (-1, True, "0"):
        with pytest.raises(InvalidRequest):
            verify_kem_proposal(leaked_proposal, public, vehicle_id=VIN,
                                newer_than=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", list(Algorithm), ids=lambda alg: alg.name)
def test_a_car_with_any_vehicle_key_can_propose_either_suite(alg: Algorithm) -> None:
    """A car whose vehicle key is post-quantum (a composite, which the unit takes)
    moving to the post-quantum KEM must get its proposal past the size cap."""
    vehicle_key, longest = SigningKey.generate(alg), "V" * 64
    for suite in ("x25519", "mlkem768-x25519"):
        key = (CarKemKey.generate() if suite == "x25519" else CarHybridKemKey.generate())
        signed = sign_kem_proposal(vehicle_key, KemProposal(
            vehicle_id=longest, key=key.public_key, created_at=2**40 - 1))
        assert verify_kem_proposal(signed, vehicle_key.public_key,
                                   vehicle_id=longest) == key.public_key, suite
    with pytest.raises(DecodeError, match="bounded size"):
        verify_kem_proposal(bytes(MAX_PROPOSAL_BYTES + 1), vehicle_key.public_key,
                            vehicle_id=longest)


def test_a_held_hybrid_keys_x25519_half_is_not_a_key_the_car_holds(car: Car) -> None:
    """A key is held by its whole raw public key, never by a part or another suite's reading."""
    hybrid = car.propose("mlkem768-x25519")
    for part in (hybrid.raw[:32], hybrid.raw[-32:]):
        outcome = car.unit.apply_trust_update(car.update((CarPublicKey(part), START,
                                                          START + YEAR)))
        assert outcome.reason is Reason.UNKNOWN_KEY
    assert car.kem.pending == hybrid


# -- careless carmaker: what sign_trust_update is handed ----------------------------


def test_sign_trust_update_refuses_a_kem_entry_among_set_keys_and_a_key_entry_among_kem_keys(
) -> None:
    root, issuer = SigningKey.generate(), SigningKey.generate()
    kem = _entry(CarKemKey.generate().public_key)
    token_key = KeyEntry(role=Role.ISSUER, name="shop", key=issuer.public_key,
                         not_before=START, not_after=START + YEAR)
    # An issuer's Ed25519 key is 32 bytes, as an X25519 key is: listed as a
    # car KEM key it would be signed as one, the wrong key under the wrong role.
    with pytest.raises(InvalidRequest, match="KemKeyEntry"):
        sign_trust_update(root, version=1, issued_at=START, vehicle=VIN, kem_keys=[token_key])  # type: ignore[list-item]
    with pytest.raises(InvalidRequest, match="KeyEntry"):
        sign_trust_update(root, version=1, issued_at=START, vehicle=VIN, set_keys=[kem])  # type: ignore[list-item]
    with pytest.raises(InvalidRequest):
        TrustUpdate(version=1, issued_at=START, vehicle=VIN, kem_keys=[kem])  # type: ignore[arg-type]


@pytest.mark.parametrize(("nbf", "naf"), [
    (START + 1, START), (START, START), (-1, START), (START, 2**40), (True, START),
    (START, float(START + 1)),
])
def test_a_kem_entry_window_that_is_empty_inverted_negative_absurd_or_not_int_is_refused(
    nbf: object, naf: object,
) -> None:
    key = CarKemKey.generate().public_key
    with pytest.raises(InvalidRequest, match="window"):
        KemKeyEntry(name="k", key=key, not_before=nbf, not_after=naf)  # type: ignore[arg-type]


def test_a_kem_entry_holding_a_private_key_is_refused_without_showing_it() -> None:
    for private in (CarKemKey.generate(), CarHybridKemKey.generate()):
        with pytest.raises(InvalidRequest) as refused:
            _entry(private)
        assert private.private_bytes().hex()[:16] not in str(refused.value)


def test_an_update_whose_kem_windows_have_all_ended_cannot_strand_the_car(car: Car) -> None:
    """docs: an update may not leave a car that had KEM keys with none — nor with
    only keys whose window is over, which open nothing ever again."""
    current = car.propose()
    assert car.unit.apply_trust_update(car.update((current, START, START + YEAR))).applied
    new = car.propose()
    car.advance(DAY)
    ended = car.update((new, START, car.now))  # not_after = now: over already
    outcome = car.unit.apply_trust_update(ended)
    assert outcome.reason is Reason.MALFORMED
    assert "no KEM key" in outcome.detail
    assert car.opens(current) is Reason.ALLOWED
    assert car.kem.pending == new
    # Dropping the current key and keeping one that has ended: the same.
    car.version += 1
    keep_ended = sign_trust_update(
        car.root, version=car.version, issued_at=car.now, vehicle=VIN,
        kem_keys=[_entry(current, START, START + 1)])
    assert car.unit.apply_trust_update(keep_ended).reason is Reason.MALFORMED
    assert car.opens(current) is Reason.ALLOWED
    # A key whose window is yet to come is a rotation, not a stranding.
    later = car.update((new, car.now + DAY, START + YEAR), (current, START, car.now + 2 * DAY))
    assert car.unit.apply_trust_update(later).applied
    assert car.opens(current) is Reason.ALLOWED


def test_a_bound_update_leaving_kem_keys_alone_applies_after_they_have_all_ended(
    car: Car,
) -> None:
    """The stranding rule judges what an update does to the KEM keys, not the car's
    keys as they already are: a parked car whose key has expired still takes a new
    issuer, then a new KEM key."""
    old = car.propose()
    assert car.unit.apply_trust_update(car.update((old, START, START + DAY))).applied
    car.advance(2 * DAY)
    issuer = SigningKey.generate()
    car.version += 1
    new_issuer = sign_trust_update(
        car.root, version=car.version, issued_at=car.now, vehicle=VIN,
        set_keys=[KeyEntry(role=Role.ISSUER, name="shop-2", key=issuer.public_key,
                           not_before=START, not_after=START + YEAR)])
    entries = car.kem.entries
    assert car.unit.apply_trust_update(new_issuer).applied
    assert car.kem.entries == entries, "an update listing no KEM key leaves them alone"
    new = car.propose()
    assert car.unit.apply_trust_update(car.update((new, car.now, START + YEAR))).applied
    assert car.opens(new) is Reason.ALLOWED


# -- careless operator on the car ------------------------------------------------


def test_proposing_before_the_unit_boots_cannot_destroy_an_endorsed_key(
    car: Car, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The car died after persisting the update that endorsed its pending key and
    before renaming it; at the next boot the operator proposes before the unit
    (and so the trust state) is up: the endorsed key must survive."""
    old = car.propose()
    assert car.unit.apply_trust_update(car.update((old, START, START + YEAR))).applied
    new = car.propose()
    monkeypatch.setattr(CarKemKeys, "adopt", lambda self, entries: None)
    assert car.unit.apply_trust_update(car.update((new, START, START + YEAR))).applied
    monkeypatch.undo()
    car.unit.close()
    early = CarKemKeys(car.state, vehicle_id=VIN, vehicle_key=car.vehicle_key)
    newest = verify_kem_proposal(early.propose(now=car.now), car.vehicle_key.public_key,
                                 vehicle_id=VIN)
    assert not early.holds(new), "set aside: no update may name it before the state is applied"
    car.kem, car.unit = car.boot()
    assert car.opens(new) is Reason.ALLOWED
    assert car.kem.pending == newest
    assert _held_files(car.state) == sorted([f"kem-{kem_key_id(new).hex()}.key",
                                             "kem-pending.key"])


def test_proposing_before_the_unit_boots_cannot_delete_the_endorsed_keys(car: Car) -> None:
    """No crash needed: before the trust state is applied, no key is known endorsed."""
    key = car.propose()
    assert car.unit.apply_trust_update(car.update((key, START, START + YEAR))).applied
    car.unit.close()
    early = CarKemKeys(car.state, vehicle_id=VIN, vehicle_key=car.vehicle_key)
    early.propose(now=car.now)
    assert _held_files(car.state) == sorted([f"kem-{kem_key_id(key).hex()}.key",
                                             "kem-pending.key"])
    car.kem, car.unit = car.boot()
    assert car.opens(key) is Reason.ALLOWED


class _ProposesMidUpdate(CarKemKeys):
    """Another thread proposes right after the updater checked the keys it lists."""

    __slots__ = ("armed",)

    def holds(self, key: CarPublicKey | CarHybridPublicKey) -> bool:
        held = super().holds(key)
        if getattr(self, "armed", False):
            self.armed = False
            self.propose(now=START)
        return held


def test_a_proposal_racing_the_update_that_endorses_the_pending_key_cannot_strand_the_car(
    tmp_path: Path,
) -> None:
    root, vehicle_key = SigningKey.generate(), SigningKey.generate()
    kem = _ProposesMidUpdate(tmp_path, vehicle_id=VIN, vehicle_key=vehicle_key)
    updater = TrustUpdater(
        anchors=VehicleAnchors(vehicle_id=VIN, vehicle_key=vehicle_key,
                               roots=[RootKey(key=root.public_key)]),
        trust_store=TrustStore(), path=tmp_path / "trust.cbor", kem=kem)
    key = verify_kem_proposal(kem.propose(now=START), vehicle_key.public_key, vehicle_id=VIN)
    kem.armed = True
    updater.apply(sign_trust_update(root, version=1, issued_at=START, vehicle=VIN,
                                    kem_keys=[_entry(key)]), now=START)
    # The update was checked and persisted: the key it endorses opens tokens.
    assert [k.public_key for k in kem.current(START)] == [key]
    assert kem.pending is not None
    assert kem.pending != key
    reboot = CarKemKeys(tmp_path, vehicle_id=VIN, vehicle_key=vehicle_key)
    TrustUpdater(anchors=VehicleAnchors(vehicle_id=VIN, vehicle_key=vehicle_key,
                                        roots=[RootKey(key=root.public_key)]),
                 trust_store=TrustStore(), path=tmp_path / "trust.cbor", kem=reboot)
    assert [k.public_key for k in reboot.current(START)] == [key]
    assert reboot.pending == kem.pending


def test_kem_keys_signing_proposals_with_another_vehicle_key_are_refused_at_boot(
    car: Car,
) -> None:
    """Every proposal they made would fail the carmaker's check: refused up front."""
    car.unit.close()
    stray = CarKemKeys(car.state, vehicle_id=VIN, vehicle_key=SigningKey.generate())
    with pytest.raises(InvalidRequest, match="another vehicle key"):
        VehicleUnit.boot(
            car.state, roots=[RootKey(key=car.root.public_key)], vehicle_id=VIN,
            vehicle_key=car.vehicle_key, trust_store=TrustStore(),
            carmaker_key=car.root.public_key, clock=car.clock, actuator=SimulatedBody(),
            gps=SimulatedGps(), car_keys=stray)
    assert car.kem.vehicle_public_key == car.vehicle_key.public_key


def test_a_pending_key_that_cannot_be_set_aside_stays_pending(car: Car) -> None:
    """A new proposal never loses the pending key: if it cannot move it, it fails."""
    first = car.propose()
    (car.state / f"kem-{kem_key_id(first).hex()}.key").mkdir()
    with pytest.raises(KeyFileError, match="aside"):
        car.kem.propose(now=car.now)
    assert car.kem.pending == first
    assert car.unit.apply_trust_update(car.update((first, START, START + YEAR))).applied
    assert car.opens(first) is Reason.ALLOWED


def test_a_second_car_kem_keys_on_the_same_directory_cannot_make_the_car_lose_a_key(
    car: Car,
) -> None:
    """A tool built a second CarKemKeys over the running car's directory and proposed:
    it set the car's pending key aside and wrote its own in its place. The car then
    endorses its own pending key: it must not take the other's file for it."""
    current = car.propose()
    assert car.unit.apply_trust_update(car.update((current, START, START + YEAR))).applied
    pending = car.propose()
    tool = CarKemKeys(car.state, vehicle_id=VIN, vehicle_key=car.vehicle_key)
    tools_key = verify_kem_proposal(tool.propose(now=car.now), car.vehicle_key.public_key,
                                    vehicle_id=VIN)
    assert car.unit.apply_trust_update(car.update((pending, START, START + YEAR))).applied
    assert car.opens(pending) is Reason.ALLOWED
    car.reboot()
    assert car.opens(pending) is Reason.ALLOWED
    assert car.kem.pending == tools_key
    # Even with both files gone, the key the car holds in memory is written again.
    car.kem.propose(now=car.now)
    for path in car.state.glob("kem-*.key"):
        path.unlink()
    newest = car.kem.pending
    assert newest is not None
    assert car.unit.apply_trust_update(car.update((newest, START, START + YEAR))).applied
    car.reboot()
    assert car.opens(newest) is Reason.ALLOWED


def test_kem_keys_without_a_persisted_trust_state_are_refused(car: Car) -> None:
    """Endorsements kept in memory only would be forgotten at every boot (with the
    version floor an old update then replays): refused up front."""
    from trunkkey.vehicle import FileTimeStore, consent_verifier

    car.unit.close()
    with pytest.raises(InvalidRequest, match="trust_state"):
        VehicleUnit(
            vehicle_id=VIN, vehicle_key=car.vehicle_key, trust_store=TrustStore(),
            carmaker_key=car.root.public_key, ledger=MemoryLedger(),
            time_store=FileTimeStore(car.state / "time-2.json"),
            clock=car.clock, actuator=SimulatedBody(), gps=SimulatedGps(),
            consent=consent_verifier(vehicle_id=VIN, vehicle_key=car.vehicle_key,
                                     roots=[RootKey(key=car.root.public_key)]),
            car_keys=car.kem)


def test_a_car_that_never_had_an_update_proposes_again_after_a_reboot(car: Car) -> None:
    """The unanswered first proposal is replaced, as on a car that did not reboot."""
    first = car.propose()
    car.reboot()
    second = car.propose()
    assert second != first
    assert car.kem.pending == second
    assert car.unit.apply_trust_update(car.update((first, START, START + YEAR))).reason \
        is Reason.UNKNOWN_KEY


def test_without_a_trust_state_the_boot_keeps_only_the_pending_key(car: Car) -> None:
    """Nothing is endorsed without trust.cbor: an old update replayed to a car that
    lost it (its version floor with it) finds no key to re-endorse."""
    key = car.propose()
    old_update = car.update((key, START, START + YEAR))
    assert car.unit.apply_trust_update(old_update).applied
    pending = car.propose()
    car.unit.close()
    (car.state / "trust.cbor").unlink()
    car.kem, car.unit = car.boot()
    assert _held_files(car.state) == ["kem-pending.key"]
    assert car.kem.pending == pending
    assert car.unit.apply_trust_update(old_update).reason is Reason.UNKNOWN_KEY
    assert car.opens(key) is Reason.CANNOT_OPEN


def test_a_leftover_proposal_being_written_is_discarded_at_boot(car: Car) -> None:
    leftover = CarKemKey.generate()
    leftover.save(car.state / ".kem-pending.tmp")
    car.reboot()
    assert not (car.state / ".kem-pending.tmp").exists()
    assert not car.kem.holds(leftover.public_key)
    assert car.kem.pending is None


def test_a_symlinked_key_file_stops_the_boot_and_is_never_followed(
    car: Car, tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere.key"
    CarKemKey.generate().save(elsewhere)
    os.symlink(elsewhere, car.state / "kem-pending.key")
    with pytest.raises(KeyFileError):
        CarKemKeys(car.state, vehicle_id=VIN, vehicle_key=car.vehicle_key)


def test_a_symlink_planted_where_a_proposal_is_written_is_replaced_not_written_through(
    car: Car, tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    os.symlink(victim, car.state / ".kem-pending.tmp")
    car.propose()
    assert victim.read_bytes() == b"untouched"
    assert not (car.state / "kem-pending.key").is_symlink()


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_directory_or_fifo_where_a_key_file_should_be_is_a_key_file_error(
    car: Car, kind: str,
) -> None:
    """Refused, not a bare OSError, and a FIFO does not hang the boot waiting for a writer."""
    path = car.state / f"kem-{'00' * 8}.key"
    if kind == "directory":
        path.mkdir(mode=0o700)
    else:
        os.mkfifo(path, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        CarKemKeys(car.state, vehicle_id=VIN, vehicle_key=car.vehicle_key)


def test_a_clock_set_back_across_a_window_never_reopens_the_old_key(car: Car) -> None:
    old = car.propose()
    assert car.unit.apply_trust_update(car.update((old, START, START + YEAR))).applied
    new = car.propose()
    assert car.unit.apply_trust_update(
        car.update((new, START, START + 2 * YEAR), (old, START, START + 60))).applied
    car.advance(60)
    assert car.opens(old) is Reason.CANNOT_OPEN
    for back in (1, 60, DAY):
        car.clock.set(START + 60 - back)
        assert car.opens(old) is not Reason.ALLOWED, back


def test_only_the_public_half_of_a_proposed_key_leaves_the_car(car: Car) -> None:
    for suite in ("x25519", "mlkem768-x25519"):
        proposal = car.kem.propose(suite, now=car.now)
        (private, _), = [held for held in car.kem._held.values()
                         if held[1].name == "kem-pending.key"]
        assert private.public_key.raw in proposal
        secret = private.private_bytes()
        assert all(secret[i:i + 16] not in proposal for i in range(0, len(secret) - 15, 8))


# -- type confusion ----------------------------------------------------------------


def test_a_proposal_is_no_receipt_trust_update_or_token_and_an_update_is_no_proposal(
    car: Car,
) -> None:
    proposal = car.kem.propose(now=car.now)
    public = car.vehicle_key.public_key
    with pytest.raises((DecodeError, SignatureError)):
        verify_receipt(proposal, public, vehicle_id=VIN)
    assert car.unit.apply_trust_update(proposal).reason is not Reason.ALLOWED
    assert car.unit.present(proposal, action="trunk").reason is not Reason.ALLOWED
    assert car.unit.present(seal(proposal, car.kem.pending), action="trunk").reason \
        is not Reason.ALLOWED  # type: ignore[arg-type]
    update = car.update((car.kem.pending, START, START + YEAR))  # type: ignore[arg-type]
    with pytest.raises(SignatureError):
        verify_kem_proposal(update, car.root.public_key, vehicle_id=VIN)
    # A root signing an update's payload under the proposal's typ is not an update.
    payload = cbor.encode({1: 50, 2: START, 3: [], 4: [], 5: VIN})
    as_proposal = sign1(car.root, payload, typ=Typ.KEM_PROPOSAL, include_kid=True)
    outcome = car.unit.apply_trust_update(as_proposal)
    assert outcome.reason is not Reason.ALLOWED
    assert outcome.version == 0
    token = Issuer(car.shop, "shop", clock=car.clock).mint(
        vehicle_id=VIN, action="trunk", not_before=car.now, expires=car.now + 3600)
    with pytest.raises((DecodeError, SignatureError)):
        verify_kem_proposal(token, car.shop.public_key, vehicle_id=VIN)


# -- the decoder, fuzzed with KEM members --------------------------------------------

_KEM_RAW = CarKemKey.generate().public_key.raw
_SCALARS = st.one_of(
    st.integers(-(2**64), 2**64), st.binary(max_size=40), st.text(max_size=8),
    st.sampled_from([_KEM_RAW, bytes(1216), b"VIN", "VIN", 2, 0, START, 2**40, None, True, 1.5]),
)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=6)
                       | st.dictionaries(st.integers(0, 6), inner, max_size=6), max_leaves=24)
_ROW = st.lists(_VALUES, min_size=5, max_size=5) | st.tuples(
    st.sampled_from([0, 1, 2, 3, -1]), st.sampled_from(["k", "", "\x00"]),
    st.sampled_from([_KEM_RAW, _KEM_RAW[:31], bytes(1216), bytes(64)]),
    st.integers(-1, 2**41), st.integers(-1, 2**41)).map(list)
_MEMBERS = st.fixed_dictionaries(
    {1: st.integers(-1, 2**64) | _VALUES, 2: st.integers(-1, 2**41) | _VALUES,
     3: st.lists(_ROW, max_size=4) | _VALUES, 4: st.lists(st.binary(min_size=8, max_size=8),
                                                            max_size=3) | _VALUES},
    optional={5: st.sampled_from([VIN, "", b"VIN", None, 7]) | _VALUES, 6: _VALUES},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=_MEMBERS, trailing=st.binary(max_size=2), shuffle=st.booleans())
def test_the_trust_update_decoder_returns_a_consistent_update_or_a_decode_error(
    members: dict[int, object], trailing: bytes, shuffle: bool,
) -> None:
    try:
        payload = cbor2.dumps(dict(reversed(members.items())) if shuffle else members,
                              canonical=not shuffle) + trailing
    except (TypeError, ValueError, OverflowError):
        return
    try:
        update = decode_update(payload)
    except DecodeError:
        return
    assert not trailing
    # What the decoder accepts, it re-encodes byte for byte, and holds the rules.
    kids = [e.key.kid for e in update.set] + [e.kid for e in update.kem_keys]
    assert len(set(kids)) == len(kids)
    assert not set(kids) & set(update.remove)
    assert update.vehicle is not None or not update.kem_keys
    assert all(0 <= e.not_before < e.not_after < 2**40 for e in update.kem_keys)


def test_a_bound_update_has_one_encoding_no_second_binding_or_lenient_form() -> None:
    """A duplicated member 5 (bound to A, then to B) or any non-deterministic form of
    a bound update with KEM keys is refused, so no reader can see another binding."""
    key = CarKemKey.generate().public_key
    good = cbor.encode({1: 1, 2: START, 3: [[2, "k", key.raw, START, START + 1]], 4: [],
                        5: VIN})
    assert decode_update(good).vehicle == VIN
    forms = {
        "member 5 twice": b"\xa6" + good[1:] + cbor.encode(5) + cbor.encode(OTHER),
        "indefinite map": b"\xbf" + good[1:] + b"\xff",
        "version not in shortest form": good.replace(b"\x01\x01", b"\x01\x18\x01", 1),
        "members out of order": cbor2.dumps({5: VIN, 1: 1, 2: START, 4: [],
                                             3: [[2, "k", key.raw, START, START + 1]]}),
    }
    for what, payload in forms.items():
        assert payload != good, what
        with pytest.raises(DecodeError):  # noqa: PT012 -- names the form that got through
            decode_update(payload)
            pytest.fail(what)


@pytest.fixture(scope="module")
def endorsed_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Car]:
    """A trust state file listing one endorsed KEM key, and the car that wrote it."""
    car = Car(tmp_path_factory.mktemp("state"))
    key = car.propose()
    assert car.unit.apply_trust_update(car.update((key, START, START + YEAR))).applied
    car.unit.close()
    return (car.state / "trust.cbor").read_bytes(), car


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1,
                      max_size=3))
def test_a_damaged_trust_state_with_kem_keys_stops_the_boot_or_restores_valid_windows(
    endorsed_state: tuple[bytes, Car], tmp_path_factory: pytest.TempPathFactory,
    edits: list[tuple[int, int]],
) -> None:
    good, car = endorsed_state
    damaged = bytearray(good)
    for at, byte in edits:
        damaged[at % len(damaged)] = byte
    path = tmp_path_factory.mktemp("damaged") / "trust.cbor"
    path.write_bytes(bytes(damaged))
    anchors = VehicleAnchors(vehicle_id=VIN, vehicle_key=car.vehicle_key,
                             roots=[RootKey(key=car.root.public_key)])
    refused: InvalidRequest | None = None
    try:
        updater = TrustUpdater(anchors=anchors, trust_store=TrustStore(), path=path)
    except InvalidRequest as exc:
        refused = exc
    if refused is not None:
        assert "damaged" in str(refused)
        return
    assert all(type(e) is KemKeyEntry and 0 <= e.not_before < e.not_after < 2**40
               for e in updater.kem_keys)


# -- the property, under races, crashes and early proposals ---------------------------


class _Unruly(CarKemKeys):
    """A car whose other threads propose mid-update, or that dies before adopting."""

    __slots__ = ("dies_before_adopting", "race")

    def holds(self, key: CarPublicKey | CarHybridPublicKey) -> bool:
        held = super().holds(key)
        if getattr(self, "race", False):
            self.race = False
            self.propose(now=START)
        return held

    def adopt(self, entries: Sequence[KemKeyEntry]) -> None:
        if not getattr(self, "dies_before_adopting", False):
            super().adopt(entries)


_UNRULY_OPS = st.lists(
    st.tuples(st.sampled_from(["propose", "endorse", "race", "die", "early", "tool",
                               "advance", "reboot"]), st.integers(0, 2**32 - 1)),
    max_size=10,
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=_UNRULY_OPS)
def test_races_crashes_early_proposals_and_a_second_instance_never_lose_an_endorsed_key(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]],
) -> None:
    state = tmp_path_factory.mktemp("unruly")
    root, vehicle_key = SigningKey.generate(), SigningKey.generate()
    anchors = VehicleAnchors(vehicle_id=VIN, vehicle_key=vehicle_key,
                             roots=[RootKey(key=root.public_key)])
    known: list[CarPublicKey | CarHybridPublicKey] = []

    def propose(kem: CarKemKeys) -> None:
        signed = kem.propose(now=now)
        known.append(verify_kem_proposal(signed, vehicle_key.public_key, vehicle_id=VIN))

    def boot(early: bool = False) -> tuple[_Unruly, TrustUpdater]:
        kem = _Unruly(state, vehicle_id=VIN, vehicle_key=vehicle_key)
        if early:
            propose(kem)  # before the trust state is applied
        return kem, TrustUpdater(anchors=anchors, trust_store=TrustStore(),
                                 path=state / "trust.cbor", kem=kem)

    now, version = START, 0
    kem, updater = boot()
    for op, seed in ops:
        if op == "propose":
            propose(kem)
        elif op in ("endorse", "race", "die"):
            chosen = [k for i, k in enumerate(known) if seed >> i & 1][-3:]
            version += 1
            kem.race, kem.dies_before_adopting = op == "race", op == "die"
            with contextlib.suppress(UpdateRefused):
                updater.apply(sign_trust_update(
                    root, version=version, issued_at=now, vehicle=VIN,
                    kem_keys=[KemKeyEntry(name=f"k{i}", key=k, not_before=now - 10,
                                          not_after=now + 1 + seed % 500)
                              for i, k in enumerate(chosen)]), now=now)
            kem.race = kem.dies_before_adopting = False
            if op == "die":
                kem, updater = boot()
        elif op == "early":
            kem, updater = boot(early=True)
        elif op == "tool":  # a second CarKemKeys on the directory, made by mistake
            propose(CarKemKeys(state, vehicle_id=VIN, vehicle_key=vehicle_key))
        elif op == "advance":
            now += seed % 300
        else:
            kem, updater = boot()
        endorsed = {e.key.raw for e in updater.kem_keys if e.not_before <= now < e.not_after}
        for public in known:
            opened = open_sealed(seal(b"\xd2 token", public), kem.current(now)) is not None
            assert opened == (public.raw in endorsed), (op, public.raw.hex()[:8])
        if kem.pending is not None:
            assert kem.holds(kem.pending)
