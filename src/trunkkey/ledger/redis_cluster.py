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

from collections.abc import Sequence
from typing import Any

from ..errors import LedgerError
from ._cluster_layout import Address, ClusterRouting, cluster_config
from ._deadline import remaining
from .base import DailyLimit, SpendOutcome, check_prune, check_spend
from .redis import DEFAULT_PREFIX, DEFAULT_TIMEOUT_S, RedisLedger


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
        self._config = cluster_config(
            urls, prefix=prefix, timeout_s=timeout_s, min_replicas=min_replicas,
            accept_evicted_tokens_reopening=accept_evicted_tokens_reopening,
            accept_restart_reopening_tokens=accept_restart_reopening_tokens,
        )
        self._redis, self._no_retry = _client()
        self._routing: ClusterRouting[RedisLedger] = ClusterRouting(self._config)
        try:
            self._refresh(self._routing.refresh_deadline(whole=True))
            for address in self._routing.primaries:  # refused now, not at the first spend
                self._node(address)
        except BaseException:
            self.close()
            raise

    def _refresh(self, deadline: float) -> None:
        """Read the layout from the first node that answers (see ``ClusterRouting.attempts``)."""
        for address, each in self._routing.attempts(deadline):
            try:
                slots = self._cluster_slots(address, each)
            except Exception:  # noqa: BLE001, S112 -- a dead node: ask the next one
                continue
            for node in self._routing.install(slots, address):
                node.close()
            return
        raise self._routing.no_answer()

    def _cluster_slots(self, address: Address, deadline: float) -> Any:
        budget = max(0.001, remaining(deadline))
        client = self._redis.Redis.from_url(
            self._config.node_url(address), socket_timeout=budget,
            socket_connect_timeout=budget, retry=self._no_retry,
        )
        try:
            return client.execute_command("CLUSTER", "SLOTS")
        finally:
            client.close()

    def _node(self, address: Address) -> RedisLedger:
        found = self._routing.node(address)
        if found is not None:
            return found
        made = RedisLedger(self._config.node_url(address), **self._config.node_options())
        kept = self._routing.keep(address, made)
        if kept is not made:
            made.close()
        if kept is None:
            raise self._routing.closed_error()
        return kept

    def _route(self, vehicle: bytes) -> tuple[Address, RedisLedger]:
        self._routing.check_open()
        if self._routing.stale:
            try:
                self._refresh(self._routing.refresh_deadline())
            except LedgerError as exc:
                self._routing.keep_old_layout(exc)
        owner = self._routing.owner(vehicle)
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
            self._routing.failed(address)
            raise
        self._routing.succeeded(address)
        return outcome

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        outcome = self.spend(vehicle_id, token_id, keep_until, issued_at=0, at=0)
        return outcome is SpendOutcome.FIRST_USE

    def prune(self, now: int, *, limit: int | None = None) -> int:
        """Nothing to do: Redis expires each token and counter by itself."""
        check_prune(now, limit)  # refused as every ledger refuses it
        self._routing.check_open()
        return 0

    def count(self) -> int:
        """Spent-token keys on every primary (a SCAN of each): for monitoring only."""
        if self._routing.stale:
            self._refresh(self._routing.refresh_deadline(whole=True))
        return sum(self._node(address).count() for address in self._routing.primaries)

    def expire_time_ms(self, vehicle_id: str, token_id: bytes) -> int | None:
        """When the owning primary will drop this entry (Unix ms), or ``None``."""
        vehicle, _ = check_spend(vehicle_id, token_id, 0, 0, 0, ())
        return self._route(vehicle)[1].expire_time_ms(vehicle_id, token_id)

    def close(self) -> None:
        for node in self._routing.close():
            node.close()

    def __enter__(self) -> RedisClusterLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return self._config.describe("RedisClusterLedger")


def _client() -> tuple[Any, Any]:
    try:
        # Imported here, not at the top: redis-py is an optional extra.
        import redis  # noqa: PLC0415
        import redis.retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415
    except ImportError:  # pragma: no cover - depends on the environment
        raise LedgerError(
            "RedisClusterLedger needs redis-py: pip install 'trunkkey[redis]'"
        ) from None
    # No retries: a spend retried after a timeout could find its own write.
    return redis, redis.retry.Retry(NoBackoff(), 0)
