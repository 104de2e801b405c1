"""Sealed tokens and bundles attacked through the public API only.

An attacker may seal any bytes to a car's public key (HPKE base mode
authenticates no sender), capture and replay sealed bytes, and present them
at once to many verifications; a careless operator may sign with a large
(hybrid) key or run a car without consent chains. What each of them can
tell apart from the car's answers is written down here, as a test.
"""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives import hpke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import VEHICLE, World, make_world
from test_verifier_async import AsyncMemory
from trunkkey import (
    AsyncVerifier,
    CarKemKey,
    CarKeyring,
    Decision,
    InvalidRequest,
    MemoryLedger,
    Reason,
    Unsealed,
    Verifier,
    cbor,
    open_bundle,
    seal,
)
from trunkkey._hpke4 import AAD, PROTECTED, pyhpke_suite
from trunkkey.cose import enc_structure, encrypt0
from trunkkey.errors import DecodeError
from trunkkey.keys import Algorithm
from trunkkey.sealed import (
    BUCKETS,
    FIXED_HEADER,
    bucket_for,
    is_sealed,
    open_sealed,
    sealed_size,
)
from trunkkey.sealed_bundle import unseal_presented
from trunkkey.sealed_pq import PROTECTED_PQ, CarHybridKemKey

CAR = CarKemKey(bytes(range(32)))
NEXT_CAR = CarKemKey(bytes(range(5, 37)))
CHAIN = b"\x81\x41\x00"


def _verifier(world: World, *keys: CarKemKey) -> Verifier:
    return Verifier(trust_store=world.store, ledger=MemoryLedger(), clock=world.clock,
                    car_keys=CarKeyring(keys or (CAR,)))


def _present(verifier: Verifier, token: bytes) -> Decision:
    return verifier.verify(token, vehicle_id=VEHICLE, action="trunk")


def _sealed_raw(padded: bytes, *, aad: bytes = AAD, info: bytes = b"") -> bytes:
    """``padded`` sealed to :data:`CAR` as is, under any ``aad`` and ``info``: an attacker's."""
    suite = pyhpke_suite()
    enc, sender = suite.create_sender_context(
        suite.kem.deserialize_public_key(CAR.public_key.raw), info=info
    )
    return encrypt0(PROTECTED, enc, sender.seal(padded, aad=aad))


def _padded(plaintext: bytes, bucket: int) -> bytes:
    return plaintext + b"\x80" + bytes(bucket - len(plaintext) - 1)


# -- a careless operator: large signatures, no chains --------------------------------------


@pytest.mark.parametrize("algorithm", [Algorithm.EDDSA_MLDSA65, Algorithm.MLDSA44])
def test_a_token_a_car_takes_in_the_clear_it_takes_sealed_alone_without_chains(
    algorithm: Algorithm,
) -> None:
    # A hybrid-signed token (3 475 bytes, within 1 024 + the trust store's 3 309-byte
    # allowance) pads to the 4 608 bucket: its sealed bytes (4 670) were too_large
    # for a car that verifies no chains, which read only its token cap sealed.
    world = make_world(algorithm)
    verifier = _verifier(world)
    token = world.mint()
    assert len(seal(token, CAR.public_key)) > len(token) + 61
    assert _present(verifier, seal(token, CAR.public_key)).reason is Reason.ALLOWED


def test_a_token_sealed_to_the_largest_bucket_opens_on_a_car_without_chains() -> None:
    # "Seal every token to one bucket" must not depend on whether the car verifies chains.
    world = make_world()
    sealed = seal(world.mint(), CAR.public_key, min_size=BUCKETS[-1])
    assert _present(_verifier(world), sealed).reason is Reason.ALLOWED


# -- padding, lengths, AAD and info: one answer for everything that does not open ----------


def _cannot_open_cases(token: bytes) -> dict[str, bytes]:
    bucket = bucket_for(len(token))
    return {
        "another car's key": seal(token, NEXT_CAR.public_key),
        "a non-zero byte after the marker": _sealed_raw(_padded(token, bucket)[:-1] + b"\x01"),
        "no marker": _sealed_raw(token + bytes(bucket - len(token))),
        "a marker and nothing before it": _sealed_raw(_padded(b"", bucket)),
        "a length that is no bucket": _sealed_raw(_padded(token, bucket + 1)),
        "a length one short of a bucket": _sealed_raw(_padded(token, bucket - 1)),
        "an empty aad": _sealed_raw(_padded(token, bucket), aad=b""),
        "the hybrid suite's aad": _sealed_raw(_padded(token, bucket),
                                              aad=enc_structure(PROTECTED_PQ)),
        "a non-empty info": _sealed_raw(_padded(token, bucket), info=b"trunkkey"),
        "the header of the other suite": seal(token, CAR.public_key).replace(
            PROTECTED, PROTECTED_PQ[:4], 1),
    }


def test_padding_lengths_aad_and_info_no_sealer_writes_cannot_open_with_one_answer() -> None:
    # The presenter learns one bit, "did not open", whatever was wrong: no padding
    # oracle, no length oracle, no key oracle. (The token would be allowed: the
    # seal is the only thing wrong with each.)
    world = make_world()
    verifier = _verifier(world, CAR, CarKemKey(bytes(range(9, 41))))
    token = world.mint()
    answers = {
        name: (decision.reason, decision.detail, decision.claims)
        for name, sealed in _cannot_open_cases(token).items()
        for decision in [_present(verifier, sealed)]
    }
    assert set(answers.values()) == {
        (Reason.CANNOT_OPEN, "sealed token does not open with this car's keys", None)
    }, answers
    assert _present(verifier, _sealed_raw(_padded(token, bucket_for(len(token))))).allowed


def test_what_tells_a_bundle_off_the_profile_apart_is_only_for_whoever_sealed_it() -> None:
    # malformed (not cannot_open) says "this opened": true of every plaintext its
    # presenter sealed itself, and never reachable from a captured token, whose any
    # change does not open (tests/test_sealed_chain.py's flips and the property below).
    world = make_world()
    verifier = _verifier(world)
    decision = _present(verifier, seal(b"\x82\x41\xd2\x41", CAR.public_key))
    assert (decision.reason, decision.claims) == (Reason.MALFORMED, None)
    assert "\\x" not in decision.detail
    assert "d2" not in decision.detail


# -- nesting: one opening, never a recursion -----------------------------------------------


def test_a_token_sealed_inside_a_sealed_token_is_opened_once_and_is_no_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trunkkey import sealed_bundle

    opened: list[bytes] = []
    real = sealed_bundle.open_sealed

    def counting(data: bytes, keys: object) -> bytes | None:
        opened.append(data)
        return real(data, keys)  # type: ignore[arg-type]

    monkeypatch.setattr(sealed_bundle, "open_sealed", counting)
    world = make_world()
    verifier = _verifier(world)
    token = world.mint()
    # seal() refuses to seal twice; an attacker seals by hand.
    inner = (seal(token, CAR.public_key), seal(token, CAR.public_key, chain=CHAIN))
    for nested in (_sealed_raw(_padded(sealed, bucket_for(len(sealed)))) for sealed in inner):
        opened.clear()
        decision = _present(verifier, nested)
        assert (decision.reason, decision.claims) == (Reason.MALFORMED, None)
        assert opened == [nested]
    # The token inside was never read, so never spent: it still opens the trunk.
    assert _present(verifier, token).allowed


# -- single use across every form of one token --------------------------------------------


def test_a_token_spent_in_the_clear_is_spent_sealed_to_either_key_of_a_rotation() -> None:
    world = make_world()
    verifier = _verifier(world, NEXT_CAR, CAR)
    token = world.mint()
    assert _present(verifier, token).allowed
    for key in (CAR, NEXT_CAR):
        assert _present(verifier, seal(token, key.public_key)).reason is Reason.ALREADY_USED
    assert _present(verifier, seal(token, CAR.public_key, min_size=BUCKETS[-1])).reason is (
        Reason.ALREADY_USED
    )


def test_one_token_presented_in_many_forms_at_once_to_an_async_verifier_opens_once() -> None:
    world = make_world()
    verifier = AsyncVerifier(trust_store=world.store, ledger=AsyncMemory(), clock=world.clock,
                             car_keys=CarKeyring([CAR, NEXT_CAR]))
    token = world.mint()
    one_sealing = seal(token, CAR.public_key)
    forms = [one_sealing] * 4 + [seal(token, CAR.public_key), seal(token, NEXT_CAR.public_key),
                                 token]

    async def all_at_once() -> list[Decision]:
        return await asyncio.gather(*(
            verifier.verify(form, vehicle_id=VEHICLE, action="trunk") for form in forms
        ))

    reasons = [decision.reason for decision in asyncio.run(all_at_once())]
    assert reasons.count(Reason.ALLOWED) == 1, reasons
    assert set(reasons) == {Reason.ALLOWED, Reason.ALREADY_USED}


# -- any change to a sealed bundle ---------------------------------------------------------

_BUNDLE_TOKEN = b"\xd2" + bytes(200)
_SEALED_BUNDLE = seal(_BUNDLE_TOKEN, CAR.public_key, chain=CHAIN)
_EDITS = st.sampled_from(["truncate", "extend", "insert", "delete", "replace"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edit=_EDITS, at=st.integers(min_value=0), byte=st.integers(0, 255),
       length=st.integers(1, 40))
def test_any_changed_byte_of_a_sealed_bundle_is_refused(
    edit: str, at: int, byte: int, length: int
) -> None:
    sealed = _SEALED_BUNDLE
    at %= len(sealed)
    changed = {
        "truncate": sealed[:at],
        "extend": sealed + bytes([byte]) * length,
        "insert": sealed[:at] + bytes([byte]) * length + sealed[at:],
        "delete": sealed[:at] + sealed[at + length:],
        "replace": sealed[:at] + bytes([byte]) + sealed[at + 1:],
    }[edit]
    if changed == sealed:
        return
    # None, never a DecodeError: nothing changed gets as far as the bundle's framing.
    assert open_bundle(changed, [CAR]) is None


def test_the_sealed_bundle_the_property_changes_opens_unchanged() -> None:
    assert open_bundle(_SEALED_BUNDLE, [CAR]) == Unsealed(_BUNDLE_TOKEN, CHAIN)


# -- the bundle's framing: exactly one encoding of each [token, chain] opens -----------------

_GOOD_BUNDLE = b"\x82\x46" + b"\xd2\x84\x40\xa0\x40\x40" + b"\x43" + CHAIN


@st.composite
def _plaintexts(draw: st.DrawFn) -> bytes:
    """Bundle-like plaintexts an attacker seals: a good bundle with bytes changed,
    inserted or cut, or anything at all after the bundle's lead byte 0x82."""
    base = bytearray(_GOOD_BUNDLE)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(1, len(base)))
        how = draw(st.sampled_from(["set", "insert", "cut"]))
        if how == "set" and at < len(base):
            base[at] = draw(st.integers(0, 255))
        elif how == "insert":
            base[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del base[at:at + draw(st.integers(1, 3))]
    return draw(st.one_of(st.just(bytes(base)),
                          st.binary(max_size=24).map(lambda tail: b"\x82" + tail)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_plaintexts())
def test_a_sealed_bundle_opens_only_in_the_one_encoding_a_sealer_writes(plaintext: bytes) -> None:
    # Whatever an attacker seals that begins like a bundle either is refused on its
    # framing (DecodeError: malformed) or is the shortest-form encoding of exactly
    # [token, chain], with a token that is neither sealed nor a bundle and a chain
    # that is not empty: no second encoding of one bundle, no nesting.
    sealed = seal(plaintext, CAR.public_key)
    try:
        opened = open_bundle(sealed, [CAR])
    except DecodeError:
        return
    assert opened is not None
    assert opened.chain is not None
    assert cbor.encode([opened.token, opened.chain]) == plaintext
    assert opened.token[:1] not in (b"", b"\xd0", b"\x82")
    assert opened.chain not in (b"", b"\x80")


# -- the compiled binding failing after its known answer passed ----------------------------


@pytest.mark.parametrize("failure", [RuntimeError, MemoryError, ValueError])
def test_a_binding_that_fails_after_its_known_answer_denies_as_cannot_open(
    failure: type[BaseException], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The known answer is checked once per process; should the binding break later,
    # each opening fails closed with the one answer, never an exception or an opening.
    from trunkkey import _hpke4

    def broken(sealed: bytes, private: object) -> bytes:
        raise failure("the binding broke")

    world = make_world()
    verifier = _verifier(world)
    token = world.mint()
    monkeypatch.setattr(_hpke4, "compiled_open", lambda: broken)
    decision = _present(verifier, seal(token, CAR.public_key))
    assert (decision.reason, decision.claims) == (Reason.CANNOT_OPEN, None)
    monkeypatch.undo()
    assert _present(verifier, seal(token, CAR.public_key)).allowed  # nothing was spent


# -- X25519's malleable encoding of ek --------------------------------------------------------


@pytest.mark.parametrize("library", ["compiled", "pyhpke"])
def test_an_ek_that_names_the_same_x25519_point_differently_cannot_open(
    library: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # X25519 ignores the top bit of a public value, so ek with it flipped gives the car
    # the very same shared secret; HPKE binds ek's bytes into the key schedule, so the
    # sealed token must still not open (or one token would have two sealed forms).
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    from trunkkey import _hpke4, open_sealed

    if library == "pyhpke":
        monkeypatch.setattr(_hpke4, "compiled_open", lambda: None)
    sealed = seal(b"\xd2 token", CAR.public_key)
    at = len(FIXED_HEADER)
    ek = sealed[at:at + 32]
    other = ek[:31] + bytes([ek[31] ^ 0x80])
    private = X25519PrivateKey.from_private_bytes(CAR.private_bytes())
    assert private.exchange(X25519PublicKey.from_public_bytes(other)) == private.exchange(
        X25519PublicKey.from_public_bytes(ek))
    assert open_sealed(sealed[:at] + other + sealed[at + 32:], [CAR]) is None
    assert open_sealed(sealed, [CAR]) == b"\xd2 token"


# -- what refusals say, and log --------------------------------------------------------------


def test_refusals_of_sealed_bytes_name_nothing_inside_and_no_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every way a sealed presentation fails, with the log on at its most verbose: neither
    # the decision nor the log shows a byte of the plaintext or of the car's key.
    world = make_world()
    verifier = _verifier(world)
    token = world.mint(order_ref=b"ORDER-SECRET-4711")
    bucket = bucket_for(len(token))
    refusals = [
        *_cannot_open_cases(token).values(),
        _sealed_raw(_padded(seal(token, CAR.public_key), bucket_for(sealed_size(bucket)))),
        seal(cbor.encode([token, token]), CAR.public_key),
        seal(b"\x82" + cbor.encode(token) + b"\x41", CAR.public_key),
        _sealed_raw(_padded(b"\xd2" + token[1:-1], bucket)),
        seal(token + b"\x00", CAR.public_key),
    ]
    secrets = [token.hex(), token[20:40].hex(), "ORDER-SECRET", "4f524445522d",
               CAR.private_bytes().hex()[:16], repr(CAR.private_bytes())[2:20]]
    with caplog.at_level("DEBUG"):
        decisions = [_present(verifier, sealed) for sealed in refusals]
    shown = caplog.text + "".join(repr(decision) for decision in decisions)
    assert all(not decision.allowed and decision.claims is None for decision in decisions)
    assert not [secret for secret in secrets if secret in shown]


# -- every bucket, at its bound and one past -------------------------------------------------


@pytest.mark.parametrize("bucket", BUCKETS)
def test_each_bucket_holds_a_token_one_byte_short_of_it_and_every_car_reads_it(
    bucket: int,
) -> None:
    # One byte of the bucket is the padding marker: a token of bucket - 1 bytes fills
    # it, one more byte moves to the next bucket (or is too large to seal at all).
    token = b"\xd2" + bytes(bucket - 2)
    sealed = seal(token, CAR.public_key)
    assert len(sealed) == sealed_size(bucket)
    for verifies_chains in (False, True):
        # Every car reads the bytes (the token inside then meets its own cap).
        opened = unseal_presented(sealed, None, CarKeyring([CAR]), now=0, cap=65536,
                                  verifies_chains=verifies_chains)
        assert opened == Unsealed(token, None)
        sized = unseal_presented(sealed, None, CarKeyring([CAR]), now=0, cap=64,
                                 verifies_chains=verifies_chains)
        assert sized == (Reason.TOO_LARGE, f"sealed token of {len(token)} bytes > cap of 64")
    if bucket == BUCKETS[-1]:
        with pytest.raises(InvalidRequest, match="too large to seal"):
            seal(token + b"\x00", CAR.public_key)
    else:
        assert len(seal(token + b"\x00", CAR.public_key)) == sealed_size(
            BUCKETS[BUCKETS.index(bucket) + 1])


# -- the hybrid suite's own rule: the Enc_structure in info, aad empty --------------------------


@pytest.mark.parametrize(("info", "aad"), [
    (b"", enc_structure(PROTECTED_PQ)),           # HPKE-4's convention, applied to this suite
    (enc_structure(PROTECTED_PQ), b"\x00"),       # the right info, any aad
    (b"", b""),                                   # nothing bound
    (enc_structure(PROTECTED), b""),              # HPKE-4's header bound instead
])
def test_a_hybrid_ciphertext_under_any_other_info_or_aad_cannot_open(
    info: bytes, aad: bytes,
) -> None:
    from cryptography.hazmat.bindings._rust import openssl as rust

    from trunkkey import CarHybridKemKey, open_sealed
    from trunkkey.sealed_pq import ENC_BYTES, INFO_PQ

    hybrid = CarHybridKemKey(bytes(range(96)))
    suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256,
                       hpke.AEAD.CHACHA20_POLY1305)

    def sealed_under(info: bytes, aad: bytes) -> bytes:
        # cryptography's public API takes no aad: its private binding, as a test's tool.
        padded = _padded(b"\xd2 token", BUCKETS[0])
        ct = rust.hpke._encrypt_with_aad(suite, padded, hybrid.public_key._hpke(), info, aad)
        return encrypt0(PROTECTED_PQ, ct[:ENC_BYTES], ct[ENC_BYTES:])

    assert open_sealed(sealed_under(INFO_PQ, b""), [hybrid]) == b"\xd2 token"
    assert open_sealed(sealed_under(info, aad), [hybrid]) is None


# -- a careless operator: sealing twice, opening what is not bytes ------------------------


def test_sealing_a_sealed_token_is_refused_when_sealed_not_when_presented() -> None:
    world = make_world()
    sealed = seal(world.mint(), CAR.public_key)
    for again in ({}, {"chain": CHAIN}, {"min_size": BUCKETS[-1]}):
        with pytest.raises(InvalidRequest, match="already sealed"):
            seal(sealed, CAR.public_key, **again)  # type: ignore[arg-type]
    hybrid = CarHybridKemKey.generate()
    with pytest.raises(InvalidRequest, match="already sealed"):
        seal(seal(world.mint(), hybrid.public_key), CAR.public_key)


@pytest.mark.parametrize("data", [None, "d0", 16, bytearray(b"\xd0"), memoryview(b"\xd0")],
                         ids=["None", "str", "int", "bytearray", "memoryview"])
def test_only_bytes_are_sealed_tokens_and_only_bytes_are_opened(data: object) -> None:
    sealed = seal(make_world().mint(), CAR.public_key)
    assert is_sealed(sealed)
    assert not is_sealed(data)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="sealed data must be bytes"):
        open_sealed(data, [CAR])  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="sealed data must be bytes"):
        open_bundle(data, [CAR])  # type: ignore[arg-type]
    # The same bytes in another container open nothing either.
    if isinstance(data, bytearray | memoryview):
        with pytest.raises(InvalidRequest):
            open_sealed(type(data)(sealed), [CAR])  # type: ignore[arg-type]
