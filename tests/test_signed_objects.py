"""Every trunkkey signed object is opened one way, and named by what was signed.

For each object type (token, proof, root grant, delegated grant, revocation
list, trust update, time sync, receipt, log checkpoint, log acknowledgement,
a car's KEM key proposal)
and both algorithms:

* a byte changed anywhere is refused by the object's own opener;
* the high-s twin of an ES256 signature — the same object, re-encoded by
  anyone, no key needed — is refused, and would carry the same identity;
* a fresh signature over the same content verifies and keeps the identity.

The objects a carmaker root signs are checked the same way under an ES256 +
ML-DSA-65 composite root, whose signature ends in a P-256 half with a high-s twin.

And, read from the source: no module but ``cose.py`` builds a
``Sig_structure`` or calls a key's signature check, and the verifier does
not depend on the consent layer.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkkey import (
    Action,
    Algorithm,
    Issuer,
    ManualClock,
    MemoryLedger,
    Purpose,
    SigningKey,
    TrustedKey,
    TrustStore,
    Verifier,
)
from trunkkey.checkpoint import (
    Checkpoint,
    open_checkpoint,
    open_log_ack,
    sign_checkpoint,
    sign_log_ack,
)
from trunkkey.consent import RootKey, VehicleAnchors, sign_revocation_list
from trunkkey.consent.anchors import open_root_signed
from trunkkey.consent.errors import UpdateRefused
from trunkkey.consent.grant import encode_chain
from trunkkey.consent.rotation import KeyEntry, Role, sign_trust_update
from trunkkey.cose import (
    Typ,
    sign1,
    signed_identity,
    split_sign1,
)
from trunkkey.errors import DecodeError, SignatureError
from trunkkey.proof import check_proof, make_proof
from trunkkey.sealed import CarKemKey
from trunkkey.testing.consent import VEHICLE, build_world
from trunkkey.vehicle.kemproposal import KemProposal, sign_kem_proposal, verify_kem_proposal
from trunkkey.vehicle.receipt import RELOCK_CAUSES, Receipt, sign_receipt, verify_receipt
from trunkkey.vehicle.timekeeping import make_time_sync, read_time_sync

NOW = 1_800_000_000
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SRC = Path(__file__).resolve().parents[1] / "src" / "trunkkey"
KINDS = (
    "token", "proof", "root_grant", "delegated_grant", "revocation_list", "trust_update",
    "time_sync", "receipt", "checkpoint", "log_ack", "kem_proposal",
)


@dataclasses.dataclass(frozen=True)
class Signed:
    """One valid signed object, a way to sign its content again, and its opener."""

    data: bytes
    resign: Callable[[], bytes]
    opens: Callable[[bytes], bool]


def _token(alg: Algorithm) -> Signed:
    clock = ManualClock(NOW)
    key = SigningKey.generate(alg)
    issuer = Issuer(key, "shop", clock=clock)
    token = issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 600)
    store = TrustStore([TrustedKey.create(key.public_key, "shop")])
    payload = split_sign1(token)[1]

    def opens(data: bytes) -> bool:
        car = Verifier(trust_store=store, ledger=MemoryLedger(), clock=clock)
        return car.verify(data, vehicle_id=VEHICLE, action="trunk").allowed

    return Signed(token, lambda: sign1(key, payload, typ=Typ.TOKEN), opens)


def _proof(alg: Algorithm) -> Signed:
    device = SigningKey.generate(alg)
    token, challenge = b"a token", bytes(range(16))

    def make() -> bytes:
        return make_proof(device, token=token, vehicle_id=VEHICLE, challenge=challenge)

    def opens(data: bytes) -> bool:
        return check_proof(data, key=device.public_key, token=token, vehicle_id=VEHICLE,
                           challenge=challenge) is None

    return Signed(make(), make, opens)


def _grants(alg: Algorithm, which: str, root_algorithm: Algorithm | None = None) -> Signed:
    w = build_world(algorithm=alg, cache=False, root_algorithm=root_algorithm)

    def opens_chain(root_grant: bytes, carrier_grant: bytes) -> bool:
        got = w.consent.resolve(encode_chain([root_grant, carrier_grant]), now=NOW,
                                vehicle_id=VEHICLE)
        return not hasattr(got, "reason")

    if which == "root_grant":
        payload = split_sign1(w.root_grant)[1]
        return Signed(
            w.root_grant,
            lambda: sign1(w.root, payload, typ=Typ.GRANT, include_kid=True),
            lambda data: opens_chain(data, w.carrier_grant),
        )
    payload = split_sign1(w.carrier_grant)[1]
    return Signed(
        w.carrier_grant,
        lambda: sign1(w.retailer, payload, typ=Typ.GRANT, include_kid=False),
        lambda data: opens_chain(w.root_grant, data),
    )


def _root_signed(alg: Algorithm, typ: Typ) -> Signed:
    root = SigningKey.generate(alg)
    anchors = VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(),
                             roots=[RootKey(key=root.public_key)])
    if typ is Typ.REVOCATION_LIST:
        def make() -> bytes:
            return sign_revocation_list(root, version=1, issued_at=NOW, tokens=[bytes(16)])
    else:
        entry = KeyEntry(role=Role.ISSUER, name="shop", key=SigningKey.generate(alg).public_key,
                         not_before=NOW, not_after=NOW + 86_400)

        def make() -> bytes:
            return sign_trust_update(root, version=1, issued_at=NOW, set_keys=[entry])

    def opens(data: bytes) -> bool:
        try:
            open_root_signed(data, anchors, typ=typ, now=NOW)
        except UpdateRefused:
            return False
        return True

    return Signed(make(), make, opens)


def _time_sync(alg: Algorithm) -> Signed:
    carmaker = SigningKey.generate(alg)

    def make() -> bytes:
        return make_time_sync(carmaker, vehicle_id=VEHICLE, nonce=bytes(16), time=NOW)

    def opens(data: bytes) -> bool:
        try:
            read_time_sync(data, carmaker.public_key)
        except (DecodeError, SignatureError):
            return False
        return True

    return Signed(make(), make, opens)


def _receipt(alg: Algorithm) -> Signed:
    car = SigningKey.generate(alg)
    receipt = Receipt(vehicle_id=VEHICLE, token_id=bytes(16), action=Action.TRUNK,
                      purpose=Purpose.DELIVERY, opened_at=NOW, closed_at=NOW + 60,
                      relocked_at=NOW + 61, relock_cause=RELOCK_CAUSES[0], order_ref=None)

    def opens(data: bytes) -> bool:
        try:
            verify_receipt(data, car.public_key, vehicle_id=VEHICLE)
        except (DecodeError, SignatureError):
            return False
        return True

    return Signed(sign_receipt(car, receipt), lambda: sign_receipt(car, receipt), opens)


def _checkpoint(alg: Algorithm, ack: bool) -> Signed:
    key = SigningKey.generate(alg)
    content = Checkpoint(vehicle_id=VEHICLE, size=12, root=bytes(range(32)), time=NOW)
    sign, open_ = (sign_log_ack, open_log_ack) if ack else (sign_checkpoint, open_checkpoint)

    def opens(data: bytes) -> bool:
        try:
            open_(data, key.public_key, vehicle_id=VEHICLE)
        except (DecodeError, SignatureError):
            return False
        return True

    return Signed(sign(key, content), lambda: sign(key, content), opens)


def _kem_proposal(alg: Algorithm) -> Signed:
    car = SigningKey.generate(alg)
    proposal = KemProposal(vehicle_id=VEHICLE, key=CarKemKey.generate().public_key,
                           created_at=NOW)

    def opens(data: bytes) -> bool:
        try:
            verify_kem_proposal(data, car.public_key, vehicle_id=VEHICLE)
        except (DecodeError, SignatureError):
            return False
        return True

    return Signed(sign_kem_proposal(car, proposal), lambda: sign_kem_proposal(car, proposal),
                  opens)


def signed(kind: str, alg: Algorithm) -> Signed:
    if kind == "kem_proposal":
        return _kem_proposal(alg)
    if kind in ("checkpoint", "log_ack"):
        return _checkpoint(alg, kind == "log_ack")
    if kind == "token":
        return _token(alg)
    if kind == "proof":
        return _proof(alg)
    if kind in ("root_grant", "delegated_grant"):
        return _grants(alg, kind)
    if kind == "revocation_list":
        return _root_signed(alg, Typ.REVOCATION_LIST)
    if kind == "trust_update":
        return _root_signed(alg, Typ.TRUST_UPDATE)
    if kind == "time_sync":
        return _time_sync(alg)
    return _receipt(alg)


_CACHE: dict[tuple[str, Algorithm], Signed] = {}


def cached(kind: str, alg: Algorithm) -> Signed:
    if (kind, alg) not in _CACHE:
        _CACHE[(kind, alg)] = signed(kind, alg)
    return _CACHE[(kind, alg)]


def high_s_twin(data: bytes) -> bytes:
    r, s = data[-64:-32], int.from_bytes(data[-32:], "big")
    return data[:-64] + r + (P256_N - s).to_bytes(32, "big")


ALGS = (Algorithm.EDDSA, Algorithm.ES256)


@pytest.mark.parametrize("alg", ALGS, ids=lambda a: a.name)
@pytest.mark.parametrize("kind", KINDS)
def test_a_valid_object_opens_and_a_fresh_signature_keeps_its_identity(
    kind: str, alg: Algorithm
) -> None:
    obj = cached(kind, alg)
    assert obj.opens(obj.data)
    again = obj.resign()
    assert obj.opens(again)
    assert signed_identity(again) == signed_identity(obj.data)
    if alg is Algorithm.ES256:
        assert again != obj.data, "ECDSA signs with a fresh nonce: other bytes, same identity"


@pytest.mark.parametrize("kind", KINDS)
def test_the_high_s_twin_of_every_es256_object_is_refused_and_names_the_same_object(
    kind: str,
) -> None:
    obj = cached(kind, Algorithm.ES256)
    twin = high_s_twin(obj.data)
    assert twin != obj.data
    assert not obj.opens(twin)
    assert signed_identity(twin) == signed_identity(obj.data)


#: What a carmaker root signs, here by an ES256 + ML-DSA-65 root: its signature ends in
#: a P-256 r || s, so it has a high-s twin too.
ROOT_KINDS = ("root_grant", "revocation_list", "trust_update")


def _p256_composite_root(kind: str) -> Signed:
    key = ("p256-composite", kind)
    if key not in _COMPOSITE_CACHE:
        _COMPOSITE_CACHE[key] = (
            _grants(Algorithm.EDDSA, kind, root_algorithm=Algorithm.ES256_MLDSA65)
            if kind == "root_grant" else _root_signed(
                Algorithm.ES256_MLDSA65,
                Typ.REVOCATION_LIST if kind == "revocation_list" else Typ.TRUST_UPDATE))
    return _COMPOSITE_CACHE[key]


_COMPOSITE_CACHE: dict[tuple[str, str], Signed] = {}


@pytest.mark.parametrize("kind", ROOT_KINDS)
def test_a_p256_composite_root_object_has_one_form_and_keeps_its_identity(kind: str) -> None:
    obj = _p256_composite_root(kind)
    assert obj.opens(obj.data)
    again = obj.resign()
    assert again != obj.data
    assert obj.opens(again)
    assert signed_identity(again) == signed_identity(obj.data)
    twin = high_s_twin(obj.data)
    assert not obj.opens(twin)
    assert signed_identity(twin) == signed_identity(obj.data)
    # One bit anywhere: the payload, the ML-DSA-65 half, P-256 r, P-256 s.
    for i in (len(obj.data) // 3, len(obj.data) - 64 - 100, len(obj.data) - 40,
              len(obj.data) - 1):
        assert not obj.opens(obj.data[:i] + bytes([obj.data[i] ^ 1]) + obj.data[i + 1:])


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(KINDS), alg=st.sampled_from(ALGS), where=st.integers(0, 10**6),
       bit=st.integers(0, 7))
def test_every_byte_flip_of_every_signed_object_is_refused(
    kind: str, alg: Algorithm, where: int, bit: int
) -> None:
    obj = cached(kind, alg)
    i = where % len(obj.data)
    flipped = obj.data[:i] + bytes([obj.data[i] ^ (1 << bit)]) + obj.data[i + 1 :]
    assert not obj.opens(flipped)


# -- read from the source -------------------------------------------------------------------

#: Names and attributes that assemble a Sig_structure or check a signature.
_FORBIDDEN_NAMES = {"SIG_STRUCTURE_PREFIX", "sig_structure", "to_be_signed"}
_FORBIDDEN_ATTRIBUTES = {
    "is_valid_signature", "is_valid_unique_signature", "_check_signature", "to_be_signed",
    "SIG_STRUCTURE_PREFIX", "sig_structure",
}


def signature_rule_breaches(source: str) -> list[str]:
    """Every place in ``source`` that builds a Sig_structure or checks a signature itself."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id in _FORBIDDEN_NAMES:
            found.append(f"line {node.lineno}: {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in _FORBIDDEN_ATTRIBUTES:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.alias) and node.name in _FORBIDDEN_NAMES:
            found.append(f"import of {node.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, bytes) and (
            b"Signature1" in node.value
        ):
            found.append(f"line {node.lineno}: a Signature1 literal")
        elif (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "verify" and len(node.args) == 2
        ):
            found.append(f"line {node.lineno}: .verify(signature, message)")
    return found


def test_the_breach_finder_finds_each_kind_of_breach() -> None:
    for snippet in (
        "key.is_valid_signature(s, m)",
        "key.is_valid_unique_signature(s, m)",
        "from .cose import SIG_STRUCTURE_PREFIX",
        "m = b'\\x84\\x6aSignature1' + p",
        "key.verify(sig, message)",
        "parts.to_be_signed()",
    ):
        assert signature_rule_breaches(snippet), snippet
    assert signature_rule_breaches("verifier.verify(token, vehicle_id=v)") == []


def test_no_module_but_cose_builds_a_sig_structure_or_checks_a_signature() -> None:
    # keys.py defines the primitive checks, _sodium.py binds libsodium and
    # _mldsa.py binds ML-DSA (for keys.py); the rule is that nothing else
    # calls them on trunkkey objects.
    allowed = {"cose.py", "keys.py", "_sodium.py", "_mldsa.py"}
    breaches = {
        str(path.relative_to(SRC)): found
        for path in sorted(SRC.rglob("*.py"))
        if path.name not in allowed
        and (found := signature_rule_breaches(path.read_text(encoding="utf-8")))
    }
    assert breaches == {}


def _internal_imports(path: Path) -> set[str]:
    """Modules of trunkkey that ``path`` imports at run time (not under TYPE_CHECKING)."""
    package = path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n) for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and id(node) not in typing_only and node.level:
            base = package[: len(package) - node.level + 1]
            module = ".".join((*base, *(node.module.split(".") if node.module else ())))
            found.add(module)
            for alias in node.names:
                found.add(f"{module}.{alias.name}")
    return {m for m in found if (SRC.parent / (m.replace(".", "/") + ".py")).exists()
            or (SRC.parent / m.replace(".", "/") / "__init__.py").exists()}


def _closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        file = SRC.parent / (module.replace(".", "/") + ".py")
        if not file.exists():
            file = SRC.parent / module.replace(".", "/") / "__init__.py"
        todo.extend(_internal_imports(file))
    return seen


def test_the_verifier_does_not_depend_on_the_consent_layer() -> None:
    reached = _closure("trunkkey.verifier")
    assert "trunkkey.proof" in reached
    assert "trunkkey.authority" in reached
    assert sorted(m for m in reached if m.startswith("trunkkey.consent")) == []


@pytest.mark.parametrize("alg", ALGS, ids=lambda a: a.name)
@pytest.mark.parametrize("kind", KINDS)
def test_a_change_to_any_single_byte_is_refused(kind: str, alg: Algorithm) -> None:
    obj = cached(kind, alg)
    data = obj.data
    opened = [
        (i, mask) for i in range(len(data)) for mask in (0x01, 0x80)
        if obj.opens(data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :])
    ]
    assert opened == []
    assert obj.opens(data)  # and nothing cached along the way poisoned the opener
