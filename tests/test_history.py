"""The backend's checkpoint store: an honest car's log is accepted however it
grows; a deleted, reordered or changed entry, a forked or rolled-back log and
a checkpoint not signed by the car are each refused with their own reason."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trunkkey import CheckpointStore, Reason, SigningKey
from trunkkey.checkpoint import LogBundle, open_checkpoint, sign_checkpoint
from trunkkey.logentry import EntryKind, LogEntry
from trunkkey.vehicle import AccessLog, MemoryJournal

T0 = 1_800_000_000
VIN = "VIN-1"


class Car:
    def __init__(self, key: SigningKey, backend: CheckpointStore) -> None:
        self.key = key
        self.log = AccessLog(
            vehicle_id=VIN, vehicle_key=key, store=MemoryJournal(), time=lambda: T0,
            ack_key=backend.public_key,
        )

    def write(self, n: int, boot: int = 1) -> None:
        for i in range(n):
            self.log.append(LogEntry(kind=EntryKind.CHALLENGE_ISSUED, at=T0 + i, boot=boot))


def world() -> tuple[CheckpointStore, Car]:
    backend = CheckpointStore(backend_key=SigningKey.generate())
    car = Car(SigningKey.generate(), backend)
    backend.enrol(VIN, car.key.public_key)
    return backend, car


def gossip(backend: CheckpointStore, car: Car, *, ack: bool = True) -> Any:
    outcome = backend.receive(VIN, car.log.bundle().encode())
    if ack and outcome.ack is not None:
        car.log.apply_ack(outcome.ack)
    return outcome


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=8), st.lists(st.booleans(), max_size=8))
def test_any_append_only_sequence_of_checkpoints_is_accepted(
    growth: list[int], acks: list[bool],
) -> None:
    backend, car = world()
    for i, n in enumerate(growth):
        car.write(n)
        outcome = gossip(backend, car, ack=acks[i] if i < len(acks) else True)
        assert outcome.accepted, outcome.detail
    assert len(backend.entries(VIN)) == car.log.size
    assert not backend.problems(VIN)


def _tampered(car: Car, change: str, index: int) -> LogBundle:
    """A bundle of the car's log with one entry deleted, swapped or changed in transit."""
    bundle = car.log.bundle()
    entries = list(bundle.entries)
    if change == "delete":
        del entries[index]
    elif change == "reorder":
        entries[index], entries[index + 1] = entries[index + 1], entries[index]
    else:
        entries[index] = LogEntry(kind=EntryKind.BOOT, at=None, boot=99).encode()
    return LogBundle(bundle.checkpoint, bundle.start, tuple(entries), bundle.consistency)


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 20), st.data(), st.sampled_from(["delete", "reorder", "change"]))
def test_an_entry_deleted_reordered_or_changed_in_transit_is_a_gap(
    n: int, data: Any, change: str,
) -> None:
    backend, car = world()
    car.write(n)
    index = data.draw(st.integers(0, n - 2))
    outcome = backend.receive(VIN, _tampered(car, change, index))
    assert outcome.reason is Reason.LOG_GAP, (change, outcome.detail)
    assert backend.latest(VIN) is None
    assert gossip(backend, car).accepted  # the honest bundle still goes through


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(1, 12), st.data(),
       st.sampled_from(["delete", "reorder", "change"]))
def test_a_forked_log_is_detected(m: int, extra: int, data: Any, change: str) -> None:
    """The car's key signs a log that deleted, reordered or changed an entry the
    backend already holds, then carried on writing: a fork, whatever the edit."""
    backend, car = world()
    car.write(m)
    assert gossip(backend, car, ack=False).accepted
    fork = Car(car.key, backend)
    entries = car.log.entries(0)
    index = data.draw(st.integers(0, m - 2))
    if change == "delete":
        del entries[index]
    elif change == "reorder":
        entries[index], entries[index + 1] = entries[index + 1], entries[index]
    else:
        entries[index] = LogEntry(kind=EntryKind.BOOT, at=None, boot=7).encode()
    for entry in entries:
        fork.log.append_bytes(entry)
    fork.write(extra, boot=2)
    outcome = gossip(backend, fork)
    assert outcome.reason is Reason.LOG_FORK, (change, outcome.detail)


def test_a_fork_behind_a_consistency_proof_is_detected() -> None:
    """After pruning, the car proves from its acknowledged size: a fork fails the proof."""
    backend, car = world()
    car.write(5)
    assert gossip(backend, car).accepted
    car.write(3)
    bundle = car.log.bundle()
    # A log that replaced everything before the acknowledged size, same size.
    other = Car(car.key, backend)
    other.write(8, boot=5)
    forged_proof = other.log.consistency(5).encode()
    forged = LogBundle(other.log.checkpoint(), 5, tuple(other.log.entries(5)), forged_proof)
    assert backend.receive(VIN, forged).reason is Reason.LOG_FORK
    # The car's key has now signed two logs of 8 entries: that stays on record.
    assert backend.receive(VIN, bundle).reason is Reason.LOG_FORK


def test_two_checkpoints_of_one_size_with_different_roots_are_a_fork() -> None:
    backend, car = world()
    car.write(4)
    assert gossip(backend, car, ack=False).accepted
    other = Car(car.key, backend)
    other.write(4, boot=3)
    assert gossip(backend, other).reason is Reason.LOG_FORK


def test_a_rolled_back_log_is_detected() -> None:
    backend, car = world()
    car.write(6)
    assert gossip(backend, car, ack=False).accepted
    restored = Car(car.key, backend)  # an old image of the head unit
    restored.write(3)
    outcome = gossip(backend, restored)
    assert outcome.reason is Reason.LOG_ROLLBACK


def test_a_checkpoint_not_signed_by_the_car_is_refused() -> None:
    backend, car = world()
    car.write(3)
    bundle = car.log.bundle()
    impostor = Car(SigningKey.generate(), backend)
    impostor.write(3)
    forged = LogBundle(impostor.log.checkpoint(), 0, bundle.entries, None)
    assert backend.receive(VIN, forged).reason is Reason.CHECKPOINT_INVALID
    assert backend.receive(VIN, b"\x84garbage").reason is Reason.CHECKPOINT_INVALID
    flipped = bytearray(bundle.checkpoint)
    flipped[-1] ^= 1
    bad = LogBundle(bytes(flipped), 0, bundle.entries, None)
    assert backend.receive(VIN, bad).reason is Reason.CHECKPOINT_INVALID
    assert len(backend.problems(VIN)) == 3
    assert backend.checkpoints(VIN) == ()


def test_entries_never_delivered_are_a_gap() -> None:
    backend, car = world()
    car.write(4)
    bundle = car.log.bundle()
    short = LogBundle(bundle.checkpoint, 0, bundle.entries[:2], None)
    assert backend.receive(VIN, short).reason is Reason.LOG_GAP
    skipped = LogBundle(bundle.checkpoint, 2, bundle.entries[2:], car.log.consistency(2).encode())
    assert backend.receive(VIN, skipped).reason is Reason.LOG_GAP


def test_the_acknowledgement_covers_exactly_the_accepted_checkpoint() -> None:
    backend, car = world()
    car.write(3)
    outcome = gossip(backend, car, ack=False)
    assert outcome.ack is not None
    from trunkkey.checkpoint import open_log_ack

    acked = open_log_ack(outcome.ack, backend.public_key, vehicle_id=VIN)
    assert outcome.checkpoint is not None
    assert acked.same_tree(outcome.checkpoint)
    signed = open_checkpoint(sign_checkpoint(car.key, acked), car.key.public_key)
    assert signed.same_tree(acked)
