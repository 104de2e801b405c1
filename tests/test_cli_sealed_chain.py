"""The command line seals a delegated token with its chain: ``mint --seal-to --chain``,
then ``verify --car-key`` with no chain in the clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_consent_cli import (  # the consent story's keys, grants and chain
    VIN,
    carrier_token,
    ok,
    one_line_error,
    reason,
    run,
    verify,
)
from test_consent_cli import work as work  # noqa: PLC0414 -- re-exported as a fixture


@pytest.fixture(scope="module")
def sealed_work(work: Path) -> Path:
    ok("keygen", "--kem", "x25519", "--out", "car.key", "--public-out", "car.pub", cwd=work)
    return work


def test_a_token_sealed_with_its_chain_is_allowed_with_no_chain_in_the_clear(
    sealed_work: Path,
) -> None:
    minted = json.loads(carrier_token(sealed_work, "--seal-to", "car.pub", "--chain",
                                      "chain.hex", "--json"))
    assert minted["sealed"] is True
    chain = bytes.fromhex((sealed_work / "chain.hex").read_text().strip())
    assert minted["chain_size"] == len(chain)
    sealed = minted["token"]
    assert VIN.encode().hex() not in sealed
    assert chain[:16].hex() not in sealed
    assert reason(verify(sealed_work, sealed, "--car-key", "car.key")) == (0, "allowed")


def test_a_chain_both_sealed_and_in_the_clear_is_malformed(sealed_work: Path) -> None:
    sealed = carrier_token(sealed_work, "--seal-to", "car.pub", "--chain", "chain.hex")
    assert reason(verify(sealed_work, sealed, "--car-key", "car.key", "--chain", "chain.hex")) == (
        1, "malformed")


def test_a_single_grant_given_as_the_chain_is_sealed_as_a_one_link_chain(
    sealed_work: Path,
) -> None:
    sealed = ok("mint", "--key", "retailer.key", "--issuer", "shop.example", "--vehicle", VIN,
                "--action", "trunk", "--not-before", "2030-01-01T00:00:00Z", "--valid-for", "1h",
                "--courier-key", "device.pub", "--geofence", "48.137154,11.576124,50",
                "--seal-to", "car.pub", "--chain", "root.grant", cwd=sealed_work).strip()
    assert reason(verify(sealed_work, sealed, "--car-key", "car.key")) == (0, "allowed")


def test_mint_refuses_a_chain_it_is_not_asked_to_seal(sealed_work: Path) -> None:
    message = one_line_error(run(
        "mint", "--key", "carrier.key", "--issuer", "dhl", "--vehicle", VIN, "--action",
        "trunk", "--valid-for", "1h", "--chain", "chain.hex", cwd=sealed_work,
    ))
    assert "--chain is sealed with the token: give --seal-to" in message
