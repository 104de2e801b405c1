"""Server settings that void single use are refused, at construction and after a reconnect.

Each test starts a Redis or PostgreSQL of its own (tools/faults/faults.py: own
port, own directory, loopback only) with the setting under test, so the
shared servers are never reconfigured. Without the server binaries the tests
skip locally and fail under ``CI``.

- Redis evicting keys (any ``volatile-*`` or ``allkeys-*`` policy under a
  ``maxmemory``) drops spent tokens, which then open again; Redis without AOF
  loses every spend since its last snapshot when it restarts.
- PostgreSQL with ``synchronous_commit`` weaker than ``on`` (server, role,
  database or DSN) acknowledges commits it can lose in a crash; ``fsync=off``
  loses them on any crash of the host.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.faults.faults import PostgresCluster, RedisServer, ServerUnavailable
from trunkkey import LedgerError
from trunkkey.ledger.postgres import PostgresLedger
from trunkkey.ledger.redis import RedisLedger

CAR = "1HGCM82633A004352"
AOF = ("--appendonly", "yes", "--save", "")
StartRedis = Callable[..., RedisServer]
ChangeSetting = Callable[[str, str], None]


def _unavailable(why: object) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the server settings tests: {why}")
    pytest.skip(str(why))


def _keep() -> int:
    return int(time.time()) + 3600


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[StartRedis]:
    started: list[RedisServer] = []

    def start(*args: str) -> RedisServer:
        try:
            server = RedisServer(tmp_path / f"redis-{len(started)}", *args).start()
        except ServerUnavailable as exc:
            _unavailable(exc)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _admin(server: RedisServer) -> Any:
    import redis

    return redis.Redis.from_url(server.url)


class TestRedisEvictionIsRefused:
    @pytest.mark.parametrize(
        "policy",
        ["volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
         "allkeys-lru", "allkeys-lfu", "allkeys-random"],
    )
    def test_an_evicting_policy_under_a_memory_limit_is_refused(
        self, start_redis: StartRedis, policy: str
    ) -> None:
        server = start_redis(*AOF, "--maxmemory", "64mb", "--maxmemory-policy", policy)
        with pytest.raises(LedgerError) as caught:
            RedisLedger(server.url)
        message = str(caught.value)
        assert f"maxmemory-policy is {policy}" in message
        assert "noeviction" in message  # the fix
        assert "accept_evicted_tokens_reopening" in message  # and the explicit way around it

    def test_noeviction_under_a_memory_limit_is_accepted(self, start_redis: StartRedis) -> None:
        server = start_redis(*AOF, "--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
        with RedisLedger(server.url) as ledger:
            assert ledger.consume(CAR, b"t", _keep()) is True

    def test_a_policy_without_a_memory_limit_evicts_nothing_and_is_accepted(
        self, start_redis: StartRedis
    ) -> None:
        server = start_redis(*AOF, "--maxmemory", "0", "--maxmemory-policy", "volatile-lru")
        with RedisLedger(server.url) as ledger:
            assert ledger.consume(CAR, b"t", _keep()) is True

    def test_the_opt_in_accepts_eviction_and_its_name_is_what_happens(
        self, start_redis: StartRedis
    ) -> None:
        # What the refusal protects: under volatile-lru the ledger's keys are the
        # only ones with an expiry, so another tenant's writes evict exactly them.
        server = start_redis(*AOF, "--maxmemory", "3mb", "--maxmemory-policy", "volatile-lru")
        ledger = RedisLedger(server.url, accept_evicted_tokens_reopening=True)
        tokens = [n.to_bytes(4, "big") for n in range(1000)]
        for token in tokens:
            assert ledger.consume(CAR, token, _keep()) is True
        tenant = _admin(server)
        for n in range(400):
            try:
                tenant.set(f"tenant:{n}", b"x" * 8192)  # no expiry: never a candidate
            except Exception:  # noqa: BLE001 -- OOM once only the tenant's keys are left
                break
        tenant.close()
        reopened = sum(ledger.consume(CAR, token, _keep()) for token in tokens)
        ledger.close()
        assert reopened > 0, "eviction should have reopened spent tokens"


class TestRedisWithoutAofIsRefused:
    def test_snapshots_only_is_refused(self, start_redis: StartRedis) -> None:
        server = start_redis("--appendonly", "no")  # Redis's default: RDB snapshots
        with pytest.raises(LedgerError) as caught:
            RedisLedger(server.url)
        message = str(caught.value)
        assert "appendonly is no" in message
        assert "appendonly yes" in message
        assert "accept_restart_reopening_tokens" in message

    def test_the_opt_in_accepts_it(self, start_redis: StartRedis) -> None:
        server = start_redis("--appendonly", "no")
        with RedisLedger(server.url, accept_restart_reopening_tokens=True) as ledger:
            assert ledger.consume(CAR, b"t", _keep()) is True
            assert ledger.server_settings.appendonly is False

    def test_both_problems_are_named_at_once(self, start_redis: StartRedis) -> None:
        server = start_redis(
            "--appendonly", "no", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"
        )
        with pytest.raises(LedgerError, match=r"maxmemory-policy.*appendonly"):
            RedisLedger(server.url)
        with pytest.raises(LedgerError, match="appendonly"):
            RedisLedger(server.url, accept_evicted_tokens_reopening=True)


class TestRedisSettingsAreReported:
    @pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
    def test_appendfsync_is_exposed(self, start_redis: StartRedis, fsync: str) -> None:
        server = start_redis(*AOF, "--appendfsync", fsync)
        with RedisLedger(server.url) as ledger:
            assert ledger.appendfsync == fsync
            assert ledger.server_settings.appendonly is True
            assert ledger.server_settings.maxmemory_policy == "noeviction"

    def test_without_config_the_settings_are_read_from_info(self, start_redis: StartRedis) -> None:
        # Many managed Redis services rename or forbid CONFIG.
        safe = start_redis(*AOF, "--rename-command", "CONFIG", "")
        with RedisLedger(safe.url) as ledger:
            assert ledger.server_settings.appendonly is True
            assert ledger.server_settings.maxmemory_policy == "noeviction"
            assert ledger.appendfsync is None  # INFO does not tell it
        unsafe = start_redis("--appendonly", "no", "--rename-command", "CONFIG", "")
        with pytest.raises(LedgerError, match="appendonly is no"):
            RedisLedger(unsafe.url)


class TestRedisSettingsAreCheckedAgainAfterReconnect:
    def test_a_setting_weakened_while_connected_is_refused_on_the_next_connection(
        self, start_redis: StartRedis
    ) -> None:
        server = start_redis(*AOF)
        ledger = RedisLedger(server.url, timeout_s=1.0)
        assert ledger.consume(CAR, b"before", _keep()) is True
        admin = _admin(server)
        admin.config_set("appendonly", "no")
        admin.client_kill_filter(_type="normal", skipme=True)  # the ledger reconnects
        with pytest.raises(LedgerError, match="appendonly is no"):
            ledger.consume(CAR, b"after", _keep())
        with pytest.raises(LedgerError, match="appendonly is no"):
            ledger.consume(CAR, b"after", _keep())
        admin.config_set("appendonly", "yes")
        assert ledger.consume(CAR, b"after", _keep()) is True
        assert ledger.consume(CAR, b"before", _keep()) is False
        admin.close()
        ledger.close()


# --- PostgreSQL ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    try:
        made = PostgresCluster().start()
    except ServerUnavailable as exc:
        _unavailable(exc)
    try:
        made.sql("CREATE DATABASE ledgers")
        yield made
    finally:
        made.destroy()


_roles = iter(range(1_000_000))


def _role(cluster: PostgresCluster, *settings: str) -> str:
    """A new login role (owner of a schema of its own in ``ledgers``) with ``settings``."""
    name = f"ledger_role_{next(_roles)}"
    cluster.sql(
        f"CREATE ROLE {name} LOGIN",
        *(f"ALTER ROLE {name} SET {s}" for s in settings),
    )
    cluster.sql(f"CREATE SCHEMA {name} AUTHORIZATION {name}", dbname="ledgers")
    return name


class TestPostgresSynchronousCommit:
    def test_a_role_with_synchronous_commit_off_is_refused(self, cluster: PostgresCluster) -> None:
        role = _role(cluster, "synchronous_commit = off")
        with pytest.raises(LedgerError) as caught:
            PostgresLedger(cluster.dsn(role, "ledgers"))
        message = str(caught.value)
        assert "synchronous_commit is off" in message
        assert f"ALTER ROLE {role} RESET synchronous_commit" in message

    @pytest.mark.parametrize("weaker", ["local", "remote_write"])
    def test_every_value_weaker_than_on_is_refused(
        self, cluster: PostgresCluster, weaker: str
    ) -> None:
        role = _role(cluster, f"synchronous_commit = {weaker}")
        with pytest.raises(LedgerError, match=f"synchronous_commit is {weaker}"):
            PostgresLedger(cluster.dsn(role, "ledgers"))

    def test_a_database_with_synchronous_commit_off_is_refused(
        self, cluster: PostgresCluster
    ) -> None:
        cluster.sql("CREATE DATABASE lazy", "ALTER DATABASE lazy SET synchronous_commit = off")
        with pytest.raises(LedgerError, match="ALTER DATABASE lazy RESET synchronous_commit"):
            PostgresLedger(cluster.dsn("postgres", "lazy"))

    def test_a_dsn_asking_for_synchronous_commit_off_is_refused(
        self, cluster: PostgresCluster
    ) -> None:
        dsn = cluster.dsn("postgres", "ledgers", options="-c synchronous_commit=off")
        with pytest.raises(LedgerError, match=r"synchronous_commit is off.*(DSN|PGOPTIONS)"):
            PostgresLedger(dsn)

    def test_the_server_default_on_is_accepted_and_pinned(self, cluster: PostgresCluster) -> None:
        role = _role(cluster)
        with PostgresLedger(cluster.dsn(role, "ledgers"), table="spent") as ledger:
            assert ledger.consume(CAR, b"t", _keep()) is True
            assert ledger.synchronous_commit == "on"

    def test_remote_apply_is_stronger_and_kept(self, cluster: PostgresCluster) -> None:
        role = _role(cluster, "synchronous_commit = remote_apply")
        with PostgresLedger(cluster.dsn(role, "ledgers"), table="spent") as ledger:
            assert ledger.consume(CAR, b"t", _keep()) is True
            assert ledger.synchronous_commit == "remote_apply"

    def test_a_role_weakened_later_is_refused_on_the_next_connection(
        self, cluster: PostgresCluster
    ) -> None:
        role = _role(cluster)
        ledger = PostgresLedger(cluster.dsn(role, "ledgers"), table="spent", timeout_s=1.0)
        assert ledger.consume(CAR, b"before", _keep()) is True
        cluster.sql(
            f"ALTER ROLE {role} SET synchronous_commit = off",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608 -- our role name
            f"WHERE usename = '{role}'",
        )
        # The pooled connection is gone: that call fails; the next one reconnects and refuses.
        with pytest.raises(LedgerError):
            ledger.consume(CAR, b"after", _keep())
        with pytest.raises(LedgerError, match="synchronous_commit is off"):
            ledger.consume(CAR, b"after", _keep())
        cluster.sql(f"ALTER ROLE {role} RESET synchronous_commit")
        assert ledger.consume(CAR, b"after", _keep()) is True
        assert ledger.consume(CAR, b"before", _keep()) is False
        ledger.close()


class TestPostgresServerDurability:
    @pytest.fixture
    def server_setting(self, cluster: PostgresCluster) -> Iterator[ChangeSetting]:
        changed: list[str] = []

        def change(name: str, value: str) -> None:
            changed.append(name)
            cluster.sql(f"ALTER SYSTEM SET {name} = {value}", "SELECT pg_reload_conf()")
            _await_setting(cluster, name, value)

        yield change
        for name in changed:
            cluster.sql(f"ALTER SYSTEM RESET {name}", "SELECT pg_reload_conf()")
            _await_setting(cluster, name, "on")

    def test_fsync_off_is_refused(
        self, cluster: PostgresCluster, server_setting: ChangeSetting
    ) -> None:
        server_setting("fsync", "off")
        with pytest.raises(LedgerError) as caught:
            PostgresLedger(cluster.dsn("postgres", "ledgers"))
        assert "fsync is off" in str(caught.value)
        assert "fsync = on" in str(caught.value)

    def test_full_page_writes_off_is_refused_unless_accepted(
        self, cluster: PostgresCluster, server_setting: ChangeSetting
    ) -> None:
        server_setting("full_page_writes", "off")
        with pytest.raises(LedgerError, match="full_page_writes is off"):
            PostgresLedger(cluster.dsn("postgres", "ledgers"))
        ledger = PostgresLedger(
            cluster.dsn("postgres", "ledgers"), table="fpw", accept_torn_pages_on_power_loss=True
        )
        assert ledger.consume(CAR, b"t", _keep()) is True
        ledger.close()


def _await_setting(cluster: PostgresCluster, name: str, value: str) -> None:
    """pg_reload_conf() signals the postmaster; new sessions see the value shortly after."""
    deadline = time.monotonic() + 10
    while cluster.sql(f"SHOW {name}") != [(value,)]:
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not become {value}")
        time.sleep(0.02)  # waiting for a real server's reload, not a test clock


# --- the async ledgers: the same judgement, on every new connection ------------


def _async_open(kind: str, url: str, **options: Any) -> Any:
    """An async ledger opened (its settings judged) on an event loop of its own thread."""
    from tools.faults.ledgers import SyncOverAsync, open_async_ledger

    return SyncOverAsync(open_async_ledger(kind, url=url, **options))


class TestAsyncLedgersRefuseTheSameSettings:
    def test_redis_without_aof_is_refused_with_the_same_words(
        self, start_redis: StartRedis
    ) -> None:
        server = start_redis("--appendonly", "no")
        with pytest.raises(LedgerError) as sync:
            RedisLedger(server.url)
        with pytest.raises(LedgerError) as other:
            _async_open("redis_async", server.url, namespace="trunkkey:spent")
        assert str(other.value) == str(sync.value)

    def test_redis_eviction_is_refused(self, start_redis: StartRedis) -> None:
        server = start_redis(*AOF, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
        with pytest.raises(LedgerError, match="maxmemory-policy is allkeys-lru"):
            _async_open("redis_async", server.url, namespace="ev")

    def test_redis_weakened_while_connected_is_refused_on_the_next_connection(
        self, start_redis: StartRedis
    ) -> None:
        server = start_redis(*AOF)
        ledger = _async_open("redis_async", server.url, namespace="weak", timeout_s=1.0)
        assert ledger.consume(CAR, b"before", _keep()) is True
        assert ledger.inner.appendfsync in {"always", "everysec", "no"}
        admin = _admin(server)
        admin.config_set("appendonly", "no")
        admin.client_kill_filter(_type="normal", skipme=True)  # the ledger reconnects
        # redis.asyncio's pool may hand out the killed connection once (it does
        # not see the close before using it): that call fails closed too.
        with pytest.raises(LedgerError):
            ledger.consume(CAR, b"after", _keep())
        with pytest.raises(LedgerError, match="appendonly is no"):
            ledger.consume(CAR, b"after", _keep())
        admin.config_set("appendonly", "yes")
        assert ledger.consume(CAR, b"after", _keep()) is True
        assert ledger.consume(CAR, b"before", _keep()) is False
        admin.close()
        ledger.close()

    def test_postgres_role_with_synchronous_commit_off_is_refused_with_the_same_words(
        self, cluster: PostgresCluster
    ) -> None:
        role = _role(cluster, "synchronous_commit = off")
        with pytest.raises(LedgerError) as sync:
            PostgresLedger(cluster.dsn(role, "ledgers"))
        with pytest.raises(LedgerError) as other:
            _async_open("postgres_async", cluster.dsn(role, "ledgers"), namespace="spent")
        assert str(other.value) == str(sync.value)
        assert f"ALTER ROLE {role} RESET synchronous_commit" in str(other.value)

    def test_postgres_dsn_asking_for_synchronous_commit_off_is_refused(
        self, cluster: PostgresCluster
    ) -> None:
        dsn = cluster.dsn("postgres", "ledgers", options="-c synchronous_commit=off")
        with pytest.raises(LedgerError, match=r"synchronous_commit is off.*(DSN|PGOPTIONS)"):
            _async_open("postgres_async", dsn, namespace="spent")

    def test_postgres_remote_apply_is_kept_and_pinned(self, cluster: PostgresCluster) -> None:
        role = _role(cluster, "synchronous_commit = remote_apply")
        ledger = _async_open("postgres_async", cluster.dsn(role, "ledgers"), namespace="spent")
        assert ledger.consume(CAR, b"t", _keep()) is True
        assert ledger.inner.synchronous_commit == "remote_apply"
        ledger.close()
