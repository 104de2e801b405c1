"""`trunkkey mint --parcel` and `trunkkey prove --scan` (issue 19), as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_cli import CHALLENGE, mint, ok, one_line_error, run, verify


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-parcels")
    ok("keygen", "--out", "issuer.key", "--public-out", "issuer.pub", cwd=d)
    ok("keygen", "--out", "device.key", "--public-out", "device.pub", cwd=d)
    return d


def prove(work: Path, token: str, *scans: str) -> str:
    scan_args = [arg for identifier in scans for arg in ("--scan", identifier)]
    return ok("prove", token, "--device-key", "device.key", "--vehicle", "VIN-1",
              "--challenge", CHALLENGE, *scan_args, cwd=work).strip()


def test_a_minted_parcel_token_shows_commitments_not_identifiers(work: Path) -> None:
    token = mint(work, "--courier-key", "device.pub", "--parcel", "PKG-A", "--parcel", "PKG-B")
    seen = json.loads(ok("inspect", token, "--json", cwd=work))
    assert seen["claims"]["parcels"]["count"] == 2
    assert len(seen["claims"]["parcels"]["commitments"]) == 2
    text = ok("inspect", token, cwd=work)
    assert "parcels:     2, committed to" in text
    assert "PKG-A" not in text
    assert b"PKG-A".hex() not in token


def test_the_wrong_scan_is_refused_and_the_right_one_opens(work: Path) -> None:
    token = mint(work, "--courier-key", "device.pub", "--parcel", "PKG-A", "--parcel", "PKG-B")
    ledger = ("--ledger", str(work / "ledger.sqlite"))
    plain = verify(work, token, *ledger, "--proof", prove(work, token), "--challenge", CHALLENGE)
    assert plain.returncode == 1
    assert "DENIED: parcel_missing" in plain.stdout.decode()
    wrong = verify(work, token, *ledger, "--proof", prove(work, token, "PKG-Z"),
                   "--challenge", CHALLENGE)
    assert wrong.returncode == 1
    assert "DENIED: wrong_parcel" in wrong.stdout.decode()
    right = verify(work, token, *ledger, "--json", "--proof", prove(work, token, "PKG-B"),
                   "--challenge", CHALLENGE)
    assert right.returncode == 0, right.stdout
    decided = json.loads(right.stdout)
    assert decided["parcels"]["of"] == 2
    assert decided["parcels"]["partial"] is True
    assert len(decided["parcels"]["scanned"]) == 1


def test_a_plain_token_verifies_with_no_parcels_member_set(work: Path) -> None:
    token = mint(work, "--courier-key", "device.pub")
    result = verify(work, token, "--json", "--proof", prove(work, token),
                    "--challenge", CHALLENGE)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["parcels"] is None


def test_parcels_without_a_courier_key_are_a_clean_error(work: Path) -> None:
    result = run("mint", "--key", "issuer.key", "--issuer", "shop.example", "--vehicle",
                 "VIN-1", "--action", "trunk", "--valid-for", "4h", "--parcel", "PKG-A",
                 cwd=work)
    assert "courier_key" in one_line_error(result)


def test_seventeen_scans_are_a_clean_error(work: Path) -> None:
    token = mint(work, "--courier-key", "device.pub", "--parcel", "PKG-A")
    scans = [arg for i in range(17) for arg in ("--scan", f"P{i}")]
    result = run("prove", token, "--device-key", "device.key", "--vehicle", "VIN-1",
                 "--challenge", CHALLENGE, *scans, cwd=work)
    assert "0 to 16" in one_line_error(result)
