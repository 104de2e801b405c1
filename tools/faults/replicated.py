"""Replicated servers on loopback: a PostgreSQL primary with a synchronous standby,
and a Redis Cluster of three primaries with one replica each.

One way to build a topology, used everywhere: ``tools/start-services.sh
--replicated`` runs this module (``python -m tools.faults.replicated start``)
to start one in a fixed directory on fixed ports and print its addresses;
tests and harnesses attach to it (:meth:`PostgresStandbyPair.attach`,
:meth:`RedisClusterServers.attach`, through ``TRUNKKEY_REPLICATED_DIR``).
Without that variable they build a throwaway one on free ports in a temporary
directory, as :mod:`tools.faults.faults` does. The failover tests kill and
promote servers; :meth:`~PostgresStandbyPair.start` is also the repair (it
starts what is down, rebuilds a former primary as the new standby, restores
``synchronous_standby_names``), so a test hands the topology back whole.

    python -m tools.faults.replicated start --dir DIR [--pg-ports 5441,5442]
        [--redis-ports 7390,...]      # start or repair; prints `export` lines
    python -m tools.faults.replicated stop --dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .faults import PostgresCluster, RedisServer, ServerUnavailable, _wait_until, free_port


class PostgresStandbyPair:
    """A primary and a streaming standby (``pg_basebackup -R``) it commits to synchronously.

    The primary's ``synchronous_standby_names`` is ``'*'``: with the ledger's
    ``synchronous_commit=on``, a commit returns only once the standby has
    flushed it. :meth:`dsn` names both hosts, for libpq's failover. The two
    nodes live in ``a/`` and ``b/``; which one is primary is kept in
    ``pair.json``, since a failover swaps them.
    """

    MANIFEST = "pair.json"

    def __init__(
        self, directory: Path | None = None, ports: tuple[int, int] | None = None
    ) -> None:
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="trunkkey-pgpair-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.directory.chmod(0o755)
        manifest = self._manifest()
        # Ports are fixed when the pair is first built (the standby's primary_conninfo
        # names the primary's): a saved pair keeps its own.
        ports = tuple(manifest.get("ports", ())) or ports or (free_port(), free_port())
        for name in ("a", "b"):
            (self.directory / name).mkdir(exist_ok=True)
        self.nodes = {
            name: PostgresCluster(self.directory / name, port=port)
            for name, port in zip(("a", "b"), ports, strict=True)
        }
        first = str(manifest.get("primary", "a"))
        self.primary = self.nodes[first]
        self.standby = self.nodes["b" if first == "a" else "a"]

    @classmethod
    def attach(cls, directory: Path) -> PostgresStandbyPair:
        """The pair ``python -m tools.faults.replicated start`` built in ``directory``."""
        if not (directory / cls.MANIFEST).exists():
            raise ServerUnavailable(f"no PostgreSQL pair in {directory} (tools/start-services.sh)")
        return cls(directory)

    def _manifest(self) -> dict[str, object]:
        path = self.directory / self.MANIFEST
        loaded: dict[str, object] = json.loads(path.read_text()) if path.exists() else {}
        return loaded

    def _save(self) -> None:
        primary = next(n for n, node in self.nodes.items() if node is self.primary)
        ports = [node.port for node in self.nodes.values()]
        (self.directory / self.MANIFEST).write_text(
            json.dumps({"ports": ports, "primary": primary})
        )

    def dsn(self, *, standby_first: bool = False, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        ports = [self.primary.port, self.standby.port]
        hosts = ",".join(f"127.0.0.1:{p}" for p in (ports[::-1] if standby_first else ports))
        return f"postgresql://postgres@{hosts}/postgres" + (f"?{query}" if query else "")

    def start(self) -> PostgresStandbyPair:
        """Start the pair, or repair it: idempotent, whatever a test left behind.

        A node without ``standby.signal`` in the standby's place is a former
        primary (its WAL may run past the new primary's): it is rebuilt from
        the primary, never started as a second primary.
        """
        self.primary.start()
        if not (self.standby.data / "standby.signal").exists():
            self.standby.crash()
            shutil.rmtree(self.standby.data, ignore_errors=True)
            # initdb's pg_hba.conf lets replication in from loopback (trust).
            self.primary._run(
                str(self.primary.bindir / "pg_basebackup"), "-h", "127.0.0.1",
                "-p", str(self.primary.port), "-U", "postgres", "-D", str(self.standby.data),
                "-R", "-X", "stream", "--checkpoint=fast",
            )
            # The copy carries the primary's ALTER SYSTEM synchronous_standby_names:
            # promoted with it and no standby, every commit would wait forever.
            auto = self.standby.data / "postgresql.auto.conf"
            auto.write_text("".join(
                line for line in auto.read_text().splitlines(keepends=True)
                if not line.startswith("synchronous_standby_names")
            ))
        self.standby.start()
        self.primary.sql(
            "ALTER SYSTEM SET synchronous_standby_names = '*'", "SELECT pg_reload_conf()"
        )
        self._save()
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
        self.primary, self.standby = self.standby, self.primary
        self._save()

    def stop(self) -> None:
        """Stop both servers cleanly, keeping their data (``start`` brings them back)."""
        self.standby.stop()
        self.primary.stop()

    def destroy(self) -> None:
        self.primary.crash()
        self.standby.crash()
        if self._own_dir:
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


class ClusterNode(RedisServer):
    """A cluster node any process may attach to: daemonized, with a pid file, so a test
    attached to the script's cluster can freeze, kill and restart it, and it outlives
    the process that started it."""

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    def pid(self) -> int | None:
        """The live server's pid, or ``None`` (a zombie counts as dead)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        return None if state == "Z" else pid

    def alive(self) -> bool:
        return self.pid() is not None

    def start(self) -> ClusterNode:
        if self._answers():
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 -- redis-server with our fixed arguments; forks and returns
            [*self.command(), "--daemonize", "yes", "--pidfile", str(self.pidfile)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=True, timeout=30,
        )
        _wait_until(f"redis-server on {self.port}", self._answers, self.log)
        return self

    def send_signal(self, sig: int) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, sig)

    def kill(self) -> None:
        """SIGKILL: the process dies with whatever it had not written."""
        self.send_signal(signal.SIGKILL)
        _wait_until(f"redis-server on {self.port} to die", lambda: not self.alive(), self.log)

    def stop(self) -> None:
        self.send_signal(signal.SIGTERM)
        _wait_until(f"redis-server on {self.port} to stop", lambda: not self.alive(), self.log)


class RedisClusterServers:
    """Three primaries and three replicas (``redis-cli --cluster create --cluster-replicas 1``).

    Every node runs with the settings the ledger accepts (AOF on, no eviction),
    ``appendfsync always`` so a killed process loses nothing it acknowledged
    (what is measured is what the failover loses), and a node timeout of
    :data:`CLUSTER_NODE_TIMEOUT_MS`. Its nodes' ports are kept in ``cluster.json``.
    """

    MANIFEST = "cluster.json"

    def __init__(self, directory: Path | None = None, ports: list[int] | None = None) -> None:
        self.cli = shutil.which("redis-cli")
        if self.cli is None:
            raise ServerUnavailable("redis-cli is not installed (tools/start-services.sh)")
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="trunkkey-rcluster-"))
        manifest = self.directory / self.MANIFEST
        saved = json.loads(manifest.read_text()) if manifest.exists() else {}
        # Ports are fixed when the cluster is first built (nodes.conf names them).
        ports = saved.get("ports") or ports or [free_port() for _ in range(6)]
        # A bus port of its own: the default (port + 10000) may be taken or too high.
        buses = saved.get("buses") or [free_port() for _ in ports]
        self.servers = [
            ClusterNode(
                self.directory / f"node{n}", "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--maxmemory-policy", "noeviction",
                "--cluster-port", str(bus), port=port,
            )
            for n, (port, bus) in enumerate(zip(ports, buses, strict=True))
        ]
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps({"ports": ports, "buses": buses}))

    @classmethod
    def attach(cls, directory: Path) -> RedisClusterServers:
        """The cluster ``python -m tools.faults.replicated start`` built in ``directory``."""
        if not (directory / cls.MANIFEST).exists():
            raise ServerUnavailable(f"no Redis Cluster in {directory} (tools/start-services.sh)")
        return cls(directory)

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
        """Start the cluster, or repair it: start every node that is down (it rejoins
        from its nodes.conf, a former primary as a replica), create the cluster once."""
        for server in self.servers:
            server.start()
        if self.info(self.servers[0], "CLUSTER", "INFO").get("cluster_known_nodes") == "1":
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
        return [s for s in self.servers if s.alive()]

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

    def stop(self) -> None:
        """Stop every node, keeping its data and nodes.conf (``start`` brings it back)."""
        for server in self.servers:
            server.stop()

    def destroy(self) -> None:
        for server in self.servers:
            server.kill()
        if self._own_dir:
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



PAIR_DIR, CLUSTER_DIR = "pg-pair", "redis-cluster"
#: Where the script's topology lives; tests and harnesses attach to it.
DIR_ENV = "TRUNKKEY_REPLICATED_DIR"


@contextmanager
def pair_topology() -> Iterator[PostgresStandbyPair]:
    """The script's pair (``TRUNKKEY_REPLICATED_DIR``), repaired before and handed back
    whole after; without the variable, a throwaway pair."""
    directory = os.environ.get(DIR_ENV)
    if not directory:
        with PostgresStandbyPair() as made:
            yield made
        return
    shared = PostgresStandbyPair.attach(Path(directory) / PAIR_DIR).start()
    try:
        yield shared
    finally:
        shared.start()


@contextmanager
def cluster_topology() -> Iterator[RedisClusterServers]:
    """The script's cluster, repaired before and after; without it, a throwaway one."""
    directory = os.environ.get(DIR_ENV)
    if not directory:
        with RedisClusterServers() as made:
            yield made
        return
    shared = RedisClusterServers.attach(Path(directory) / CLUSTER_DIR).start()
    try:
        yield shared
    finally:
        shared.start()


def _ports(text: str, count: int) -> list[int]:
    ports = [int(p) for p in text.split(",")]
    if len(ports) != count:
        raise SystemExit(f"expected {count} comma-separated ports, got {text!r}")
    return ports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "stop"))
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--pg-ports", default="5441,5442", help="primary,standby")
    parser.add_argument("--redis-ports", default="7390,7391,7392,7393,7394,7395")
    parser.add_argument("--redis-bus-ports", default="17390,17391,17392,17393,17394,17395")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    if args.command == "stop":
        if (directory / CLUSTER_DIR / RedisClusterServers.MANIFEST).exists():
            RedisClusterServers.attach(directory / CLUSTER_DIR).stop()
        if (directory / PAIR_DIR / PostgresStandbyPair.MANIFEST).exists():
            PostgresStandbyPair.attach(directory / PAIR_DIR).stop()
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # the postgres user must reach the pair's directories
    pg_a, pg_b = _ports(args.pg_ports, 2)
    print(f"replicated: PostgreSQL pair in {directory / PAIR_DIR}", file=sys.stderr)
    pair = PostgresStandbyPair(directory / PAIR_DIR, (pg_a, pg_b)).start()
    cluster_dir = directory / CLUSTER_DIR
    cluster_dir.mkdir(exist_ok=True)
    manifest = cluster_dir / RedisClusterServers.MANIFEST
    if not manifest.exists():
        buses = _ports(args.redis_bus_ports, 6)
        manifest.write_text(json.dumps({"ports": _ports(args.redis_ports, 6), "buses": buses}))
    print(f"replicated: Redis Cluster in {cluster_dir}", file=sys.stderr)
    cluster = RedisClusterServers(cluster_dir).start()
    print(f"export {DIR_ENV}={directory}")
    print(f"export TRUNKKEY_POSTGRES_PAIR_DSN={pair.dsn()}")
    print(f"export TRUNKKEY_REDIS_CLUSTER_URL={cluster.urls[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
