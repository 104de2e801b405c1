"""The command line's post-quantum signing keys (issue 15): ``keygen --alg mldsa44``,
``--alg eddsa-mldsa65`` and ``--alg es256-mldsa65`` write COSE_Key files, ``pubkey``
shows them, a token minted with one verifies against its public file, and a
composite root's grants are named by ``grant inspect`` and open a delivery."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from test_cli import ok, one_line_error, run
from trunkkey import Algorithm, SigningKey, VerificationKey

ALGS = {"mldsa44": Algorithm.MLDSA44, "eddsa-mldsa65": Algorithm.EDDSA_MLDSA65,
        "es256-mldsa65": Algorithm.ES256_MLDSA65}
VIN, GRANT_NB, NB, AT = ("WAUZZZ8V0KA000001", "2029-12-31T00:00:00Z", "2030-01-01T00:00:00Z",
                         "2030-01-01T01:00:00Z")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-pq")
    for name in ALGS:
        ok("keygen", "--alg", name, "--out", f"{name}.key", "--public-out", f"{name}.pub",
           cwd=d)
    return d


@pytest.mark.parametrize("name", list(ALGS))
def test_keygen_writes_a_post_quantum_key_as_an_owner_only_cose_key(
    work: Path, name: str
) -> None:
    path = work / f"{name}.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.read_bytes().startswith(b"-----BEGIN")
    key = SigningKey.load(path)
    assert key.algorithm is ALGS[name]
    public = VerificationKey.from_cose_key(bytes.fromhex((work / f"{name}.pub").read_text()))
    assert public == key.public_key


@pytest.mark.parametrize("name", list(ALGS))
def test_pubkey_shows_a_post_quantum_key_without_a_pem(work: Path, name: str) -> None:
    key = SigningKey.load(work / f"{name}.key")
    text = ok("pubkey", "--key", f"{name}.key", cwd=work)
    assert f"algorithm: {ALGS[name].cose_name}" in text
    assert key.public_key.to_cose_key().hex() in text
    assert "BEGIN" not in text
    shown = json.loads(ok("pubkey", "--key", f"{name}.key", "--json", cwd=work))
    assert shown["kid"] == key.kid.hex()
    assert shown["pem"] is None
    hexed = ok("pubkey", "--key", f"{name}.key", "--format", "cose-hex", cwd=work).strip()
    assert hexed == key.public_key.to_cose_key().hex()
    message = one_line_error(run("pubkey", "--key", f"{name}.key", "--format", "pem", cwd=work))
    assert "no PEM" in message
    assert "cose-hex" in message


def test_keygen_refuses_to_encrypt_a_post_quantum_key_and_writes_nothing(work: Path) -> None:
    (work / "pw.txt").write_text("correct horse\n")
    (work / "pw.txt").chmod(0o600)
    message = one_line_error(run("keygen", "--alg", "mldsa44", "--out", "locked-pq.key",
                                 "--password-file", "pw.txt", cwd=work))
    assert "cannot be encrypted" in message
    assert not (work / "locked-pq.key").exists()


def test_a_token_minted_with_an_mldsa44_key_verifies_against_its_public_file(
    work: Path,
) -> None:
    token = ok("mint", "--key", "mldsa44.key", "--issuer", "shop.example", "--vehicle",
               "VIN-1", "--action", "trunk", "--valid-for", "4h", cwd=work).strip()
    result = run("verify", token, "--trust", "mldsa44.pub:shop.example", "--vehicle", "VIN-1",
                 "--action", "trunk", "--json", cwd=work)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["reason"] == "allowed"


@pytest.mark.parametrize("name", ["eddsa-mldsa65", "es256-mldsa65"])
def test_a_composite_root_grant_is_named_by_inspect_and_opens_a_delivery(
    work: Path, name: str,
) -> None:
    for party in ("retailer", "carrier"):
        if not (work / f"{party}.key").exists():
            ok("keygen", "--out", f"{party}.key", "--public-out", f"{party}.pub", cwd=work)
    root_grant = ok("grant", "--key", f"{name}.key", "--grantee", "retailer.pub",
                    "--grantee-name", "shop.example", "--vehicle", VIN, "--action", "trunk",
                    "--not-before", GRANT_NB, "--valid-for", "30d", "--depth", "1", cwd=work)
    (work / f"{name}.grant").write_text(root_grant)
    inspected = ok("grant", "inspect", f"{name}.grant", cwd=work)
    assert f"{ALGS[name].cose_name}" in inspected
    link = json.loads(ok("grant", "inspect", f"{name}.grant", "--json", cwd=work))["links"][0]
    assert link["header"]["alg"] == int(ALGS[name])
    assert link["header"]["alg_name"] == ALGS[name].cose_name
    (work / f"{name}-carrier.grant").write_text(ok(
        "grant", "--key", "retailer.key", "--parent", f"{name}.grant", "--grantee",
        "carrier.pub", "--grantee-name", "dhl", "--action", "trunk", "--not-before", GRANT_NB,
        "--valid-for", "7d", cwd=work))
    (work / f"{name}.chain").write_text(ok("chain", f"{name}.grant", f"{name}-carrier.grant",
                                           cwd=work))
    token = ok("mint", "--key", "carrier.key", "--issuer", "dhl", "--vehicle", VIN,
               "--action", "trunk", "--not-before", NB, "--valid-for", "4h", cwd=work).strip()
    result = run("verify", token, "--chain", f"{name}.chain", "--root", f"{name}.pub",
                 "--vehicle", VIN, "--action", "trunk", "--at", AT, "--json", cwd=work)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["reason"] == "allowed"
