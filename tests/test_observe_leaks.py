"""No log record holds a secret: a whole delivery, every attack scene, real ledger faults.

Every record the ``trunkkey`` loggers emit, at every level, is scanned — its
message, each structured field, any exception text — for every private key
that signed anything during the run (scalar in hex, base64, base64url, and
any 8-byte stretch of it in hex), every token minted (hex, base64, base64url,
its signature, its token id), and the passwords put in the ledgers' URLs.

The real-server tests make Redis and PostgreSQL fail under a ledger that was
working (the connection cut between two spends) and at connection (a wrong
port, a refused password), and check that the denial's detail names the cause
and holds no password.
"""

from __future__ import annotations

import base64
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support import NOW, VEHICLE, example, make_world
from support import LogRecords as Records
from test_ledger_contract import require_server
from tools.faults.faults import FaultProxy, fault_proxy
from trunkkey import Decision, LedgerError, Reason, SigningKey, Verifier
from trunkkey import issuer as issuer_module
from trunkkey.inspect import inspect_unverified

PASSWORD = "Hunter2-" + secrets.token_hex(6)


def _forms(secret: bytes) -> list[str]:
    return [
        secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode().rstrip("="), repr(secret)[2:-1],
    ]


def _key_forms(key: SigningKey) -> list[str]:
    scalar = key._private_scalar()
    stretches = [scalar[i:i + 8].hex() for i in range(len(scalar) - 7)]
    return _forms(scalar) + stretches


def _token_forms(token: bytes) -> list[str]:
    claims = inspect_unverified(token).claims
    return _forms(token) + _forms(token[-64:]) + _forms(claims.token_id)


def _leaks(records: Records, forms: set[str]) -> list[str]:
    return sorted({f for text in records.texts() for f in forms if f and f in text})


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> tuple[set[SigningKey], list[bytes]]:
    """Every key that signs anything, and every token minted, while the test runs."""
    keys: set[SigningKey] = set()
    tokens: list[bytes] = []
    sign = SigningKey.sign

    def spy_sign(self: SigningKey, message: bytes) -> bytes:
        keys.add(self)
        return sign(self, message)

    real_sign1 = issuer_module.sign1

    def spy_sign1(*args: object, **kwargs: object) -> bytes:
        token = real_sign1(*args, **kwargs)  # type: ignore[arg-type]
        tokens.append(token)
        return token

    monkeypatch.setattr(SigningKey, "sign", spy_sign)
    monkeypatch.setattr(issuer_module, "sign1", spy_sign1)
    return keys, tokens


def test_no_record_of_a_delivery_and_every_attack_scene_holds_a_key_or_token(
    tmp_path: Path, records: Records, spied: tuple[set[SigningKey], list[bytes]],
) -> None:
    checks = example("simulate_delivery").run(str(tmp_path / "delivery"), say=lambda _: None)
    assert all(c.ok for c in checks)
    scenes = example("attacks").run(str(tmp_path / "attacks"))
    assert all(s.ok for s in scenes)
    keys, tokens = spied
    # The scan can fail: it saw the keys, the tokens and many records of many kinds.
    assert len(keys) >= 10
    assert len(tokens) >= 30
    reasons = {getattr(r, "reason", None) for r in records.records}
    assert {"allowed", "already_used", "bad_signature", "proof_invalid", "expired",
            "wrong_action", "car_moved", "clock_untrusted"} <= reasons
    assert {r.name for r in records.records} >= {"trunkkey.verifier", "trunkkey.vehicle"}
    forms = {f for k in keys for f in _key_forms(k)} | {f for t in tokens for f in _token_forms(t)}
    assert _leaks(records, forms) == []


# -- real servers ---------------------------------------------------------------------

def _url_parts(kind: str) -> tuple[str, int, str]:
    url = urlsplit(require_server(kind))
    assert url.hostname is not None
    assert url.port is not None
    return url.hostname, url.port, url.path


def _denial_after_cut(
    ledger_at: Callable[[int], object], relay: FaultProxy, records: Records
) -> Decision:
    world = make_world()
    ledger = ledger_at(relay.port)
    v = Verifier(trust_store=world.store, ledger=ledger, clock=world.clock)  # type: ignore[arg-type]
    assert v.verify_at(world.mint(), now=NOW, vehicle_id=VEHICLE, action="trunk").allowed
    relay.mode = "cut"
    denied = v.verify_at(world.mint(), now=NOW, vehicle_id=VEHICLE, action="trunk")
    assert denied.reason is Reason.LEDGER_UNAVAILABLE
    assert PASSWORD not in denied.detail
    assert _leaks(records, {PASSWORD}) == []
    ledger.close()  # type: ignore[attr-defined]
    return denied


def test_a_redis_connection_cut_between_spends_is_named_without_the_password(
    records: Records,
) -> None:
    from trunkkey.ledger.redis import RedisLedger

    host, port, path = _url_parts("redis")
    prefix = b"obs-" + secrets.token_hex(4).encode() + b":"
    # The loopback server's default user has no password, so takes any: the
    # password is in the URL and sent, as a real deployment's would be.
    with fault_proxy(host, port) as relay:
        denied = _denial_after_cut(
            lambda p: RedisLedger(f"redis://default:{PASSWORD}@127.0.0.1:{p}{path}",
                                  prefix=prefix, timeout_s=5),
            relay, records,
        )
    assert denied.detail.startswith(
        f"ledger failed: LedgerError: redis ledger at 127.0.0.1:{relay.port}")
    assert "ConnectionError" in denied.detail


def test_a_postgres_connection_cut_between_spends_is_named_without_the_password(
    records: Records,
) -> None:
    from trunkkey.ledger.postgres import PostgresLedger

    host, port, path = _url_parts("postgres")
    table = "obs_" + secrets.token_hex(4)
    # The loopback servers trust local connections: the password rides along unused.
    with fault_proxy(host, port) as relay:
        denied = _denial_after_cut(
            lambda p: PostgresLedger(
                f"postgresql://postgres:{PASSWORD}@127.0.0.1:{p}{path}", table=table,
                timeout_s=5, pool_size=1,
            ),
            relay, records,
        )
    assert denied.detail.startswith(
        f"ledger failed: LedgerError: postgres ledger at 127.0.0.1:{relay.port}{path}: ")
    assert "OperationalError" in denied.detail


def test_a_refused_redis_password_and_a_wrong_postgres_port_say_so_without_the_password(
    records: Records,
) -> None:
    from trunkkey.ledger.postgres import PostgresLedger
    from trunkkey.ledger.redis import RedisLedger

    host, port, path = _url_parts("redis")
    with pytest.raises(LedgerError) as refused:
        RedisLedger(f"redis://nobody-{secrets.token_hex(3)}:{PASSWORD}@{host}:{port}{path}",
                    prefix=b"obs-auth:")
    assert "AuthenticationError" in str(refused.value)
    pg_host, _, pg_path = _url_parts("postgres")
    with socket.create_server(("127.0.0.1", 0)) as closed:
        free = closed.getsockname()[1]
    for dsn in (
        f"postgresql://postgres:{PASSWORD}@{pg_host}:{free}{pg_path}",
        f"host={pg_host} port={free} user=postgres password={PASSWORD} dbname={pg_path[1:]}",
    ):
        with pytest.raises(LedgerError) as wrong_port:
            PostgresLedger(dsn, table="obs_never", timeout_s=5)
        assert "Connection refused" in str(wrong_port.value)
        assert PASSWORD not in str(wrong_port.value)
    assert PASSWORD not in str(refused.value)
    assert _leaks(records, {PASSWORD}) == []
