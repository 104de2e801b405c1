"""Keys in a real PKCS#11 token (SoftHSM2) sign what the car verifies, and never leave it.

The suite makes its own SoftHSM2 tokens in a temporary directory (its own
``SOFTHSM2_CONF``) and generates its keys inside them, non-extractable and
sensitive, through python-pkcs11. Without SoftHSM2 or python-pkcs11 these
tests skip; under CI (``.ci/run`` installs both) a skip is a failure.
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trunkkey import (
    Algorithm,
    CompositeSigner,
    HardwareKeyError,
    InsecureKeyFile,
    InvalidRequest,
    Issuer,
    Location,
    ManualClock,
    MemoryLedger,
    Reason,
    SigningBackend,
    SigningKey,
    TrustedKey,
    TrustStore,
    Typ,
    Verifier,
)
from trunkkey.consent import (
    KeyEntry,
    Role,
    RootKey,
    TrustUpdater,
    UpdateRefused,
    VehicleAnchors,
    access_mask,
    encode_chain,
    grant_digest,
    make_grant,
    sign_revocation_list,
    sign_root_grant,
    sign_trust_update,
)
from trunkkey.cose import parse_sign1, sign1, signature_holds
from trunkkey.testing.vehicle import RETAILER, World, courier_present
from trunkkey.vehicle import verify_receipt

pkcs11 = pytest.importorskip("pkcs11", reason="python-pkcs11 not installed (the pkcs11 extra)")
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass  # noqa: E402
from pkcs11.util.ec import encode_named_curve_parameters  # noqa: E402

from trunkkey.pkcs11 import PIN_ENV, Pkcs11Signer, Pkcs11Token  # noqa: E402

#: Where distributions put SoftHSM2's PKCS#11 module (Debian first).
LIBRARY_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
SIGNING_TOKEN, LOGIN_TOKEN = "trunkkey-signing", "trunkkey-login"
PIN, SO_PIN = "4711-user-pin", "0815-so-pin"
START = 1_812_000_000
PARKED = Location.from_degrees(48.137154, 11.576124)
_P256_HALF_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551 // 2


def _library() -> str:
    found = [p for p in LIBRARY_CANDIDATES if Path(p).exists()]
    if not found or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 not installed (apt-get install softhsm2)")
    return found[0]


def _generate(library: str, token_label: str, label: str, algorithm: Algorithm,
              *, extractable: bool = False, curve_name: str = "secp256r1") -> None:
    """A key pair made inside the token, as an operator would (python-pkcs11)."""
    token = pkcs11.lib(library).get_token(token_label=token_label)
    with token.open(user_pin=PIN, rw=True) as session:
        if algorithm is Algorithm.EDDSA:
            key_type, mechanism = KeyType.EC_EDWARDS, Mechanism.EC_EDWARDS_KEY_PAIR_GEN
            curve = bytes.fromhex("06032b6570")  # the Ed25519 OID, 1.3.101.112
        else:
            key_type, mechanism = KeyType.EC, Mechanism.EC_KEY_PAIR_GEN
            curve = encode_named_curve_parameters(curve_name)
        params = session.create_domain_parameters(key_type, {Attribute.EC_PARAMS: curve},
                                                  local=True)
        params.generate_keypair(
            store=True, label=label, mechanism=mechanism,
            private_template={Attribute.EXTRACTABLE: extractable,
                              Attribute.SENSITIVE: not extractable, Attribute.SIGN: True},
        )


@dataclass(frozen=True)
class Hsm:
    library: str
    token: Pkcs11Token
    ed25519: Pkcs11Signer
    p256: Pkcs11Signer
    vehicle: Pkcs11Signer

    def signer(self, algorithm: Algorithm) -> Pkcs11Signer:
        return self.ed25519 if algorithm is Algorithm.EDDSA else self.p256


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hsm]:
    library = _library()
    home = tmp_path_factory.mktemp("softhsm")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    # SoftHSM2 reads its configuration when the module is first loaded in
    # this process, and only these tests load it.
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        for label in (SIGNING_TOKEN, LOGIN_TOKEN):
            subprocess.run(
                ["softhsm2-util", "--init-token", "--free", "--label", label,  # noqa: S607
                 "--pin", PIN, "--so-pin", SO_PIN],
                check=True, capture_output=True, timeout=60,
            )
        _generate(library, SIGNING_TOKEN, "retailer-ed25519", Algorithm.EDDSA)
        _generate(library, SIGNING_TOKEN, "carmaker-p256", Algorithm.ES256)
        _generate(library, SIGNING_TOKEN, "vehicle-ed25519", Algorithm.EDDSA)
        _generate(library, SIGNING_TOKEN, "loose-key", Algorithm.EDDSA, extractable=True)
        _generate(library, SIGNING_TOKEN, "p384-key", Algorithm.ES256, curve_name="secp384r1")
        _generate(library, LOGIN_TOKEN, "login-key", Algorithm.EDDSA)
        with Pkcs11Token.open(library=library, token_label=SIGNING_TOKEN, pin=PIN) as token:
            yield Hsm(
                library=library, token=token, ed25519=token.signer("retailer-ed25519"),
                p256=token.signer("carmaker-p256"), vehicle=token.signer("vehicle-ed25519"),
            )
    finally:
        if saved is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = saved


def plain_token(signer: Pkcs11Signer) -> bytes:
    """A token for VIN-HSM-2, its trunk, for the hour from START."""
    return Issuer(signer, RETAILER, clock=ManualClock(START)).mint(
        vehicle_id="VIN-HSM-2", action="trunk", not_before=START, expires=START + 3600
    )


ALGS = pytest.mark.parametrize("alg", [Algorithm.EDDSA, Algorithm.ES256], ids=["ed25519", "p256"])


# -- the car verifies what the token signed -------------------------------------------------

def test_a_signer_on_a_token_is_a_signing_backend_of_its_own_key(hsm: Hsm) -> None:
    for signer, alg in ((hsm.ed25519, Algorithm.EDDSA), (hsm.p256, Algorithm.ES256)):
        assert isinstance(signer, SigningBackend)
        assert signer.algorithm is alg
        assert signer.kid == signer.public_key.kid


@ALGS
def test_a_token_minted_by_the_hsm_verifies_and_opens_the_trunk_in_the_car(
    hsm: Hsm, alg: Algorithm, tmp_path: Path
) -> None:
    signer = hsm.signer(alg)
    world = World(start=START, ledger="memory")
    world.retailer = Issuer(signer, RETAILER, clock=world.true_clock)
    world.trust_store = TrustStore([TrustedKey.create(signer.public_key, RETAILER)])
    car = world.enrol_car("VIN-HSM-1")
    place = world.park(car, PARKED)
    courier = SigningKey.generate()
    token = world.mint(car, courier=courier, geofence=place)
    assert parse_sign1(token).protected == parse_sign1(plain_token(signer)).protected
    outcome = courier_present(car, token, courier)
    assert outcome.reason is Reason.ALLOWED, outcome.detail
    assert car.body.trunk_unlatched
    world.advance(20)
    assert car.unit.trunk_closed()
    assert courier_present(car, token, courier).reason is Reason.ALREADY_USED
    # A backend verifier, with no car around it, agrees.
    clock = ManualClock(START)
    plain = plain_token(signer)
    verifier = Verifier(trust_store=world.trust_store, ledger=MemoryLedger(), clock=clock)
    assert verifier.verify(plain, vehicle_id="VIN-HSM-2", action="trunk").reason is (
        Reason.ALLOWED
    )


def test_grants_revocation_lists_and_trust_updates_signed_by_the_hsm_verify_in_the_car(
    hsm: Hsm,
) -> None:
    # The carmaker's root (P-256) and the retailer's key (Ed25519) both live in the token.
    world = World(start=START, ledger="memory")
    world.carmaker_key = hsm.p256  # type: ignore[assignment]
    world.retailer = Issuer(hsm.ed25519, RETAILER, clock=world.true_clock)
    world.trust_store = TrustStore([])
    car = world.enrol_car("VIN-HSM-CONSENT", consent=True)
    place = world.park(car, PARKED)
    assert world.time_sync(car).accepted  # a time-sync answer signed by the token, too
    now = world.now
    consent = make_grant(
        grantee=hsm.ed25519.public_key, grantee_name=RETAILER,
        access=access_mask(["trunk"], ["delivery"]), not_before=now - 60,
        expires=now + 86_400, depth=0, vehicle_ids=[car.vehicle_id],
    )
    root_grant = sign_root_grant(hsm.p256, consent)
    chain = encode_chain([root_grant])
    courier = SigningKey.generate()
    first = world.mint(car, courier=courier, geofence=place)
    assert courier_present(car, first, courier, chain=chain).reason is Reason.ALLOWED
    world.advance(20)
    assert car.unit.trunk_closed()

    update = sign_trust_update(
        hsm.p256, version=1, issued_at=world.now,
        set_keys=[KeyEntry(role=Role.ROOT, name="root-hsm", key=hsm.p256.public_key,
                           not_before=0, not_after=world.now + 365 * 86_400)],
    )
    applied = car.unit.apply_trust_update(update)
    assert applied.applied, applied.detail

    revoking = sign_revocation_list(
        hsm.p256, version=1, issued_at=world.now, grants=[grant_digest(root_grant)]
    )
    outcome = car.unit.apply_revocations(revoking)
    assert outcome.applied, outcome.detail
    second = world.mint(car, courier=courier, geofence=place)
    assert courier_present(car, second, courier, chain=chain).reason is Reason.GRANT_REVOKED


def test_receipts_signed_by_a_vehicle_key_in_the_hsm_verify(hsm: Hsm) -> None:
    world = World(start=START, ledger="memory")
    car = world.enrol_car("VIN-HSM-RECEIPT")
    car.vehicle_key = hsm.vehicle  # type: ignore[assignment]
    world.reboot(car)
    assert car.unit.public_key == hsm.vehicle.public_key
    place = world.park(car, PARKED)
    courier = SigningKey.generate()
    assert courier_present(car, world.mint(car, courier=courier, geofence=place),
                           courier).reason is Reason.ALLOWED
    world.advance(20)
    assert car.unit.trunk_closed()
    (receipt,) = car.unit.receipts
    assert verify_receipt(receipt, hsm.vehicle.public_key, vehicle_id=car.vehicle_id)


class _Recording:
    """A backend that remembers what the token returned, before sign1 touched it."""

    def __init__(self, inner: Pkcs11Signer) -> None:
        self.inner, self.raw = inner, list[bytes]()
        self.algorithm, self.kid, self.public_key = inner.algorithm, inner.kid, inner.public_key

    def sign(self, message: bytes) -> bytes:
        self.raw.append(self.inner.sign(message))
        return self.raw[-1]


def test_p256_signatures_from_the_token_leave_sign1_in_the_low_s_form(hsm: Hsm) -> None:
    recording = _Recording(hsm.p256)
    signed = [sign1(recording, b"payload %d" % i, typ=Typ.TOKEN) for i in range(24)]
    high = [sig for sig in recording.raw if int.from_bytes(sig[32:], "big") > _P256_HALF_ORDER]
    # CKM_ECDSA gives either s: the chance that 24 signatures are all low is 2**-24.
    assert high
    for raw, message in zip(recording.raw, signed, strict=True):
        parts = parse_sign1(message)
        assert parts.signature[:32] == raw[:32]
        assert int.from_bytes(parts.signature[32:], "big") <= _P256_HALF_ORDER
        assert signature_holds(hsm.p256.public_key, parts.signature, parts.protected_item,
                               parts.payload_item)


def test_a_p256_composite_root_signs_its_classical_half_in_the_hsm(hsm: Hsm) -> None:
    # A hybrid root for a carmaker whose HSM does P-256 only: the P-256 half in the
    # token, the ML-DSA-65 half in memory; a car accepts its updates and nothing less.
    recording = _Recording(hsm.p256)
    root, seed = CompositeSigner.generate(recording)
    assert root.algorithm is Algorithm.ES256_MLDSA65
    assert root.public_key.raw[-64:] == hsm.p256.public_key.raw
    assert seed.hex() not in repr(root)
    anchors = VehicleAnchors(vehicle_id="VIN-HSM-PQ", vehicle_key=SigningKey.generate(),
                             roots=[RootKey(key=root.public_key)])
    updater = TrustUpdater(anchors=anchors, trust_store=TrustStore([]))
    issuer = SigningKey.generate(Algorithm.MLDSA44)
    for version in range(1, 25):
        updater.apply(sign_trust_update(root, version=version, issued_at=START, set_keys=[
            KeyEntry(role=Role.ISSUER, name=RETAILER, key=issuer.public_key, not_before=0,
                     not_after=START + 86_400)]), now=START)
    assert updater.version == 24
    # CKM_ECDSA gives either s (all 24 low: 2**-24); sign1 made every P-256 half low-s.
    assert any(int.from_bytes(raw[32:], "big") > _P256_HALF_ORDER for raw in recording.raw)
    with pytest.raises(UpdateRefused) as refused:
        updater.apply(sign_trust_update(hsm.p256, version=25, issued_at=START), now=START)
    assert refused.value.reason is Reason.UNKNOWN_KEY


# -- the private key stays in the token -----------------------------------------------------

def _raw_private_key(hsm: Hsm, label: str) -> Any:
    # A second session of the process shares the token's login (PKCS#11).
    session = pkcs11.lib(hsm.library).get_token(token_label=SIGNING_TOKEN).open()
    return session, session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)


def test_the_private_key_cannot_be_read_or_exported_from_the_token(hsm: Hsm) -> None:
    session, private = _raw_private_key(hsm, "retailer-ed25519")
    try:
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            private[Attribute.VALUE]  # the read is the attempt
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        assert private[Attribute.ALWAYS_SENSITIVE] is True
        # Nor can it be made extractable after the fact (PKCS#11: only TRUE to FALSE).
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            private[Attribute.EXTRACTABLE] = True
        wrapping = session.generate_key(KeyType.AES, 256, store=False,
                                        template={Attribute.WRAP: True})
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            wrapping.wrap_key(private, mechanism=Mechanism.AES_KEY_WRAP_PAD)
    finally:
        session.close()
    # The signer holds a handle, not bytes: nothing in it is a private key.
    assert all(not isinstance(getattr(hsm.ed25519, s), bytes) for s in Pkcs11Signer.__slots__)


def test_a_signer_and_its_token_cannot_be_pickled_or_built_by_hand(hsm: Hsm) -> None:
    for live in (hsm.token, hsm.ed25519):
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with pytest.raises(TypeError, match="cannot be pickled"):
                pickle.dumps(live, protocol=protocol)
    with pytest.raises(TypeError, match=r"Pkcs11Token\.open"):
        Pkcs11Token()
    with pytest.raises(TypeError, match=r"\.signer\(key_label\)"):
        Pkcs11Signer()


def test_a_key_the_token_would_let_out_is_refused(hsm: Hsm) -> None:
    with pytest.raises(HardwareKeyError, match=r"'loose-key' .* can leave the token"):
        hsm.token.signer("loose-key")


def test_a_key_on_another_curve_is_refused_by_name(hsm: Hsm) -> None:
    with pytest.raises(HardwareKeyError, match=r"^key 'p384-key' on PKCS#11 token "
                                               r"'trunkkey-signing': the key is neither Ed25519 "
                                               r"nor P-256"):
        hsm.token.signer("p384-key")


def test_an_unknown_key_label_is_named_in_the_error(hsm: Hsm) -> None:
    with pytest.raises(HardwareKeyError, match=r"^key 'no-such-key' on PKCS#11 token "
                                               r"'trunkkey-signing': NoSuchKey$"):
        hsm.token.signer("no-such-key")


# -- PINs -------------------------------------------------------------------------------------

def test_a_wrong_pin_fails_with_a_clear_error_that_does_not_show_it(hsm: Hsm) -> None:
    wrong = "9999-not-the-pin"
    with pytest.raises(HardwareKeyError) as caught:
        Pkcs11Token.open(library=hsm.library, token_label=LOGIN_TOKEN, pin=wrong)
    assert str(caught.value) == "PKCS#11 token 'trunkkey-login' refused the PIN (wrong PIN)"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    # The right PIN still opens it afterwards.
    with Pkcs11Token.open(library=hsm.library, token_label=LOGIN_TOKEN, pin=PIN) as token:
        assert token.signer("login-key").algorithm is Algorithm.EDDSA


def test_the_pin_never_shows_in_a_repr(hsm: Hsm) -> None:
    with Pkcs11Token.open(library=hsm.library, token_label=LOGIN_TOKEN, pin=PIN) as token:
        signer = token.signer("login-key")
        shown = repr(token) + str(token) + repr(signer) + str(signer)
    assert PIN not in shown
    assert repr(signer) == (
        f"Pkcs11Signer(token='trunkkey-login', key='login-key', alg=EdDSA, "
        f"kid={signer.kid.hex()})"
    )
    assert repr(token) == "Pkcs11Token('trunkkey-login', closed)"


def test_the_pin_comes_from_an_owner_only_file_or_the_environment(
    hsm: Hsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o644)
    with pytest.raises(InsecureKeyFile):
        Pkcs11Token.open(library=hsm.library, token_label=LOGIN_TOKEN, pin_file=pin_file)
    pin_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with Pkcs11Token.open(library=hsm.library, token_label=LOGIN_TOKEN, pin_file=pin_file):
        pass
    monkeypatch.setenv(PIN_ENV, PIN)
    with Pkcs11Token.open(library=hsm.library, token_label=LOGIN_TOKEN):
        pass
    monkeypatch.delenv(PIN_ENV)
    with pytest.raises(InvalidRequest, match=f"set {PIN_ENV}"):
        Pkcs11Token.open(library=hsm.library, token_label=LOGIN_TOKEN)
    with pytest.raises(InvalidRequest, match="not both"):
        Pkcs11Token.open(library=hsm.library, token_label=LOGIN_TOKEN, pin=PIN,
                         pin_file=pin_file)


def test_a_second_login_to_the_same_token_is_refused_not_shared(hsm: Hsm) -> None:
    with pytest.raises(HardwareKeyError, match="already logged in by this process"):
        Pkcs11Token.open(library=hsm.library, token_label=SIGNING_TOKEN, pin=PIN)


def test_a_missing_token_is_named_in_the_error(hsm: Hsm) -> None:
    missing = "no-such-token"
    with pytest.raises(HardwareKeyError, match=r"^PKCS#11 token 'no-such-token': cannot log in "
                                               r"\(NoSuchToken\)$"):
        Pkcs11Token.open(library=hsm.library, token_label=missing, pin=PIN)


def test_a_module_that_does_not_load_is_named_in_the_error(hsm: Hsm, tmp_path: Path) -> None:
    missing = tmp_path / "libnothing.so"
    with pytest.raises(HardwareKeyError, match=r"^cannot load the PKCS#11 module '.*libnothing"):
        Pkcs11Token.open(library=missing, token_label=LOGIN_TOKEN, pin=PIN)


def test_a_closed_token_refuses_to_sign(hsm: Hsm) -> None:
    token = Pkcs11Token.open(library=hsm.library, token_label=LOGIN_TOKEN, pin=PIN)
    signer = token.signer("login-key")
    assert len(signer.sign(b"m")) == 64
    token.close()
    with pytest.raises(HardwareKeyError, match="'trunkkey-login' is closed"):
        signer.sign(b"m")


def test_the_hsm_mint_benchmark_runs() -> None:
    _library()
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.hsm_mint", "--mints", "5", "--rounds", "1"],
        cwd=root, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["EdDSA", "ES256"]
