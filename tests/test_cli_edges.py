"""The `trunkkey` command's sharp edges (issue #14), one test per edge, driven as a
user would: a real process, real files, and a real terminal (a pty) where the
edge is about one."""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from trunkkey import SigningKey
from trunkkey.cli import build_parser

NB = "2030-01-01T00:00:00Z"
AT = "2030-01-01T01:00:00Z"
CHALLENGE = "00112233445566778899aabbccddeeff"
PASSWORD = "correct horse battery staple"  # noqa: S105 -- a test key's password
ENV = "TRUNKKEY_KEY_PASSWORD"


def run(*args: str, cwd: Path, stdin: bytes | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    full = {k: v for k, v in os.environ.items() if k != ENV}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "trunkkey", *args], cwd=cwd, input=stdin,
                          capture_output=True, timeout=60, check=False, env=full)


def ok(*args: str, cwd: Path, stdin: bytes | None = None,
       env: dict[str, str] | None = None) -> str:
    result = run(*args, cwd=cwd, stdin=stdin, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout.decode()


def error(result: subprocess.CompletedProcess[bytes]) -> str:
    """The one-line error of a command that failed with exit status 2."""
    err = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, err, result.stdout)
    assert err.count("\n") == 1, err
    assert err.startswith("trunkkey: error: "), err
    assert "Traceback" not in err
    return err.removeprefix("trunkkey: error: ").strip()


def _take_terminal() -> None:
    # The child leads a new session (start_new_session): make the pty on its
    # stdin its controlling terminal, so /dev/tty (where getpass asks) is the pty.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def on_terminal(*args: str, cwd: Path, typed: bytes = b"",
                wait_for: bytes = b"") -> tuple[int, bytes]:
    """Run with stdin, stdout and stderr on a terminal; type ``typed`` once ``wait_for`` shows."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trunkkey", *args], cwd=cwd, stdin=slave, stdout=slave,
        stderr=slave, start_new_session=True, env=env,
        preexec_fn=_take_terminal,  # noqa: PLW1509 -- one ioctl; the test runs no threads
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if typed and wait_for and wait_for in seen:
                os.write(master, typed)
                typed = b""
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), seen
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-edges")
    (d / "pw.txt").write_text(PASSWORD + "\n")
    (d / "pw.txt").chmod(0o600)
    ok("keygen", "--out", "issuer.key", "--public-out", "issuer.pub", cwd=d)
    ok("keygen", "--out", "locked.key", "--public-out", "locked.pub", "--password-file",
       "pw.txt", cwd=d)
    ok("keygen", "--alg", "p256", "--out", "device.key", "--public-out", "device.pub", cwd=d)
    ok("keygen", "--out", "other.key", "--public-out", "other.pub", cwd=d)
    return d


def mint(work: Path, *extra: str, key: str = "issuer.key",
         env: dict[str, str] | None = None) -> str:
    return ok(
        "mint", "--key", key, "--issuer", "shop.example", "--vehicle", "VIN-1",
        "--action", "trunk", "--not-before", NB, "--valid-for", "4h", *extra, cwd=work, env=env,
    ).strip()


def verify(work: Path, token: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return run("verify", token, "--trust", "issuer.pub:shop.example", "--vehicle", "VIN-1",
               "--action", "trunk", "--at", AT, *extra, cwd=work)


# -- encrypted private keys ------------------------------------------------------------


def test_an_encrypted_key_is_used_with_a_password_file(work: Path) -> None:
    assert "BEGIN ENCRYPTED PRIVATE KEY" in (work / "locked.key").read_text()
    locked = SigningKey.load(work / "locked.key", password=PASSWORD.encode())
    token = mint(work, "--password-file", "pw.txt", key="locked.key")
    result = run("verify", token, "--trust", "locked.pub:shop.example", "--vehicle", "VIN-1",
                 "--action", "trunk", "--at", AT, "--json", cwd=work)
    assert json.loads(result.stdout)["reason"] == "allowed"
    shown = ok("pubkey", "--key", "locked.key", "--password-file", "pw.txt", cwd=work)
    assert locked.kid.hex() in shown


def test_an_encrypted_key_is_used_with_the_environment_variable(work: Path) -> None:
    kid = SigningKey.load(work / "locked.key", password=PASSWORD.encode()).kid.hex()
    token = mint(work, key="locked.key", env={ENV: PASSWORD})
    seen = json.loads(ok("inspect", token, "--json", cwd=work))
    assert seen["header"]["kid"] == kid


def test_every_command_that_reads_a_private_key_takes_a_password_file(work: Path) -> None:
    pw = ("--password-file", "pw.txt")
    grant = ok("grant", "--key", "locked.key", *pw, "--grantee", "issuer.pub",
               "--grantee-name", "shop.example", "--vehicle", "VIN-1", "--action", "trunk",
               "--not-before", NB, "--valid-for", "1d", cwd=work).strip()
    assert ok("grant", "inspect", grant, cwd=work).count("UNVERIFIED") == 2
    listing = ok("revocations", "make", "--key", "locked.key", *pw, "--version", "1",
                 cwd=work).strip()
    assert "version:     1" in ok("revocations", "inspect", listing, cwd=work)
    (work / "device-locked.key").unlink(missing_ok=True)
    SigningKey.load(work / "device.key").save(work / "device-locked.key",
                                              password=PASSWORD.encode())
    token = mint(work, "--courier-key", "device.pub")
    proof = ok("prove", token, "--device-key", "device-locked.key", *pw, "--vehicle", "VIN-1",
               "--challenge", CHALLENGE, cwd=work).strip()
    assert verify(work, token, "--proof", proof, "--challenge", CHALLENGE).returncode == 0
    for parser in _all_parsers():
        if any(a.dest in ("key", "device_key") for a in parser._actions) and (
            "keygen" not in parser.prog
        ):
            assert any(a.dest == "password_file" for a in parser._actions), parser.prog


def test_an_encrypted_key_without_a_password_says_where_to_give_one(work: Path) -> None:
    message = error(run("pubkey", "--key", "locked.key", cwd=work, stdin=b""))
    assert "encrypted" in message
    assert "--password-file" in message
    assert ENV in message


def test_a_wrong_password_is_one_clean_line_without_the_password(work: Path) -> None:
    message = error(run("pubkey", "--key", "locked.key", cwd=work, env={ENV: "wrong"}))
    assert "wrong password" in message
    assert "wrong" not in message.replace("wrong password", "")


def test_a_password_file_for_a_plain_key_is_refused(work: Path) -> None:
    message = error(run("pubkey", "--key", "issuer.key", "--password-file", "pw.txt", cwd=work))
    assert "not encrypted" in message


def test_a_password_file_others_can_read_is_refused_and_its_key_not_opened(work: Path) -> None:
    shared = work / "pw-shared.txt"
    shared.write_text(PASSWORD + "\n")
    shared.chmod(0o644)
    for argv in (("pubkey", "--key", "locked.key"),
                 ("keygen", "--out", "shared.key", "--public-out", "shared.pub")):
        result = run(*argv, "--password-file", shared.name, cwd=work)
        message = error(result)
        assert "password file" in message
        assert "chmod 600" in message
        assert PASSWORD not in message
        assert SigningKey.load(work / "locked.key", password=PASSWORD.encode()).kid.hex() \
            not in result.stdout.decode()
    assert not (work / "shared.key").exists()


def test_on_a_terminal_the_password_is_asked_for_and_not_echoed(work: Path) -> None:
    kid = SigningKey.load(work / "locked.key", password=PASSWORD.encode()).kid.hex()
    code, seen = on_terminal("pubkey", "--key", "locked.key", cwd=work,
                             typed=PASSWORD.encode() + b"\n", wait_for=b"password for")
    assert code == 0, seen
    assert b"password for locked.key" in seen
    assert kid.encode() in seen
    assert PASSWORD.encode() not in seen


# -- the token argument ------------------------------------------------------------------


def test_the_token_argument_may_be_a_file_of_hex_base64url_or_raw_bytes(work: Path) -> None:
    token = bytes.fromhex(mint(work))
    (work / "token.hex").write_text(token.hex() + "\n")
    (work / "token.b64").write_text(base64.urlsafe_b64encode(token).decode().rstrip("="))
    (work / "token.cbor").write_bytes(token)
    for name in ("token.hex", "token.b64", "token.cbor"):
        seen = json.loads(ok("inspect", name, "--json", cwd=work))
        assert seen["size"] == len(token), name
        assert seen["transport"]["hex_chars"] == 2 * len(token), name
        assert verify(work, name).returncode == 0, name


def test_a_token_file_that_is_not_there_is_named_as_such(work: Path) -> None:
    message = error(verify(work, "absent.hex"))
    assert "not a readable file, hex or base64url" in message


@pytest.mark.parametrize("cut", [1, 3, 5])
def test_odd_length_hex_says_hex_not_base64url(work: Path, cut: int) -> None:
    message = error(run("inspect", mint(work)[:-cut], cwd=work))
    assert "odd number of hex digits" in message
    assert "base64url" not in message


def test_standard_base64_is_refused_with_a_hint(work: Path) -> None:
    token = bytes.fromhex(mint(work))
    standard = base64.b64encode(token).decode()
    if "+" not in standard and "/" not in standard:  # make sure the text needs the hint
        standard = standard[:-4] + "+/+/"
    message = error(run("inspect", standard, cwd=work))
    assert "standard base64" in message
    assert "'-' for '+'" in message


@pytest.mark.parametrize("command", ["verify", "inspect", "prove"])
def test_a_truncated_token_exits_2_at_odd_and_even_length(work: Path, command: str) -> None:
    token = mint(work, "--courier-key", "device.pub")
    for cut in (1, 2, 7, 8):  # odd and even numbers of hex digits
        short = token[:-cut]
        if command == "verify":
            result = verify(work, short)
        elif command == "prove":
            result = run("prove", short, "--device-key", "device.key", "--vehicle", "VIN-1",
                         "--challenge", CHALLENGE, cwd=work)
        else:
            result = run("inspect", short, cwd=work)
        message = error(result)
        assert ("odd number of hex digits" if cut % 2 else "cannot decode token") in message
        assert result.stdout == b""


# -- prove checks the token before signing ------------------------------------------------


@pytest.mark.parametrize(
    ("minted", "key", "vehicle", "words"),
    [
        (("--courier-key", "device.pub"), "other.key", "VIN-1", "is not the device"),
        (("--courier-key", "device.pub"), "device.key", "VIN-2", "for vehicle 'VIN-1'"),
        ((), "device.key", "VIN-1", "bound to no device"),
    ],
)
def test_prove_refuses_a_proof_the_car_would_refuse(
    work: Path, minted: tuple[str, ...], key: str, vehicle: str, words: str
) -> None:
    token = mint(work, *minted)
    result = run("prove", token, "--device-key", key, "--vehicle", vehicle,
                 "--challenge", CHALLENGE, cwd=work)
    assert words in error(result)
    assert result.stdout == b""


# -- the parser ------------------------------------------------------------------------


def _all_parsers() -> list[argparse.ArgumentParser]:
    found, todo = [], [build_parser()]
    while todo:
        parser = todo.pop()
        found.append(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return found


def test_abbreviated_options_are_refused(work: Path) -> None:
    token = mint(work)
    message = error(run("verify", token, "--trust", "issuer.pub:shop.example", "--veh", "VIN-1",
                        "--action", "trunk", "--at", AT, cwd=work))
    assert "--veh" in message
    assert all(not parser.allow_abbrev for parser in _all_parsers())


def test_a_bare_command_prints_the_usage_and_exits_2(work: Path) -> None:
    result = run(cwd=work)
    assert result.returncode == 2
    out = result.stdout.decode()
    assert out.startswith("usage: trunkkey")
    for name in ("keygen", "mint", "verify", "prove", "grant", "log"):
        assert name in out
    assert "examples:" in out


def test_every_help_has_examples(work: Path) -> None:
    parsers = _all_parsers()
    assert len(parsers) >= 15
    for parser in parsers:
        assert (parser.epilog or "").startswith("examples:\n  trunkkey"), parser.prog
    for command in ("mint", "verify", "prove", "grant", "revocations"):
        out = ok(command, "--help", cwd=work)
        assert "\nexamples:\n  trunkkey " + command in out, command


def test_action_options_say_what_each_action_does(work: Path) -> None:
    for command in ("mint", "verify", "grant"):
        out = " ".join(ok(command, "--help", cwd=work).split())
        assert "trunk (open the trunk, then relock)" in out, command
        assert "unlock-relock (unlock the doors, then relock)" in out, command


# -- output -------------------------------------------------------------------------------


def test_raw_output_is_refused_on_a_terminal(work: Path) -> None:
    code, seen = on_terminal("mint", "--key", "issuer.key", "--issuer", "s", "--vehicle", "V",
                             "--action", "trunk", "--valid-for", "1h", "--format", "raw",
                             cwd=work)
    assert code == 2
    assert b"--format raw writes binary: redirect it" in seen
    assert b"\xd2" not in seen
    piped = run("mint", "--key", "issuer.key", "--issuer", "s", "--vehicle", "V", "--action",
                "trunk", "--valid-for", "1h", "--format", "raw", cwd=work)
    assert piped.returncode == 0
    assert piped.stdout[:1] == b"\xd2"


def test_json_shows_order_ref_as_the_text_output_does(work: Path) -> None:
    token = mint(work, "--order-ref", "112-4408817")
    text = ok("inspect", token, cwd=work)
    assert "order ref:   3131322d34343038383137  ('112-4408817')" in text
    for data in (json.loads(ok("inspect", token, "--json", cwd=work)),
                 json.loads(verify(work, token, "--json").stdout)):
        assert data["claims"]["order_ref"] == "112-4408817"
        assert data["claims"]["order_ref_hex"] == "3131322d34343038383137"


def test_simulate_json_is_a_list_of_typed_steps(work: Path) -> None:
    data = json.loads(ok("simulate", "--json", cwd=work))
    assert data["ok"] is True
    steps = data["steps"]
    assert isinstance(steps, list)
    assert len(steps) == 5
    for step in steps:
        assert isinstance(step, dict)
        assert isinstance(step["at"], int)
        assert isinstance(step["allowed"], bool)
        assert step["ok"] is True
        assert step["reason"] == step["expected"]
        assert step["action"] in ("trunk", "unlock-relock")
    assert [s["allowed"] for s in steps] == [True, False, False, False, False]
