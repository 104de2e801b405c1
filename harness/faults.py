"""A TCP proxy in front of a real server, to cut or freeze the link on demand.

Not a mock: every byte goes to the real Redis or PostgreSQL until the test
switches the proxy to ``"hang"`` (swallow everything: a frozen server or a
partitioned network, with TCP still acknowledging) or ``"cut"`` (reset every
connection: a server that died mid-request).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

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
