"""The backend's side of a car's access log: every checkpoint it has seen, the
entries they cover, and the judgement of each new one against all before it.

Couriers' handhelds carry the car's :class:`~trunkkey.checkpoint.LogBundle`
(its newest checkpoint, the entries since the last acknowledgement, and the
consistency proof from there) to the backend, the way revocation lists
travel to the car. :meth:`CheckpointStore.receive` checks, in this order:

1. the checkpoint is well formed and signed by the car's key
   (``checkpoint_invalid`` otherwise);
2. it is not smaller than one already seen (``log_rollback``);
3. no checkpoint of the same size seen before has another root, and the
   consistency proof joins the last acknowledged size to it (``log_fork``);
4. the entries it claims were all delivered and reproduce its root
   (``log_gap``), and what was held before is unchanged (``log_fork``).

Only then is the checkpoint acknowledged (signed with the backend key), and
the car may prune what it covers. Every validly signed checkpoint is kept,
accepted or not, so a later rollback is judged against the largest ever seen.
Nothing here does I/O; the store is in memory and a backend persists it.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from .audit import HistoryExport
from .checkpoint import (
    Checkpoint,
    LogBundle,
    decode_bundle,
    decode_consistency_proof,
    open_checkpoint,
    sign_log_ack,
)
from .claims import check_name
from .errors import DecodeError, InvalidRequest, SignatureError
from .keys import VerificationKey
from .logentry import LogEntry, decode_entry
from .merkle import FrontierTree, leaf_hash, verify_consistency
from .reasons import Reason
from .signing import SigningBackend, signing_backend


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryOutcome:
    """The backend's judgement of one bundle from a car."""

    vehicle_id: str
    #: ``None``: the checkpoint was accepted; otherwise why not.
    reason: Reason | None
    detail: str
    checkpoint: Checkpoint | None = None
    #: The signed acknowledgement to send back to the car (accepted only).
    ack: bytes | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


@dataclass
class _Car:
    key: VerificationKey
    seen: list[Checkpoint] = field(default_factory=list)
    #: Each of ``seen`` as the car signed it, for the owner to check again.
    signed: list[bytes] = field(default_factory=list)
    accepted: list[Checkpoint] = field(default_factory=list)
    entries: list[bytes] = field(default_factory=list)
    tree: FrontierTree = field(default_factory=FrontierTree)
    problems: list[HistoryOutcome] = field(default_factory=list)


class _Refused(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class CheckpointStore:
    """Every checkpoint and entry the backend has received, per car."""

    def __init__(self, *, backend_key: SigningBackend) -> None:
        self._key = signing_backend(backend_key, "backend_key")
        self._cars: dict[str, _Car] = {}

    def __repr__(self) -> str:
        return f"CheckpointStore(cars={len(self._cars)})"

    @property
    def public_key(self) -> VerificationKey:
        """The key cars check acknowledgements with (provisioned as ``log_ack_key``)."""
        return self._key.public_key

    def enrol(self, vehicle_id: str, vehicle_key: VerificationKey) -> None:
        """Know a car and the key its checkpoints are signed with."""
        check_name(vehicle_id, "vehicle_id")
        if not isinstance(vehicle_key, VerificationKey):
            raise InvalidRequest("vehicle_key must be a trunkkey.VerificationKey")
        self._cars.setdefault(vehicle_id, _Car(key=vehicle_key))

    def checkpoints(self, vehicle_id: str) -> tuple[Checkpoint, ...]:
        """Every validly signed checkpoint seen from the car, in order of arrival."""
        return tuple(self._car(vehicle_id).seen)

    def latest(self, vehicle_id: str) -> Checkpoint | None:
        """The newest accepted checkpoint (every entry it covers is held and proven)."""
        accepted = self._car(vehicle_id).accepted
        return accepted[-1] if accepted else None

    def entries(self, vehicle_id: str) -> tuple[LogEntry, ...]:
        """Every entry of the car's log held, proven by an accepted checkpoint."""
        return tuple(decode_entry(e) for e in self._car(vehicle_id).entries)

    def raw_entries(self, vehicle_id: str) -> tuple[bytes, ...]:
        """The entries held, as the car encoded them."""
        return tuple(self._car(vehicle_id).entries)

    def export(self, vehicle_id: str, receipts: Sequence[bytes] = ()) -> HistoryExport:
        """Everything the owner needs to check the car's history on their own:
        every checkpoint the car signed, every entry held, and ``receipts``."""
        car = self._car(vehicle_id)
        return HistoryExport(vehicle_id, tuple(car.signed), tuple(car.entries), tuple(receipts))

    def problems(self, vehicle_id: str) -> tuple[HistoryOutcome, ...]:
        """Every bundle refused for this car, with its reason."""
        return tuple(self._car(vehicle_id).problems)

    def _car(self, vehicle_id: str) -> _Car:
        car = self._cars.get(vehicle_id)
        if car is None:
            raise InvalidRequest(f"vehicle {vehicle_id!r} is not enrolled")
        return car

    def receive(self, vehicle_id: str, bundle: bytes | LogBundle) -> HistoryOutcome:
        """Judge a bundle a handheld brought from the car (see the module docstring)."""
        car = self._car(vehicle_id)
        checkpoint: Checkpoint | None = None
        try:
            parsed = bundle if isinstance(bundle, LogBundle) else decode_bundle(bundle)
            checkpoint = self._opened(car, vehicle_id, parsed)
            self._judge(car, checkpoint, parsed)
        except _Refused as refused:
            outcome = HistoryOutcome(
                vehicle_id=vehicle_id, reason=refused.reason, detail=refused.detail,
                checkpoint=checkpoint,
            )
            car.problems.append(outcome)
            return outcome
        except DecodeError as exc:
            outcome = HistoryOutcome(
                vehicle_id=vehicle_id, reason=Reason.CHECKPOINT_INVALID, detail=str(exc)
            )
            car.problems.append(outcome)
            return outcome
        car.accepted.append(checkpoint)
        return HistoryOutcome(
            vehicle_id=vehicle_id, reason=None, checkpoint=checkpoint,
            detail=f"log of {checkpoint.size} entries proven consistent with all seen before",
            ack=sign_log_ack(self._key, checkpoint),
        )

    @staticmethod
    def _opened(car: _Car, vehicle_id: str, bundle: LogBundle) -> Checkpoint:
        try:
            checkpoint = open_checkpoint(bundle.checkpoint, car.key, vehicle_id=vehicle_id)
        except (DecodeError, SignatureError) as exc:
            raise _Refused(Reason.CHECKPOINT_INVALID, f"checkpoint refused: {exc}") from None
        largest = max((seen.size for seen in car.seen), default=0)
        car.seen.append(checkpoint)
        car.signed.append(bundle.checkpoint)
        if checkpoint.size < largest:
            raise _Refused(
                Reason.LOG_ROLLBACK,
                f"the car signed a log of {checkpoint.size} entries after one of {largest}",
            )
        for seen in car.seen:
            if seen.size == checkpoint.size and not seen.same_tree(checkpoint):
                raise _Refused(
                    Reason.LOG_FORK, f"two different logs of {seen.size} entries were signed"
                )
        return checkpoint

    @staticmethod
    def _judge(car: _Car, checkpoint: Checkpoint, bundle: LogBundle) -> None:
        held, start = len(car.entries), bundle.start
        if start > held:
            raise _Refused(
                Reason.LOG_GAP, f"entries {held} to {start - 1} were never delivered"
            )
        if start > 0:
            joined = decode_consistency_proof(bundle.consistency or b"")
            # The sizes are public (signed in the checkpoints); the hashes are
            # compared by verify_consistency, in constant time.
            ok = joined.old_size == start and joined.new_size == checkpoint.size and (
                verify_consistency(start, checkpoint.size, car.tree.root(start), checkpoint.root,
                                   joined.path)
            )
            if not ok:
                raise _Refused(
                    Reason.LOG_FORK,
                    f"the log of {checkpoint.size} entries does not extend the {start} held",
                )
        if start + len(bundle.entries) != checkpoint.size:
            raise _Refused(
                Reason.LOG_GAP,
                f"the checkpoint covers {checkpoint.size} entries; "
                f"{start + len(bundle.entries)} were delivered",
            )
        for offset, entry in enumerate(bundle.entries[: held - start]):
            if not hmac.compare_digest(entry, car.entries[start + offset]):
                raise _Refused(Reason.LOG_FORK, f"entry {start + offset} was rewritten")
        _extend(car, checkpoint, list(bundle.entries[held - start:]))


def _extend(car: _Car, checkpoint: Checkpoint, new: list[bytes]) -> None:
    """Add the new entries if, with those held, they reproduce the signed root."""
    for entry in new:
        try:
            decode_entry(entry)
        except DecodeError as exc:
            raise _Refused(Reason.LOG_GAP, f"an entry is unreadable: {exc}") from None
    trial = FrontierTree()
    for entry in car.entries + new:
        trial.append(leaf_hash(entry))
    if not hmac.compare_digest(trial.root(checkpoint.size), checkpoint.root):
        raise _Refused(
            Reason.LOG_GAP, "the delivered entries do not reproduce the checkpoint's root"
        )
    for seen in car.seen:
        if seen.size <= trial.size and not hmac.compare_digest(trial.root(seen.size), seen.root):
            raise _Refused(
                Reason.LOG_FORK, f"the log disagrees with the checkpoint of {seen.size} seen"
            )
    car.entries.extend(new)
    car.tree = trial
