"""trunkkey's digests come from libsodium, not OpenSSL: they must be the same bytes.

Tokens' key ids, signed objects' identities, grants' vehicle
tags and every ledger row's checksum were SHA-256 and BLAKE2b from
``hashlib``; a changed byte would orphan every stored kid and checksum.
"""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from trunkkey import _sodium

PEOPLE = st.binary(max_size=_sodium.BLAKE2B_PERSON_BYTES)


@given(st.binary(max_size=4096))
def test_sha256_is_hashlibs(data: bytes) -> None:
    assert _sodium.sha256(data) == hashlib.sha256(data).digest()


@given(st.binary(max_size=4096), st.integers(1, 64), PEOPLE)
def test_blake2b_is_hashlibs_for_every_size_and_person(
    data: bytes, size: int, person: bytes
) -> None:
    want = hashlib.blake2b(data, digest_size=size, person=person).digest()
    assert _sodium.blake2b(data, size, person) == want
    assert _sodium._binding_blake2b(data, size, person) == want  # the fallback agrees


def test_the_sha256_fallback_agrees() -> None:
    assert _sodium._binding_sha256(b"abc") == hashlib.sha256(b"abc").digest()


def test_blake2b_refuses_a_size_or_person_libsodium_would_misread() -> None:
    for size, person in ((0, b""), (65, b""), (16, b"x" * 17)):
        try:
            _sodium.blake2b(b"", size, person)
        except ValueError:
            continue
        raise AssertionError(f"accepted size {size}, person of {len(person)} bytes")


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_equal_answers_as_compare_digest(a: bytes, b: bytes) -> None:
    assert _sodium.equal(a, b) is hmac.compare_digest(a, b)
    assert _sodium.equal(a, a)


def test_a_ledger_checksum_is_unchanged_from_hashlib() -> None:
    from trunkkey.ledger._sqlite_file import spent_checksum

    digest = hashlib.blake2b(digest_size=16, person=b"trunkkey-ledger")
    for part in (b"spent", b"VIN", b"\x01" * 16, b"1700000000"):
        digest.update(len(part).to_bytes(4, "big") if part != b"spent" else b"")
        digest.update(part)
    assert spent_checksum(b"VIN", b"\x01" * 16, 1_700_000_000) == digest.digest()
