"""The `trunkkey` command, driven as a user would: a real process, real files."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from trunkkey import SigningKey, make_proof

NB = "2030-01-01T00:00:00Z"
AT = "2030-01-01T01:00:00Z"
AT_UNIX = 1893459600
CHALLENGE = "00112233445566778899aabbccddeeff"


def run(
    *args: str, cwd: Path, stdin: bytes | None = None, script: Sequence[str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    command = [*(script or [sys.executable, "-m", "trunkkey"]), *args]
    return subprocess.run(
        command, cwd=cwd, input=stdin, capture_output=True, timeout=60, check=False
    )


def ok(*args: str, cwd: Path, stdin: bytes | None = None) -> str:
    result = run(*args, cwd=cwd, stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout.decode()


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    """Assert the clean-failure contract and return the message."""
    err = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("trunkkey: error: "), err
    return err.removeprefix("trunkkey: error: ").strip()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with an issuer key pair and a courier device key pair."""
    d = tmp_path_factory.mktemp("cli")
    ok("keygen", "--out", "issuer.key", "--public-out", "issuer.pub", cwd=d)
    ok("keygen", "--alg", "p256", "--out", "device.key", "--public-out", "device.pub", cwd=d)
    return d


def mint(work: Path, *extra: str) -> str:
    return ok(
        "mint", "--key", "issuer.key", "--issuer", "shop.example", "--vehicle", "VIN-1",
        "--action", "trunk", "--not-before", NB, "--valid-for", "4h", *extra, cwd=work,
    ).strip()


def verify(work: Path, token: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return run(
        "verify", token, "--trust", "issuer.pub:shop.example", "--vehicle", "VIN-1",
        "--action", "trunk", "--at", AT, *extra, cwd=work,
    )


# -- keys -----------------------------------------------------------------------


def test_keygen_writes_an_owner_only_key_and_prints_the_public_half(work: Path) -> None:
    mode = stat.S_IMODE((work / "issuer.key").stat().st_mode)
    assert mode == 0o600
    loaded = SigningKey.load(work / "issuer.key")
    out = ok("pubkey", "--key", "issuer.key", cwd=work)
    assert loaded.kid.hex() in out
    assert loaded.public_key.to_cose_key().hex() in out
    assert "BEGIN PUBLIC KEY" in out
    assert "PRIVATE" not in out


def test_keygen_json_and_p256(work: Path) -> None:
    out = json.loads(ok("keygen", "--alg", "p256", "--out", "extra.key", "--json", cwd=work))
    assert out["alg"] == "ES256"
    assert SigningKey.load(work / "extra.key").kid.hex() == out["kid"]
    assert set(out) >= {"cose_key", "pem", "kid", "private_key_file"}


def test_keygen_refuses_to_overwrite(work: Path) -> None:
    message = one_line_error(run("keygen", "--out", "issuer.key", cwd=work))
    assert "exists" in message
    assert "--force" in message


def test_pubkey_formats(work: Path) -> None:
    pem = ok("pubkey", "--key", "issuer.key", "--format", "pem", cwd=work)
    assert pem == (work / "issuer.pub").read_text()
    cose = ok("pubkey", "--key", "issuer.key", "--format", "cose-hex", cwd=work).strip()
    assert cose == SigningKey.load(work / "issuer.key").public_key.to_cose_key().hex()
    data = json.loads(ok("pubkey", "--key", "device.key", "--json", cwd=work))
    assert data["alg"] == "ES256"


# -- mint, inspect, verify ------------------------------------------------------


def test_mint_then_verify_allows_once_with_a_sqlite_ledger(work: Path) -> None:
    token = mint(work)
    first = verify(work, token, "--ledger", "spent.db")
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().startswith("ALLOWED: allowed")
    second = verify(work, token, "--ledger", "spent.db")
    assert second.returncode == 1
    assert "DENIED: already_used" in second.stdout.decode()
    stats = json.loads(ok("ledger", "stats", "spent.db", "--json", cwd=work))
    assert stats["entries"] >= 1


def test_verify_default_ledger_is_in_memory_and_says_so(work: Path) -> None:
    token = mint(work)
    for _ in range(2):  # nothing persists between runs: both allowed
        result = verify(work, token)
        assert result.returncode == 0
        assert "in-memory" in result.stdout.decode()


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (("--vehicle", "VIN-2"), "wrong_vehicle"),
        (("--action", "unlock-relock"), "wrong_action"),
        (("--purpose", "return-pickup"), "wrong_purpose"),
        (("--at", "2030-01-01T06:00:00Z"), "expired"),
        (("--at", "2029-12-31T23:00:00Z"), "not_yet_valid"),
    ],
)
def test_verify_denials_exit_1_with_reason(work: Path, extra: tuple[str, str], reason: str) -> None:
    token = mint(work)
    result = verify(work, token, *extra, "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["allowed"] is False
    assert data["reason"] == reason
    assert data["claims"]["token_id"]


def test_verify_unknown_key(work: Path) -> None:
    ok("keygen", "--out", "other.key", "--public-out", "other.pub", cwd=work)
    token = mint(work)
    result = run("verify", token, "--trust", "other.pub:shop.example", "--vehicle", "VIN-1",
                 "--action", "trunk", "--at", AT, cwd=work)
    assert result.returncode == 1
    assert "DENIED: unknown_key" in result.stdout.decode()


def test_geofence_courier_key_and_proof(work: Path) -> None:
    token = mint(work, "--geofence", "48.137154,11.576124,50", "--courier-key", "device.pub",
                 "--order-ref", "A-1234")
    seen = json.loads(ok("inspect", token, "--json", cwd=work))
    assert seen["claims"]["geofence"] == {
        "latitude": 48.137154, "longitude": 11.576124, "radius_m": 50
    }
    assert seen["claims"]["courier_key"]["alg"] == "ES256"
    # Typed as the text output shows it: the text, with its bytes in hex beside it.
    assert seen["claims"]["order_ref"] == "A-1234"
    assert bytes.fromhex(seen["claims"]["order_ref_hex"]) == b"A-1234"
    assert "order ref:   412d31323334  ('A-1234')" in ok("inspect", token, cwd=work)
    place = ("--location", "48.13716,11.57612")
    no_proof = verify(work, token, *place)
    assert no_proof.returncode == 1
    assert "proof_missing" in no_proof.stdout.decode()
    outside = verify(work, token, "--location", "48.2,11.6")
    assert "outside_geofence" in outside.stdout.decode()
    proof = ok("prove", token, "--device-key", "device.key", "--vehicle", "VIN-1",
               "--challenge", CHALLENGE, cwd=work).strip()
    # The command's proof is the library's proof (P-256 signatures differ, both verify).
    assert len(bytes.fromhex(proof)) == len(make_proof(
        SigningKey.load(work / "device.key"), token=bytes.fromhex(token), vehicle_id="VIN-1",
        challenge=bytes.fromhex(CHALLENGE),
    ))
    wrong = verify(work, token, *place, "--proof", proof, "--challenge", "ff" * 16)
    assert "proof_invalid" in wrong.stdout.decode()
    good = verify(work, token, *place, "--proof", proof, "--challenge", CHALLENGE)
    assert good.returncode == 0, good.stdout


def test_inspect_is_loudly_unverified_and_human_readable(work: Path) -> None:
    token = mint(work, "--geofence=-33.856784,151.215297,100")
    out = ok("inspect", token, cwd=work)
    assert out.startswith("*** UNVERIFIED")
    assert "2030-01-01 00:00:00 UTC" in out
    assert "2030-01-01 04:00:00 UTC" in out
    assert "window 4h" in out
    assert "within 100 m of -33.8567840,151.2152970" in out
    assert SigningKey.load(work / "issuer.key").kid.hex() in out
    data = json.loads(ok("inspect", token, "--json", cwd=work))
    assert data["unverified"] is True
    assert data["header"]["typ_name"] == "trunkkey token"
    assert data["size"] == len(token) // 2


def test_token_formats_round_trip_through_stdin(work: Path) -> None:
    hex_token = mint(work)
    b64 = mint(work, "--format", "base64url")
    assert set(b64) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    raw = run("mint", "--key", "issuer.key", "--issuer", "shop.example", "--vehicle", "VIN-1",
              "--action", "trunk", "--not-before", NB, "--valid-for", "4h", "--format", "raw",
              cwd=work).stdout
    assert raw[:1] == b"\xd2"
    for data in (hex_token.encode(), b64.encode() + b"\n", raw):
        out = json.loads(ok("inspect", "--json", cwd=work, stdin=data))
        assert out["claims"]["vehicle_id"] == "VIN-1"
    assert json.loads(ok("inspect", "-", "--format", "raw", "--json", cwd=work, stdin=raw))


def test_mint_json_and_unix_times(work: Path) -> None:
    data = json.loads(ok(
        "mint", "--key", "device.key", "--issuer", "carrier", "--vehicle", "VIN-9",
        "--action", "unlock-relock", "--purpose", "return-pickup",
        "--not-before", str(AT_UNIX), "--expires", str(AT_UNIX + 900), "--json", cwd=work,
    ))
    assert data["claims"]["expires"] - data["claims"]["not_before"] == 900
    assert data["claims"]["action"] == "unlock-relock"
    assert data["size"] == len(bytes.fromhex(data["token"]))


def test_trust_store_file_and_key_validity_period(work: Path) -> None:
    public = SigningKey.load(work / "issuer.key").public_key
    (work / "trust.json").write_text(json.dumps({"keys": [{
        "issuer": "shop.example", "cose_key": public.to_cose_key().hex(),
        "not_before": "2029-01-01T00:00:00Z", "not_after": 1924992000,
    }]}))
    token = mint(work)
    base = ("verify", token, "--vehicle", "VIN-1", "--action", "trunk", "--at", AT)
    assert run(*base, "--trust-store", "trust.json", cwd=work).returncode == 0
    # ISO times contain colons: the --trust parser still splits NOT_BEFORE:NOT_AFTER right.
    retired = run(*base, "--trust", "issuer.pub:shop.example:2020-01-01T00:00:00Z:"
                  "2029-06-01T00:00:00+00:00", cwd=work)
    assert retired.returncode == 1
    assert "key_not_valid" in retired.stdout.decode()
    open_ended = run(*base, "--trust", "issuer.pub:shop.example::1924992000", cwd=work)
    assert open_ended.returncode == 0


def test_ledger_prune(work: Path) -> None:
    token = mint(work)
    assert verify(work, token, "--ledger", "prune.db").returncode == 0
    kept = json.loads(ok("ledger", "prune", "prune.db", "--at", AT, "--json", cwd=work))
    assert kept["pruned"] == 0
    gone = json.loads(ok("ledger", "prune", "prune.db", "--at", "2031-01-01T00:00:00Z",
                         "--json", cwd=work))
    assert gone == {"path": "prune.db", "pruned": 1, "entries": 0, "at": 1924992000}
    assert "0 spent tokens" in ok("ledger", "stats", "prune.db", cwd=work)


def test_simulate(work: Path) -> None:
    builtin = json.loads(ok("simulate", "--builtin", "--json", cwd=work))
    assert builtin["ok"] is True
    assert [s["reason"] for s in builtin["steps"]] == [
        "allowed", "already_used", "wrong_action", "wrong_vehicle", "expired",
    ]
    result = run("simulate", cwd=work)
    assert result.returncode == 0, result.stderr
    assert b"built-in story" in result.stdout


def test_simulate_never_runs_a_file_planted_in_the_current_directory(work: Path) -> None:
    planted = work / "examples" / "simulate_delivery.py"
    planted.parent.mkdir(parents=True, exist_ok=True)
    marker = work / "planted-ran"
    planted.write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('x')\n"
        "def main(argv):\n    print('PLANTED')\n    return 0\n"
    )
    for args in (("simulate",), ("simulate", "--json")):
        result = run(*args, cwd=work)
        assert result.returncode == 0, result.stderr
        assert b"PLANTED" not in result.stdout
        assert not marker.exists()
    assert json.loads(ok("simulate", "--json", cwd=work))["source"] == "builtin"


def test_help_and_version(work: Path) -> None:
    out = ok("--help", cwd=work)
    for name in ("keygen", "pubkey", "mint", "inspect", "verify", "prove", "ledger", "simulate"):
        assert name in out
    assert ok("--version", cwd=work).startswith("trunkkey ")


def test_installed_console_script(work: Path) -> None:
    script = Path(sys.executable).parent / ("trunkkey.exe" if os.name == "nt" else "trunkkey")
    found = script if script.exists() else shutil.which("trunkkey")
    assert found, "the trunkkey console script is not installed next to the interpreter"
    token = mint(work)
    result = run("verify", token, "--trust", "issuer.pub:shop.example", "--vehicle", "VIN-1",
                 "--action", "trunk", "--at", AT, "--json", cwd=work, script=[str(found)])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reason"] == "allowed"
    bad = run("inspect", "--format", "hex", "xyz", cwd=work, script=[str(found)])
    assert "not valid hex" in one_line_error(bad)


# -- bad input: one line, exit 2, no traceback ------------------------------------

MINT = ("mint", "--key", "issuer.key", "--issuer", "s", "--vehicle", "V", "--action", "trunk")
VERIFY = ("verify", "--trust", "issuer.pub:s", "--vehicle", "V", "--action", "trunk")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("inspect", "--format", "hex", "d2zz"), "not valid hex"),
        (("inspect", "--format", "base64url", "%%%"), "not valid base64url"),
        (("inspect", "d284"), "cannot decode token"),
        (("inspect", "@@@"), "not a readable file, hex or base64url"),
        (("inspect", "00" * 40000), "cannot decode token"),
        (("mint", "--key", "issuer.pub", "--issuer", "s", "--vehicle", "V", "--action", "trunk",
          "--valid-for", "1h"), "holds a public key"),
        (("mint", "--key", "absent.key", "--issuer", "s", "--vehicle", "V", "--action", "trunk",
          "--valid-for", "1h"), "cannot read"),
        (("mint", "--key", "loose.key", "--issuer", "s", "--vehicle", "V", "--action", "trunk",
          "--valid-for", "1h"), "accessible to other users"),
        (("mint", "--key", "garbage.key", "--issuer", "s", "--vehicle", "V", "--action", "trunk",
          "--valid-for", "1h"), "garbage.key"),
        ((*VERIFY[:1], "d2", "--trust", "issuer.key:s", *VERIFY[3:]), "holds a private key"),
        ((*VERIFY[:1], "d2", "--trust", "garbage.pub:s", *VERIFY[3:]), "not a usable public key"),
        ((*VERIFY[:1], "d2", "--trust", "issuer.pub", *VERIFY[3:]), "PUBKEYFILE:ISSUER"),
        ((*VERIFY[:1], "d2", "--trust", "issuer.pub:s:yesterday:today", *VERIFY[3:]),
         "NOT_BEFORE:NOT_AFTER"),
        (("verify", "d2", "--vehicle", "V", "--action", "trunk"), "no trusted keys"),
        (("verify", "d2", "--trust-store", "garbage.pub", "--vehicle", "V", "--action", "trunk"),
         "not JSON"),
        ((*VERIFY, "d2", "--at", "tomorrow"), "not a time"),
        ((*VERIFY, "d2", "--location", "1,2,3"), "LAT,LON"),
        ((*VERIFY, "d2", "--proof", "xyz"), "--proof is not valid hex"),
        ((*MINT, "--expires", "2030-01-01T00:00:00"), "has no timezone"),
        ((*MINT, "--expires", "2030-13-01T00:00:00Z"), "not a time"),
        ((*MINT, "--valid-for", "4 hours"), "not a duration"),
        ((*MINT, "--valid-for", "48h"), "exceeds the maximum"),
        ((*MINT, "--not-before", "1000", "--valid-for", "1h"), "already ended"),
        ((*MINT, "--valid-for", "1h", "--geofence", "91,0,50"), "latitude"),
        ((*MINT, "--valid-for", "1h", "--geofence", "1,2"), "LAT,LON,RADIUS_M"),
        ((*MINT, "--valid-for", "1h", "--geofence", "1,2,1"), "radius"),
        ((*MINT, "--valid-for", "1h", "--geofence", "a,b,c"), "expected numbers"),
        ((*MINT, "--valid-for", "1h", "--courier-key", "absent.pub"), "cannot read"),
        (("mint", "--key", "issuer.key", "--issuer", "s", "--vehicle", "V", "--action", "fly",
          "--valid-for", "1h"), "invalid choice"),
        (("mint",), "required"),
        (("frobnicate",), "invalid choice"),
        (("ledger", "stats", "absent.db"), "no ledger at"),
        (("ledger", "stats", "garbage.pub"), "ledger"),
        (("ledger", "prune", "spent.db", "--limit", "0"), "--limit"),
        (("prove", "d2", "--device-key", "device.key", "--vehicle", "V", "--challenge", "00"),
         "challenge"),
    ],
)
def test_bad_input_is_one_clean_line(work: Path, args: tuple[str, ...], expected: str) -> None:
    (work / "garbage.key").write_bytes(b"not a key at all")
    (work / "garbage.key").chmod(0o600)
    (work / "garbage.pub").write_bytes(b"garbage\n")
    loose = work / "loose.key"
    if not loose.exists():
        SigningKey.generate().save(loose)
        loose.chmod(0o644)
    message = one_line_error(run(*args, cwd=work))
    assert expected in message
    assert "PRIVATE KEY" not in message


def test_errors_in_json_mode_are_json_too(work: Path) -> None:
    result = run("inspect", "--format", "hex", "zz", "--json", cwd=work)
    one_line_error(result)
    assert json.loads(result.stdout) == {
        "error": "token is not valid hex ('z' is not a hex digit)"
    }
