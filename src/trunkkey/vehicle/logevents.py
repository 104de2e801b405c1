"""Which of the unit's events go into the access log, and as what.

The log keeps what an owner needs to know and nothing more: the event's
kind, its trusted time, the boot, and where they apply the reason code, the
token's identifier, the action and a relock's cause. An event's free-text
detail is never copied (it may say where the car is).
"""

from __future__ import annotations

from collections.abc import Callable

from ..claims import Action
from ..logentry import NOTES, EntryKind, LogEntry
from .accesslog import AccessLog
from .events import Event, EventKind

_PLAIN = {
    EventKind.CHALLENGE_ISSUED: EntryKind.CHALLENGE_ISSUED,
    EventKind.CLOCK_UNTRUSTED: EntryKind.CLOCK_UNTRUSTED,
    EventKind.CLOCK_SYNCED: EntryKind.TIME_SYNCED,
    EventKind.REVOCATIONS_APPLIED: EntryKind.REVOCATIONS_APPLIED,
    EventKind.REVOCATIONS_REFUSED: EntryKind.REVOCATIONS_REFUSED,
    EventKind.TRUST_UPDATED: EntryKind.TRUST_UPDATED,
    EventKind.TRUST_UPDATE_REFUSED: EntryKind.TRUST_UPDATE_REFUSED,
    EventKind.ACCESS_DENIED: EntryKind.TOKEN_DENIED,
    EventKind.ACTUATOR_FAILED: EntryKind.ACTUATOR_FAILED,
    EventKind.RELOCKED: EntryKind.RELOCKED,
    EventKind.TRUNK_OPENED: EntryKind.OPENED,
    EventKind.DOORS_UNLOCKED: EntryKind.OPENED,
    EventKind.TRUNK_CLOSED: EntryKind.CLOSED,
    EventKind.DOORS_CLOSED: EntryKind.CLOSED,
}
_ACTION = {
    EventKind.TRUNK_OPENED: Action.TRUNK.value, EventKind.TRUNK_CLOSED: Action.TRUNK.value,
    EventKind.DOORS_UNLOCKED: Action.UNLOCK_RELOCK.value,
    EventKind.DOORS_CLOSED: Action.UNLOCK_RELOCK.value,
}


def entry_for(event: Event) -> LogEntry | None:
    """The log entry an event becomes, or ``None`` for one the log does not keep.

    ``token_accepted`` is not here: the opening's entry was written by the
    spend, before the event. A signed receipt is evidence about the log, not
    an entry in it.
    """
    kind = _PLAIN.get(event.kind)
    if kind is None:
        return None
    if kind is EntryKind.TOKEN_DENIED and event.detail.startswith("time sync refused"):
        kind = EntryKind.TIME_SYNC_REFUSED
    note = None
    if kind is EntryKind.RELOCKED and event.detail in NOTES:
        note = event.detail
    elif kind is EntryKind.ACTUATOR_FAILED:
        note = "boot" if event.at is None and event.token_id is None else "relock"
        if event.detail.endswith("car stays locked"):
            note = None  # the opening itself failed: the token id says which
    return LogEntry(
        kind=kind, at=event.at, boot=event.boot, reason=event.reason,
        token_id=event.token_id, action=_ACTION.get(event.kind), note=note,
    )


def recorder_for(log: AccessLog) -> Callable[[Event], None]:
    """The event bus's recorder: each event the log keeps, appended durably."""

    def record(event: Event) -> None:
        entry = entry_for(event)
        if entry is not None:
            log.append(entry)

    return record
