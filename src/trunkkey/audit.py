"""The owner's check of a car's history: what is proven, and what is not.

Input is what the owner can hold: the car's signed checkpoints, the entries
(from the backend's copy), and the log evidence of the delivery receipts.
Nothing is trusted but the car's public key: every checkpoint's signature is
checked, every checkpoint's root is recomputed from the entries, and each
entry is marked *proven* when a checkpoint the car signed covers it. The
result says in plain words what was proven and what was not.
"""

from __future__ import annotations

import bisect
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

from .checkpoint import Checkpoint, LogEvidence, decode_inclusion_proof, open_checkpoint
from .errors import DecodeError, SignatureError
from .keys import VerificationKey
from .logentry import LogEntry, decode_entry
from .merkle import FrontierTree, leaf_hash
from .reasons import Reason

#: At most this many entries are audited from one export.
MAX_AUDIT_ENTRIES = 1_000_000


@dataclass(frozen=True, slots=True)
class HistoryExport:
    """A car's history as the owner downloads it: checkpoints, entries, receipts."""

    vehicle_id: str
    checkpoints: tuple[bytes, ...]
    entries: tuple[bytes, ...]
    receipts: tuple[bytes, ...] = ()

    def to_json(self) -> str:
        return json.dumps({
            "vehicle_id": self.vehicle_id,
            "checkpoints": [c.hex() for c in self.checkpoints],
            "entries": [e.hex() for e in self.entries],
            "receipts": [r.hex() for r in self.receipts],
        }, indent=1)

    @classmethod
    def from_json(cls, text: str) -> HistoryExport:
        try:
            data = json.loads(text)
            lists = [
                tuple(bytes.fromhex(x) for x in data.get(name, []))
                for name in ("checkpoints", "entries", "receipts")
            ]
            vehicle_id = data["vehicle_id"]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DecodeError(f"not a history export: {type(exc).__name__}") from None
        if type(vehicle_id) is not str or len(lists[1]) > MAX_AUDIT_ENTRIES:
            raise DecodeError("not a history export: bad vehicle id or too many entries")
        return cls(vehicle_id, lists[0], lists[1], lists[2])


@dataclass(frozen=True, slots=True)
class AuditedEntry:
    index: int
    raw: bytes
    #: ``None``: the bytes are not a readable entry.
    entry: LogEntry | None
    #: The size of the smallest checkpoint that proves this entry, or ``None``.
    proven_by: int | None
    #: A delivery receipt's inclusion proof names this entry.
    in_receipt: bool = False


@dataclass(frozen=True, slots=True)
class Finding:
    proven: bool
    text: str
    reason: Reason | None = None


@dataclass(frozen=True, slots=True)
class Audit:
    vehicle_id: str
    entries: tuple[AuditedEntry, ...]
    checkpoints: tuple[Checkpoint, ...]
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """Every statement held: nothing refused, nothing missing."""
        return all(f.proven for f in self.findings)


def audit_log(
    *, vehicle_id: str, vehicle_key: VerificationKey, checkpoints: Sequence[bytes],
    entries: Sequence[bytes], evidence: Sequence[LogEvidence] = (),
) -> Audit:
    """Check a car's checkpoints, entries and receipts' evidence (module docstring)."""
    findings: list[Finding] = []
    opened = _open_checkpoints(vehicle_id, vehicle_key, checkpoints, findings)
    tree = FrontierTree()
    for raw in entries:
        tree.append(leaf_hash(raw))
    proven_size = _match_roots(opened, tree, findings)
    in_receipts = _receipts(
        vehicle_id, vehicle_key, evidence, tree=tree, entries=entries, findings=findings
    )
    sizes = sorted({c.size for c in opened if _reproduced(tree, c)})
    audited = []
    for index, raw in enumerate(entries):
        try:
            entry: LogEntry | None = decode_entry(raw)
        except DecodeError:
            entry = None
            findings.append(Finding(False, f"entry {index} is not a readable log entry"))
        at = bisect.bisect_right(sizes, index)
        proof = sizes[at] if at < len(sizes) else None
        audited.append(AuditedEntry(index, raw, entry, proof, index in in_receipts))
    if entries:
        findings.append(Finding(
            proven_size >= len(entries),
            f"{min(proven_size, len(entries))} of {len(entries)} entries are covered by a "
            "checkpoint the car signed" + ("" if proven_size >= len(entries) else
                                           "; the rest are not proven"),
        ))
    return Audit(vehicle_id, tuple(audited), tuple(opened), tuple(findings))


def _open_checkpoints(
    vehicle_id: str, key: VerificationKey, signed: Sequence[bytes], findings: list[Finding],
) -> list[Checkpoint]:
    opened: list[Checkpoint] = []
    for n, data in enumerate(signed, 1):
        try:
            checkpoint = open_checkpoint(data, key, vehicle_id=vehicle_id)
        except (DecodeError, SignatureError) as exc:
            findings.append(Finding(
                False, f"checkpoint {n} is not signed by this car ({exc})",
                Reason.CHECKPOINT_INVALID,
            ))
            continue
        largest = max((c.size for c in opened), default=0)
        if checkpoint.size < largest:
            findings.append(Finding(
                False, f"checkpoint {n} shows {checkpoint.size} entries after one showed "
                f"{largest}: the log was rolled back", Reason.LOG_ROLLBACK,
            ))
        opened.append(checkpoint)
    if opened:
        findings.append(Finding(
            True, f"{len(opened)} checkpoint{'s' if len(opened) > 1 else ''} signed by "
            "this car's key"
        ))
    else:
        findings.append(Finding(False, "no checkpoint signed by this car: nothing is proven"))
    return opened


def _reproduced(tree: FrontierTree, checkpoint: Checkpoint) -> bool:
    return checkpoint.size <= tree.size and hmac.compare_digest(
        tree.root(checkpoint.size), checkpoint.root
    )


def _match_roots(
    opened: Sequence[Checkpoint], tree: FrontierTree, findings: list[Finding],
) -> int:
    """The largest size whose checkpoint the entries reproduce; a finding per failure."""
    proven = 0
    for checkpoint in opened:
        if checkpoint.size > tree.size:
            findings.append(Finding(
                False, f"the car signed a log of {checkpoint.size} entries, but only "
                f"{tree.size} are here: entries are missing", Reason.LOG_GAP,
            ))
        elif not _reproduced(tree, checkpoint):
            findings.append(Finding(
                False, f"the entries do not match the car's checkpoint of {checkpoint.size}: "
                "an entry was changed, removed or reordered, or the log forked",
                Reason.LOG_FORK,
            ))
        else:
            proven = max(proven, checkpoint.size)
    if proven:
        findings.append(Finding(
            True, f"the first {proven} entries are exactly those the car signed, "
            "and every checkpoint up to there extends the one before"
        ))
    return proven


def _receipts(
    vehicle_id: str, key: VerificationKey, evidence: Sequence[LogEvidence], *,
    tree: FrontierTree, entries: Sequence[bytes], findings: list[Finding],
) -> set[int]:
    """Each receipt's opening: in its checkpoint, and at that place in these entries."""
    shown: set[int] = set()
    for n, item in enumerate(evidence, 1):
        try:
            checkpoint = item.check(key, vehicle_id=vehicle_id)
            index = decode_inclusion_proof(item.proof).index
        except (DecodeError, SignatureError) as exc:
            findings.append(Finding(False, f"receipt {n}'s evidence does not verify ({exc})",
                                    Reason.CHECKPOINT_INVALID))
            continue
        here = index < len(entries) and hmac.compare_digest(entries[index], item.entry)
        if here and _reproduced(tree, checkpoint):
            shown.add(index)
            continue
        findings.append(Finding(
            False, f"receipt {n}'s opening (entry {index}) is not in these entries as the "
            "car signed them", Reason.LOG_GAP if not here else Reason.LOG_FORK,
        ))
    if shown:
        findings.append(Finding(True, f"{len(shown)} delivery receipts each prove their "
                                      "opening is in the log"))
    return shown
