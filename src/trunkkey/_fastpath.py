"""Every shortcut on trunkkey's hot paths but libsodium's, in one place.

Each was measured as needed to hold the performance floor
(``docs/performance.md``: verify at 0.80 of a bare libsodium verification,
mint at 0.80 of a bare signature), and each stands in front of the one plain
path it shortens, which decides everything:

* :func:`usual_claim_values` reads the layout nearly every token's claims
  have (short names, 4-byte NumericDates, an Ed25519 ``cnf`` key, a geofence,
  an order reference, parcels) in place, and returns exactly the values
  :func:`trunkkey.cbor.decode_map` returns for the same bytes, or ``None``.
  Every rule a claim must meet is applied afterwards, once, by
  :func:`trunkkey.claims.decode_claims`, whichever reader ran: this module
  never accepts or refuses anything.
* :func:`usual_claims_bytes` writes the commonest token's claims with one
  ``struct`` pack: the bytes ``claims.encode_claim_fields`` writes, or ``None``.
* :func:`slot_filler` builds frozen dataclasses that check nothing when
  constructed (a token's claims, the verifier's decisions) from values their
  caller has checked.

``tests/test_fast_path_equivalence.py`` holds each equal to its plain path, on
generated values and on mutated bytes, and checks that it is taken; the
direct libsodium calls of ``_sodium.py`` are tested there too.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# exp, nbf and iat as 4-byte NumericDates, then the 16-byte cti, heads included.
_TIMES = struct.Struct(">2sI2sI2sI2s16s")
# cnf label, {1: {1: OKP, -1: Ed25519, -2: x (32 bytes)}}
_CNF_ED25519 = bytes.fromhex("08a101a301012006215820")
_ACCESS = b"\x3a\x00\x01\x00\x00"
_GEOFENCE = b"\x3a\x00\x01\x00\x01"
_ORDER = b"\x3a\x00\x01\x00\x02"
_PARCELS = b"\x3a\x00\x01\x00\x03"
# [lat, lon, radius]: both coordinates in their 4-byte form (head 0x1a or 0x3a).
_FENCE = struct.Struct(">BBIBI")


def _text_at(p: bytes, pos: int) -> tuple[str, int]:
    """A text string of 1 to 255 bytes with its head at ``pos`` (ValueError otherwise)."""
    head = p[pos]
    if 0x61 <= head < 0x78:
        end = pos + 1 + head - 0x60
        return p[pos + 1 : end].decode("utf-8"), end
    if head == 0x78 and p[pos + 1] >= 24:
        end = pos + 2 + p[pos + 1]
        return p[pos + 2 : end].decode("utf-8"), end
    raise ValueError


def _bytes_at(p: bytes, pos: int) -> tuple[bytes, int]:
    """A byte string of 1 to 255 bytes with its head at ``pos`` (ValueError otherwise)."""
    head = p[pos]
    if 0x41 <= head < 0x58:
        end = pos + 1 + head - 0x40
        return p[pos + 1 : end], end
    if head == 0x58 and p[pos + 1] >= 24:
        end = pos + 2 + p[pos + 1]
        return p[pos + 2 : end], end
    raise ValueError


def _fence_at(p: bytes, pos: int) -> tuple[list[int], int]:
    """[lat, lon, radius] at ``pos``: 4-byte coordinates, a 1- or 2-byte radius."""
    array, lat_head, lat, lon_head, lon = _FENCE.unpack_from(p, pos)
    pos += _FENCE.size
    head = p[pos]
    if head == 0x18 and p[pos + 1] >= 24:
        radius, pos = p[pos + 1], pos + 2
    elif head == 0x19 and p[pos + 1]:
        radius, pos = int.from_bytes(p[pos + 1 : pos + 3], "big"), pos + 3
    else:
        raise ValueError
    # Below 0x10000 the 4-byte form is not the shortest one.
    if array != 0x83 or lat < 0x10000 or lon < 0x10000:
        raise ValueError
    if lat_head == 0x3A:
        lat = -1 - lat
    elif lat_head != 0x1A:
        raise ValueError
    if lon_head == 0x3A:
        lon = -1 - lon
    elif lon_head != 0x1A:
        raise ValueError
    return [lat, lon, radius], pos


def _parcels_at(p: bytes, pos: int) -> tuple[list[Any], int]:
    """[salt, [commitments]] at ``pos``, every one a 16-byte byte string, at most
    23 commitments (a 1-byte array head); ValueError or IndexError otherwise."""
    if p[pos] != 0x82 or p[pos + 1] != 0x50:
        raise ValueError
    salt, head = p[pos + 2 : pos + 18], p[pos + 18]
    if not 0x80 <= head <= 0x97:
        raise ValueError
    pos += 19
    commitments = []
    for _ in range(head - 0x80):
        if p[pos] != 0x50:
            raise ValueError
        commitments.append(p[pos + 1 : pos + 17])
        pos += 17
    # A truncated last item reads short here and leaves ``pos`` past the end,
    # which the caller's length check refuses.
    return [salt, commitments], pos


def usual_claim_values(p: bytes) -> list[Any] | None:
    """The claim values of ``p`` in label order, as ``cbor.decode_map`` gives them,
    if ``p`` has the usual layout; ``None`` for any other bytes."""
    try:
        count = p[0] - 0xA0
        if not 7 <= count <= 11 or p[1] != 0x01:
            return None
        iss, pos = _text_at(p, 2)
        if p[pos] != 0x03:
            return None
        aud, pos = _text_at(p, pos + 1)
        exp_head, exp, nbf_head, nbf, iat_head, iat, cti_head, cti = _TIMES.unpack_from(p, pos)
        pos += _TIMES.size
        cnf = fence = order = parcels = None
        if p[pos] == 0x08:
            start = pos + len(_CNF_ED25519)
            if not p.startswith(_CNF_ED25519, pos) or len(p) < start + 32:
                return None
            pos = start + 32
            cnf = {1: {1: 1, -1: 6, -2: p[start:pos]}}
        access = p[pos + 5]
        if not p.startswith(_ACCESS, pos) or access >= 24:
            return None
        pos += 6
        if p.startswith(_GEOFENCE, pos):
            fence, pos = _fence_at(p, pos + 5)
        if p.startswith(_ORDER, pos):
            order, pos = _bytes_at(p, pos + 5)
        if p.startswith(_PARCELS, pos):
            parcels, pos = _parcels_at(p, pos + 5)
    except (IndexError, ValueError, struct.error):  # UnicodeDecodeError is a ValueError
        return None
    if (
        pos != len(p)
        or count != 7 + (cnf is not None) + (fence is not None) + (order is not None)
        + (parcels is not None)
        or exp_head != b"\x04\x1a" or nbf_head != b"\x05\x1a" or iat_head != b"\x06\x1a"
        or cti_head != b"\x07\x50"
        # Below 0x10000 the 4-byte form is not the shortest one.
        or exp < 0x10000 or nbf < 0x10000 or iat < 0x10000
    ):
        return None
    return [iss, aud, exp, nbf, iat, cti, cnf, access, fence, order, parcels]


# After aud in the usual token: exp, nbf, iat as 4-byte NumericDates, the
# 16-byte cti, and the access claim (label, 1-byte value).
_TAIL = struct.Struct(">2sI2sI2sI2s16s5sB")


def usual_claims_bytes(  # noqa: PLR0917 -- private hot path: the claims in wire order
    iss: bytes, aud: bytes, expires: int, not_before: int, issued_at: int,
    token_id: bytes, access: int,
) -> bytes | None:
    """The claims set of a token with no ``cnf``, geofence or order reference, in the usual
    layout, as ``claims.encode_claim_fields`` writes it; ``None`` for any other values."""
    if (
        len(iss) < 24 and len(aud) < 24 and access < 24 and len(token_id) == 16
        and 0x10000 <= expires <= 0xFFFFFFFF and 0x10000 <= not_before <= 0xFFFFFFFF
        and 0x10000 <= issued_at <= 0xFFFFFFFF
    ):
        return b"".join((
            b"\xa7\x01", _BYTES[0x60 + len(iss)], iss, b"\x03", _BYTES[0x60 + len(aud)], aud,
            _TAIL.pack(b"\x04\x1a", expires, b"\x05\x1a", not_before, b"\x06\x1a", issued_at,
                       b"\x07\x50", token_id, _ACCESS, access),
        ))
    return None


_BYTES = tuple(bytes((value,)) for value in range(256))


def slot_filler(cls: type[T], names: tuple[str, ...]) -> Callable[..., T]:
    """A positional constructor of the frozen, slotted dataclass ``cls`` that sets its
    fields' slots directly, for values its caller has already checked.

    A frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``; for the eleven fields of a token's claims that is
    1.5 µs of every verification, against 0.6 µs here. Generated, as
    ``dataclasses`` generates ``__init__``, because a loop over the setters
    costs what it saves. Only for classes whose ``__init__`` checks nothing
    (no ``__post_init__``): the filler skips it.
    """
    if getattr(cls, "__post_init__", None) is not None or set(names) != set(vars(cls)["__slots__"]):
        raise TypeError(f"{cls.__name__} cannot be filled slot by slot")
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    scope |= {f"set_{name}": getattr(cls, name).__set__ for name in names}
    body = "".join(f"    set_{name}(built, {name})\n" for name in names)
    exec(  # noqa: S102 -- fixed text built from the class's own field names
        f"def fill({', '.join(names)}):\n    built = new(cls)\n{body}    return built\n", scope
    )
    fill: Callable[..., T] = scope["fill"]
    return fill
