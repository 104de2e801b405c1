"""Faults on real servers: a TCP proxy that cuts or freezes the link, and throwaway servers.

Not a mock: every byte goes to the real Redis or PostgreSQL until the test
switches the proxy to ``"hang"`` (swallow everything: a frozen server or a
partitioned network, with TCP still acknowledging) or ``"cut"`` (reset every
connection: a server that died mid-request). :class:`RedisServer` and
:class:`PostgresCluster` start servers of a test's own (own port, own
directory, loopback only) that it may misconfigure, kill and restart.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

MODES = ("forward", "hang", "cut")


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.mode = "forward"
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([a, b], [], [], 0.05)
                if self.mode == "cut":
                    for s in (a, b):
                        # SO_LINGER 0: close with a TCP reset, like a crashed host.
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    return
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    if self.mode == "forward":
                        peers[s].sendall(data)
                    # "hang": read and drop, so the sender's TCP sees its data acknowledged.
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.close()


@contextlib.contextmanager
def fault_proxy(host: str, port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()


# --- Throwaway servers -------------------------------------------------------
#
# The durability and settings tests need servers with settings of their own
# (an eviction policy, no AOF, a role with synchronous_commit=off) and servers
# they may kill. The shared servers of tools/start-services.sh must never be
# reconfigured or killed, so these start their own, on a free loopback port in
# a temporary directory of their own, and stop them afterwards.


class ServerUnavailable(RuntimeError):
    """A throwaway server could not be started (binary missing, or it did not come up)."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until(what: str, ready: Callable[[], bool], log: Path, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            raise ServerUnavailable(f"{what} did not come up within {seconds} s:\n{tail}")
        time.sleep(0.02)  # polling a real process coming up, not a test clock


class RedisServer:
    """A redis-server of its own on 127.0.0.1, in the foreground as a child process.

    ``args`` are extra redis-server options (``--appendonly``, ``--maxmemory-policy``
    ...). :meth:`start` is idempotent and, after :meth:`kill`, restarts the server on
    the same port and directory, so it loads its AOF (or RDB) again.
    """

    def __init__(self, directory: Path, *args: str, port: int | None = None) -> None:
        self.exe = shutil.which("redis-server")
        if self.exe is None:
            raise ServerUnavailable("redis-server is not installed (tools/start-services.sh)")
        self.directory = Path(directory)
        self.port = port or free_port()
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def command(self) -> list[str]:
        return [
            self.exe or "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
            "--protected-mode", "yes", "--dir", str(self.directory),
            "--logfile", str(self.log), "--daemonize", "no", *self.args,
        ]

    def start(self) -> RedisServer:
        if self.process is not None and self.process.poll() is None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 -- redis-server with our fixed arguments
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until(f"redis-server on {self.port}", self._answers, self.log)
        return self

    def kill(self) -> None:
        """SIGKILL: the process dies with whatever it had not written."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                # Redis ignores SIGTERM while it writes its first AOF (after a
                # CONFIG SET appendonly yes); a throwaway server need not wait.
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pg_bindir() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found is None:
        raise ServerUnavailable("PostgreSQL (initdb) is not installed (tools/start-services.sh)")
    return Path(found).resolve().parent


class PostgresCluster:
    """A PostgreSQL cluster of its own on 127.0.0.1, trust authentication, loopback only.

    Run as the ``postgres`` user when we are root (PostgreSQL refuses root).
    :meth:`start` is idempotent (initdb once, then start if not running);
    :meth:`crash` is ``pg_ctl stop -m immediate``, after which :meth:`start`
    runs crash recovery from the WAL.
    """

    def __init__(self, directory: Path | None = None, *, port: int | None = None) -> None:
        self.bindir = _pg_bindir()
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="trunkkey-pg-"))
        self.port = port or free_port()
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            # The postgres user must reach its own directory.
            shutil.chown(self.directory, "postgres", "postgres")
            self.directory.chmod(0o755)

    def dsn(self, user: str = "postgres", dbname: str = "postgres", options: str = "") -> str:
        query = f"?options={options.replace(' ', '%20').replace('=', '%3D')}" if options else ""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}{query}"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_root else []
        done = subprocess.run(  # noqa: S603 -- PostgreSQL's own tools, fixed arguments
            [*prefix, *command], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise ServerUnavailable(
                f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr[-2000:]}"
            )

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), *args)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() and self._answers()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self) -> PostgresCluster:
        if self.running():
            return self
        if not (self.data / "PG_VERSION").exists():
            # -N: a throwaway cluster need not fsync its own creation.
            self._run(
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                "-A", "trust", "--no-instructions", "-N",
            )
        self._pg_ctl(
            "-l", str(self.log), "-w", "-t", "60", "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            # Nothing durability-related on the command line: it would outrank
            # ALTER SYSTEM, which the tests use to weaken the server on purpose.
            f"-c unix_socket_directories={self.directory}",
            "start",
        )
        _wait_until(f"postgres on {self.port}", self._answers, self.log)
        return self

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: no checkpoint, recovery from the WAL at the next start."""
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("-m", "fast", "-w", "stop")

    def sql(self, *statements: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        """Run statements as the superuser, autocommit; the last one's rows."""
        import psycopg  # noqa: PLC0415 -- optional client, present wherever PostgreSQL is tested

        rows: list[tuple[object, ...]] = []
        with psycopg.connect(self.dsn(dbname=dbname), autocommit=True) as conn:
            for statement in statements:
                cursor = conn.execute(statement.encode())
                rows = list(cursor.fetchall()) if cursor.description else []
        return rows

    def destroy(self) -> None:
        # Its data is about to be deleted: no shutdown checkpoint needed.
        self.crash()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
