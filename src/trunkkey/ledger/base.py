"""The replay ledger protocol: what makes a token single-use."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..errors import InvalidRequest

#: Bounds on a ledger key, so no backend ever stores unbounded input.
MAX_VEHICLE_ID_BYTES = 64
MAX_TOKEN_ID_BYTES = 64


@runtime_checkable
class Ledger(Protocol):
    """A set of spent (vehicle, token id) pairs with a keep-until time.

    ``consume`` is the only way in, and it is one atomic check-and-set: there
    is deliberately no ``contains`` to build a has-then-add race from.
    """

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        """Record the token as spent.

        Return ``True`` if this call spent it (first use), ``False`` if it was
        already spent. When ``True`` is returned the record is durable to the
        ledger's stated guarantee. Raise (anything) if the ledger cannot tell
        for sure: the verifier then denies with ``ledger_unavailable``.
        """
        ...

    def prune(self, now: int, *, limit: int | None = None) -> int:
        """Delete entries whose ``keep_until`` is before ``now``; return how many.

        ``limit`` bounds the work of one call (a batch); ``None`` prunes all.
        """
        ...

    def count(self) -> int:
        """How many entries are held (expired but unpruned ones included)."""
        ...

    def close(self) -> None: ...


def check_key(vehicle_id: str, token_id: bytes) -> bytes:
    """Validate a ledger key; return the vehicle id as UTF-8 bytes."""
    if type(vehicle_id) is not str or type(token_id) is not bytes:
        raise InvalidRequest("ledger keys are (str vehicle id, bytes token id)")
    raw = vehicle_id.encode("utf-8")
    if not (0 < len(raw) <= MAX_VEHICLE_ID_BYTES) or not (
        0 < len(token_id) <= MAX_TOKEN_ID_BYTES
    ):
        raise InvalidRequest("ledger key out of bounds")
    return raw
