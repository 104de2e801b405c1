"""A strict CBOR subset for trunkkey's own objects.

trunkkey objects use only unsigned and negative integers, byte and text
strings, arrays and maps, in the core deterministic encoding of RFC 8949
§4.2.1. Anything else is refused rather than interpreted, because two
decoders that read the same bytes differently are how signed-data formats get
broken: so there are no tags (except where a caller peels one off first), no
floats, no simple values, no indefinite lengths, no non-shortest arguments, no
duplicate or unordered map keys, no trailing bytes, and nesting is bounded.

``decode`` allocates nothing larger than its input: a declared length is only
believed once that many bytes are actually present, and it runs in time linear
in its input. It has no size cap of its own, because it does not know what
object it reads: every public decoder built on it first calls
:func:`refuse_oversized` with the cap of its object.
"""

from __future__ import annotations

import itertools
from typing import Any

from .errors import DecodeError

#: Deepest nesting trunkkey objects ever need (a geofence inside a claim set
#: inside a chain needs 3); the cap keeps hostile input from recursing.
MAX_DEPTH = 8

_from_bytes = int.from_bytes

# Smallest argument that may use each long form; anything below must have
# been encoded shorter.
_MIN_ARG = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}
_ARG_LEN = {24: 1, 25: 2, 26: 4, 27: 8}


def _long_arg(data: bytes, pos: int, info: int) -> tuple[int, int]:
    size = _ARG_LEN.get(info)
    if size is None:
        # 28-30 are reserved, 31 is an indefinite length: both refused.
        raise DecodeError("indefinite length or reserved additional information")
    end = pos + size
    if end > len(data):
        raise DecodeError("truncated argument")
    arg = _from_bytes(data[pos:end], "big")
    if arg < _MIN_ARG[info]:
        raise DecodeError("argument not in shortest form")
    return arg, end


def _item(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    ib = data[pos]
    pos += 1
    info = ib & 0x1F
    if info < 24:
        arg = info
    elif info == 26:  # the 4-byte form of every NumericDate: read here, it is that common
        arg = _from_bytes(data[pos : pos + 4], "big")
        if arg < 0x10000 or pos + 4 > len(data):
            arg, pos = _long_arg(data, pos, info)  # words the refusal
        pos += 4
    else:
        arg, pos = _long_arg(data, pos, info)
    major = ib >> 5
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major == 2:
        end = pos + arg
        if end > len(data):
            raise DecodeError("truncated byte string")
        return data[pos:end], end
    if major == 3:
        end = pos + arg
        if end > len(data):
            raise DecodeError("truncated text string")
        return data[pos:end].decode("utf-8"), end
    if depth == 0:
        raise DecodeError("nesting too deep")
    if major == 4:
        # Each element takes at least one byte: a longer declared count is a lie.
        if arg > len(data) - pos:
            raise DecodeError("truncated array")
        out = []
        for _ in range(arg):
            value, pos = _item(data, pos, depth - 1)
            out.append(value)
        return out, pos
    if major == 5:
        if arg > (len(data) - pos) // 2:
            raise DecodeError("truncated map")
        result: dict[Any, Any] = {}
        previous = b""
        for _ in range(arg):
            key, key_end = _item(data, pos, depth - 1)
            if type(key) not in (int, str):
                raise DecodeError("map key is neither an integer nor a text string")
            encoded_key = data[pos:key_end]
            # Deterministic encoding sorts keys by their encoded bytes; a key
            # that is not strictly greater is a duplicate or out of order.
            if encoded_key <= previous:
                raise DecodeError("map keys duplicated or not in deterministic order")
            previous = encoded_key
            result[key], pos = _item(data, key_end, depth - 1)
        return result, pos
    if major == 6:
        raise DecodeError("unexpected tag")
    raise DecodeError("floats and simple values are not allowed")


def refuse_oversized(data: object, cap: int, what: str) -> None:
    """Raise :class:`DecodeError` unless ``data`` is ``bytes`` of at most ``cap`` bytes.

    The first thing every public decoder does, so that nothing is parsed of an
    input longer than its object can ever be, whichever path handed it over.
    """
    if type(data) is not bytes:
        raise DecodeError(f"{what} must be bytes, not {type(data).__name__}")
    if len(data) > cap:
        raise DecodeError(
            f"{what} of {len(data)} bytes is over its {cap}-byte cap: refused before parsing"
        )


def decode(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode one strictly, deterministically encoded CBOR item from ``data``.

    Raises :class:`DecodeError` for anything outside the subset, including
    trailing bytes.
    """
    if type(data) is not bytes:
        raise DecodeError("expected bytes")
    if not data:
        raise DecodeError("empty input")
    try:
        value, pos = _item(data, 0, max_depth)
    except IndexError:
        raise DecodeError("truncated item") from None
    except UnicodeDecodeError:
        raise DecodeError("text string is not valid UTF-8") from None
    if pos != len(data):
        raise DecodeError("trailing bytes after the item")
    return value


def read_item(data: bytes, pos: int, *, max_depth: int) -> tuple[Any, int]:
    """Decode one item starting at ``pos``; return it and the position after it.

    For callers that walk a larger structure themselves. The same rules as
    :func:`decode`, except that bytes may follow the item.
    """
    try:
        return _item(data, pos, max_depth)
    except IndexError:
        raise DecodeError("truncated item") from None
    except UnicodeDecodeError:
        raise DecodeError("text string is not valid UTF-8") from None


def decode_map(
    data: bytes, labels: tuple[bytes, ...], *, not_a_map: str, unknown: str,
    max_depth: int = MAX_DEPTH,
) -> list[Any]:
    """Decode a map whose keys come from a closed set: its values, in ``labels``' order.

    ``labels`` are the encoded keys in deterministic order, so one pass meets
    each key present exactly where the encoding must put it, and no dict is
    built. A key the map lacks comes back as ``None`` (no value of this subset
    is ``None``). The same rules as :func:`decode`; a map with a key outside
    ``labels`` is refused with ``unknown`` formatted with those keys, anything
    but a map with ``not_a_map``.
    """
    if not data:
        raise DecodeError("empty input")
    values: list[Any] = [None] * len(labels)
    try:
        info = data[0] & 0x1F
        if data[0] >> 5 != 5:
            decode(data, max_depth=max_depth)  # malformed CBOR is refused in decode's words
            raise DecodeError(not_a_map)
        count, pos = (info, 1) if info < 24 else _long_arg(data, 1, info)
        index, last = 0, len(labels)
        for _ in range(count):
            # Each CBOR item is self-delimiting: bytes that start with a
            # label's encoding hold exactly that key.
            while index < last and not data.startswith(labels[index], pos):
                index += 1
            if index == last:
                _refuse_keys(data, labels, unknown, max_depth)
            pos += len(labels[index])
            values[index], pos = _item(data, pos, max_depth - 1)
            index += 1
    except IndexError:
        raise DecodeError("truncated item") from None
    except UnicodeDecodeError:
        raise DecodeError("text string is not valid UTF-8") from None
    if pos != len(data):
        raise DecodeError("trailing bytes after the item")
    return values


def _refuse_keys(data: bytes, labels: tuple[bytes, ...], unknown: str, max_depth: int) -> None:
    """Word the refusal of a map whose keys left the closed set or its order."""
    members = decode(data, max_depth=max_depth)  # a duplicate or unordered key fails here
    strangers = members.keys() - {decode(label) for label in labels}
    raise DecodeError(unknown.format(sorted(strangers, key=repr)))


#: Every one-byte string, so that the commonest head costs an index, not an allocation.
_BYTE = tuple(bytes((value,)) for value in range(256))


def head(major: int, arg: int) -> bytes:
    """Encode a CBOR initial byte and argument in shortest form."""
    mt = major << 5
    if 0 <= arg < 24:
        return _BYTE[mt | arg]
    if arg < 0x100:
        return bytes((mt | 24, arg))
    if arg < 0x10000:
        return bytes((mt | 25,)) + arg.to_bytes(2, "big")
    if arg < 0x100000000:
        return bytes((mt | 26,)) + arg.to_bytes(4, "big")
    if arg < 0x10000000000000000:
        return bytes((mt | 27,)) + arg.to_bytes(8, "big")
    raise ValueError("integer out of CBOR range")


def encode(value: Any) -> bytes:
    """Encode ``value`` deterministically (RFC 8949 §4.2.1), in the same subset."""
    kind = type(value)
    if kind is int:
        number: int = value
        return head(0, number) if number >= 0 else head(1, -1 - number)
    if kind is bytes:
        raw_bytes: bytes = value
        return head(2, len(raw_bytes)) + raw_bytes
    if kind is str:
        raw: bytes = value.encode("utf-8")
        return head(3, len(raw)) + raw
    if kind is list or kind is tuple:
        return head(4, len(value)) + b"".join(encode(v) for v in value)
    if kind is dict:
        items = sorted((encode(k), encode(v)) for k, v in value.items())
        for (a, _), (b, _) in itertools.pairwise(items):
            if a == b:
                raise ValueError("duplicate map key")
        return head(5, len(items)) + b"".join(k + v for k, v in items)
    raise TypeError(f"cannot encode {kind.__name__} in trunkkey's CBOR subset")
