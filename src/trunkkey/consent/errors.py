"""Why a signed update (revocation list, trust update) was refused."""

from __future__ import annotations

from ..errors import TrunkkeyError
from ..reasons import Reason


class UpdateRefused(TrunkkeyError):
    """A revocation list or trust update was not applied; the car keeps what it held.

    ``reason`` is a stable :class:`~trunkkey.Reason` (``rollback`` for an old
    or replayed version, ``unknown_key`` for a signer that is not a carmaker
    root, ``chain_invalid`` for a bad signature, ``malformed`` for bytes off
    the profile).
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"update refused: {reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
