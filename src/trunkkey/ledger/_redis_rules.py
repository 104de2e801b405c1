"""The rules both Redis ledgers share, the synchronous and the async one.

One spend script (its text and SHA-1), one key layout, one reading of the
server's settings and one judgement of them, one meaning of the script's
answers and one WAIT budget: :mod:`trunkkey.ledger.redis` and
:mod:`trunkkey.ledger.redis_async` differ only in how they talk to the server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest, LedgerError
from ..observe import describe_error
from .base import DAY_SECONDS, DailyLimit, SpendOutcome, check_spend

#: What WAIT leaves of the deadline: Redis ends a blocked WAIT only at its next
#: cron tick (every 1/hz s, 100 ms by default), plus time for the answer to travel.
_WAIT_MARGIN_S = 0.01
_DEFAULT_HZ = 10

#: KEYS[1] the token, KEYS[2..] the counters; ARGV[1] the token's PXAT,
#: ARGV[2] the counters' PXAT, ARGV[3..] each counter's limit. Nothing is
#: written unless the answer is 1. -1 / -2: by the server's clock the token's
#: keep-until / the counters' day is already over, so Redis would drop what it
#: writes at once: refused rather than answer "first use" with no record.
_SPEND_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  if n >= tonumber(ARGV[i + 1]) then return 2 end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[1]) <= now then return -1 end
if #KEYS > 1 and tonumber(ARGV[2]) <= now then return -2 end
redis.call('SET', KEYS[1], '1', 'PXAT', ARGV[1])
for i = 2, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIREAT', KEYS[i], ARGV[2])
end
return 1
"""
_SPEND_SHA = hashlib.sha1(_SPEND_LUA.encode(), usedforsecurity=False).hexdigest()
_OUTCOMES = {
    1: SpendOutcome.FIRST_USE,
    0: SpendOutcome.ALREADY_USED,
    2: SpendOutcome.LIMIT_REACHED,
}


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """The server settings the ledger's safety rests on, as last read (``None``: unknown)."""

    maxmemory_policy: str | None
    maxmemory: int | None
    appendonly: bool | None
    #: Unknown when read from INFO (CONFIG renamed or forbidden).
    appendfsync: str | None
    #: ``"CONFIG GET"`` or ``"INFO"``.
    read_from: str
    #: Server cron frequency: a blocked WAIT may end up to 1/hz s late.
    hz: int = _DEFAULT_HZ


def _decode(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def _as_int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


#: What the settings check asks first; INFO (``settings_from_info``) if refused.
CONFIG_GET = ("CONFIG", "GET", "maxmemory-policy", "maxmemory", "appendonly", "appendfsync", "hz")


def settings_from_config(reply: Any) -> RedisSettings:
    """The settings in a reply to :data:`CONFIG_GET` (shared with the async ledger)."""
    # RESP2 answers a flat list of names and values, RESP3 a map.
    pairs = reply.items() if isinstance(reply, dict) else zip(*[iter(reply)] * 2, strict=True)
    items = list(pairs)
    found = {_decode(k): _decode(v) for k, v in items}
    appendonly = found.get("appendonly")
    return RedisSettings(
        maxmemory_policy=found.get("maxmemory-policy"),
        maxmemory=_as_int(found.get("maxmemory")),
        appendonly=None if appendonly is None else appendonly == "yes",
        appendfsync=found.get("appendfsync"),
        read_from="CONFIG GET",
        hz=max(1, _as_int(found.get("hz")) or _DEFAULT_HZ),
    )


def settings_from_info(text: str) -> RedisSettings:
    """The settings INFO reports, when CONFIG GET is renamed or forbidden."""
    info = dict(
        line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#")
    )
    aof = info.get("aof_enabled")
    return RedisSettings(
        maxmemory_policy=info.get("maxmemory_policy"),
        maxmemory=_as_int(info.get("maxmemory")),
        appendonly=None if aof is None else aof == "1",
        appendfsync=None,
        read_from="INFO",
        hz=max(1, _as_int(info.get("hz")) or _DEFAULT_HZ),
    )


def judge_settings(
    settings: RedisSettings, where: str, *, accept_eviction: bool, accept_restart: bool
) -> None:
    """Refuse the server settings that void single use (shared with the async ledger)."""
    problems = []
    policy, maxmemory = settings.maxmemory_policy, settings.maxmemory
    if not accept_eviction:
        if policy is None or maxmemory is None:
            problems.append(
                f"maxmemory-policy cannot be read ({settings.read_from}): Redis may evict "
                "spent tokens, which then open again. Fix: allow CONFIG GET or INFO to the "
                "ledger's user, or pass accept_evicted_tokens_reopening=True"
            )
        elif maxmemory != 0 and policy != "noeviction":
            problems.append(
                f"maxmemory-policy is {policy} with maxmemory {maxmemory}: when memory "
                "fills, Redis evicts keys (with volatile-* policies the ledger's first, "
                "being the only ones with an expiry) and an evicted spent token opens "
                "again. Fix: maxmemory-policy noeviction (CONFIG SET and redis.conf), or "
                "pass accept_evicted_tokens_reopening=True"
            )
    if not accept_restart and settings.appendonly is not True:
        shown = "unknown" if settings.appendonly is None else "no"
        problems.append(
            f"appendonly is {shown}: without the append-only file a restart or crash "
            "loses every spend since the last snapshot, and those tokens open again. "
            "Fix: appendonly yes (CONFIG SET and redis.conf), or pass "
            "accept_restart_reopening_tokens=True"
        )
    if problems:
        raise LedgerError(
            f"redis ledger at {where} refuses the server's settings: "
            + "; ".join(problems)
        )

def check_options(prefix: bytes, timeout_s: float, min_replicas: int) -> None:
    """Validate a Redis ledger's options (shared with the async ledger)."""
    if (
        type(prefix) is not bytes
        or not prefix
        or any(c in prefix for c in b"*?[]\\{}")
    ):
        raise InvalidRequest("prefix must be non-empty bytes without glob characters or braces")
    if not (0 < timeout_s <= 60):
        raise InvalidRequest("timeout_s must be in (0, 60]")
    if type(min_replicas) is not int or min_replicas < 0:
        raise InvalidRequest("min_replicas must be a non-negative int")


def vehicle_tag(vehicle: bytes) -> bytes:
    """A vehicle's hash tag: its UTF-8 in hex, so no id can end the tag early."""
    return b"{" + vehicle.hex().encode() + b"}"


def spend_script_call(  # noqa: PLR0917 -- mirrors Ledger.spend, argument for argument
    prefix: bytes,
    vehicle_id: str,
    token_id: bytes,
    keep_until: int,
    issued_at: int,
    at: int,
    limits: tuple[DailyLimit, ...],
) -> tuple[list[bytes], list[int]]:
    """A validated spend as the script's KEYS and ARGV (shared with the async ledger)."""
    vehicle, day = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
    tag = vehicle_tag(vehicle)
    keys = [prefix + b"t" + tag + token_id]
    keys += [prefix + b"d" + tag + day.to_bytes(4, "big") + item.grant for item in limits]
    # PXAT the first millisecond after second keep_until: kept exactly as
    # long as prune keeps an entry in the other ledgers. Counters: through
    # the day after theirs, as long as prune keeps them elsewhere.
    args = [(keep_until + 1) * 1000, (day + 2) * DAY_SECONDS * 1000]
    args += [item.limit for item in limits]
    return keys, args


def script_outcome(code: object) -> SpendOutcome:
    """What the spend script's answer means; a record Redis would drop at once raises."""
    if code in (-1, -2):
        what = "keep-until" if code == -1 else "day"
        raise LedgerError(
            f"redis server's clock is past this spend's {what}: the entry would not "
            "be kept; check clock synchronisation"
        )
    return _OUTCOMES[int(code)]  # type: ignore[call-overload]


def wait_budget_ms(left_s: float, hz: int, min_replicas: int, timeout_s: float) -> int:
    """How long WAIT may block with ``left_s`` of the deadline left; raises if nothing is.

    WAIT gets what is left of the deadline, less how late Redis may end it
    and the time its answer needs to come back; WAIT 0 would block forever,
    so never ask for 0.
    """
    left_ms = int((left_s - 1 / hz - _WAIT_MARGIN_S) * 1000)
    if left_ms < 1:
        raise LedgerError(f"{unconfirmed(min_replicas, timeout_s)}: no time left to WAIT")
    return left_ms


def unconfirmed(min_replicas: int, timeout_s: float) -> str:
    return f"{min_replicas} replicas did not confirm the write within {timeout_s} s"


def check_acked(acked: int, min_replicas: int) -> None:
    if acked < min_replicas:
        raise LedgerError(f"only {acked} of {min_replicas} replicas confirmed the write")


def failure(where: str, exc: BaseException) -> LedgerError:
    # Sanitised: redis-py messages can quote the command, key (token id) included.
    return LedgerError(f"redis ledger at {where} failed: {describe_error(exc)}")
