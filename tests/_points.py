"""Ed25519 public keys that are 32 bytes but not points of the prime-order group.

Shared by the key tests and the decoder tests (``cnf``, grantees, trust updates),
so that every path that builds a key is tried with the same hostile set.
"""

from __future__ import annotations

import nacl.bindings

from trunkkey import SigningKey

P25519 = 2**255 - 19
#: A point of order 8 (in libsodium's small-order blocklist).
ORDER_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")


def mixed_order(raw: bytes) -> bytes:
    """A genuine key plus a point of order 8: on the curve, canonical, not small order."""
    return bytes(nacl.bindings.crypto_core_ed25519_add(raw, ORDER_8))


_FIXED = {
    "identity (order 1)": (1).to_bytes(32, "little"),
    "order 4": bytes(32),
    "order 8": ORDER_8,
    "non-canonical y = p + 3": (P25519 + 3).to_bytes(32, "little"),
    "non-canonical y = p + 1 (the identity again)": (P25519 + 1).to_bytes(32, "little"),
    "not on the curve (y = 2)": (2).to_bytes(32, "little"),
    "x = 0 with the sign bit set": ((1 << 255) | 1).to_bytes(32, "little"),
}
MIXED = "mixed order (a real key + a point of order 8)"
#: Every kind, by name, so a failure says which one.
NAMES = sorted([*_FIXED, MIXED])


def bad_ed25519(name: str) -> bytes:
    """The 32 bytes of the hostile key ``name``."""
    if name == MIXED:
        return mixed_order(SigningKey.generate().public_key.raw)
    return _FIXED[name]
