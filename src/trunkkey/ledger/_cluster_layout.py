"""The rules both Redis Cluster ledgers share, the synchronous and the async one.

One reading of the options and seed URLs, one parsing of ``CLUSTER SLOTS``,
one slot for a vehicle and one owner for a slot, one refusal of a cluster
with too few replicas, one order in which nodes are asked for the layout and
one budget for asking, one memory of which nodes just failed, and the same
error words: :mod:`trunkkey.ledger.redis_cluster` and
:mod:`trunkkey.ledger.redis_cluster_async` differ only in how they talk to
the nodes (each through a :class:`~trunkkey.ledger.redis.RedisLedger` or an
:class:`~trunkkey.ledger.redis_async.AsyncRedisLedger` of that node).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from ..errors import InvalidRequest, LedgerError
from ._deadline import remaining
from ._redis_rules import check_options

Address = tuple[str, int]
_N = TypeVar("_N")

#: A call that must first read the layout again spends at most this share of
#: ``timeout_s`` on it (``count`` may spend the whole of it).
REFRESH_SHARE = 0.5
#: Each node asked for the layout gets at most this share of ``timeout_s``, so
#: one dead host that swallows packets cannot use the whole budget.
PER_NODE_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A cluster ledger's checked options: where to start, and what every node ledger gets."""

    #: ``scheme://[userinfo@]{host}:{port}/0``: the credentials of the first URL for every node.
    url_template: str
    seeds: tuple[Address, ...]
    prefix: bytes
    timeout_s: float
    min_replicas: int
    accept_evicted_tokens_reopening: bool
    accept_restart_reopening_tokens: bool

    def node_url(self, address: Address) -> str:
        return self.url_template.format(host=address[0], port=address[1])

    def node_options(self) -> dict[str, Any]:
        """The keyword arguments of each node's ledger: the cluster ledger's own."""
        return {
            "prefix": self.prefix, "timeout_s": self.timeout_s, "min_replicas": self.min_replicas,
            "accept_evicted_tokens_reopening": self.accept_evicted_tokens_reopening,
            "accept_restart_reopening_tokens": self.accept_restart_reopening_tokens,
        }

    def describe(self, kind: str) -> str:
        """The ledger's repr: seed addresses and prefix, never the credentials."""
        seeds = ",".join(f"{host}:{port}" for host, port in self.seeds)
        return f"{kind}({seeds!r}, prefix={self.prefix!r})"


def cluster_config(
    urls: str | Sequence[str],
    *,
    prefix: bytes,
    timeout_s: float,
    min_replicas: int,
    accept_evicted_tokens_reopening: bool,
    accept_restart_reopening_tokens: bool,
) -> ClusterConfig:
    """Check a cluster ledger's options before any I/O (else :class:`InvalidRequest`)."""
    given = [urls] if isinstance(urls, str) else list(urls)
    if not given:
        raise InvalidRequest("urls must name at least one node of the cluster")
    parts = [urlsplit(url) for url in given]
    if any(p.scheme not in {"redis", "rediss"} or not p.hostname for p in parts):
        raise InvalidRequest("urls must be redis:// or rediss:// URLs with a host")
    # The node ledgers check these too; checked here first, so a bad option is
    # refused as such before any node is asked for the layout.
    check_options(prefix, timeout_s, min_replicas)
    first = parts[0]
    userinfo = first.netloc.rsplit("@", 1)[0] + "@" if "@" in first.netloc else ""
    return ClusterConfig(
        url_template=f"{first.scheme}://{userinfo}{{host}}:{{port}}/0",
        seeds=tuple((p.hostname or "", p.port or 6379) for p in parts),
        prefix=prefix,
        timeout_s=timeout_s,
        min_replicas=min_replicas,
        accept_evicted_tokens_reopening=bool(accept_evicted_tokens_reopening),
        accept_restart_reopening_tokens=bool(accept_restart_reopening_tokens),
    )


@dataclass(frozen=True, slots=True)
class Layout:
    """Which primary owns which slots, as one ``CLUSTER SLOTS`` answer said."""

    #: (first slot of a range, its primary), sorted by slot.
    owners: tuple[tuple[int, Address], ...] = ()
    replicas: tuple[Address, ...] = ()
    replica_counts: tuple[tuple[Address, int], ...] = ()

    @classmethod
    def parse(cls, slots: Any, asked: Address) -> Layout:
        owners: list[tuple[int, Address]] = []
        replicas: list[Address] = []
        counts: dict[Address, int] = {}
        for entry in slots:
            start, end, primary, *others = entry
            owners.append((int(start), _address(primary, asked)))
            replicas += [_address(node, asked) for node in others]
            counts[_address(primary, asked)] = len(others)
            del end  # ranges are contiguous per owner; a gap is an owner we did not get
        return cls(tuple(sorted(owners)), tuple(replicas), tuple(counts.items()))

    @property
    def primaries(self) -> list[Address]:
        return list(dict.fromkeys(address for _, address in self.owners))

    def owner(self, slot: int) -> Address | None:
        i = bisect.bisect_right([start for start, _ in self.owners], slot) - 1
        return self.owners[i][1] if i >= 0 else None

    def check_replicas(self, wanted: int) -> None:
        """Refuse a layout in which some primary has fewer replicas than ``WAIT`` asks for."""
        short = sorted({
            f"{host}:{port} has {count}"
            for (host, port), count in self.replica_counts if count < wanted
        })
        if short:
            raise LedgerError(
                f"redis cluster: min_replicas is {wanted} but CLUSTER SLOTS shows a primary with "
                f"fewer replicas ({', '.join(short)}): every spend there would wait for "
                "acknowledgements that cannot come and deny. Fix: add replicas, or pass a lower "
                "min_replicas (0: no WAIT, a failover may lose acknowledged spends)"
            )


def _address(node: Any, asked: Address) -> Address:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    # An empty host (or "?") means "the node you asked", in Redis 7's answer.
    return (host if host not in {"", "?"} else asked[0], int(node[1]))


def slot_of(vehicle: bytes) -> int:
    """The cluster slot of a vehicle's keys: the slot of its hash tag's content."""
    # Imported here, not at the top: redis-py is an optional extra.
    from redis.crc import key_slot  # noqa: PLC0415

    return int(key_slot(vehicle.hex().encode()))


class ClusterRouting(Generic[_N]):
    """What a cluster ledger knows: the layout, the node ledgers it made, which nodes failed.

    Thread-safe (a lock around each step, never held during I/O). The ledger
    does the talking: it asks the nodes :meth:`attempts` yields for
    ``CLUSTER SLOTS`` and :meth:`install`\\ s the first answer, routes each
    spend to :meth:`owner`, and reports every call's end (:meth:`failed`,
    :meth:`succeeded`). ``_N`` is its kind of node ledger.
    """

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._layout = Layout()
        self._nodes: dict[Address, _N] = {}
        #: Nodes whose latest call failed: asked last for the layout.
        self._suspect: set[Address] = set()
        self._stale = True
        self._closed = False
        self._replicas_checked = False

    @property
    def stale(self) -> bool:
        return self._stale

    @property
    def primaries(self) -> list[Address]:
        return self._layout.primaries

    def check_open(self) -> None:
        if self._closed:
            raise self.closed_error()

    @staticmethod
    def closed_error() -> LedgerError:
        return LedgerError("ledger is closed")

    def refresh_deadline(self, *, whole: bool = False) -> float:
        """The deadline for reading the layout again: a share of ``timeout_s`` from now."""
        share = 1.0 if whole else REFRESH_SHARE
        return time.monotonic() + self.config.timeout_s * share

    def attempts(self, deadline: float) -> Iterator[tuple[Address, float]]:
        """The nodes to ask for the layout, in order, each with its own deadline.

        Known nodes first, those whose last call failed last, then the seeds;
        none once ``deadline`` has passed.
        """
        with self._lock:
            known = [a for _, a in self._layout.owners] + list(self._layout.replicas)
            suspect = set(self._suspect)
        candidates = list(dict.fromkeys(known + list(self.config.seeds)))
        candidates.sort(key=lambda address: address in suspect)  # stable: order kept otherwise
        for address in candidates:
            if remaining(deadline) <= 0:
                return
            yield address, min(deadline, time.monotonic() + self.config.timeout_s * PER_NODE_SHARE)

    def no_answer(self) -> LedgerError:
        return LedgerError(
            f"redis cluster: no node answered CLUSTER SLOTS within {self.config.timeout_s} s"
        )

    def install(self, slots: Any, asked: Address) -> list[_N]:
        """Use the layout ``asked`` answered; returns the node ledgers no longer needed.

        The first layout installed must give every primary ``min_replicas``
        replicas (else :class:`LedgerError`, and nothing is installed); a
        replica lost later makes that primary's spends deny (``WAIT`` fails).
        """
        layout = Layout.parse(slots, asked)
        if not self._replicas_checked:
            layout.check_replicas(self.config.min_replicas)
        with self._lock:
            self._replicas_checked = True
            self._layout = layout
            self._stale = False
            current = set(layout.primaries)
            return [self._nodes.pop(a) for a in list(self._nodes) if a not in current]

    def keep_old_layout(self, exc: LedgerError) -> None:
        """No node answered: keep the layout known so far, if there is one (else raise ``exc``).

        It is still safe to use (a primary refuses keys of slots it does not
        own), and the vehicles of the live primaries keep being served.
        """
        if not self._layout.owners:
            raise exc

    def owner(self, vehicle: bytes) -> Address:
        """The primary the layout says owns the vehicle's slot."""
        slot = slot_of(vehicle)
        with self._lock:
            found = self._layout.owner(slot)
        if found is None:
            raise LedgerError(f"redis cluster: no primary known for slot {slot}")
        return found

    def node(self, address: Address) -> _N | None:
        with self._lock:
            return self._nodes.get(address)

    def keep(self, address: Address, made: _N) -> _N | None:
        """Remember ``made`` as ``address``'s ledger, unless another call made one first.

        Returns the one to use; if that is not ``made``, the caller closes
        ``made``; ``None``: the ledger was closed meanwhile (raise :meth:`closed_error`).
        """
        with self._lock:
            if self._closed:
                return None
            return self._nodes.setdefault(address, made)

    def failed(self, address: Address | None) -> None:
        """A call failed (a failover, a moved slot, a dead node): read the layout again
        before the next, and ask this node last when doing so."""
        with self._lock:
            self._stale = True
            if address is not None:
                self._suspect.add(address)

    def succeeded(self, address: Address) -> None:
        if address in self._suspect:
            with self._lock:
                self._suspect.discard(address)

    def close(self) -> list[_N]:
        """Mark closed; returns every node ledger, for the caller to close."""
        with self._lock:
            self._closed = True
            nodes, self._nodes = list(self._nodes.values()), {}
        return nodes
