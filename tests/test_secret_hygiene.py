"""Secret hygiene beyond tests/test_keys.py: errors, object introspection, the CLI, comparisons.

``test_keys.py`` covers repr/str/logs/tracebacks of a key, pickle refusal,
owner-only key files and refusing a world-readable key. Here:

* every loading path that fails (wrong password, damaged or truncated file,
  wrong kind of key) raises an error whose text — message, repr, formatted
  traceback, chained causes — contains no form of the key: not the PEM body,
  not the scalar in hex, base64 or as a bytes repr;
* a :class:`SigningKey` gives the secret to no generic introspection: no
  ``__dict__``/``vars()``, no public attribute holding it, copies are the same
  object, pickling fails under every protocol and through ``copyreg``;
* the command line never prints private material, on success or failure;
* comparisons of security values use :func:`hmac.compare_digest` (an AST
  scan of ``src/``, plus direct spies on the proof and challenge paths).
"""

from __future__ import annotations

import ast
import base64
import copy
import copyreg
import hmac
import io
import os
import pickle
import re
import traceback
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from trunkkey import (
    Algorithm,
    DecodeError,
    InsecureKeyFile,
    KeyFileError,
    SigningKey,
    TrunkkeyError,
    VerificationKey,
    cbor,
)
from trunkkey.keys import write_private_file

ALGS = [Algorithm.EDDSA, Algorithm.ES256]
SRC = Path(__file__).resolve().parent.parent / "src" / "trunkkey"


# -- what a leak looks like ----------------------------------------------------------

def secret_forms(key: SigningKey, pem: bytes | None = None) -> list[str]:
    """Every textual form in which the private key could leak."""
    scalar = key._private_scalar()
    forms = [
        scalar.hex(), scalar.hex().upper(),
        base64.b64encode(scalar).decode(), base64.urlsafe_b64encode(scalar).decode().rstrip("="),
        repr(scalar)[2:-1][:40],  # a bytes repr, as an f-string would print it
    ]
    for export in (pem, key.private_pem()):
        if export is None:
            continue
        body = [line for line in export.decode().splitlines() if not line.startswith("-----")]
        # Any full base64 line of the PKCS#8 body; short tails could collide by chance.
        forms += [line for line in body if len(line) >= 32]
    return forms


def error_text(exc: BaseException) -> str:
    """Everything a logger, a crash reporter or a debugger shows about ``exc``."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    seen: BaseException | None = exc
    while seen is not None:  # chained causes and suppressed contexts alike
        parts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def assert_no_secret(text: str, key: SigningKey, pem: bytes | None = None) -> None:
    for form in secret_forms(key, pem):
        assert form not in text, f"private key material in output: {form[:12]}..."


def failure(fn: Callable[[], object]) -> TrunkkeyError:
    with pytest.raises(TrunkkeyError) as raised:
        fn()
    return raised.value


def _corruptions(pem: bytes) -> Iterator[tuple[str, bytes]]:
    lines = pem.splitlines(keepends=True)
    yield "truncated", pem[: len(pem) // 2]
    yield "body only", b"".join(lines[1:-1])
    yield "one body line dropped", b"".join(lines[:2] + lines[3:])
    flipped = bytearray(pem)
    middle = len(pem) // 2
    flipped[middle] = ord("A") if flipped[middle] != ord("A") else ord("B")
    yield "one base64 char changed", bytes(flipped)
    yield "wrong armour", pem.replace(b"PRIVATE KEY", b"PUBLIC KEY")
    yield "trailing junk in base64", pem.replace(b"\n-----END", b"!!!!\n-----END")


# -- loading paths ---------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALGS, ids=["ed25519", "p256"])
def test_wrong_password_errors_carry_no_key_material(alg: Algorithm) -> None:
    key = SigningKey.generate(alg)
    encrypted = key.private_pem(password=b"right horse battery")
    for password in (b"wrong", None, b""):
        exc = failure(lambda p=password: SigningKey.from_pem(encrypted, password=p))
        assert isinstance(exc, DecodeError)
        assert_no_secret(error_text(exc), key, encrypted)
        assert "right horse" not in error_text(exc)
    plain = key.private_pem()
    exc = failure(lambda: SigningKey.from_pem(plain, password=b"unneeded"))
    assert_no_secret(error_text(exc), key, plain)


@pytest.mark.parametrize("alg", ALGS, ids=["ed25519", "p256"])
def test_damaged_pem_errors_carry_no_key_material(alg: Algorithm) -> None:
    key = SigningKey.generate(alg)
    pem = key.private_pem()
    for name, damaged in _corruptions(pem):
        try:
            loaded = SigningKey.from_pem(damaged)
        except TrunkkeyError as exc:
            assert_no_secret(error_text(exc), key, pem)
        else:  # a change that still decodes must at least not be the same key silently
            assert name == "one base64 char changed"
            assert_no_secret(repr(loaded), key, pem)


@pytest.mark.parametrize("alg", ALGS, ids=["ed25519", "p256"])
def test_damaged_key_file_errors_carry_no_key_material(alg: Algorithm, tmp_path: Path) -> None:
    key = SigningKey.generate(alg)
    pem = key.private_pem()
    for i, (_, damaged) in enumerate(_corruptions(pem)):
        path = tmp_path / f"damaged-{i}.pem"
        write_private_file(path, damaged)
        try:
            SigningKey.load(path)
        except TrunkkeyError as exc:
            assert_no_secret(error_text(exc), key, pem)
    cose = key.private_cose_key()
    for i, damaged in enumerate((cose[:-5], cose + b"\x00", cose[:1] + b"\xff" + cose[2:])):
        path = tmp_path / f"damaged-{i}.cose"
        write_private_file(path, damaged)
        exc = failure(lambda p=path: SigningKey.load(p))
        assert_no_secret(error_text(exc), key, pem)


@pytest.mark.parametrize("alg", ALGS, ids=["ed25519", "p256"])
def test_refused_key_files_do_not_echo_their_content(alg: Algorithm, tmp_path: Path) -> None:
    key = SigningKey.generate(alg)
    pem = key.private_pem()
    readable = tmp_path / "readable.pem"
    readable.write_bytes(pem)
    readable.chmod(0o644)
    exc = failure(lambda: SigningKey.load(readable))
    assert isinstance(exc, InsecureKeyFile)
    assert_no_secret(error_text(exc), key, pem)
    big = tmp_path / "big.pem"
    write_private_file(big, pem * 40 + b"x" * (64 * 1024))
    exc = failure(lambda: SigningKey.load(big))
    assert isinstance(exc, KeyFileError)
    assert_no_secret(error_text(exc), key, pem)


def test_cose_key_errors_carry_no_key_material() -> None:
    for alg in ALGS:
        key = SigningKey.generate(alg)
        members = cbor.decode(key.private_cose_key())
        wrong_kid = dict(members)
        wrong_kid[2] = bytes(8)
        short_d = dict(members)
        short_d[-4] = members[-4][:31]
        as_public = dict(members)
        for bad in (wrong_kid, short_d):
            exc = failure(lambda b=bad: SigningKey.from_cose_key(cbor.encode(b)))
            assert_no_secret(error_text(exc), key)
        # A private COSE_Key offered where a public one is expected: refused, unechoed.
        exc = failure(lambda a=as_public: VerificationKey.from_cose_key(cbor.encode(a)))
        assert_no_secret(error_text(exc), key)


def test_out_of_range_p256_scalar_error_is_generic() -> None:
    key = SigningKey.generate(Algorithm.ES256)
    members = cbor.decode(key.private_cose_key())
    members[-4] = b"\xff" * 32  # above the group order
    exc = failure(lambda: SigningKey.from_cose_key(cbor.encode(members)))
    assert "ff" * 8 not in error_text(exc).lower()


# -- the object itself --------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALGS, ids=["ed25519", "p256"])
def test_signing_key_has_no_dict_and_no_public_secret_attribute(alg: Algorithm) -> None:
    key = SigningKey.generate(alg)
    scalar = key._private_scalar()
    assert not hasattr(key, "__dict__")
    with pytest.raises(TypeError):
        vars(key)
    public_names = [n for n in dir(key) if not n.startswith("_")]
    assert not [n for n in public_names if re.search(r"secret|seed|scalar|^d$", n)]
    for name in public_names:
        value = getattr(key, name)
        if callable(value):
            continue  # methods: exports are explicit calls, checked below
        assert scalar not in repr(value).encode(), name
        assert scalar.hex() not in repr(value), name
        if isinstance(value, bytes):
            assert scalar not in value, name
    # The slot names are mangled: no public spelling reaches the secret.
    for slot in SigningKey.__slots__:
        if slot.startswith("__"):
            assert not hasattr(key, slot)


@pytest.mark.parametrize("alg", ALGS, ids=["ed25519", "p256"])
def test_signing_key_copies_are_the_same_object(alg: Algorithm) -> None:
    key = SigningKey.generate(alg)
    assert copy.copy(key) is key
    assert copy.deepcopy(key) is key
    assert copy.deepcopy([key, {"k": key}])[0] is key


@pytest.mark.parametrize("alg", ALGS, ids=["ed25519", "p256"])
def test_signing_key_pickles_under_no_protocol(alg: Algorithm) -> None:
    key = SigningKey.generate(alg)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(key, protocol=protocol)
        with pytest.raises(TypeError):
            pickle.dumps({"nested": [key]}, protocol=protocol)
        with pytest.raises(TypeError):
            pickle.Pickler(io.BytesIO(), protocol=protocol).dump(key)
    for protocol in (0, 1):
        with pytest.raises(TypeError):
            copyreg._reduce_ex(key, protocol)  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        key.__reduce_ex__(2)
    with pytest.raises(TypeError):
        key.__reduce__()


@pytest.mark.parametrize("alg", ALGS, ids=["ed25519", "p256"])
def test_signing_key_getstate_does_not_hand_out_the_secret(alg: Algorithm) -> None:
    key = SigningKey.generate(alg)
    scalar = key._private_scalar()
    try:
        state = key.__getstate__()
    except TypeError:
        return
    assert scalar not in repr(state).encode()
    assert scalar.hex() not in repr(state)
    for value in _walk(state):
        assert not (isinstance(value, bytes) and scalar in value)
        assert not isinstance(value, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey))


def _walk(value: object) -> Iterator[object]:
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _walk(v)


def test_verification_key_pickles_without_secret_material() -> None:
    key = SigningKey.generate(Algorithm.ES256)
    data = pickle.dumps(key.public_key)
    assert key._private_scalar() not in data
    assert pickle.loads(data) == key.public_key


# -- the command line ------------------------------------------------------------------------

def _cli(*args: str, cwd: Path) -> tuple[int, str]:
    from trunkkey.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old)
    return code, out.getvalue() + err.getvalue()


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_cli_never_prints_private_material(alg: str, tmp_path: Path) -> None:
    outputs: list[str] = []
    for index, json_flag in enumerate(((), ("--json",))):
        name = f"k{index}.key"
        code, text = _cli("keygen", "--alg", alg, "--out", name, "--public-out", name + ".pub",
                          *json_flag, cwd=tmp_path)
        assert code == 0, text
        outputs.append(text)
        for fmt in ("text", "pem", "cose-hex"):
            code, text = _cli("pubkey", "--key", name, "--format", fmt, *json_flag, cwd=tmp_path)
            assert code == 0, text
            outputs.append(text)
    key = SigningKey.load(tmp_path / "k0.key")
    other = SigningKey.load(tmp_path / "k1.key")
    # Failures: an unreadable (world-readable) key, a damaged key, an existing file.
    (tmp_path / "k0.key").chmod(0o644)
    code, text = _cli("pubkey", "--key", "k0.key", cwd=tmp_path)
    assert code != 0
    outputs.append(text)
    (tmp_path / "k0.key").chmod(0o600)
    pem = (tmp_path / "k0.key").read_bytes()
    write_private_file(tmp_path / "bad.key", pem[: len(pem) // 2] + pem[len(pem) // 2 + 4:])
    code, text = _cli("pubkey", "--key", "bad.key", cwd=tmp_path)
    assert code != 0
    outputs.append(text)
    code, text = _cli("keygen", "--out", "k0.key", cwd=tmp_path)
    assert code != 0
    outputs.append(text)
    everything = "\n".join(outputs)
    assert_no_secret(everything, key, pem)
    assert_no_secret(everything, other)
    assert "PRIVATE KEY" not in everything


# -- constant-time comparisons ---------------------------------------------------------------

#: Identifiers that hold (or are derived from) secret or attacker-probed security values.
_SECURITY = re.compile(
    r"(mac|secret|challenge|nonce|digest|signature|proof|seed|scalar|password)", re.I
)
# Not ``protected``: header bytes are public (the attacker wrote them), so the
# exact-bytes header checks in the consent chain may use ``!=``.
#: Calls whose result is not the value itself (a length, a type, a key set).
_HARMLESS_CALLS = {"len", "type", "set", "isinstance", "int", "bool", "id"}


def _identifiers(node: ast.AST) -> Iterator[str]:
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            yield n.id
        elif isinstance(n, ast.Attribute):
            yield n.attr


def _is_value(node: ast.AST) -> bool:
    """Could ``node`` evaluate to a secret-dependent bytes/str value?"""
    if isinstance(node, ast.Constant):
        return False
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id not in _HARMLESS_CALLS
    # A module constant (upper case) is not a secret; anything else may be.
    return not (isinstance(node, ast.Name) and node.id.isupper())


def variable_time_comparisons(source: str) -> list[tuple[int, str]]:
    """``==``/``!=`` comparisons between security values (not lengths, types or constants)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if not all(_is_value(o) for o in operands):
            continue
        if any(_SECURITY.search(name) for o in operands for name in _identifiers(o)):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_comparison_scanner_finds_what_it_should() -> None:
    bad = "if mac == expected: pass\nif parts.payload != challenge: pass\n"
    good = (
        "if len(signature) != 64: pass\nif hmac.compare_digest(mac, expected): pass\n"
        "if type(nonce) == bytes: pass\nif digest == DIGEST: pass\n"
    )
    assert [line for line, _ in variable_time_comparisons(bad)] == [1, 2]
    assert variable_time_comparisons(good) == []


#: Reviewed ``==`` on values the scanner cannot tell apart from secrets: (file, source).
_REVIEWED: set[tuple[str, str]] = {
    # SQLite's WAL frame checksums: an integrity check of the ledger's own
    # file, over public data; no secret is derived from or compared through them.
    ("ledger/_sqlite_wal.py", "_wal_checksum(body, big_endian, *seed) == (k1, k2)"),
    ("ledger/_sqlite_wal.py", "_wal_checksum(body, big_endian, *seed) != (k1, k2)"),
}


def test_no_variable_time_comparison_of_security_values_in_src() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        for line, text in variable_time_comparisons(path.read_text()):
            if (rel, text) not in _REVIEWED:
                found.append(f"{rel}:{line}: {text}")
    assert found == [], "use hmac.compare_digest:\n" + "\n".join(found)


def test_proof_challenge_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from trunkkey import make_proof, proof

    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(proof.hmac, "compare_digest", spy)
    device = SigningKey.generate()
    token = b"\xd2token"
    challenge = os.urandom(16)
    answer = make_proof(device, token=token, vehicle_id="V", challenge=challenge)
    assert proof.check_proof(answer, key=device.public_key, token=token, vehicle_id="V",
                             challenge=challenge) is None
    assert (challenge, challenge) in seen
    seen.clear()
    other = os.urandom(16)
    assert proof.check_proof(answer, key=device.public_key, token=token, vehicle_id="V",
                             challenge=other) == "proof answers another challenge"
    assert (challenge, other) in seen


def test_challenge_redemption_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from trunkkey.vehicle import challenge as challenge_module

    calls: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(challenge_module.hmac, "compare_digest", spy)
    book = challenge_module.ChallengeBook(randomness=os.urandom)
    issued = book.issue(0)
    guess = os.urandom(16)
    refusal = book.redeem(guess, 0)
    assert refusal is not None
    assert guess in calls
    assert book.redeem(issued, 0) is None
    assert issued in calls
