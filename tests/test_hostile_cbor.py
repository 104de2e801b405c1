"""Hostile CBOR: everything outside trunkkey's strict subset is refused, cheaply.

Each kind of hostile item is drawn by hypothesis and checked three ways:

* alone and inside containers, :func:`trunkkey.cbor.decode` raises
  :class:`DecodeError` (never anything else, never a value);
* inside an otherwise valid token that is **correctly re-signed** with the
  trusted issuer key — so it gets past the envelope and the signature and
  reaches the claims decoder — the verifier denies with ``malformed``;
* with :mod:`tracemalloc` around the decode and the verification, peak
  allocation stays small: declared lengths are never believed before the
  bytes are there, so a 1 KiB input cannot make the decoder reserve more
  than a small multiple of 1 KiB.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _points import NAMES, bad_ed25519
from support import NOW, VEHICLE, World, make_world
from trunkkey import Action, DecodeError, Reason, SigningKey, Typ, cbor, make_proof
from trunkkey._fastpath import usual_claim_values
from trunkkey.claims import MAX_CLAIMS_BYTES, decode_claims, encode_claims
from trunkkey.consent import make_grant
from trunkkey.consent.grant import decode_grant, encode_grant
from trunkkey.consent.rotation import decode_update
from trunkkey.cose import COSE_SIGN1_TAG, protected_header, sig_structure
from trunkkey.sealed import is_sealed

#: Peak bytes the strict decoder may allocate while refusing a hostile input of
#: up to 1 KiB: a generous constant, far below what any declared length asks.
HOSTILE_PEAK = 64 * 1024
#: Worst case for *any* input (even well-formed CBOR of the wrong shape): a
#: list of empty maps costs ~70 bytes of Python objects per input byte.
BYTES_PER_INPUT_BYTE = 96


# -- hostile items ---------------------------------------------------------------

def _head(major: int, arg: int, width: int) -> bytes:
    """A CBOR head with the argument in exactly ``width`` bytes (0 = in the initial byte)."""
    info = {0: arg, 1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes(((major << 5) | info,)) + (arg.to_bytes(width, "big") if width else b"")


deep_nesting = st.builds(
    lambda depth, opener, leaf: opener * depth + leaf,
    st.integers(cbor.MAX_DEPTH + 1, 600),
    st.sampled_from([b"\x81", b"\xa1\x00"]),
    st.sampled_from([b"\x00", b"\x80", b"\xa0", b"\x40"]),
)

huge_length = st.builds(
    lambda major, width, arg, tail: _head(major, arg, width) + tail,
    st.sampled_from([2, 3, 4, 5]),
    st.sampled_from([4, 8]),
    st.integers(2**16, 2**32 - 1),
    st.binary(max_size=64),
) | st.builds(
    lambda major, arg, tail: _head(major, arg, 8) + tail,
    st.sampled_from([2, 3, 4, 5]),
    st.integers(2**32, 2**64 - 1),
    st.binary(max_size=64),
)

tagged = st.builds(
    lambda tag, content: cbor.head(6, tag) + content,
    st.sampled_from([2, 3]) | st.integers(0, 2**32),
    st.sampled_from(
        [b"\x41\x01", b"\x49" + b"\xff" * 9, b"\x00", b"\x60", b"\x1a\x6b\x49\xd2\x00"]
    ),
)

floats = st.sampled_from([
    b"\xf9\x7e\x00",  # half NaN
    b"\xf9\x7c\x00",  # half +Inf
    b"\xf9\xfc\x00",  # half -Inf
    b"\xfa\x7f\xc0\x00\x00",  # single NaN
    b"\xfa\x7f\x80\x00\x00",  # single +Inf
    b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # double NaN
    b"\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00",  # double +Inf
    b"\xfb\x41\xda\xd2\x74\x80\x00\x00\x00",  # 1.8e9 as a double: a float NumericDate
]) | st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from([b"\xf9", b"\xfa", b"\xfb"]),
    st.binary(min_size=8, max_size=8),
).map(lambda b: b[: {0xF9: 3, 0xFA: 5, 0xFB: 9}[b[0]]])

simple_values = st.sampled_from([b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xf0"]) | st.integers(
    32, 255
).map(lambda v: b"\xf8" + bytes((v,)))

duplicate_keys = st.builds(
    lambda key, a, b: b"\xa2" + key + a + key + b,
    st.sampled_from([b"\x01", b"\x20", b"\x61a", b"\x3a\x00\x01\x00\x00"]),
    st.sampled_from([b"\x00", b"\x40"]),
    st.sampled_from([b"\x01", b"\x41\x00"]),
)

unsorted_keys = st.sampled_from([
    b"\xa2\x02\x00\x01\x00",  # 2 before 1
    b"\xa2\x20\x00\x01\x00",  # -1 before 1 (bytewise 0x20 > 0x01)
    b"\xa2\x62ab\x00\x61z\x00",  # longer text before shorter
])

indefinite = st.builds(
    lambda opener, body: opener + body + b"\xff",
    st.sampled_from([b"\x5f", b"\x7f", b"\x9f", b"\xbf"]),
    st.sampled_from([b"", b"\x41\x00", b"\x61a", b"\x00", b"\x00\x00"]),
) | st.sampled_from([b"\xff", b"\x1c", b"\x1d", b"\x1e", b"\x5c", b"\x9e", b"\xbd", b"\xfc"])

non_shortest = st.one_of(
    st.integers(0, 23).map(lambda v: _head(0, v, 1)),
    st.integers(0, 0xFF).map(lambda v: _head(0, v, 2)),
    st.integers(0, 0xFFFF).map(lambda v: _head(1, v, 4)),
    st.integers(0, 0xFFFFFFFF).map(lambda v: _head(0, v, 8)),
    st.integers(0, 23).map(lambda n: _head(2, n, 1) + bytes(n)),
    st.integers(0, 23).map(lambda n: _head(4, n, 1) + bytes(n)),
)

bad_utf8 = st.sampled_from([b"\x61\xff", b"\x62\xc3\x28", b"\x63\xed\xa0\x80", b"\x61\x80"])

#: Every kind, named, so a failure says which one.
HOSTILE: dict[str, st.SearchStrategy[bytes]] = {
    "deep nesting": deep_nesting,
    "huge declared length": huge_length,
    "bignum or other tag": tagged,
    "float, NaN or Inf": floats,
    "simple value": simple_values,
    "duplicate map key": duplicate_keys,
    "unsorted map keys": unsorted_keys,
    "indefinite length or reserved": indefinite,
    "non-shortest argument": non_shortest,
    "invalid UTF-8": bad_utf8,
}


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    """A well-formed item with its tail chopped off."""
    value = draw(st.recursive(
        st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20),
        lambda inner: st.lists(inner, min_size=1, max_size=4)
        | st.dictionaries(st.integers(-100, 100), inner, min_size=1, max_size=4),
        max_leaves=8,
    ))
    encoded = cbor.encode(value)
    if len(encoded) < 2:
        encoded = cbor.encode([value, value])
    return encoded[: draw(st.integers(0, len(encoded) - 1))]


any_hostile = st.one_of(*HOSTILE.values(), truncated())


# -- the token forge ----------------------------------------------------------------

def fresh_world() -> World:
    """A new issuer, trust store and empty ledger: hypothesis examples must not share spends."""
    return make_world()


def resign(key: SigningKey, payload: bytes, protected: bytes | None = None) -> bytes:
    """A tagged COSE_Sign1 with ``payload`` (any bytes), correctly signed by ``key``."""
    prot = protected if protected is not None else protected_header(
        key.algorithm, Typ.TOKEN, key.kid
    )
    signature = key.sign(sig_structure(prot, payload))
    return (b"\xd2\x84" + cbor.head(2, len(prot)) + prot + b"\xa0"
            + cbor.head(2, len(payload)) + payload + cbor.head(2, len(signature)) + signature)


def valid_claim_items(world: World) -> list[tuple[bytes, bytes]]:
    """The encoded (label, value) pairs of a valid claims set, in deterministic order."""
    claims = world.issuer.claims_for(vehicle_id=VEHICLE, action="trunk", not_before=NOW,
                                     expires=NOW + 3600, order_ref=b"order-1")
    members: dict[int, Any] = cbor.decode(encode_claims(claims))
    return sorted((cbor.encode(k), cbor.encode(v)) for k, v in members.items())


def claims_with(items: list[tuple[bytes, bytes]], index: int, hostile: bytes) -> bytes:
    """The claims set with the value at ``index`` replaced by raw ``hostile`` bytes."""
    out = [cbor.head(5, len(items))]
    for i, (label, value) in enumerate(items):
        out += (label, hostile if i == index else value)
    return b"".join(out)


def verify(world: World, token: bytes) -> Reason:
    return world.verifier.verify(token, vehicle_id=VEHICLE, action=Action.TRUNK).reason


def peak_of(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _decode_or_none(data: bytes) -> None:
    try:
        cbor.decode(data)
    except DecodeError:
        return


# -- the decoder ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(HOSTILE))
@given(data=st.data())
def test_decoder_refuses_each_hostile_kind_alone_and_nested(kind: str, data: st.DataObject) -> None:
    item = data.draw(HOSTILE[kind])
    for wrapped in (item, b"\x81" + item, b"\xa1\x01" + item, b"\x82\x00" + item):
        with pytest.raises(DecodeError):
            cbor.decode(wrapped)


@given(truncated())
def test_decoder_refuses_truncated_items(item: bytes) -> None:
    with pytest.raises(DecodeError):
        cbor.decode(item)


@given(st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=8))
def test_decoder_refuses_trailing_bytes(prefix: bytes, tail: bytes) -> None:
    try:
        cbor.decode(prefix)
    except DecodeError:
        return
    with pytest.raises(DecodeError):
        cbor.decode(prefix + tail)


def test_decoder_reasons_are_specific() -> None:
    cases = {
        b"\x81" * (cbor.MAX_DEPTH + 1) + b"\x00": "nesting too deep",
        b"\x5b" + b"\xff" * 8: "truncated byte string",
        b"\x7a\xff\xff\xff\xff": "truncated text string",
        b"\x9b" + b"\xff" * 8 + b"\x00": "truncated array",
        b"\xbb" + b"\xff" * 8 + b"\x00\x00": "truncated map",
        b"\xc2\x41\x01": "unexpected tag",
        b"\xf9\x7e\x00": "floats and simple values are not allowed",
        b"\xa2\x01\x00\x01\x00": "map keys duplicated or not in deterministic order",
        b"\x9f\xff": "indefinite length or reserved additional information",
        b"\x18\x01": "argument not in shortest form",
        b"\x61\xff": "text string is not valid UTF-8",
        b"\x82\x81\x00": "truncated item",
        b"\x82\x00": "truncated array",
        b"\x19\x01": "truncated argument",
        b"\x00\x00": "trailing bytes after the item",
        b"\xa1\x41\x00\x00": "map key is neither an integer nor a text string",
    }
    for data, reason in cases.items():
        with pytest.raises(DecodeError) as raised:
            cbor.decode(data)
        assert str(raised.value) == reason, data.hex()


def test_nesting_exactly_at_the_cap_decodes() -> None:
    at_cap = b"\x81" * cbor.MAX_DEPTH + b"\x00"
    assert cbor.decode(at_cap) is not None
    with pytest.raises(DecodeError, match="nesting too deep"):
        cbor.decode(b"\x81" + at_cap)


# -- hostile items inside correctly signed tokens --------------------------------------

@given(st.data())
def test_hostile_claim_values_in_resigned_tokens_are_malformed(data: st.DataObject) -> None:
    world = fresh_world()
    items = valid_claim_items(world)
    hostile = data.draw(any_hostile, label="hostile item")
    index = data.draw(st.integers(0, len(items) - 1), label="claim index")
    payload = claims_with(items, index, hostile)
    token = resign(world.key, payload)
    if len(token) > world.verifier.policy.max_token_size:
        assert verify(world, token) is Reason.TOO_LARGE
        return
    with pytest.raises(DecodeError):
        decode_claims(payload)
    d = world.verifier.verify(token, vehicle_id=VEHICLE, action=Action.TRUNK)
    assert d.reason is Reason.MALFORMED, (d.reason, d.detail)
    assert d.detail.startswith("claims: ")
    assert d.claims is None


@given(any_hostile)
def test_hostile_payload_as_a_whole_in_a_resigned_token_is_malformed(hostile: bytes) -> None:
    world = fresh_world()
    token = resign(world.key, hostile)
    expected = (
        Reason.TOO_LARGE if len(token) > world.verifier.policy.max_token_size
        else Reason.MALFORMED
    )
    assert verify(world, token) is expected


@given(st.data())
def test_hostile_protected_header_values_are_malformed(data: st.DataObject) -> None:
    world = fresh_world()
    hostile = data.draw(st.one_of(*(HOSTILE[k] for k in HOSTILE if k != "huge declared length")))
    label = data.draw(st.sampled_from([b"\x01", b"\x04", b"\x10"]))
    members = {b"\x01": b"\x27", b"\x04": cbor.encode(world.key.kid), b"\x10": b"\x19\xff\x15"}
    members[label] = hostile
    prot = b"\xa3" + b"".join(k + v for k, v in sorted(members.items()))
    claims = encode_claims(world.issuer.claims_for(vehicle_id=VEHICLE, action="trunk",
                                                   not_before=NOW, expires=NOW + 3600))
    token = resign(world.key, claims, protected=prot)
    if len(token) > world.verifier.policy.max_token_size:
        return
    assert verify(world, token) is Reason.MALFORMED


@pytest.mark.parametrize(("claim", "encoded"), [
    (4, b"\xfb\x41\xda\xd2\x74\x80\x00\x00\x00"),  # exp as a double
    (4, b"\xfa\x4e\xd6\x93\xa4"),  # exp as a single
    (5, b"\xf9\x7c\x00"),  # nbf as +Inf
    (6, b"\xf9\x7e\x00"),  # iat as NaN
    (4, b"\xc2\x48" + (2**62).to_bytes(8, "big")),  # exp as a bignum
    (4, b"\xc1\x1a\x6b\x49\xd2\x00"),  # exp as tag 1 (epoch date)
    (-65537, b"\xf9\x45\x00"),  # access bits as the float 5.0
    (-65537, b"\xc2\x41\x05"),  # access bits as a bignum
])
def test_floats_and_tags_where_integers_belong(claim: int, encoded: bytes) -> None:
    world = fresh_world()
    items = valid_claim_items(world)
    index = next(i for i, (label, _) in enumerate(items) if label == cbor.encode(claim))
    token = resign(world.key, claims_with(items, index, encoded))
    assert verify(world, token) is Reason.MALFORMED


def test_duplicate_claim_keys_in_a_resigned_token() -> None:
    world = fresh_world()
    items = valid_claim_items(world)
    # Two exp claims, the second later: whichever a lax decoder kept, we keep neither.
    exp = next(pair for pair in items if pair[0] == b"\x04")
    doubled = sorted([*items, (b"\x04", cbor.encode(NOW + 10**6))])
    assert exp in doubled
    payload = cbor.head(5, len(doubled)) + b"".join(k + v for k, v in doubled)
    assert verify(world, resign(world.key, payload)) is Reason.MALFORMED


# -- the envelope ------------------------------------------------------------------------

@given(st.binary(min_size=1, max_size=40))
def test_valid_token_with_bytes_appended_is_malformed(tail: bytes) -> None:
    world = fresh_world()
    token = world.mint()
    d = world.verifier.verify(token + tail, vehicle_id=VEHICLE, action="trunk")
    assert d.reason is Reason.MALFORMED
    assert world.verifier.verify(token, vehicle_id=VEHICLE, action="trunk").allowed


@given(st.data())
def test_valid_token_chopped_is_malformed(data: st.DataObject) -> None:
    world = fresh_world()
    token = world.mint()
    cut = data.draw(st.integers(0, len(token) - 1))
    chopped = token[:cut] if data.draw(st.booleans()) else token[len(token) - cut:]
    # A tail that happens to begin with tag 16 claims to be sealed: it is
    # refused at step 1b, before anything inside is read.
    expected = Reason.CANNOT_OPEN if is_sealed(chopped) else Reason.MALFORMED
    assert verify(world, chopped) is expected


def test_envelope_variants_a_lax_decoder_would_accept() -> None:
    world = fresh_world()
    token = world.mint()
    body = token[1:]  # the array, without tag 18
    variants = {
        "untagged": body,
        "wrapped in the CWT tag 61": b"\xd8\x3d" + token,
        "tag 18 written long": b"\xd8\x12" + body,
        "tag 98 (COSE_Sign)": b"\xd8\x62" + body,
        "indefinite array": b"\xd2\x9f" + token[2:] + b"\xff",
        "array of five": b"\xd2\x85" + token[2:] + b"\x40",
        "payload as indefinite bstr": None,
    }
    prot_len = token[2] & 0x1F
    payload_at = 2 + 1 + prot_len + 1
    head = token[payload_at]
    payload_len = token[payload_at + 1] if head == 0x58 else token[payload_at + 2]
    start = payload_at + (2 if head == 0x58 else 3)
    payload = token[start:start + payload_len]
    variants["payload as indefinite bstr"] = (
        token[:payload_at] + b"\x5f" + cbor.head(2, len(payload)) + payload + b"\xff"
        + token[start + payload_len:]
    )
    for name, variant in variants.items():
        assert variant is not None
        assert verify(world, variant) is Reason.MALFORMED, name
    assert COSE_SIGN1_TAG == 18


def test_too_large_is_decided_before_parsing() -> None:
    world = fresh_world()
    cap = world.verifier.policy.max_token_size
    padded = resign(world.key, b"\x5a" + (2**31).to_bytes(4, "big") + bytes(cap))
    assert verify(world, padded) is Reason.TOO_LARGE
    assert verify(world, b"\xff" * (cap + 1)) is Reason.TOO_LARGE


# -- keys that are not points of the group -----------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_courier_key_in_cnf_that_is_not_a_valid_point_is_malformed(name: str) -> None:
    world = fresh_world()
    device = SigningKey.generate()
    claims = world.issuer.claims_for(vehicle_id=VEHICLE, action="trunk", not_before=NOW,
                                     expires=NOW + 3600, courier_key=device.public_key)
    payload = encode_claims(claims).replace(device.public_key.raw, bad_ed25519(name))
    assert usual_claim_values(payload) is not None  # read by the shortcut, judged by the rules
    with pytest.raises(DecodeError, match="not a valid Ed25519 point"):
        decode_claims(payload)
    token = resign(world.key, payload)
    challenge = bytes(16)
    proof = make_proof(device, token=token, vehicle_id=VEHICLE, challenge=challenge)
    d = world.verifier.verify(token, vehicle_id=VEHICLE, action=Action.TRUNK, proof=proof,
                              challenge=challenge)
    assert d.reason is Reason.MALFORMED, (d.reason, d.detail)
    assert "not a valid Ed25519 point" in d.detail


def test_courier_key_wrapped_in_a_byte_string_is_malformed() -> None:
    # RFC 8747 puts the COSE_Key map itself in cnf; a byte string holding one is
    # a second encoding of the same claim, which the strict profile never admits.
    world = fresh_world()
    device = SigningKey.generate().public_key
    claims = world.issuer.claims_for(vehicle_id=VEHICLE, action="trunk", not_before=NOW,
                                     expires=NOW + 3600, courier_key=device)
    members = cbor.decode(encode_claims(claims))
    assert decode_claims(cbor.encode(members)).courier_key == device
    members[8] = {1: device.to_cose_key()}
    payload = cbor.encode(members)
    with pytest.raises(DecodeError, match="cnf COSE_Key must be a map"):
        decode_claims(payload)
    assert verify(world, resign(world.key, payload)) is Reason.MALFORMED


@pytest.mark.parametrize("name", NAMES)
def test_grantee_key_that_is_not_a_valid_point_is_refused(name: str) -> None:
    grantee = SigningKey.generate().public_key
    genuine = encode_grant(make_grant(grantee=grantee, grantee_name="carrier", access=0x05,
                                      not_before=NOW, expires=NOW + 3600,
                                      vehicle_ids=[VEHICLE]))
    assert decode_grant(genuine).grantee == grantee
    with pytest.raises(DecodeError, match="not a valid Ed25519 point"):
        decode_grant(genuine.replace(grantee.raw, bad_ed25519(name)))


@pytest.mark.parametrize("name", NAMES)
def test_trust_update_key_that_is_not_a_valid_point_is_refused(name: str) -> None:
    def update(raw: bytes) -> bytes:
        return cbor.encode({1: 1, 2: NOW, 3: [[1, "retailer", raw, NOW, NOW + 60]], 4: []})

    assert decode_update(update(SigningKey.generate().public_key.raw)).set
    with pytest.raises(DecodeError, match="not a valid Ed25519 point"):
        decode_update(update(bad_ed25519(name)))


# -- memory ----------------------------------------------------------------------------------

def _fill_to(item: bytes, size: int = 1024) -> bytes:
    """``item`` followed by filler so the input is ``size`` bytes: the decoder sees 1 KiB."""
    return item + b"\x00" * max(0, size - len(item))


@given(any_hostile)
def test_decoding_a_1kib_hostile_input_allocates_little(hostile: bytes) -> None:
    data = _fill_to(hostile)
    assert peak_of(lambda: _decode_or_none(data)) < HOSTILE_PEAK


@pytest.mark.parametrize("data", [
    b"\x5b" + b"\xff" * 8 + bytes(1015),  # bstr claiming 2^64-1 bytes
    b"\x7b" + b"\xff" * 8 + bytes(1015),
    b"\x9b" + b"\xff" * 8 + bytes(1015),  # array claiming 2^64-1 items
    b"\xbb" + b"\xff" * 8 + bytes(1015),
    b"\x9a\x7f\xff\xff\xff" + bytes(1019),
    b"\x81" * 1023 + b"\x00",
    b"\x9f" * 1024,
], ids=["bstr", "tstr", "array", "map", "array-2^31", "nesting", "indefinite"])
def test_declared_lengths_are_never_believed(data: bytes) -> None:
    assert len(data) == 1024
    with pytest.raises(DecodeError):
        cbor.decode(data)
    assert peak_of(lambda: _decode_or_none(data)) < 8 * 1024


@given(st.binary(min_size=1, max_size=1024))
def test_any_1kib_input_allocates_at_most_linearly(data: bytes) -> None:
    assert peak_of(lambda: _decode_or_none(data)) < BYTES_PER_INPUT_BYTE * len(data) + 16 * 1024


def test_worst_case_well_formed_input_is_bounded_by_the_linear_rule() -> None:
    # The most allocation per byte the subset admits: a list of empty maps.
    data = b"\x99\x03\xfc" + b"\xa0" * 1020
    peak = peak_of(lambda: cbor.decode(data))
    assert HOSTILE_PEAK // 2 < peak < BYTES_PER_INPUT_BYTE * len(data) + 16 * 1024


@given(st.data())
def test_verifying_a_hostile_token_allocates_little(data: st.DataObject) -> None:
    world = fresh_world()
    items = valid_claim_items(world)
    hostile = data.draw(any_hostile)
    token = resign(world.key, claims_with(items, data.draw(st.integers(0, len(items) - 1)),
                                          hostile))
    token = token if len(token) <= 1024 else token[:1024]
    world.verifier.verify(token, vehicle_id=VEHICLE, action="trunk")  # warm caches
    peak = peak_of(lambda: world.verifier.verify(token, vehicle_id=VEHICLE, action="trunk"))
    assert peak < HOSTILE_PEAK


def test_verifying_the_worst_case_payload_stays_within_the_cap_rule() -> None:
    world = fresh_world()
    # The most objects per byte, at the claims cap so that it is parsed, not refused unread.
    payload = cbor.head(4, MAX_CLAIMS_BYTES - 3) + b"\xa0" * (MAX_CLAIMS_BYTES - 3)
    assert len(payload) == MAX_CLAIMS_BYTES
    token = resign(world.key, payload)
    assert len(token) <= world.verifier.policy.max_token_size
    d = world.verifier.verify(token, vehicle_id=VEHICLE, action=Action.TRUNK)
    assert (d.reason, d.detail) == (Reason.MALFORMED, "claims: claims set must be a map")
    peak = peak_of(lambda: verify(world, token))
    assert peak < BYTES_PER_INPUT_BYTE * world.verifier.policy.max_token_size + 16 * 1024
