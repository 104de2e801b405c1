"""The command line's sealed tokens: ``keygen --kem``, ``mint --seal-to``,
``verify --car-key`` and an ``inspect`` that shows only size and suite."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from test_cli import AT, CHALLENGE, mint, ok, one_line_error, run, verify
from trunkkey import CarKemKey, CarPublicKey


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An issuer key pair, a courier device, and two cars' KEM key pairs."""
    d = tmp_path_factory.mktemp("cli-sealed")
    ok("keygen", "--out", "issuer.key", "--public-out", "issuer.pub", cwd=d)
    ok("keygen", "--out", "device.key", "--public-out", "device.pub", cwd=d)
    for car in ("car", "other"):
        ok("keygen", "--kem", "x25519", "--out", f"{car}.key", "--public-out", f"{car}.pub",
           cwd=d)
    return d


def test_keygen_kem_writes_an_owner_only_car_key_and_its_public_half(work: Path) -> None:
    assert stat.S_IMODE((work / "car.key").stat().st_mode) == 0o600
    key = CarKemKey.load(work / "car.key")
    assert CarPublicKey.from_pem((work / "car.pub").read_bytes()) == key.public_key


def test_a_sealed_token_is_allowed_only_with_its_cars_key(work: Path) -> None:
    sealed = mint(work, "--seal-to", "car.pub")
    assert bytes.fromhex(sealed)[:1] == b"\xd0"
    refused = verify(work, sealed, "--car-key", "other.key", "--json")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["reason"] == "cannot_open"
    allowed = verify(work, sealed, "--car-key", "other.key", "--car-key", "car.key", "--json")
    assert allowed.returncode == 0, allowed.stdout
    assert json.loads(allowed.stdout)["claims"]["vehicle_id"] == "VIN-1"


def test_a_verifier_without_the_cars_key_cannot_open_it(work: Path) -> None:
    result = verify(work, mint(work, "--seal-to", "car.pub"), "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["reason"] == "cannot_open"


def test_inspect_shows_only_that_a_token_is_sealed_its_size_and_suite(work: Path) -> None:
    sealed = mint(work, "--seal-to", "car.pub", "--order-ref", "order-77")
    shown = json.loads(ok("inspect", sealed, "--json", cwd=work))
    assert shown["sealed"] is True
    assert shown["size"] == len(bytes.fromhex(sealed))
    assert shown["suite"] == "HPKE-4"
    assert "claims" not in shown
    text = ok("inspect", sealed, cwd=work)
    for secret in ("VIN-1", "shop.example", "order-77"):
        assert secret not in text


def test_a_device_bound_sealed_token_needs_a_proof_over_the_sealed_bytes(work: Path) -> None:
    sealed = mint(work, "--seal-to", "car.pub", "--courier-key", "device.pub")
    proof = ok("prove", sealed, "--device-key", "device.key", "--vehicle", "VIN-1",
               "--challenge", CHALLENGE, cwd=work).strip()
    result = verify(work, sealed, "--car-key", "car.key", "--proof", proof,
                    "--challenge", CHALLENGE, "--json")
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["reason"] == "allowed"


def test_seal_to_a_file_that_is_no_car_key_is_a_clean_error(work: Path) -> None:
    result = run(
        "mint", "--key", "issuer.key", "--issuer", "shop.example", "--vehicle", "VIN-1",
        "--action", "trunk", "--not-before", AT, "--valid-for", "4h",
        "--seal-to", "issuer.pub", cwd=work,
    )
    assert "not a car's KEM public key" in one_line_error(result)


def test_the_post_quantum_suite_round_trips_through_the_command_line(work: Path) -> None:
    ok("keygen", "--kem", "mlkem768-x25519", "--out", "pq.key", "--public-out", "pq.pub",
       cwd=work)
    assert stat.S_IMODE((work / "pq.key").stat().st_mode) == 0o600
    sealed = mint(work, "--seal-to", "pq.pub")
    shown = json.loads(ok("inspect", sealed, "--json", cwd=work))
    assert shown["suite"] == "HPKE-MLKEM768-X25519"
    assert shown["size"] > 1024
    allowed = verify(work, sealed, "--car-key", "car.key", "--car-key", "pq.key", "--json")
    assert allowed.returncode == 0, allowed.stdout
    # Within the largest sealed token any car reads (sealed.MAX_SEALED): it does not open.
    refused = verify(work, sealed, "--car-key", "car.key", "--json")
    assert json.loads(refused.stdout)["reason"] == "cannot_open"
