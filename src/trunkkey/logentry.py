"""One entry of a car's access log: what happened, when, and nothing more.

An entry is a small deterministic CBOR map, and its bytes are what the
Merkle tree hashes (RFC 9162 leaf: ``SHA-256(0x00 || entry)``). It holds no
secret and as little personal data as the event needs: a kind, the trusted
time (absent while the clock is untrusted), the boot number, and where they
apply a reason code, the token's identifier (only once the token's signature
verified, so an attacker cannot write chosen bytes into the log), the action,
and a word from a fixed vocabulary (a relock's cause); for an opening of a
token bound to parcels, the commitments of the parcels scanned (never their
identifiers). No location, no free text, no courier identity
(docs/threat-model.md, "What the access log reveals").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from . import cbor
from .claims import Action
from .errors import DecodeError, InvalidRequest
from .parcels import MAX_RECORD_BYTES, ParcelRecord, read_record
from .reasons import Reason

#: 128 for every member but the parcels, and the longest record of them.
MAX_ENTRY_BYTES = 128 + 1 + MAX_RECORD_BYTES
MAX_TOKEN_ID_BYTES = 32
_KIND, _AT, _BOOT, _REASON, _TOKEN, _ACTION, _NOTE, _PARCELS = range(1, 9)
#: The words an entry's ``note`` may hold.
NOTES = frozenset({"closed", "timeout", "clock_untrusted", "boot", "relock"})
ACTIONS = frozenset(action.value for action in Action)


class EntryKind(StrEnum):
    """What an access-log entry records."""

    BOOT = "boot"
    LEDGER_RECOVERED = "ledger_recovered"
    CHALLENGE_ISSUED = "challenge_issued"
    #: The opening's entry: written in the same transaction as the token's spend.
    TOKEN_ALLOWED = "token_allowed"  # noqa: S105 -- an entry kind, not a secret
    #: Which of the order's parcels the courier scanned, for the opening just
    #: allowed: written before the actuator moves.
    PARCELS_SCANNED = "parcels_scanned"
    TOKEN_DENIED = "token_denied"  # noqa: S105 -- an entry kind, not a secret
    OPENED = "opened"
    ACTUATOR_FAILED = "actuator_failed"
    CLOSED = "closed"
    RELOCKED = "relocked"
    TIME_SYNCED = "time_synced"
    TIME_SYNC_REFUSED = "time_sync_refused"
    CLOCK_UNTRUSTED = "clock_untrusted"
    REVOCATIONS_APPLIED = "revocations_applied"
    REVOCATIONS_REFUSED = "revocations_refused"
    TRUST_UPDATED = "trust_updated"
    TRUST_UPDATE_REFUSED = "trust_update_refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEntry:
    """One thing that happened at the car, as its access log keeps it."""

    kind: EntryKind
    at: int | None
    boot: int
    reason: Reason | None = None
    token_id: bytes | None = None
    action: str | None = None
    note: str | None = None
    parcels: ParcelRecord | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, EntryKind):
            raise InvalidRequest("kind must be an EntryKind")
        for value, what in ((self.at, "at"), (self.boot, "boot")):
            if value is not None and (type(value) is not int or not 0 <= value < 2**63):
                raise InvalidRequest(f"{what} must be an unsigned int")
        if self.reason is not None and not isinstance(self.reason, Reason):
            raise InvalidRequest("reason must be a Reason")
        if self.token_id is not None and (
            type(self.token_id) is not bytes or not 0 < len(self.token_id) <= MAX_TOKEN_ID_BYTES
        ):
            raise InvalidRequest("token_id must be 1 to 32 bytes")
        if self.action is not None and self.action not in ACTIONS:
            raise InvalidRequest(f"action must be one of {sorted(ACTIONS)}")
        if self.note is not None and self.note not in NOTES:
            raise InvalidRequest(f"note must be one of {sorted(NOTES)}")
        if self.parcels is not None and not isinstance(self.parcels, ParcelRecord):
            raise InvalidRequest("parcels must be a ParcelRecord")

    def encode(self) -> bytes:
        members: dict[int, object] = {_KIND: self.kind.value, _BOOT: self.boot}
        optional = (
            (_AT, self.at), (_REASON, None if self.reason is None else self.reason.value),
            (_TOKEN, self.token_id), (_ACTION, self.action), (_NOTE, self.note),
            (_PARCELS, None if self.parcels is None else self.parcels.to_cbor()),
        )
        members.update((key, value) for key, value in optional if value is not None)
        return cbor.encode(members)

    def describe(self) -> str:
        """One line in plain words, for an owner."""
        when = "untrusted time" if self.at is None else f"t={self.at}"
        parts = [f"{when} {self.kind.value.replace('_', ' ')}"]
        if self.action is not None:
            parts.append(self.action)
        if self.reason is not None:
            parts.append(f"reason {self.reason.value}")
        if self.note is not None:
            parts.append(f"({self.note})")
        if self.parcels is not None:
            parts.append(self.parcels.describe())
        if self.token_id is not None:
            parts.append(f"token {self.token_id.hex()[:12]}")
        return " ".join(parts)


def decode_entry(data: bytes) -> LogEntry:
    """Read an entry's bytes; raise DecodeError for anything off the format."""
    if type(data) is not bytes or len(data) > MAX_ENTRY_BYTES:
        raise DecodeError("log entry is not bytes of a bounded size")
    body = cbor.decode(data)
    if type(body) is not dict or not ({_KIND, _BOOT} <= body.keys() <= set(range(1, 9))):
        raise DecodeError("log entry has the wrong members")
    try:
        entry = LogEntry(
            kind=EntryKind(body[_KIND]), at=body.get(_AT), boot=body[_BOOT],
            reason=None if _REASON not in body else Reason(body[_REASON]),
            token_id=body.get(_TOKEN), action=body.get(_ACTION), note=body.get(_NOTE),
            parcels=None if _PARCELS not in body else read_record(body[_PARCELS]),
        )
    except ValueError as exc:  # InvalidRequest and the enums' ValueError
        raise DecodeError(f"log entry content invalid: {exc}") from None
    if entry.encode() != data:
        raise DecodeError("log entry is not in its one encoding")
    return entry
