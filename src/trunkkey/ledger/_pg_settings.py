"""What a PostgreSQL session must run with before the ledger trusts it with a spend.

Checked on every new connection (so a setting weakened later, or a failover
to a server without a standby, is refused at the next reconnect), with an
error naming the setting and the fix:

- ``synchronous_commit`` must flush the WAL before a commit returns (``on``,
  or the stronger ``remote_apply``); ``off``, ``local`` and ``remote_write``
  are refused, and the value is then pinned for the session;
- ``fsync`` and ``full_page_writes`` must be on (the latter may be waived for
  storage that cannot tear pages);
- with ``require_synchronous_standby``, the primary must name a synchronous
  standby (``synchronous_standby_names``) and one must be connected and
  synchronous right now (a ``pg_stat_replication`` row with ``sync_state``
  ``sync`` or ``quorum``): only then does a commit wait until a second server
  holds it, so losing the primary loses no acknowledged spend.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import LedgerError

#: Values of synchronous_commit that flush the WAL before a commit returns.
DURABLE_COMMIT = ("on", "remote_apply")

QUERY = (
    "SELECT current_setting('synchronous_commit'),"
    " (SELECT source FROM pg_settings WHERE name = 'synchronous_commit'),"
    " current_setting('fsync'), current_setting('full_page_writes'),"
    " current_user, current_database(), current_setting('synchronous_standby_names'),"
    " (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')),"
    " pg_is_in_recovery()"
)


#: Pins synchronous_commit for the session; answers what it set.
PIN = "SELECT set_config('synchronous_commit', %s, false)"


def check_session(
    conn: Any, where: str, *, accept_torn_pages: bool, require_synchronous_standby: bool
) -> str:
    """Refuse settings that lose acknowledged commits; pin and return synchronous_commit."""
    wanted = judge_session(
        conn.execute(QUERY).fetchone(), where, accept_torn_pages=accept_torn_pages,
        require_synchronous_standby=require_synchronous_standby,
    )
    return confirm_pinned(conn.execute(PIN, (wanted,)).fetchone()[0], wanted, where)


def judge_session(
    row: Any, where: str, *, accept_torn_pages: bool, require_synchronous_standby: bool
) -> str:
    """Refuse the settings in ``row`` (the answer to :data:`QUERY`) that lose
    acknowledged commits; the synchronous_commit to pin. Shared with the async ledger."""
    (inherited, source, fsync, full_pages, role, db, standby_names, synchronous,
     in_recovery) = row
    problems = []
    if inherited not in DURABLE_COMMIT:
        problems.append(
            f"synchronous_commit is {inherited} ({_SOURCES.get(source, source)}): a commit "
            "acknowledged under it can be lost in a crash, and a lost spend opens a trunk "
            f"again. Fix: {_commit_fix(source, role, db)}"
        )
    if fsync != "on":
        problems.append(
            "fsync is off on the server: a crash of the host can lose or corrupt committed "
            "spends. Fix: set fsync = on (postgresql.conf, or ALTER SYSTEM SET fsync = on) "
            "and reload"
        )
    if full_pages != "on" and not accept_torn_pages:
        problems.append(
            "full_page_writes is off on the server: a power cut can tear a page that the "
            "WAL cannot repair. Fix: set full_page_writes = on and reload, or, only on "
            "storage that cannot tear pages (e.g. ZFS), pass "
            "accept_torn_pages_on_power_loss=True"
        )
    # A standby in recovery refuses every spend by itself (read-only); only a
    # primary is asked for its synchronous standby.
    if require_synchronous_standby and not in_recovery:
        problems += _standby_problems(standby_names, int(synchronous or 0))
    if problems:
        raise LedgerError(
            f"postgres ledger at {where} refuses the server's settings: " + "; ".join(problems)
        )
    # Pinned for the session, so nothing set later for the role or database
    # (which a new session would inherit) changes what this one does.
    return str(inherited) if inherited in DURABLE_COMMIT else "on"


def confirm_pinned(pinned: object, wanted: str, where: str) -> str:
    """What :data:`PIN` answered must be what was asked for."""
    if pinned != wanted:  # pragma: no cover - set_config returns what it set
        raise LedgerError(f"postgres ledger at {where}: synchronous_commit stayed {pinned}")
    return wanted


def _standby_problems(standby_names: str, synchronous: int) -> list[str]:
    if not standby_names.strip():
        return [
            "synchronous_standby_names is empty on the primary, and "
            "require_synchronous_standby=True: a commit is acknowledged before any standby "
            "holds it, so a failover can lose acknowledged spends. Fix: set "
            "synchronous_standby_names (e.g. 'ANY 1 (*)') on the primary and reload, or pass "
            "require_synchronous_standby=False"
        ]
    if synchronous < 1:
        return [
            f"synchronous_standby_names is '{standby_names}' but pg_stat_replication shows no "
            "standby with sync_state sync or quorum, and require_synchronous_standby=True: "
            "commits would wait for a standby that is not there (or, for a role that cannot "
            "see pg_stat_replication, the ledger cannot tell). Fix: start and connect the "
            "standby, and grant pg_monitor to the ledger's role"
        ]
    return []


#: Where pg_settings says a value came from, in words.
_SOURCES = {
    "default": "the server's default",
    "configuration file": "set in the server's configuration",
    "command line": "set on the server's command line",
    "environment variable": "set in the server's environment",
    "database": "set for this database",
    "user": "set for this role",
    "database user": "set for this role in this database",
    "client": "asked for by the client: the DSN's options or PGOPTIONS",
}


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def _commit_fix(source: str, role: str, db: str) -> str:
    if source == "user":
        return f"ALTER ROLE {_quote(role)} RESET synchronous_commit"
    if source == "database":
        return f"ALTER DATABASE {_quote(db)} RESET synchronous_commit"
    if source == "database user":
        return f"ALTER ROLE {_quote(role)} IN DATABASE {_quote(db)} RESET synchronous_commit"
    if source == "client":
        return "remove synchronous_commit from the DSN's options (and from PGOPTIONS)"
    return (
        "set synchronous_commit = on in postgresql.conf (or ALTER SYSTEM RESET "
        "synchronous_commit) and reload"
    )
