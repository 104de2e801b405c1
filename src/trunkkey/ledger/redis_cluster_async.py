"""The Redis Cluster replay ledger for asyncio: ``RedisClusterLedger``, awaited.

Everything that decides is shared with the synchronous cluster ledger
(``_cluster_layout``): the options and their checks, the parsing of
``CLUSTER SLOTS``, a vehicle's slot and the primary that owns it, the refusal
of a cluster whose primaries have fewer replicas than ``min_replicas``, the
order in which nodes are asked for the layout and the budget for asking, and
the error words. Each spend goes to the owning primary through an
:class:`~trunkkey.ledger.redis_async.AsyncRedisLedger` of that node: the same
Lua script, the same settings checks on every new connection, the same one
deadline, then ``WAIT`` for ``min_replicas`` replicas (default 1).

Fail closed: a node that does not answer, a ``MOVED`` (the slot moved, or a
failover happened), a ``READONLY`` replica, a ``CLUSTERDOWN``: the spend
raises :class:`~trunkkey.errors.LedgerError` (:class:`~trunkkey.AsyncVerifier`
denies with ``ledger_unavailable``) and the next call reads the layout again
first. A primary never writes a key of a slot it does not own, so a stale
layout can only deny, never spend twice. ``WAIT`` does not make Redis's
replication synchronous: docs/ledgers.md says what a failover can still lose.

Bounded as the synchronous ledger: each node call has the ``timeout_s``
budget of an :class:`AsyncRedisLedger`; a call that must first read the
layout again spends at most half of that more on it (calls waiting meanwhile
share the one reading), and one that must also connect to a node it has not
used before, up to ``timeout_s`` more for that node's settings check.

Make one with ``await AsyncRedisClusterLedger.open(urls)``, which reads the
layout, refuses too few replicas and checks every primary's settings before
the first spend; use it from one event loop (its connections belong to the
loop that opened them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..errors import LedgerError
from ._cluster_layout import Address, ClusterRouting, cluster_config
from ._deadline import remaining
from .base import DailyLimit, SpendOutcome, check_prune, check_spend
from .redis import DEFAULT_PREFIX, DEFAULT_TIMEOUT_S
from .redis_async import AsyncRedisLedger


class AsyncRedisClusterLedger:
    """Spent tokens and daily counters on a Redis Cluster, from asyncio.

    The keys are :class:`~trunkkey.ledger.redis_cluster.RedisClusterLedger`'s,
    so both kinds of ledger may share one cluster and one prefix: a token
    spent through either is spent for both. Options as the synchronous ledger's.
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
        """Make the ledger without I/O: the first call reads the layout (and refuses
        too few replicas). ``await AsyncRedisClusterLedger.open(...)`` does so at once."""
        self._config = cluster_config(
            urls, prefix=prefix, timeout_s=timeout_s, min_replicas=min_replicas,
            accept_evicted_tokens_reopening=accept_evicted_tokens_reopening,
            accept_restart_reopening_tokens=accept_restart_reopening_tokens,
        )
        try:
            # Imported here, not at the top: redis-py is an optional extra.
            import redis.asyncio  # noqa: PLC0415
            from redis.backoff import NoBackoff  # noqa: PLC0415
            from redis.retry import Retry  # noqa: PLC0415
        except ImportError:  # pragma: no cover - depends on the environment
            raise LedgerError(
                "AsyncRedisClusterLedger needs redis-py: pip install 'trunkkey[redis]'"
            ) from None
        self._redis: Any = redis.asyncio
        # No retries: a spend retried after a timeout could find its own write.
        self._no_retry = Retry(NoBackoff(), 0)
        self._routing: ClusterRouting[AsyncRedisLedger] = ClusterRouting(self._config)
        #: The reading of the layout under way: the calls that find it stale meanwhile
        #: wait for its answer instead of each asking the cluster.
        self._reading: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, urls: str | Sequence[str], **options: Any) -> AsyncRedisClusterLedger:
        """A ledger that has read the layout, found enough replicas and accepted every
        primary's settings (else :class:`LedgerError`)."""
        ledger = cls(urls, **options)
        try:
            await ledger._refresh(ledger._routing.refresh_deadline(whole=True))
            for address in ledger._routing.primaries:  # refused now, not at the first spend
                await ledger._node(address)
        except BaseException:
            await ledger.close()
            raise
        return ledger

    async def _refresh(self, deadline: float) -> None:
        """Read the layout, or wait for the reading already under way, until ``deadline``."""
        reading = self._reading
        if reading is None or reading.done():
            reading = self._reading = asyncio.ensure_future(self._read_layout(deadline))
            reading.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({reading}, timeout=remaining(deadline))
        if not done:  # left to end at its own deadline; this call's has come
            raise self._routing.no_answer()
        reading.result()

    async def _read_layout(self, deadline: float) -> None:
        """From the first node that answers (see ``ClusterRouting.attempts``)."""
        for address, each in self._routing.attempts(deadline):
            try:
                slots = await self._cluster_slots(address, each)
            except Exception:  # noqa: BLE001, S112 -- a dead node: ask the next one
                continue
            for node in self._routing.install(slots, address):
                await node.close()
            return
        raise self._routing.no_answer()

    async def _cluster_slots(self, address: Address, deadline: float) -> Any:
        budget = max(0.001, remaining(deadline))
        client = self._redis.Redis.from_url(
            self._config.node_url(address), socket_timeout=budget,
            socket_connect_timeout=budget, retry=self._no_retry,
        )
        async with asyncio.timeout(budget):
            try:
                return await client.execute_command("CLUSTER", "SLOTS")
            finally:
                await client.aclose()

    async def _node(self, address: Address) -> AsyncRedisLedger:
        found = self._routing.node(address)
        if found is not None:
            return found
        made = await AsyncRedisLedger.open(
            self._config.node_url(address), **self._config.node_options()
        )
        kept = self._routing.keep(address, made)
        if kept is not made:
            await made.close()
        if kept is None:
            raise self._routing.closed_error()
        return kept

    async def _route(self, vehicle: bytes) -> tuple[Address, AsyncRedisLedger]:
        self._routing.check_open()
        if self._routing.stale:
            try:
                await self._refresh(self._routing.refresh_deadline())
            except LedgerError as exc:
                self._routing.keep_old_layout(exc)
        owner = self._routing.owner(vehicle)
        return owner, await self._node(owner)

    async def spend(
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
            address, node = await self._route(vehicle)
            outcome = await node.spend(
                vehicle_id, token_id, keep_until, issued_at=issued_at, at=at, limits=limits
            )
        except LedgerError:
            self._routing.failed(address)
            raise
        self._routing.succeeded(address)
        return outcome

    async def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        outcome = await self.spend(vehicle_id, token_id, keep_until, issued_at=0, at=0)
        return outcome is SpendOutcome.FIRST_USE

    async def prune(self, now: int, *, limit: int | None = None) -> int:
        """Nothing to do: Redis expires each token and counter by itself."""
        check_prune(now, limit)  # refused as every ledger refuses it
        self._routing.check_open()
        return 0

    async def count(self) -> int:
        """Spent-token keys on every primary (a SCAN of each): for monitoring only."""
        self._routing.check_open()
        if self._routing.stale:
            await self._refresh(self._routing.refresh_deadline(whole=True))
        found = 0
        for address in self._routing.primaries:
            found += await (await self._node(address)).count()
        return found

    async def expire_time_ms(self, vehicle_id: str, token_id: bytes) -> int | None:
        """When the owning primary will drop this entry (Unix ms), or ``None``."""
        vehicle, _ = check_spend(vehicle_id, token_id, 0, 0, 0, ())
        _, node = await self._route(vehicle)
        return await node.expire_time_ms(vehicle_id, token_id)

    async def close(self) -> None:
        for node in self._routing.close():
            await node.close()

    async def __aenter__(self) -> AsyncRedisClusterLedger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return self._config.describe("AsyncRedisClusterLedger")


def _retrieve(reading: asyncio.Future[None]) -> None:
    if not reading.cancelled():
        reading.exception()  # read even when every caller stopped waiting: no "never retrieved"
