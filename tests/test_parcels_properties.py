"""Properties of parcel-bound tokens (issue 19), over generated orders and scans."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from support import VEHICLE, make_world
from trunkkey import Reason, SigningKey, make_proof
from trunkkey.inspect import inspect_unverified
from trunkkey.parcels import MAX_PARCEL_ID_BYTES, MAX_PARCELS, Parcels, commit_parcel

CHALLENGE = b"c" * 16
COURIER = SigningKey.generate()

#: What a scanner may read: printable text of 1 to 64 bytes of UTF-8.
identifiers = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=24
).filter(lambda s: s.isprintable() and len(s.encode("utf-8")) <= MAX_PARCEL_ID_BYTES)
orders = st.lists(identifiers, min_size=1, max_size=MAX_PARCELS, unique=True)


@given(order=orders, stranger=identifiers, data=st.data())
def test_any_identifier_outside_the_order_is_refused_and_spends_nothing(
    order: list[str], stranger: str, data: st.DataObject
) -> None:
    assume(stranger not in order)
    w = make_world()
    token = w.mint(courier_key=COURIER.public_key, parcels=order)
    # The stranger, anywhere among some of the order's own parcels.
    rest = data.draw(st.lists(st.sampled_from(order), unique=True,
                              max_size=min(len(order), MAX_PARCELS - 1)))
    scan = data.draw(st.permutations([*rest, stranger]))
    proof = make_proof(COURIER, token=token, vehicle_id=VEHICLE, challenge=CHALLENGE, scan=scan)
    d = w.verifier.verify(token, vehicle_id=VEHICLE, action="trunk", proof=proof,
                          challenge=CHALLENGE)
    assert d.reason is Reason.WRONG_PARCEL
    # A refused scan does not spend the token: the right parcels still open it.
    assert w.ledger.count() == 0
    good = make_proof(COURIER, token=token, vehicle_id=VEHICLE, challenge=CHALLENGE,
                      scan=rest or order[:1])
    assert w.verifier.verify(token, vehicle_id=VEHICLE, action="trunk", proof=good,
                             challenge=CHALLENGE).reason is Reason.ALLOWED


@given(order=orders, data=st.data())
def test_every_nonempty_part_of_the_order_opens_and_is_recorded_exactly(
    order: list[str], data: st.DataObject
) -> None:
    w = make_world()
    token = w.mint(courier_key=COURIER.public_key, parcels=order)
    scan = data.draw(st.lists(st.sampled_from(order), unique=True, min_size=1))
    proof = make_proof(COURIER, token=token, vehicle_id=VEHICLE, challenge=CHALLENGE, scan=scan)
    d = w.verifier.verify(token, vehicle_id=VEHICLE, action="trunk", proof=proof,
                          challenge=CHALLENGE)
    assert d.reason is Reason.ALLOWED
    assert d.parcels is not None
    salt = _salt(token)
    assert set(d.parcels.scanned) == {commit_parcel(salt, i) for i in scan}
    assert d.parcels.partial == (len(scan) < len(order))


@given(first=orders, salt=st.binary(min_size=16, max_size=16), data=st.data())
def test_the_commitment_reveals_nothing_but_the_count(
    first: list[str], salt: bytes, data: st.DataObject
) -> None:
    # Two orders of the same size: what a reader of the token sees has the
    # same shape whatever the identifiers are, and holds no identifier's bytes.
    size = len(first)
    second = data.draw(st.lists(identifiers, min_size=size, max_size=size, unique=True))
    a, b = Parcels.commit(first, salt=salt), Parcels.commit(second, salt=salt)
    assert [len(c) for c in a.commitments] == [len(c) for c in b.commitments]
    w = make_world()
    token_a = w.mint(courier_key=COURIER.public_key, parcels=first)
    token_b = w.mint(courier_key=COURIER.public_key, parcels=second)
    assert len(token_a) == len(token_b)
    claims = inspect_unverified(token_a).claims
    assert claims.parcels is not None
    for identifier in first:
        encoded = identifier.encode("utf-8")
        if len(encoded) >= 8:  # shorter byte strings can turn up by chance
            assert encoded not in token_a


@given(order=orders)
def test_the_same_order_in_two_tokens_shares_no_commitment(order: list[str]) -> None:
    # A reader of many tokens cannot tell that two carry the same parcel.
    w = make_world()
    first = w.mint(courier_key=COURIER.public_key, parcels=order)
    second = w.mint(courier_key=COURIER.public_key, parcels=order)
    a, b = inspect_unverified(first).claims.parcels, inspect_unverified(second).claims.parcels
    assert a is not None
    assert b is not None
    assert not set(a.commitments) & set(b.commitments)


def _salt(token: bytes) -> bytes:
    parcels = inspect_unverified(token).claims.parcels
    assert parcels is not None
    return parcels.salt
