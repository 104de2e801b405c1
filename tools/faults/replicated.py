"""Throwaway replicated servers on loopback: a PostgreSQL primary with a synchronous
standby, and a Redis Cluster of three primaries with one replica each.

Like :mod:`tools.faults.faults`, each lives in a temporary directory of its own
on free ports, and the failover tests may kill and promote its servers; the
shared servers of ``tools/start-services.sh`` are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .faults import PostgresCluster, RedisServer, ServerUnavailable, _wait_until, free_port


class PostgresStandbyPair:
    """A primary and a streaming standby (``pg_basebackup -R``) it commits to synchronously.

    The primary's ``synchronous_standby_names`` is ``'*'``: with the ledger's
    ``synchronous_commit=on``, a commit returns only once the standby has
    flushed it. :meth:`dsn` names both hosts, for libpq's failover.
    """

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="trunkkey-pgpair-"))
        for name in ("primary", "standby"):
            (self.directory / name).mkdir()
        if os.geteuid() == 0:
            self.directory.chmod(0o755)
        self.primary = PostgresCluster(self.directory / "primary")
        self.standby = PostgresCluster(self.directory / "standby")

    def dsn(self, *, standby_first: bool = False, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        ports = [self.primary.port, self.standby.port]
        hosts = ",".join(f"127.0.0.1:{p}" for p in (ports[::-1] if standby_first else ports))
        return f"postgresql://postgres@{hosts}/postgres" + (f"?{query}" if query else "")

    def start(self) -> PostgresStandbyPair:
        self.primary.start()
        # initdb's pg_hba.conf lets replication in from loopback (trust).
        self.primary._run(
            str(self.primary.bindir / "pg_basebackup"), "-h", "127.0.0.1",
            "-p", str(self.primary.port), "-U", "postgres", "-D", str(self.standby.data),
            "-R", "-X", "stream", "--checkpoint=fast",
        )
        self.standby.start()
        self.primary.sql(
            "ALTER SYSTEM SET synchronous_standby_names = '*'", "SELECT pg_reload_conf()"
        )
        self.wait_synchronous()
        return self

    def synchronous_standbys(self) -> int:
        rows = self.primary.sql(
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')"
        )
        return int(str(rows[0][0]))

    def wait_synchronous(self, seconds: float = 30.0) -> None:
        _wait_until(
            "a synchronous standby", lambda: self.synchronous_standbys() > 0,
            self.standby.log, seconds,
        )

    def kill_primary(self) -> None:
        """``pg_ctl stop -m immediate`` on the primary: no checkpoint, no goodbye."""
        self.primary.crash()

    def promote_standby(self) -> None:
        self.standby._pg_ctl("-w", "-t", "60", "promote")

    def destroy(self) -> None:
        self.primary.crash()
        self.standby.crash()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresStandbyPair:
        try:
            return self.start()
        except BaseException:
            self.destroy()  # a half-started pair is not left running
            raise

    def __exit__(self, *exc: object) -> None:
        self.destroy()


#: Short, so a killed primary is replaced within seconds (the default is 15 s).
CLUSTER_NODE_TIMEOUT_MS = 1000


class RedisClusterServers:
    """Three primaries and three replicas (``redis-cli --cluster create --cluster-replicas 1``).

    Every node runs with the settings the ledger accepts (AOF on, no eviction),
    ``appendfsync always`` so a killed process loses nothing it acknowledged
    (what is measured is what the failover loses), and a node timeout of
    :data:`CLUSTER_NODE_TIMEOUT_MS`.
    """

    def __init__(self, nodes: int = 6) -> None:
        self.cli = shutil.which("redis-cli")
        if self.cli is None:
            raise ServerUnavailable("redis-cli is not installed (tools/start-services.sh)")
        self.directory = Path(tempfile.mkdtemp(prefix="trunkkey-rcluster-"))
        self.servers = [
            RedisServer(
                self.directory / f"node{n}", "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--maxmemory-policy", "noeviction",
                # The bus port of its own: the default (port + 10000) may be taken or too high.
                "--cluster-port", str(free_port()),
            )
            for n in range(nodes)
        ]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def _cli(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 -- redis-cli with our fixed arguments
            [self.cli or "redis-cli", *args], capture_output=True, text=True, timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise ServerUnavailable(f"redis-cli {args[:3]} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> RedisClusterServers:
        for server in self.servers:
            server.start()
        self._cli(
            "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
            "--cluster-replicas", "1", "--cluster-yes",
        )
        self.wait_healthy()
        return self

    def info(self, server: RedisServer, *command: str) -> dict[str, str]:
        """``INFO section`` or ``CLUSTER INFO`` as a dict; empty if the node does not answer."""
        try:
            text = self._cli("-p", str(server.port), *command)
        except ServerUnavailable:
            return {}
        return dict(line.strip().split(":", 1) for line in text.splitlines() if ":" in line)

    def alive(self) -> list[RedisServer]:
        return [s for s in self.servers if s.process is not None and s.process.poll() is None]

    def healthy(self, *, replicas: bool = True) -> bool:
        """Every live node: cluster state ok; every live replica: its link to a primary up;
        with ``replicas``, every node's ``CLUSTER SLOTS`` names a replica for every range
        (what the ledger checks against ``min_replicas``; gossip may lag the links)."""
        for server in self.alive():
            if self.info(server, "CLUSTER", "INFO").get("cluster_state") != "ok":
                return False
            replication = self.info(server, "INFO", "replication")
            if replication.get("role") == "slave" and replication.get(
                "master_link_status"
            ) != "up":
                return False
            if replicas and any(len(entry) < 4 for entry in self._slots(server)):
                return False
        return True

    @staticmethod
    def _slots(server: RedisServer) -> list[list[object]]:
        import redis  # noqa: PLC0415 -- optional client, present wherever Redis is tested

        client = redis.Redis(port=server.port, socket_timeout=2)
        try:
            return list(client.execute_command("CLUSTER", "SLOTS"))
        except redis.RedisError:
            return [[]]
        finally:
            client.close()

    def wait_healthy(self, seconds: float = 30.0, *, replicas: bool = True) -> None:
        _wait_until(
            "the redis cluster", lambda: self.healthy(replicas=replicas), self.servers[0].log,
            seconds,
        )

    def primary_for_slot(self, slot: int) -> RedisServer:
        for server in self.alive():
            if self.info(server, "INFO", "replication").get("role") != "master":
                continue
            mine = self._cli("-p", str(server.port), "CLUSTER", "MYID").strip()
            for line in self._cli("-p", str(server.port), "CLUSTER", "NODES").splitlines():
                fields = line.split()
                if fields and fields[0] == mine and _owns(fields[8:], slot):
                    return server
        raise ServerUnavailable(f"no live primary owns slot {slot}")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        for server in self.alive():
            replication = self.info(server, "INFO", "replication")
            if replication.get("role") == "slave" and replication.get("master_port") == str(
                primary.port
            ):
                return server
        raise ServerUnavailable(f"no live replica of the primary on {primary.port}")

    def wait_failover(self, dead: RedisServer, seconds: float = 30.0) -> float:
        """Seconds until a replica of ``dead`` took over and the cluster is ok again."""
        started = time.monotonic()
        dead.kill()
        self.wait_healthy(seconds, replicas=False)  # the promoted replica has none of its own
        return time.monotonic() - started

    def destroy(self) -> None:
        for server in self.servers:
            server.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisClusterServers:
        try:
            return self.start()
        except BaseException:
            self.destroy()  # a half-started cluster is not left running
            raise

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _owns(ranges: list[str], slot: int) -> bool:
    for item in ranges:
        if item.startswith("["):  # a slot being migrated
            continue
        low, _, high = item.partition("-")
        if int(low) <= slot <= int(high or low):
            return True
    return False

