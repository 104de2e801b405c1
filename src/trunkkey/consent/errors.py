"""Why a signed update (revocation list, trust update) was refused."""

from __future__ import annotations

from ..errors import TrunkkeyError
from ..reasons import Reason


class UpdateRefused(TrunkkeyError):
    """A revocation list or trust update was not applied; the car keeps what it held.

    ``reason`` is a stable :class:`~trunkkey.Reason`, one of:

    * ``malformed`` — bytes off the profile, a payload that does not decode,
      or a trust update that would leave the car no carmaker root valid now
      or later (removing every one, or ending every one's window), or a car
      that had KEM keys none that opens now or later;
    * ``wrong_type`` — a signed object of another type;
    * ``chain_invalid`` — no ``kid``, so no way to tell which root signed;
    * ``unknown_key`` — a signer that is not a carmaker root, or a car KEM key
      the update names that the car does not hold;
    * ``wrong_vehicle`` — a trust update bound to another vehicle;
    * ``key_not_valid`` — a root outside its validity period;
    * ``alg_mismatch`` — a header that is not exactly {root's alg, kid, typ};
    * ``bad_signature`` — a signature that does not verify;
    * ``rollback`` — a version not newer than the one held (old or replayed).
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"update refused: {reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
