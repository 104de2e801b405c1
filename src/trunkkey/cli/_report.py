"""The owner's report: one self-contained HTML page, readable without a script.

No network fetch, no script, no external style: the page is complete in
itself, so it opens the same offline, in a mail client, or years later.
"""

from __future__ import annotations

from html import escape

from ..audit import Audit, AuditedEntry
from ..logentry import EntryKind, LogEntry
from ..reasons import Reason
from ._show import utc

_WORDS = {
    EntryKind.BOOT: "The car's access unit started",
    EntryKind.LEDGER_RECOVERED: "The car's record of used codes was lost and started afresh",
    EntryKind.CHALLENGE_ISSUED: "A courier's device asked to open the car",
    EntryKind.TOKEN_ALLOWED: "Access granted",
    EntryKind.PARCELS_SCANNED: "The courier's device scanned parcels of the order",
    EntryKind.TOKEN_DENIED: "Access refused",
    EntryKind.OPENED: "Opened",
    EntryKind.ACTUATOR_FAILED: "The lock mechanism failed",
    EntryKind.CLOSED: "Closed",
    EntryKind.RELOCKED: "Locked again",
    EntryKind.TIME_SYNCED: "The car's clock was set from the carmaker",
    EntryKind.TIME_SYNC_REFUSED: "A clock update was refused",
    EntryKind.CLOCK_UNTRUSTED: "The car stopped trusting its clock",
    EntryKind.REVOCATIONS_APPLIED: "A list of withdrawn permissions was applied",
    EntryKind.REVOCATIONS_REFUSED: "A list of withdrawn permissions was refused",
    EntryKind.TRUST_UPDATED: "The car's trusted keys were updated",
    EntryKind.TRUST_UPDATE_REFUSED: "An update of trusted keys was refused",
}
_REASONS = {
    Reason.ALREADY_USED: "this code was already used",
    Reason.EXPIRED: "the code had expired",
    Reason.NOT_YET_VALID: "the code was not valid yet",
    Reason.BAD_SIGNATURE: "the code was forged or altered",
    Reason.MALFORMED: "not a valid code",
    Reason.WRONG_VEHICLE: "the code is for another car",
    Reason.WRONG_ACTION: "the code does not allow this",
    Reason.OUTSIDE_GEOFENCE: "the car was not where you parked it",
    Reason.CAR_MOVED: "the car was moved",
    Reason.PROOF_MISSING: "the courier's device did not prove itself",
    Reason.PROOF_INVALID: "the courier's device did not prove itself",
    Reason.PARCEL_MISSING: "the courier's device scanned no parcel of the order",
    Reason.WRONG_PARCEL: "the courier scanned a parcel that is not the order's",
    Reason.CLOCK_UNTRUSTED: "the car could not trust its clock",
    Reason.UNIT_BUSY: "another opening was in progress",
}
_WHAT = {"trunk": "trunk", "unlock-relock": "doors"}
_CAUSES = {"closed": "after it was closed", "timeout": "by itself after the time limit",
           "clock_untrusted": "because the clock could not be trusted"}
_ATTEMPTS = {EntryKind.TOKEN_ALLOWED, EntryKind.TOKEN_DENIED, EntryKind.OPENED,
             EntryKind.RELOCKED, EntryKind.ACTUATOR_FAILED, EntryKind.CLOSED}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:52em;color:#222;
background:#fff;line-height:1.4}
h1{font-size:1.5em}.ok{color:#11663a}.bad{color:#a11}
ul.findings li{margin:.2em 0}
ol.timeline{list-style:none;padding:0;border-left:3px solid #ccc}
ol.timeline li{margin:.4em 0 .4em 0;padding:.3em .8em;position:relative}
ol.timeline li.attempt{background:#f4f7fb}
ol.timeline li.refused{background:#fdf0f0}
ol.timeline li.granted{background:#eefaf1}
.when{font-variant-numeric:tabular-nums;color:#555;margin-right:.8em}
.mark{float:right;font-size:.9em;margin-left:1em}
.proven{color:#11663a}.unproven{color:#a11}
.token{font-family:monospace;color:#555;font-size:.9em}
"""


def describe(entry: LogEntry) -> str:
    """One sentence an owner can read."""
    text = _WORDS[entry.kind]
    what = _WHAT.get(entry.action or "", "")
    if entry.kind is EntryKind.TOKEN_ALLOWED and what:
        text += f": open the {what}"
    elif entry.kind in (EntryKind.OPENED, EntryKind.CLOSED) and what:
        text = f"{what.capitalize()} {entry.kind.value}"
    elif entry.kind is EntryKind.PARCELS_SCANNED and entry.parcels is not None:
        text += f": {entry.parcels.describe()}"
    elif entry.kind is EntryKind.RELOCKED and entry.note in _CAUSES:
        text += f" {_CAUSES[entry.note]}"
    if entry.reason is not None:
        text += f": {_REASONS.get(entry.reason, entry.reason.value.replace('_', ' '))}"
    return text


def _item(item: AuditedEntry) -> str:
    entry = item.entry
    if entry is None:
        return (f'<li class="entry unreadable" data-index="{item.index}">'
                '<span class="when">?</span>An entry that cannot be read</li>')
    classes = ["entry"]
    if entry.kind in _ATTEMPTS:
        classes.append("attempt")
    if entry.kind is EntryKind.TOKEN_DENIED:
        classes.append("refused")
    if entry.kind is EntryKind.TOKEN_ALLOWED:
        classes.append("granted")
    when = "time unknown" if entry.at is None else utc(entry.at)
    if item.proven_by is not None:
        mark = (f'<span class="mark proven" title="in the log the car signed at '
                f'{item.proven_by} entries">&#10003; proven</span>')
    else:
        mark = '<span class="mark unproven">not proven</span>'
    if item.in_receipt:
        mark += ' <span class="mark proven">&#10003; in its receipt</span>'
    token = "" if entry.token_id is None else (
        f' <span class="token">code {escape(entry.token_id.hex()[:12])}</span>')
    return (
        f'<li class="{" ".join(classes)}" data-index="{item.index}" '
        f'data-kind="{escape(entry.kind.value)}" '
        f'data-proven="{"yes" if item.proven_by is not None else "no"}">{mark}'
        f'<span class="when">{escape(when)}</span>{escape(describe(entry))}{token}</li>'
    )


def render_report(audit: Audit) -> str:
    """The whole page, as text."""
    verdict = ('<p class="ok" id="verdict">Everything in this history is proven.</p>'
               if audit.ok else
               '<p class="bad" id="verdict">Some of this history is NOT proven: see below.</p>')
    findings = "".join(
        f'<li class="{"ok" if f.proven else "bad"}">'
        f'{"&#10003;" if f.proven else "&#10007;"} {escape(f.text)}</li>'
        for f in audit.findings
    )
    opened = sum(1 for e in audit.entries if e.entry and e.entry.kind is EntryKind.TOKEN_ALLOWED)
    refused = sum(1 for e in audit.entries if e.entry and e.entry.kind is EntryKind.TOKEN_DENIED)
    timeline = "\n".join(_item(item) for item in audit.entries)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Access history of {escape(audit.vehicle_id)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>Who opened your car: access history of {escape(audit.vehicle_id)}</h1>
{verdict}
<p id="summary">Openings allowed: {opened}. Attempts refused: {refused}.
Events in all: {len(audit.entries)}.</p>
<h2>What was checked</h2>
<ul class="findings">{findings}</ul>
<h2>Timeline</h2>
<p>&#10003; proven: this event is in the history your car signed with its own key,
so nobody can have removed or changed it since.</p>
<ol class="timeline" id="timeline">
{timeline}
</ol>
</body></html>
"""
