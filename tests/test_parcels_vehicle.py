"""Parcels at the car (issue 19): a wrong parcel leaves the car locked and the
token unspent; the receipt and the access log say which parcels were scanned,
as commitments; the retailer reads the receipt back against its order."""

from __future__ import annotations

import pytest

from trunkkey import DecodeError, EntryKind, InvalidRequest, Purpose, Reason, SigningKey
from trunkkey.inspect import inspect_unverified
from trunkkey.logentry import LogEntry, decode_entry
from trunkkey.parcels import MAX_PARCELS, ParcelRecord
from trunkkey.testing.vehicle import Car, World, courier_present
from trunkkey.vehicle import UnitState, verify_receipt
from trunkkey.vehicle.receipt import MAX_RECEIPT_BYTES, Receipt, parcels_in_receipt

START = 1_800_000_000
ORDER = ("PKG-0001", "PKG-0002", "PKG-0003")


@pytest.fixture
def world() -> World:
    return World(start=START, ledger="memory")


@pytest.fixture
def car(world: World) -> Car:
    return world.enrol_car("VIN-PARCELS")


@pytest.fixture
def courier() -> SigningKey:
    return SigningKey.generate()


def _entries(car: Car) -> list[LogEntry]:
    return [decode_entry(e) for e in car.unit.access_log.entries()]


def test_the_wrong_parcel_leaves_the_car_locked_and_the_token_unspent(
    world: World, car: Car, courier: SigningKey
) -> None:
    token = world.mint(car, courier=courier, parcels=ORDER)
    refused = courier_present(car, token, courier, scan=["PKG-9999"])
    assert refused.reason is Reason.WRONG_PARCEL
    assert car.body.locked
    assert car.body.trunk_openings == 0
    assert car.unit.state is UnitState.LOCKED
    assert car.ledger.count() == 0
    assert courier_present(car, token, courier, scan=ORDER).reason is Reason.ALLOWED
    assert car.body.trunk_openings == 1


def test_no_scan_leaves_the_car_locked(world: World, car: Car, courier: SigningKey) -> None:
    token = world.mint(car, courier=courier, parcels=ORDER)
    assert courier_present(car, token, courier).reason is Reason.PARCEL_MISSING
    assert car.body.locked
    assert car.ledger.count() == 0


def test_the_receipt_names_the_scanned_parcels_by_commitment_only(
    world: World, car: Car, courier: SigningKey
) -> None:
    token = world.mint(car, courier=courier, parcels=ORDER)
    outcome = courier_present(car, token, courier, scan=[ORDER[1], ORDER[0]])
    assert outcome.allowed
    car.unit.trunk_closed()
    signed = car.unit.receipts[-1]
    for identifier in ORDER:
        assert identifier.encode() not in signed
    receipt = verify_receipt(signed, car.unit.public_key)
    assert receipt.parcels is not None
    assert receipt.parcels.partial
    assert receipt.parcels.of == 3
    committed = inspect_unverified(token).claims.parcels
    assert committed is not None
    assert receipt.parcels.scanned == committed.commitments[:2]
    assert parcels_in_receipt(receipt, token=token, parcels=ORDER) == ORDER[:2]


def test_the_access_log_records_what_the_receipt_states(
    world: World, car: Car, courier: SigningKey
) -> None:
    token = world.mint(car, courier=courier, parcels=ORDER)
    courier_present(car, token, courier, scan=["PKG-9999"])
    assert courier_present(car, token, courier, scan=ORDER).allowed
    car.unit.trunk_closed()
    receipt = verify_receipt(car.unit.receipts[-1], car.unit.public_key)
    entries = _entries(car)
    kinds = [e.kind for e in entries]
    denied = next(e for e in entries if e.kind is EntryKind.TOKEN_DENIED)
    assert denied.reason is Reason.WRONG_PARCEL
    scanned = [e for e in entries if e.kind is EntryKind.PARCELS_SCANNED]
    assert len(scanned) == 1
    assert scanned[0].parcels == receipt.parcels
    assert scanned[0].token_id == receipt.token_id
    # Written after the spend's entry, before the trunk opened.
    assert kinds.index(EntryKind.TOKEN_ALLOWED) < kinds.index(EntryKind.PARCELS_SCANNED)
    assert kinds.index(EntryKind.PARCELS_SCANNED) < kinds.index(EntryKind.OPENED)
    assert "3 of 3 parcels" in scanned[0].describe()


def test_a_return_pickup_records_the_parcels_taken_out(
    world: World, car: Car, courier: SigningKey
) -> None:
    token = world.mint(car, courier=courier, parcels=["RET-1", "RET-2"],
                       purpose=Purpose.RETURN_PICKUP)
    assert courier_present(car, token, courier, scan=["RET-2"]).allowed
    car.unit.trunk_closed()
    receipt = verify_receipt(car.unit.receipts[-1], car.unit.public_key)
    assert receipt.purpose is Purpose.RETURN_PICKUP
    assert parcels_in_receipt(receipt, token=token, parcels=["RET-1", "RET-2"]) == ("RET-2",)


def test_a_token_without_parcels_gets_a_receipt_without_them(
    world: World, car: Car, courier: SigningKey
) -> None:
    token = world.mint(car, courier=courier)
    assert courier_present(car, token, courier).allowed
    car.unit.trunk_closed()
    receipt = verify_receipt(car.unit.receipts[-1], car.unit.public_key)
    assert receipt.parcels is None
    assert EntryKind.PARCELS_SCANNED not in [e.kind for e in _entries(car)]
    with pytest.raises(DecodeError, match="names no parcels"):
        parcels_in_receipt(receipt, token=token, parcels=ORDER)


def test_the_retailer_refuses_a_receipt_that_does_not_match_its_order(
    world: World, car: Car, courier: SigningKey
) -> None:
    token = world.mint(car, courier=courier, parcels=ORDER)
    other = world.mint(car, courier=courier, parcels=ORDER)
    assert courier_present(car, token, courier, scan=ORDER).allowed
    car.unit.trunk_closed()
    receipt = verify_receipt(car.unit.receipts[-1], car.unit.public_key)
    with pytest.raises(DecodeError, match="another token"):
        parcels_in_receipt(receipt, token=other, parcels=ORDER)
    with pytest.raises(DecodeError, match="not the order"):
        parcels_in_receipt(receipt, token=token, parcels=["PKG-0001", "PKG-0002", "PKG-9"])
    with pytest.raises(DecodeError, match="not the order"):
        parcels_in_receipt(receipt, token=token, parcels=ORDER[::-1])
    # A receipt recording a parcel the order does not have (as a car gone wrong would).
    committed = inspect_unverified(token).claims.parcels
    assert committed is not None
    forged = Receipt(
        vehicle_id=receipt.vehicle_id, token_id=receipt.token_id, action=receipt.action,
        purpose=receipt.purpose, opened_at=receipt.opened_at, closed_at=receipt.closed_at,
        relocked_at=receipt.relocked_at, relock_cause=receipt.relock_cause,
        parcels=ParcelRecord(scanned=(b"\x00" * 16,), of=3),
    )
    with pytest.raises(DecodeError, match="not the order's"):
        parcels_in_receipt(forged, token=token, parcels=ORDER)
    with pytest.raises(InvalidRequest):
        parcels_in_receipt(b"receipt", token=token, parcels=ORDER)  # type: ignore[arg-type]


def test_a_receipt_of_sixteen_parcels_with_its_log_evidence_fits_the_receipt_bound(
    world: World, car: Car,
) -> None:
    courier = SigningKey.generate()
    order = [f"{i:064}" for i in range(MAX_PARCELS)]
    token = world.mint(car, courier=courier, parcels=order, order_ref=b"o" * 64)
    assert courier_present(car, token, courier, scan=order).allowed
    car.unit.trunk_closed()
    signed = car.unit.receipts[-1]
    assert len(signed) <= MAX_RECEIPT_BYTES
    receipt = verify_receipt(signed, car.unit.public_key)
    assert receipt.log is not None
    assert parcels_in_receipt(receipt, token=token, parcels=order) == tuple(order)
    entry = next(e for e in _entries(car) if e.kind is EntryKind.PARCELS_SCANNED)
    assert entry.parcels == receipt.parcels


def test_a_scan_the_log_cannot_record_keeps_the_car_locked(
    world: World, car: Car, courier: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = world.mint(car, courier=courier, parcels=ORDER)
    log = car.unit.access_log
    real = log.append

    def full_disk(entry: LogEntry) -> int:
        if entry.kind is EntryKind.PARCELS_SCANNED:
            raise OSError("disk full")
        return real(entry)

    monkeypatch.setattr(log, "append", full_disk)
    outcome = courier_present(car, token, courier, scan=ORDER)
    assert outcome.reason is Reason.LEDGER_UNAVAILABLE
    assert outcome.detail == (
        "the parcels scanned could not be recorded; token spent, car stays locked"
    )
    assert car.body.locked
    assert car.body.trunk_openings == 0
    # Spent, as after a failed actuator: a second try is not a second chance.
    monkeypatch.undo()
    assert courier_present(car, token, courier, scan=ORDER).reason is Reason.ALREADY_USED
