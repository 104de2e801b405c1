"""The consent commands (`grant`, `chain`, `revocations`, `verify --chain --root`), driven
as a user would: a real `python -m trunkkey` process, real key files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trunkkey.consent import decode_grant, grant_digest
from trunkkey.cose import parse_sign1

GRANT_NB = "2029-12-31T00:00:00Z"
NB = "2030-01-01T00:00:00Z"
AT = "2030-01-01T01:00:00Z"
VIN = "WAUZZZ8V0KA000001"
CHALLENGE = "00112233445566778899aabbccddeeff"
HOME = "48.137154,11.576124"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "trunkkey", *args], cwd=cwd, capture_output=True, timeout=60,
        check=False,
    )


def ok(*args: str, cwd: Path) -> str:
    result = run(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout.decode()


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("trunkkey: error: "), err
    return err.removeprefix("trunkkey: error: ").strip()


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return path.name


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four key pairs (carmaker, retailer, carrier, courier device), the owner's consent
    grant (carmaker -> retailer), the delegation (retailer -> carrier) and their chain."""
    d = tmp_path_factory.mktemp("consent-cli")
    for name in ("carmaker", "retailer", "carrier"):
        ok("keygen", "--out", f"{name}.key", "--public-out", f"{name}.pub", cwd=d)
    ok("keygen", "--alg", "p256", "--out", "device.key", "--public-out", "device.pub", cwd=d)
    write(d / "root.grant", ok(
        "grant", "--key", "carmaker.key", "--grantee", "retailer.pub",
        "--grantee-name", "shop.example", "--vehicle", VIN, "--action", "trunk",
        "--purpose", "delivery", "--purpose", "return-pickup", "--not-before", GRANT_NB,
        "--valid-for", "30d", "--depth", "1", "--place", f"{HOME},300", "--daily-limit", "3",
        cwd=d,
    ))
    write(d / "carrier.grant", ok(
        "grant", "--key", "retailer.key", "--parent", "root.grant", "--grantee", "carrier.pub",
        "--grantee-name", "dhl", "--action", "trunk", "--not-before", GRANT_NB,
        "--valid-for", "7d", cwd=d,
    ))
    write(d / "chain.hex", ok("chain", "root.grant", "carrier.grant", cwd=d))
    return d


def carrier_token(work: Path, *extra: str) -> str:
    return ok(
        "mint", "--key", "carrier.key", "--issuer", "dhl", "--vehicle", VIN,
        "--action", "trunk", "--not-before", NB, "--valid-for", "4h", "--courier-key", "device.pub",
        "--geofence", f"{HOME},50", *extra, cwd=work,
    ).strip()


def verify(
    work: Path, token: str, *extra: str, action: str = "trunk",
) -> subprocess.CompletedProcess[bytes]:
    proof = ok("prove", token, "--device-key", "device.key", "--vehicle", VIN,
               "--challenge", CHALLENGE, cwd=work).strip()
    return run(
        "verify", token, "--root", "carmaker.pub", "--vehicle", VIN, "--action", action,
        "--at", AT, "--location", HOME, "--proof", proof, "--challenge", CHALLENGE, "--json",
        *extra, cwd=work,
    )


def reason(result: subprocess.CompletedProcess[bytes]) -> tuple[int, str]:
    return result.returncode, json.loads(result.stdout)["reason"]


# -- the end-to-end story ----------------------------------------------------------


def test_chain_opens_offline_then_a_revocation_list_closes_it(work: Path) -> None:
    token = carrier_token(work, "--order-ref", "112-1")
    allowed = verify(work, token, "--chain", "chain.hex", "--ledger", "car.db")
    assert reason(allowed) == (0, "allowed"), allowed.stderr
    assert json.loads(allowed.stdout)["claims"]["issuer"] == "dhl"
    # Single use holds under a chain too.
    assert reason(verify(work, token, "--chain", "chain.hex", "--ledger", "car.db")) == (
        1, "already_used")
    # The owner withdraws consent: the carmaker signs list v1 revoking the root grant.
    write(work / "v1.list", ok(
        "revocations", "make", "--key", "carmaker.key", "--version", "1", "--issued-at", NB,
        "--grant", "root.grant", cwd=work,
    ))
    fresh = carrier_token(work)
    denied = verify(work, fresh, "--chain", "chain.hex", "--revocations", "v1.list")
    assert reason(denied) == (1, "grant_revoked")
    # Without the list the same token still opens: the list is what revoked it.
    assert reason(verify(work, fresh, "--chain", "chain.hex")) == (0, "allowed")


def test_text_output_of_an_allowed_chain(work: Path) -> None:
    token = carrier_token(work)
    proof = ok("prove", token, "--device-key", "device.key", "--vehicle", VIN,
               "--challenge", CHALLENGE, cwd=work).strip()
    out = ok("verify", token, "--chain", "chain.hex", "--root", "carmaker.pub",
             "--vehicle", VIN, "--action", "trunk", "--at", AT, "--location", HOME,
             "--proof", proof, "--challenge", CHALLENGE, cwd=work)
    assert out.startswith("ALLOWED: allowed")


def test_without_the_chain_the_carrier_is_unknown(work: Path) -> None:
    assert reason(verify(work, carrier_token(work))) == (1, "unknown_key")


def test_carrier_outside_its_grant_is_scope_widened(work: Path) -> None:
    cabin = ok("mint", "--key", "carrier.key", "--issuer", "dhl", "--vehicle", VIN,
               "--action", "unlock-relock", "--not-before", NB, "--valid-for", "1h",
               "--courier-key", "device.pub", cwd=work).strip()
    assert reason(verify(work, cabin, "--chain", "chain.hex", action="unlock-relock")) == (
        1, "scope_widened")


def test_key_and_supersede_revocations(work: Path) -> None:
    write(work / "keys.list", ok(
        "revocations", "make", "--key", "carmaker.key", "--version", "7",
        "--revoke-key", "carrier.pub", cwd=work,
    ))
    assert reason(verify(work, carrier_token(work), "--chain", "chain.hex",
                         "--revocations", "keys.list")) == (1, "key_revoked")
    # A newer token for the order was issued: anything older is superseded (RollJam).
    write(work / "order.list", ok(
        "revocations", "make", "--key", "carmaker.key", "--version", "8",
        "--supersede", "112-9=2099-01-01T00:00:00Z", cwd=work,
    ))
    token = carrier_token(work, "--order-ref", "112-9")
    assert reason(verify(work, token, "--chain", "chain.hex",
                         "--revocations", "order.list")) == (1, "superseded")


def test_grants_named_by_digest_need_a_car_that_holds_them(work: Path) -> None:
    data = json.loads(ok("chain", "root.grant", "carrier.grant", "--by-digest", "--json",
                         cwd=work))
    assert [link["by_digest"] for link in data["links"]] == [True, True]
    assert data["size"] == 1 + 2 * (2 + 32)  # array head, then two 32-byte bstr
    write(work / "digest.chain", data["chain"])
    # A one-shot verify holds no grant cache: the car asks for the grants in full.
    assert reason(verify(work, carrier_token(work), "--chain", "digest.chain")) == (
        1, "chain_invalid")


def test_a_retailer_token_under_a_one_link_chain_given_as_the_grant(work: Path) -> None:
    token = ok("mint", "--key", "retailer.key", "--issuer", "shop.example", "--vehicle", VIN,
               "--action", "trunk", "--not-before", NB, "--valid-for", "1h",
               "--courier-key", "device.pub", "--geofence", f"{HOME},50", cwd=work).strip()
    assert reason(verify(work, token, "--chain", "root.grant")) == (0, "allowed")


# -- formats and inspection ---------------------------------------------------------


def test_grant_formats_and_json(work: Path) -> None:
    common = ("grant", "--key", "carmaker.key", "--grantee", "retailer.pub",
              "--grantee-name", "shop.example", "--vehicle", VIN, "--action", "trunk",
              "--not-before", GRANT_NB, "--expires", "2030-02-01T00:00:00Z")
    raw = run(*common, "--format", "raw", cwd=work)
    assert raw.returncode == 0
    assert raw.stdout[:1] == b"\xd2"
    grant = decode_grant(parse_sign1(raw.stdout).payload)
    assert grant.grantee_name == "shop.example"
    assert grant.depth == 0
    assert grant.expires - grant.not_before == 32 * 86_400
    (work / "raw.grant").write_bytes(raw.stdout)
    data = json.loads(ok(*common, "--format", "base64url", "--json", cwd=work))
    assert data["format"] == "base64url"
    assert data["delegation"] is False
    assert data["content"]["actions"] == ["trunk"]
    assert data["content"]["purposes"] == ["delivery"]
    assert len(data["digest"]) == 64
    inspected = json.loads(ok("grant", "inspect", "raw.grant", "--json", cwd=work))
    assert inspected["links"][0]["digest"] == grant_digest(raw.stdout).hex()
    # base64url text is read as well as hex and raw files.
    assert json.loads(ok("grant", "inspect", data["grant"], "--json", cwd=work))["unverified"]


def test_grant_inspect_is_loudly_unverified(work: Path) -> None:
    out = ok("grant", "inspect", "chain.hex", cwd=work)
    lines = out.splitlines()
    assert lines[0].startswith("*** UNVERIFIED")
    assert lines[-1].startswith("*** UNVERIFIED")
    assert "-- link 0" in out
    assert "-- link 1" in out
    assert "grantee:     shop.example" in out
    assert "grantee:     dhl" in out
    assert "daily limit: 3 opens per UTC day" in out
    assert "within 300 m of 48.1371540,11.5761240" in out
    assert "the previous link's grantee (delegation)" in out
    data = json.loads(ok("grant", "inspect", "chain.hex", "--json", cwd=work))
    assert data["unverified"] is True
    first, second = data["links"]
    assert first["content"]["depth"] == 1
    assert first["header"]["kid"] is not None
    assert second["header"]["kid"] is None
    assert second["content"]["places"] is None  # inherited


def test_revocations_make_and_inspect(work: Path) -> None:
    listing = json.loads(ok(
        "revocations", "make", "--key", "carmaker.key", "--version", "3", "--issued-at", NB,
        "--grant", "carrier.grant", "--kid", "0011223344556677",
        "--token-id", "00" * 16, "--supersede", "order=7=2030-01-01T00:00:00Z", "--json",
        cwd=work,
    ))
    content = listing["content"]
    assert content["version"] == 3
    assert content["kids"] == ["0011223344556677"]
    assert content["supersede"][0]["order_ref"] == "order=7"
    write(work / "v3.list", listing["list"])
    out = ok("revocations", "inspect", "v3.list", cwd=work)
    assert out.startswith("*** UNVERIFIED")
    assert "version:     3" in out
    assert "tokens issued before 2030-01-01 00:00:00 UTC are superseded" in out
    digest = grant_digest(bytes.fromhex((work / "carrier.grant").read_text().strip())).hex()
    assert f"revoked grant: {digest}" in out
    raw = run("revocations", "make", "--key", "carmaker.key", "--version", "4",
              "--format", "raw", cwd=work)
    (work / "raw.list").write_bytes(raw.stdout)
    assert json.loads(ok("revocations", "inspect", "raw.list", "--json", cwd=work))[
        "content"]["version"] == 4


# -- bad input: one line, exit 2 --------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (("grant", "--key", "carmaker.key", "--action", "trunk", "--valid-for", "1d"),
     "grant needs --grantee, --grantee-name"),
    (("grant", "--key", "carmaker.key", "--grantee", "retailer.pub", "--grantee-name", "s",
      "--action", "trunk", "--valid-for", "1d"),
     "the first grant of a chain must name its vehicles"),
    (("grant", "--key", "carmaker.key", "--grantee", "retailer.pub", "--grantee-name", "s",
      "--vehicle", VIN, "--action", "trunk"),
     "give the window as --valid-for DURATION or --expires TIME"),
    (("grant", "--key", "carrier.key", "--parent", "root.grant", "--grantee", "carrier.pub",
      "--grantee-name", "dhl", "--action", "trunk", "--valid-for", "1d"),
     "--key is not the grantee of the --parent chain's last grant"),
    (("grant", "--key", "retailer.key", "--parent", "root.grant", "--grantee", "carrier.pub",
      "--grantee-name", "dhl", "--action", "unlock-relock", "--not-before", GRANT_NB,
      "--valid-for", "1d"),
     "delegation would widen its parent"),
    (("grant", "--key", "carmaker.key", "--grantee", "retailer.pub", "--grantee-name", "s",
      "--vehicle", VIN, "--action", "trunk", "--valid-for", "1d", "--place", "91,0,10"),
     "--place: latitude must be within [-90, 90] degrees"),
    (("grant", "--key", "carmaker.key", "--grantee", "retailer.pub", "--grantee-name", "s",
      "--vehicle", VIN, "--action", "trunk", "--valid-for", "1d", "--depth", "9"),
     "depth must be 0 to 3"),
    (("grant", "--key", "carmaker.pub", "--grantee", "retailer.pub", "--grantee-name", "s",
      "--vehicle", VIN, "--action", "trunk", "--valid-for", "1d"),
     "holds a public key; this option needs a private key"),
    (("grant", "inspect", "zz-not-a-grant!"), "grant is not a readable file, hex or base64url"),
    (("grant", "inspect", "v1-missing.list"), "not a readable file, hex or base64url"),
    (("chain", "device.pub"), "link 0"),
    (("verify", "00", "--chain", "chain.hex", "--trust", "carrier.pub:dhl", "--vehicle", VIN,
      "--action", "trunk"), "--chain and --revocations need --root PUBFILE"),
    (("verify", "00", "--root", "carmaker.pub", "--revocations", "root.grant",
      "--vehicle", VIN, "--action", "trunk"), "--revocations refused: wrong_type"),
    (("revocations", "make", "--key", "carmaker.key", "--version", "1", "--kid", "abcd"),
     "--kid 'abcd' must be 8 bytes (16 hex digits)"),
    (("revocations", "make", "--key", "carmaker.key", "--version", "0"),
     "version must be a positive integer"),
    (("revocations", "make", "--key", "carmaker.key", "--version", "2", "--supersede", "x"),
     "--supersede 'x': expected ORDER_REF=TIME"),
    (("revocations", "make", "--key", "carmaker.key", "--version", "2", "--grant", "abcd"),
     "--grant is not a grant"),
    (("revocations", "inspect", "root.grant"), "not a revocation list"),
    (("revocations",), "the following arguments are required"),
])
def test_bad_input_is_one_clean_line(work: Path, args: tuple[str, ...], expected: str) -> None:
    assert expected in one_line_error(run(*args, cwd=work))


def test_a_list_from_another_key_is_refused(work: Path) -> None:
    ok("keygen", "--out", "evil.key", cwd=work)
    write(work / "evil.list", ok("revocations", "make", "--key", "evil.key",
                                 "--version", "99", cwd=work))
    message = one_line_error(run("verify", carrier_token(work), "--chain", "chain.hex",
                                 "--root", "carmaker.pub", "--revocations", "evil.list",
                                 "--vehicle", VIN, "--action", "trunk", "--at", AT, cwd=work))
    assert message.startswith("--revocations refused: unknown_key")


def test_errors_in_json_mode_are_json_too(work: Path) -> None:
    result = run("grant", "inspect", "00ff", "--json", cwd=work)
    assert result.returncode == 2
    assert "error" in json.loads(result.stdout)
    result = run("revocations", "make", "--json", "--key", "carmaker.key", "--version", "0",
                 cwd=work)
    assert result.returncode == 2
    assert "version" in json.loads(result.stdout)["error"]


def test_help_lists_the_consent_commands(work: Path) -> None:
    out = ok("--help", cwd=work)
    for name in ("grant", "chain", "revocations"):
        assert f"    {name}" in out
    assert "--root" in ok("verify", "--help", cwd=work)
    assert "WITHOUT verifying" in ok("grant", "inspect", "--help", cwd=work)


def test_a_list_made_from_the_previous_one_keeps_every_revocation_it_held(work: Path) -> None:
    """A list is a complete snapshot: v2 made with only the new entry would un-revoke
    everything v1 held. ``--previous`` carries v1's entries over, and refuses a version
    a car would refuse as not newer."""
    v1 = json.loads(ok(
        "revocations", "make", "--key", "carmaker.key", "--version", "11", "--grant",
        "carrier.grant", "--supersede", "112-7=2030-01-01T00:00:00Z", "--json", cwd=work,
    ))
    write(work / "v11.list", v1["list"])
    v2 = json.loads(ok(
        "revocations", "make", "--key", "carmaker.key", "--version", "12", "--previous",
        "v11.list", "--kid", "0011223344556677", "--supersede", "112-8=2030-01-01T00:00:00Z",
        "--json", cwd=work,
    ))
    assert v2["content"]["grants"] == v1["content"]["grants"]
    assert v2["content"]["kids"] == ["0011223344556677"]
    assert [s["order_ref"] for s in v2["content"]["supersede"]] == ["112-7", "112-8"]
    write(work / "v12.list", v2["list"])
    assert reason(verify(work, carrier_token(work), "--chain", "chain.hex",
                         "--revocations", "v12.list")) == (1, "grant_revoked")
    for version in ("11", "3"):
        refused = run("revocations", "make", "--key", "carmaker.key", "--version", version,
                      "--previous", "v11.list", cwd=work)
        assert refused.returncode == 2
        assert "not newer than the previous list's version 11" in one_line_error(refused)
    refused = run("revocations", "make", "--key", "carmaker.key", "--version", "13",
                  "--previous", "carrier.grant", cwd=work)
    assert refused.returncode == 2
    assert "--previous" in one_line_error(refused)


def test_a_carmaker_key_file_others_can_read_signs_no_grant_and_no_list(work: Path) -> None:
    """A root key left world-readable (a careless copy) is refused before anything is
    signed with it: no grant, no delegation, no revocation list reaches stdout."""
    shutil.copy(work / "carmaker.key", work / "shared-carmaker.key")
    (work / "shared-carmaker.key").chmod(0o644)
    for args in (
        ("grant", "--key", "shared-carmaker.key", "--grantee", "retailer.pub",
         "--grantee-name", "shop.example", "--vehicle", VIN, "--action", "trunk",
         "--valid-for", "1d"),
        ("revocations", "make", "--key", "shared-carmaker.key", "--version", "99"),
    ):
        result = run(*args, cwd=work)
        assert "chmod 600" in one_line_error(result)
        assert result.stdout == b""


def test_grant_inspect_names_a_header_out_of_its_place_as_refused(work: Path) -> None:
    """A delegation first, or a root grant second: inspect shows what each header says,
    and that a car refuses it there, never a reading that looks like a valid chain."""
    write(work / "swapped.hex", ok("chain", "carrier.grant", "root.grant", cwd=work))
    out = ok("grant", "inspect", "swapped.hex", cwd=work)
    assert "no kid: REFUSED by a car, a first grant names its carmaker root" in out
    assert "in a delegation: REFUSED by a car, only a first grant names its signer" in out
    assert "(first grant)" not in out
    assert "(delegation)" not in out
    good = ok("grant", "inspect", "chain.hex", cwd=work)
    assert "REFUSED" not in good
