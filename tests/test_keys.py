"""Keys: algorithm binding, thumbprint ids, import/export, and secret hygiene."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import pickle
import stat
import traceback
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from _points import NAMES, ORDER_8, bad_ed25519
from trunkkey import (
    Algorithm,
    DecodeError,
    InsecureKeyFile,
    InvalidRequest,
    KeyFileError,
    SignatureError,
    SigningKey,
    VerificationKey,
)

ALGS = [Algorithm.EDDSA, Algorithm.ES256]


def test_rfc9679_example_thumbprint() -> None:
    # RFC 9679 section 6: the example EC2 key and its SHA-256 thumbprint.
    key = VerificationKey(
        Algorithm.ES256,
        bytes.fromhex(
            "65eda5a12577c2bae829437fe338701a10aaa375e1bb5b5de108de439c08551d"
            "1e52ed75701163f7f9e40ddf9f341b3dc9ba860af7e0ca7ca7e9eecd0084d19c"
        ),
    )
    expected = "496bd8afadf307e5b08c64b0421bf9dc01528a344a43bda88fadd1669da253ec"
    assert key.thumbprint().hex() == expected
    assert key.kid == bytes.fromhex(expected)[:8]


def test_rfc8032_test1_signature_is_reproduced() -> None:
    # Ed25519 is deterministic: RFC 8032 7.1 TEST 1 (empty message).
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    key = SigningKey.from_pem(
        ed25519.Ed25519PrivateKey.from_private_bytes(secret).private_bytes(
            *_pem_pkcs8_args()
        )
    )
    assert key.public_key.raw.hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert key.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


def _pem_pkcs8_args() -> tuple[object, object, object]:
    from cryptography.hazmat.primitives import serialization

    return (
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize("alg", ALGS)
def test_sign_verify_and_the_key_decides_the_algorithm(alg: Algorithm) -> None:
    key = SigningKey.generate(alg)
    assert key.algorithm is alg
    signature = key.sign(b"message")
    assert len(signature) == 64
    key.public_key.verify(signature, b"message")
    with pytest.raises(SignatureError):
        key.public_key.verify(signature, b"messagE")
    other = SigningKey.generate(alg)
    assert not other.public_key.is_valid_signature(signature, b"message")


def test_a_signature_of_one_algorithm_never_verifies_under_the_other() -> None:
    ed, p256 = SigningKey.generate(Algorithm.EDDSA), SigningKey.generate(Algorithm.ES256)
    assert not p256.public_key.is_valid_signature(ed.sign(b"m"), b"m")
    assert not ed.public_key.is_valid_signature(p256.sign(b"m"), b"m")


def test_p256_signatures_are_low_s() -> None:
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    key = SigningKey.generate(Algorithm.ES256)
    for i in range(50):
        s = int.from_bytes(key.sign(i.to_bytes(2, "big"))[32:], "big")
        assert s <= order // 2


@pytest.mark.parametrize("alg", ALGS)
def test_signature_of_wrong_length_or_type_is_invalid(alg: Algorithm) -> None:
    key = SigningKey.generate(alg)
    sig = key.sign(b"m")
    for bad in (sig[:-1], sig + b"\x00", b"", bytearray(sig)):
        assert not key.public_key.is_valid_signature(bad, b"m")  # type: ignore[arg-type]


def test_p256_zero_or_out_of_range_r_s_are_invalid() -> None:
    key = SigningKey.generate(Algorithm.ES256)
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    for r, s in [(0, 1), (1, 0), (order, 1), (1, order)]:
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert not key.public_key.is_valid_signature(sig, b"m")


@pytest.mark.parametrize("alg", ALGS)
def test_pem_and_cose_key_round_trips(alg: Algorithm) -> None:
    key = SigningKey.generate(alg)
    public = key.public_key
    assert VerificationKey.from_pem(public.to_pem()) == public
    assert VerificationKey.from_cose_key(public.to_cose_key()) == public
    assert SigningKey.from_pem(key.private_pem()).public_key == public
    assert SigningKey.from_pem(key.private_pem(password=b"pw"), password=b"pw").public_key == public
    assert SigningKey.from_cose_key(key.private_cose_key()).public_key == public
    assert pickle.loads(pickle.dumps(public)) == public


def test_cose_key_with_a_wrong_kid_or_alg_is_refused() -> None:
    from trunkkey import cbor

    public = SigningKey.generate().public_key
    members = cbor.decode(public.to_cose_key())
    members[2] = b"\x00" * 8
    with pytest.raises(DecodeError, match="kid"):
        VerificationKey.from_cose_key(cbor.encode(members))
    members = cbor.decode(public.to_cose_key())
    members[3] = -7
    with pytest.raises(DecodeError, match="alg"):
        VerificationKey.from_cose_key(cbor.encode(members))


def test_cose_key_public_loader_refuses_private_material_and_vice_versa() -> None:
    key = SigningKey.generate()
    with pytest.raises(DecodeError):
        VerificationKey.from_cose_key(key.private_cose_key())
    with pytest.raises(DecodeError):
        SigningKey.from_cose_key(key.public_key.to_cose_key())


def test_invalid_public_keys_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        VerificationKey(Algorithm.EDDSA, b"\x00" * 31)
    with pytest.raises(InvalidRequest):
        VerificationKey(Algorithm.ES256, b"\x01" * 64)  # not on the curve
    with pytest.raises(InvalidRequest):
        VerificationKey(-8, b"\x00" * 32)  # type: ignore[arg-type]


def test_signing_key_cannot_be_constructed_directly() -> None:
    with pytest.raises(TypeError):
        SigningKey()


@pytest.mark.parametrize("alg", ALGS)
def test_private_key_never_in_repr_str_pickle_or_copies(alg: Algorithm) -> None:
    key = SigningKey.generate(alg)
    secret_hex = key.private_cose_key().hex()[-64:]  # ends with d? check both forms below
    scalar = key._private_scalar()
    for text in (repr(key), str(key), f"{key}", repr([key]), repr(key.public_key)):
        assert scalar.hex() not in text
        assert scalar.hex().upper() not in text
        assert "kid=" in text or "VerificationKey" in text
    assert secret_hex  # the export path exists and is explicit
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(key)
    assert copy.copy(key) is key
    assert copy.deepcopy(key) is key


def test_private_key_never_in_logs_or_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    key = SigningKey.generate()
    scalar = key._private_scalar().hex()
    logging.getLogger("app").warning("using %s and %r", key, key)
    try:
        raise RuntimeError(f"failed with {key}")
    except RuntimeError:
        trace = traceback.format_exc()
    assert scalar not in caplog.text
    assert scalar not in trace


def test_wrong_pem_password_error_does_not_echo_input() -> None:
    key = SigningKey.generate()
    pem = key.private_pem(password=b"right")
    with pytest.raises(DecodeError) as info:
        SigningKey.from_pem(pem, password=b"wrong")
    assert "BEGIN" not in str(info.value)


def test_save_writes_owner_only_and_refuses_to_clobber(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "issuer.pem"
    old_umask = os.umask(0)  # the most permissive umask must still give 0600
    try:
        key.save(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load(path).public_key == key.public_key
    with pytest.raises(KeyFileError, match="exists"):
        key.save(path)
    other = SigningKey.generate()
    other.save(path, overwrite=True)
    assert SigningKey.load(path).public_key == other.public_key


def test_load_refuses_a_world_readable_key(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "k.pem"
    key.save(path)
    path.chmod(0o644)
    with pytest.raises(InsecureKeyFile, match="chmod 600"):
        SigningKey.load(path)


def test_load_cose_key_file_and_missing_file(tmp_path: Path) -> None:
    from trunkkey.keys import write_private_file

    key = SigningKey.generate(Algorithm.ES256)
    path = tmp_path / "k.cose"
    write_private_file(path, key.private_cose_key())
    assert SigningKey.load(path).public_key == key.public_key
    with pytest.raises(KeyFileError):
        SigningKey.load(tmp_path / "absent.pem")


def test_load_refuses_a_symlink(tmp_path: Path) -> None:
    key = SigningKey.generate()
    real = tmp_path / "real.pem"
    key.save(real)
    link = tmp_path / "link.pem"
    link.symlink_to(real)
    with pytest.raises(KeyFileError):
        SigningKey.load(link)


def test_high_s_twin_is_valid_ecdsa_but_not_a_unique_trunkkey_signature() -> None:
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    key = SigningKey.generate(Algorithm.ES256)
    sig = key.sign(b"m")
    r, s = sig[:32], int.from_bytes(sig[32:], "big")
    twin = r + (order - s).to_bytes(32, "big")
    assert key.public_key.is_valid_signature(twin, b"m")  # ECDSA allows it
    assert not key.public_key.is_valid_unique_signature(twin, b"m")  # trunkkey does not
    assert key.public_key.is_valid_unique_signature(sig, b"m")


@pytest.mark.parametrize("alg", ALGS)
def test_hand_built_thumbprint_input_equals_the_deterministic_cose_key(alg: Algorithm) -> None:
    import hashlib

    from trunkkey import cbor

    for _ in range(20):
        public = SigningKey.generate(alg).public_key
        expected = hashlib.sha256(cbor.encode(public.cose_key_map())).digest()
        assert public.thumbprint() == expected


def test_thumbprint_is_computed_once_and_equals_the_generic_encoding() -> None:
    from trunkkey import cbor

    for algorithm in ALGS:
        public = SigningKey.generate(algorithm).public_key
        fresh = VerificationKey(algorithm, public.raw)
        expected = hashlib.sha256(cbor.encode(fresh.cose_key_map())).digest()
        assert fresh.kid == expected[:8]  # kid first: it computes the thumbprint
        assert fresh.thumbprint() == expected
        assert fresh.thumbprint() is fresh.thumbprint()


# -- Ed25519 public keys must be points of the prime-order group -------------------------

@pytest.mark.parametrize("name", NAMES)
def test_ed25519_key_that_is_not_a_prime_order_point_is_refused_at_construction(
    name: str,
) -> None:
    raw = bad_ed25519(name)
    assert len(raw) == 32
    with pytest.raises(InvalidRequest, match="not a valid Ed25519 point"):
        VerificationKey(Algorithm.EDDSA, raw)
    with pytest.raises(DecodeError, match="not a valid Ed25519 point"):
        VerificationKey.from_cose_key({1: 1, -1: 6, -2: raw})


def test_a_mixed_order_key_verifies_signatures_in_libsodium_so_construction_refuses_it() -> None:
    # libsodium's verify refuses small-order and non-canonical keys, but not a key
    # with a torsion part: signed with a's scalar and hashed over A + T, about one
    # message in eight verifies under A + T. Only the construction check stops it.
    import nacl.bindings as nb

    from trunkkey import _sodium

    a = nb.crypto_core_ed25519_scalar_reduce(os.urandom(64))
    mixed = nb.crypto_core_ed25519_add(nb.crypto_scalarmult_ed25519_base_noclamp(a), ORDER_8)
    for attempt in range(256):
        message = b"proof %d" % attempt
        r = nb.crypto_core_ed25519_scalar_reduce(os.urandom(64))
        big_r = nb.crypto_scalarmult_ed25519_base_noclamp(r)
        k = nb.crypto_core_ed25519_scalar_reduce(hashlib.sha512(big_r + mixed + message).digest())
        if int.from_bytes(k, "little") % 8 == 0:
            break
    else:
        pytest.fail("no message gave a hash divisible by 8 in 256 attempts")
    s = nb.crypto_core_ed25519_scalar_add(r, nb.crypto_core_ed25519_scalar_mul(k, a))
    signature = big_r + s
    assert _sodium.ed25519_open(signature + message, mixed) is True
    with pytest.raises(InvalidRequest, match="not a valid Ed25519 point"):
        VerificationKey(Algorithm.EDDSA, mixed)


@pytest.mark.parametrize("name", NAMES)
def test_pem_ed25519_key_that_is_not_a_valid_point_is_a_decode_error(name: str) -> None:
    from cryptography.hazmat.primitives import serialization

    loaded = ed25519.Ed25519PublicKey.from_public_bytes(bad_ed25519(name))
    pem = loaded.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(DecodeError, match="not a valid Ed25519 point"):
        VerificationKey.from_pem(pem)


@pytest.mark.parametrize("name", NAMES)
def test_pickled_ed25519_key_that_is_not_a_valid_point_does_not_load(name: str) -> None:
    public = SigningKey.generate().public_key
    pickled = pickle.dumps(public)
    assert pickled.count(public.raw) == 1
    with pytest.raises(InvalidRequest, match="not a valid Ed25519 point"):
        pickle.loads(pickled.replace(public.raw, bad_ed25519(name)))


def test_every_generated_ed25519_key_is_a_valid_point() -> None:
    for _ in range(64):
        public = SigningKey.generate().public_key
        assert VerificationKey(Algorithm.EDDSA, public.raw) == public


def test_p256_key_off_the_curve_or_with_a_coordinate_above_p_is_refused() -> None:
    # cryptography (OpenSSL) checks that the point is on the curve and that each
    # coordinate is below p; these hold trunkkey to that on every path.
    p = 2**256 - 2**224 + 2**192 + 2**96 - 1
    b = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
    # The smallest x on the curve, so that x + p still fits in 32 bytes.
    x = next(x for x in range(1, 100) if pow((x**3 - 3 * x + b) % p, (p - 1) // 2, p) == 1)
    rhs = (x**3 - 3 * x + b) % p
    y = pow(rhs, (p + 1) // 4, p)  # a square root, as p = 3 (mod 4)
    assert y * y % p == rhs
    on_curve = x.to_bytes(32, "big") + y.to_bytes(32, "big")
    assert VerificationKey(Algorithm.ES256, on_curve).raw == on_curve
    off_curve = x.to_bytes(32, "big") + ((y + 1) % p).to_bytes(32, "big")
    x_above_p = (x + p).to_bytes(32, "big") + y.to_bytes(32, "big")
    for raw in (off_curve, x_above_p, bytes(64)):
        with pytest.raises(InvalidRequest, match="P-256"):
            VerificationKey(Algorithm.ES256, raw)
        with pytest.raises(DecodeError, match="valid public key"):
            VerificationKey.from_cose_key({1: 2, -1: 1, -2: raw[:32], -3: raw[32:]})
