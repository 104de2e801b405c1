"""A replay ledger on a Redis Cluster: each spend on the primary that owns its vehicle.

Every key of one vehicle carries the vehicle as a hash tag (see
:class:`~trunkkey.ledger.redis.RedisLedger`), so a vehicle's tokens and its
daily counters live in one slot and one script stays atomic. This ledger
reads the cluster's layout (``CLUSTER SLOTS``), sends each spend to the
primary that owns the vehicle's slot through a :class:`RedisLedger` of that
node (same script, same settings checks on every node, same deadline), and
after the script waits for ``min_replicas`` replicas to acknowledge it
(``WAIT``), denying if they do not in time.

Fail closed: a node that does not answer, a ``MOVED`` (the slot moved, or a
failover happened), a ``READONLY`` replica, a ``CLUSTERDOWN``: the spend
raises :class:`~trunkkey.errors.LedgerError` (the verifier denies) and the
next call reads the layout again first. A primary never writes a key of a
slot it does not own, so a stale layout can only deny, never spend twice.

What it does not promise: Redis replicates asynchronously, and ``WAIT`` does
not make it synchronous. A spend acknowledged by its replica can still be
lost if a replica that had not received it is the one promoted (with one
replica per primary, and ``WAIT 1``, the promoted replica holds every
acknowledged spend unless the cluster picks a replica that was cut off, or
an operator forces a failover). docs/ledgers.md has the figures measured.

Bounded: each node call has the ``timeout_s`` budget of a :class:`RedisLedger`;
a call that must first read the layout again (after a failure) spends at most
half of that more on it, and one that must also connect to a node it has
not used before, up to ``timeout_s`` more for the connection's settings check.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidRequest, LedgerError
from ._deadline import remaining
from .base import DailyLimit, SpendOutcome, check_spend
from .redis import DEFAULT_PREFIX, DEFAULT_TIMEOUT_S, RedisLedger

Address = tuple[str, int]


class RedisClusterLedger:
    """Spent tokens and daily counters on a Redis Cluster; thread-safe.

    ``urls``: one or more nodes of the cluster (``redis://[user:password@]host:port``);
    the rest are learnt from the cluster. Every primary's settings are checked
    when the ledger is made (refused as :class:`RedisLedger` refuses them), and
    every node's again on each new connection. A cluster in which a primary
    has fewer replicas than ``min_replicas`` is refused when the ledger is
    made, with an error naming ``min_replicas``; a replica lost later makes
    that primary's spends deny (their ``WAIT`` fails).
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        prefix: bytes = DEFAULT_PREFIX,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        min_replicas: int = 1,
        accept_evicted_tokens_reopening: bool = False,
        accept_restart_reopening_tokens: bool = False,
    ) -> None:
        given = [urls] if isinstance(urls, str) else list(urls)
        if not given:
            raise InvalidRequest("urls must name at least one node of the cluster")
        parts = [urlsplit(url) for url in given]
        if any(p.scheme not in {"redis", "rediss"} or not p.hostname for p in parts):
            raise InvalidRequest("urls must be redis:// or rediss:// URLs with a host")
        first = parts[0]
        userinfo = first.netloc.rsplit("@", 1)[0] + "@" if "@" in first.netloc else ""
        self._url = f"{first.scheme}://{userinfo}{{host}}:{{port}}/0"
        self._seeds: list[Address] = [(p.hostname or "", p.port or 6379) for p in parts]
        self._options: dict[str, Any] = {
            "prefix": prefix, "timeout_s": timeout_s, "min_replicas": min_replicas,
            "accept_evicted_tokens_reopening": accept_evicted_tokens_reopening,
            "accept_restart_reopening_tokens": accept_restart_reopening_tokens,
        }
        self._timeout_s = timeout_s
        self._redis, self._key_slot, self._no_retry = _client()
        self._lock = threading.Lock()
        self._starts: list[int] = []
        self._owners: list[tuple[int, Address]] = []
        self._replicas: list[Address] = []
        self._replica_counts: dict[Address, int] = {}
        self._nodes: dict[Address, RedisLedger] = {}
        #: Nodes whose latest call failed: asked last for the layout.
        self._suspect: set[Address] = set()
        self._stale = True
        self._closed = False
        try:
            self._refresh(time.monotonic() + timeout_s)
            self._check_replicas(min_replicas)
            for _, address in self._owners:  # refused now, not at the first spend
                self._node(address)
        except BaseException:
            self.close()
            raise

    def _refresh(self, deadline: float) -> None:
        """Read the layout from the first node that answers.

        Known nodes first, those whose last call failed last, then the seeds;
        each gets at most a quarter of the budget, so one dead host that
        swallows packets cannot use it all.
        """
        with self._lock:
            known = [a for _, a in self._owners] + self._replicas
            suspect = set(self._suspect)
        candidates = list(dict.fromkeys(known + self._seeds))
        candidates.sort(key=lambda address: address in suspect)  # stable: order kept otherwise
        for address in candidates:
            if remaining(deadline) <= 0:
                break
            each = min(deadline, time.monotonic() + self._timeout_s / 4)
            try:
                slots = self._cluster_slots(address, each)
            except Exception:  # noqa: BLE001, S112 -- a dead node: ask the next one
                continue
            self._install(slots, address)
            return
        raise LedgerError(
            f"redis cluster: no node answered CLUSTER SLOTS within {self._timeout_s} s"
        )

    def _check_replicas(self, wanted: int) -> None:
        """Refuse a layout in which some primary has fewer replicas than ``WAIT`` asks for."""
        short = sorted({
            f"{host}:{port} has {count}"
            for (host, port), count in self._replica_counts.items() if count < wanted
        })
        if short:
            raise LedgerError(
                f"redis cluster: min_replicas is {wanted} but CLUSTER SLOTS shows a primary with "
                f"fewer replicas ({', '.join(short)}): every spend there would wait for "
                "acknowledgements that cannot come and deny. Fix: add replicas, or pass a lower "
                "min_replicas (0: no WAIT, a failover may lose acknowledged spends)"
            )

    def _cluster_slots(self, address: Address, deadline: float) -> Any:
        url = self._url.format(host=address[0], port=address[1])
        budget = max(0.001, remaining(deadline))
        client = self._redis.Redis.from_url(
            url, socket_timeout=budget, socket_connect_timeout=budget, retry=self._no_retry,
        )
        try:
            return client.execute_command("CLUSTER", "SLOTS")
        finally:
            client.close()

    def _install(self, slots: Any, asked: Address) -> None:
        owners: list[tuple[int, Address]] = []
        replicas: list[Address] = []
        counts: dict[Address, int] = {}
        for entry in slots:
            start, end, primary, *others = entry
            owners.append((int(start), _address(primary, asked)))
            replicas += [_address(node, asked) for node in others]
            counts[_address(primary, asked)] = len(others)
            del end  # ranges are contiguous per owner; a gap is an owner we did not get
        owners.sort()
        with self._lock:
            self._owners = owners
            self._starts = [start for start, _ in owners]
            self._replicas = replicas
            self._replica_counts = counts
            self._stale = False
            current = {address for _, address in owners}
            gone = [self._nodes.pop(a) for a in list(self._nodes) if a not in current]
        for node in gone:
            node.close()

    def _node(self, address: Address) -> RedisLedger:
        with self._lock:
            found = self._nodes.get(address)
        if found is not None:
            return found
        made = RedisLedger(self._url.format(host=address[0], port=address[1]), **self._options)
        with self._lock:
            if self._closed:
                made.close()
                raise LedgerError("ledger is closed")
            kept = self._nodes.setdefault(address, made)
        if kept is not made:
            made.close()
        return kept

    def _route(self, vehicle: bytes) -> tuple[Address, RedisLedger]:
        if self._closed:
            raise LedgerError("ledger is closed")
        if self._stale:
            try:
                self._refresh(time.monotonic() + self._timeout_s / 2)
            except LedgerError:
                # No node answered: the layout known so far is still safe to
                # use (a primary refuses keys of slots it does not own), and
                # the vehicles of the live primaries keep being served.
                if not self._owners:
                    raise
        slot = self._key_slot(vehicle.hex().encode())
        with self._lock:
            i = bisect.bisect_right(self._starts, slot) - 1
            owner = self._owners[i][1] if i >= 0 else None
        if owner is None:
            raise LedgerError(f"redis cluster: no primary known for slot {slot}")
        return owner, self._node(owner)

    def spend(
        self,
        vehicle_id: str,
        token_id: bytes,
        keep_until: int,
        *,
        issued_at: int,
        at: int,
        limits: tuple[DailyLimit, ...] = (),
    ) -> SpendOutcome:
        """One script on the vehicle's primary, then ``WAIT``; see the module docstring."""
        vehicle, _ = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
        address: Address | None = None
        try:
            address, node = self._route(vehicle)
            outcome = node.spend(
                vehicle_id, token_id, keep_until, issued_at=issued_at, at=at, limits=limits
            )
        except LedgerError:
            # A failover, a moved slot, a dead node: read the layout again, and
            # ask this node last when doing so.
            with self._lock:
                self._stale = True
                if address is not None:
                    self._suspect.add(address)
            raise
        if address in self._suspect:
            with self._lock:
                self._suspect.discard(address)
        return outcome

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        outcome = self.spend(vehicle_id, token_id, keep_until, issued_at=0, at=0)
        return outcome is SpendOutcome.FIRST_USE

    def prune(self, now: int, *, limit: int | None = None) -> int:  # noqa: ARG002 -- protocol
        """Nothing to do: Redis expires each token and counter by itself."""
        if self._closed:
            raise LedgerError("ledger is closed")
        return 0

    def count(self) -> int:
        """Spent-token keys on every primary (a SCAN of each): for monitoring only."""
        if self._stale:
            self._refresh(time.monotonic() + self._timeout_s)
        with self._lock:
            owners = list(dict.fromkeys(address for _, address in self._owners))
        return sum(self._node(address).count() for address in owners)

    def expire_time_ms(self, vehicle_id: str, token_id: bytes) -> int | None:
        """When the owning primary will drop this entry (Unix ms), or ``None``."""
        vehicle, _ = check_spend(vehicle_id, token_id, 0, 0, 0, ())
        return self._route(vehicle)[1].expire_time_ms(vehicle_id, token_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            node.close()

    def __enter__(self) -> RedisClusterLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        seeds = ",".join(f"{host}:{port}" for host, port in self._seeds)
        return f"RedisClusterLedger({seeds!r}, prefix={self._options['prefix']!r})"


def _address(node: Any, asked: Address) -> Address:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    # An empty host (or "?") means "the node you asked", in Redis 7's answer.
    return (host if host not in {"", "?"} else asked[0], int(node[1]))


def _client() -> tuple[Any, Any, Any]:
    try:
        # Imported here, not at the top: redis-py is an optional extra.
        import redis  # noqa: PLC0415
        import redis.retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.crc import key_slot  # noqa: PLC0415
    except ImportError:  # pragma: no cover - depends on the environment
        raise LedgerError(
            "RedisClusterLedger needs redis-py: pip install 'trunkkey[redis]'"
        ) from None
    # No retries: a spend retried after a timeout could find its own write.
    return redis, key_slot, redis.retry.Retry(NoBackoff(), 0)
