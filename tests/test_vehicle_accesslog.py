"""The car's access log: every attempt is in it, an opening's entry is durable
with the spend and before the actuator moves, receipts prove their opening,
and acknowledged entries are pruned down to the frontier."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NoReturn

import pytest

from trunkkey import Location, Reason, SigningKey, SqliteLedger
from trunkkey.checkpoint import (
    Checkpoint,
    decode_inclusion_proof,
    open_checkpoint,
    sign_log_ack,
)
from trunkkey.errors import DecodeError, SignatureError
from trunkkey.ledger.base import SpendOutcome
from trunkkey.logentry import EntryKind, decode_entry
from trunkkey.merkle import MAX_PROOF_HASHES
from trunkkey.testing.vehicle import Car, World, courier_gossip, courier_present
from trunkkey.vehicle import verify_receipt

T0 = 1_800_000_000
PLACE = Location.from_degrees(48.137154, 11.576124)


class Scene:
    def __init__(self, tmp_path: Path, ledger: str = "sqlite") -> None:
        self.world = World(start=T0, state_dir=tmp_path, ledger=ledger)
        self.car: Car = self.world.enrol_car("VIN-1")
        self.fence = self.world.park(self.car, PLACE)
        self.courier = SigningKey.generate()

    def deliver(self, *, close: bool = True) -> Reason:
        token = self.world.mint(self.car, courier=self.courier, geofence=self.fence)
        reason = courier_present(self.car, token, self.courier).reason
        self.world.advance(20)
        if close:
            self.car.unit.trunk_closed()
        return reason

    def kinds(self) -> list[EntryKind]:
        return [decode_entry(e).kind for e in self.car.unit.access_log.entries()]


@pytest.fixture(params=["sqlite", "memory"])
def scene(request: pytest.FixtureRequest, tmp_path: Path) -> Scene:
    return Scene(tmp_path, request.param)


def test_every_step_of_a_delivery_is_in_the_log(scene: Scene) -> None:
    assert scene.deliver() is Reason.ALLOWED
    assert scene.kinds() == [
        EntryKind.BOOT, EntryKind.CHALLENGE_ISSUED, EntryKind.TOKEN_ALLOWED, EntryKind.OPENED,
        EntryKind.CLOSED, EntryKind.RELOCKED,
    ]
    relocked = decode_entry(scene.car.unit.access_log.entries()[-1])
    assert relocked.note == "closed"


def test_a_refusal_is_logged_with_its_reason_and_the_authenticated_token(scene: Scene) -> None:
    token = scene.world.mint(scene.car, courier=scene.courier, geofence=scene.fence)
    assert courier_present(scene.car, token, scene.courier).reason is Reason.ALLOWED
    scene.world.advance(5)
    scene.car.unit.trunk_closed()
    assert courier_present(scene.car, token, scene.courier).reason is Reason.ALREADY_USED
    denied = decode_entry(scene.car.unit.access_log.entries()[-1])
    assert denied.kind is EntryKind.TOKEN_DENIED
    assert denied.reason is Reason.ALREADY_USED
    allowed = [decode_entry(e) for e in scene.car.unit.access_log.entries()
               if decode_entry(e).kind is EntryKind.TOKEN_ALLOWED]
    assert denied.token_id == allowed[0].token_id


def test_garbage_presented_leaves_no_attacker_bytes_in_the_log(scene: Scene) -> None:
    scene.car.unit.present(b"\xd2" + b"A" * 40, action="trunk")
    denied = decode_entry(scene.car.unit.access_log.entries()[-1])
    assert denied.kind is EntryKind.TOKEN_DENIED
    assert denied.token_id is None
    assert denied.reason is not None


def test_the_receipt_carries_a_checkpoint_that_proves_its_opening(scene: Scene) -> None:
    scene.deliver()
    unit = scene.car.unit
    receipt = verify_receipt(unit.receipts[-1], unit.public_key, vehicle_id="VIN-1")
    assert receipt.log is not None
    checkpoint = receipt.log.check(unit.public_key, vehicle_id="VIN-1")
    assert checkpoint.size == unit.access_log.size
    entry = decode_entry(receipt.log.entry)
    assert (entry.kind, entry.token_id) == (EntryKind.TOKEN_ALLOWED, receipt.token_id)


def test_a_receipt_whose_evidence_was_swapped_is_refused(scene: Scene) -> None:
    scene.deliver()
    scene.deliver()
    unit = scene.car.unit
    first = verify_receipt(unit.receipts[0], unit.public_key)
    second = verify_receipt(unit.receipts[1], unit.public_key)
    assert first.log is not None
    assert second.log is not None
    import dataclasses

    from trunkkey.vehicle.receipt import sign_receipt

    forged = sign_receipt(scene.car.vehicle_key, dataclasses.replace(first, log=second.log))
    with pytest.raises(DecodeError):
        verify_receipt(forged, unit.public_key)


def test_the_opening_entry_commits_in_the_spend_transaction(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    journal = ledger.journal
    outcome = ledger.spend_journalled(
        "VIN-1", b"t" * 16, T0 + 60, issued_at=T0, at=T0, entry=b"opening",
    )
    assert outcome is SpendOutcome.FIRST_USE
    again = ledger.spend_journalled(
        "VIN-1", b"t" * 16, T0 + 60, issued_at=T0, at=T0, entry=b"second",
    )
    assert again is SpendOutcome.ALREADY_USED
    assert journal.entries(0) == [b"opening"]  # nothing written for a refusal
    ledger.close()
    # Another reader sees the spend and the entry together, from the file alone.
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM spent").fetchone()[0] == 1
        assert conn.execute("SELECT entry FROM journal").fetchall() == [(b"opening",)]


def test_a_journalled_opening_is_a_write_that_retries_a_blocked_wal_truncation(
    tmp_path: Path,
) -> None:
    """The opening's spend is a write like any other: the WAL space a reader kept
    from being given back is given back before it, so the log cannot grow unbounded."""
    path = tmp_path / "ledger.sqlite"
    ledger = SqliteLedger(path)
    journal = ledger.journal  # the car's log lives in the ledger's file
    assert ledger.consume("VIN-1", b"a" * 16, T0 + 60) is True
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM spent").fetchone()[0] == 1
        ledger._truncate_wal(ledger._connection())
        assert ledger._checkpoint_due is True
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    outcome = ledger.spend_journalled(
        "VIN-1", b"b" * 16, T0 + 60, issued_at=T0, at=T0, entry=b"opening",
    )
    assert outcome is SpendOutcome.FIRST_USE
    assert ledger._checkpoint_due is False
    assert journal.entries(0) == [b"opening"]
    ledger.close()


def test_the_opening_spends_with_one_commit_and_no_extra_one(tmp_path: Path) -> None:
    """The opening's entry adds no fsync: the spend's transaction is the only write."""
    scene = Scene(tmp_path)
    ledger = scene.car.ledger
    assert isinstance(ledger, SqliteLedger)
    commits: list[str] = []
    conn = ledger._conn
    assert conn is not None
    conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    token = scene.world.mint(scene.car, courier=scene.courier, geofence=scene.fence)
    challenge = scene.car.unit.challenge()
    commits.clear()
    from trunkkey import make_proof

    proof = make_proof(scene.courier, token=token, vehicle_id="VIN-1", challenge=challenge)
    # Stop at the actuator: count the commits made before the trunk moved.
    seen_at_actuation: list[int] = []
    body = scene.car.body
    original = body.open_trunk

    def watching() -> None:
        seen_at_actuation.append(len(commits))
        kinds = [decode_entry(e).kind for e in ledger.journal.entries(0)]
        assert kinds[-1] is EntryKind.TOKEN_ALLOWED  # durable before the trunk moves
        original()

    body.open_trunk = watching  # type: ignore[method-assign]
    outcome = scene.car.unit.present(token, action="trunk", proof=proof, challenge=challenge)
    assert outcome.reason is Reason.ALLOWED
    assert seen_at_actuation == [1]


def test_entries_survive_a_reboot_and_the_tree_continues(tmp_path: Path) -> None:
    scene = Scene(tmp_path)
    scene.deliver()
    before = scene.car.unit.access_log
    size, root = before.size, open_checkpoint(before.checkpoint(), scene.car.unit.public_key).root
    unit = scene.world.reboot(scene.car)
    log = unit.access_log
    assert log.size == size + 1  # the new boot's entry
    assert open_checkpoint(log.checkpoint(size), unit.public_key).root == root
    proof = log.consistency(size)
    from trunkkey.merkle import verify_consistency

    now = open_checkpoint(log.checkpoint(), unit.public_key)
    assert verify_consistency(size, log.size, root, now.root, proof.path)
    assert decode_entry(log.entries()[-1]).kind is EntryKind.BOOT


def test_an_acknowledgement_prunes_to_the_frontier_and_proofs_still_hold(scene: Scene) -> None:
    for _ in range(5):
        scene.deliver()
    log = scene.car.unit.access_log
    size = log.size
    outcome = courier_gossip(scene.world, scene.car)
    assert outcome.accepted, outcome.detail
    assert log.pruned == size
    assert log.entries() == []
    scene.deliver()
    receipt = verify_receipt(scene.car.unit.receipts[-1], scene.car.unit.public_key)
    assert receipt.log is not None  # proven from the frontier alone
    assert courier_gossip(scene.world, scene.car).accepted


def test_an_acknowledgement_not_from_the_backend_is_refused(scene: Scene) -> None:
    scene.deliver()
    log = scene.car.unit.access_log
    claimed = open_checkpoint(log.checkpoint(), scene.car.unit.public_key)
    with pytest.raises(SignatureError):
        log.apply_ack(sign_log_ack(SigningKey.generate(), claimed))
    assert log.pruned == 0


def test_an_acknowledgement_of_another_log_is_refused(scene: Scene) -> None:
    scene.deliver()
    log = scene.car.unit.access_log
    other = Checkpoint(vehicle_id="VIN-1", size=log.size, root=b"\x07" * 32, time=T0)
    backend = scene.world.history._key
    with pytest.raises(DecodeError):
        log.apply_ack(sign_log_ack(backend, other))
    bigger = Checkpoint(vehicle_id="VIN-1", size=log.size + 5, root=b"\x07" * 32, time=T0)
    with pytest.raises(DecodeError):
        log.apply_ack(sign_log_ack(backend, bigger))
    assert log.pruned == 0


def test_an_opening_in_progress_is_never_pruned(scene: Scene) -> None:
    scene.deliver(close=False)  # the trunk is still open
    courier_gossip(scene.world, scene.car)
    log = scene.car.unit.access_log
    assert log.pinned is not None
    assert log.pruned <= log.pinned
    scene.car.unit.trunk_closed()
    receipt = verify_receipt(scene.car.unit.receipts[-1], scene.car.unit.public_key)
    assert receipt.log is not None


def test_proofs_stay_within_their_bound(scene: Scene) -> None:
    for _ in range(3):
        scene.deliver()
    receipt = verify_receipt(scene.car.unit.receipts[-1], scene.car.unit.public_key)
    assert receipt.log is not None
    proof = decode_inclusion_proof(receipt.log.proof)
    assert len(proof.path) <= min(MAX_PROOF_HASHES, proof.size.bit_length())


def test_a_ledger_started_afresh_is_the_first_entry_of_the_new_log(tmp_path: Path) -> None:
    scene = Scene(tmp_path)
    scene.deliver()
    ledger = scene.car.ledger
    assert isinstance(ledger, SqliteLedger)
    path = ledger.path
    scene.car.unit.close()
    scene.car.ledger = SqliteLedger.start_afresh(path, now=scene.world.now)
    scene.car.ledger.close()
    unit = scene.world.reboot(scene.car)
    kinds = [decode_entry(e).kind for e in unit.access_log.entries()]
    assert kinds == [EntryKind.LEDGER_RECOVERED, EntryKind.BOOT]


def test_a_damaged_journal_row_makes_the_ledger_refuse_to_open(tmp_path: Path) -> None:
    from trunkkey import LedgerCorrupted

    scene = Scene(tmp_path)
    scene.deliver()
    ledger = scene.car.ledger
    assert isinstance(ledger, SqliteLedger)
    path = ledger.path
    scene.car.unit.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE journal SET entry = x'a2016462' || substr(entry, 5) WHERE seq = 2")
    with pytest.raises(LedgerCorrupted, match="journal"):
        SqliteLedger(path)


def test_a_hole_in_the_journal_makes_the_ledger_refuse_to_open(tmp_path: Path) -> None:
    from trunkkey import LedgerCorrupted

    scene = Scene(tmp_path)
    scene.deliver()
    ledger = scene.car.ledger
    assert isinstance(ledger, SqliteLedger)
    path = ledger.path
    scene.car.unit.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM journal WHERE seq = 2")  # an attempt quietly removed
    with pytest.raises(LedgerCorrupted, match="journal entry 2 is missing"):
        SqliteLedger(path)


def test_time_syncs_and_carried_updates_are_logged(scene: Scene) -> None:
    scene.world.advance(60)
    assert scene.world.time_sync(scene.car).accepted
    scene.car.unit.apply_revocations(b"not a list")  # refused: no consent anchors
    kinds = scene.kinds()
    assert EntryKind.TIME_SYNCED in kinds
    assert kinds[-1] is EntryKind.REVOCATIONS_REFUSED


def test_an_entry_has_one_encoding_and_a_bounded_size() -> None:
    from trunkkey.logentry import LogEntry

    entry = LogEntry(kind=EntryKind.RELOCKED, at=T0, boot=2, note="timeout")
    assert decode_entry(entry.encode()) == entry
    with pytest.raises(DecodeError):
        decode_entry(entry.encode() + b"\x00")
    with pytest.raises(DecodeError):
        decode_entry(b"\xa2\x01fboot!!\x03\x01")  # an unknown kind


def test_a_log_that_cannot_write_never_stops_a_relock(tmp_path: Path) -> None:
    scene = Scene(tmp_path, "memory")
    token = scene.world.mint(scene.car, courier=scene.courier, geofence=scene.fence)
    assert courier_present(scene.car, token, scene.courier).reason is Reason.ALLOWED
    log = scene.car.unit.access_log

    def full_disk(data: bytes) -> int:
        raise OSError("no space left on device")

    log.append_bytes = full_disk  # type: ignore[method-assign]
    assert scene.car.unit.trunk_closed()
    assert scene.car.body.locked
    # Two entries lost (closed, relocked), counted where an operator can see them.
    assert scene.car.unit._events.record_failures == 2


def test_a_challenge_refused_for_time_that_cannot_be_stored_says_why(tmp_path: Path) -> None:
    from trunkkey import AccessDenied
    from trunkkey.vehicle import GapDetector, MemoryTimeStore, TimeState

    class Refusing(MemoryTimeStore):
        broken = False

        def save(self, state: TimeState) -> None:
            if self.broken:
                raise OSError("flash refused the write")
            super().save(state)

    scene = Scene(tmp_path, "memory")
    store = Refusing()
    held = scene.car.time_store.load()
    assert held is not None
    store.save(held)
    scene.car.time_store = store
    unit = scene.world.reboot(scene.car)
    seen = GapDetector()
    unit.subscribe(seen)
    store.broken = True
    scene.world.advance(3600)
    with pytest.raises(AccessDenied):
        unit.challenge()
    assert seen.events[-1].detail == "no challenge while trusted time cannot be persisted"
    denied = decode_entry(unit.access_log.entries()[-1])
    assert (denied.kind, denied.reason) == (EntryKind.TOKEN_DENIED, Reason.CLOCK_UNTRUSTED)


def test_a_log_that_cannot_prove_still_gets_a_signed_receipt(scene: Scene) -> None:
    token = scene.world.mint(scene.car, courier=scene.courier, geofence=scene.fence)
    assert courier_present(scene.car, token, scene.courier).reason is Reason.ALLOWED
    log = scene.car.unit.access_log

    def unreadable(index: int) -> NoReturn:
        raise OSError("journal unreadable")

    log.evidence = unreadable  # type: ignore[method-assign]
    assert scene.car.unit.trunk_closed()
    assert scene.car.body.locked
    receipt = verify_receipt(scene.car.unit.receipts[-1], scene.car.unit.public_key)
    assert receipt.log is None  # no evidence, said by its absence
