"""The reference service (examples/service) against the real PostgreSQL ledger.

Through FastAPI's test client: consent, mint, cloud verify, revoke; every
denial an RFC 9457 problem whose status comes from ``trunkkey.advice``; a
retry with the same idempotency key gets its first answer back while the
ledger's spend stays single-use. Once more against uvicorn on loopback.
Without ``TRUNKKEY_POSTGRES_DSN`` these skip locally and fail under CI.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.faults.ledgers import drop_namespace, server_problem
from trunkkey import DecodeError, ManualClock, Reason, Remedy, SigningKey, advice_for, make_proof

fastapi_testclient = pytest.importorskip("fastapi.testclient")
import httpx2  # noqa: E402 -- the test client's own HTTP library, also for uvicorn
from service.app import create_app  # noqa: E402 -- after the skip that names the missing extra
from service.backend import Config, Keys  # noqa: E402
from service.encoding import from_text, to_text  # noqa: E402
from service.problems import PROBLEM_JSON  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START = 1_800_000_000
VIN = "1HGCM82633A004352"
HOUR = 3600
DAY = 86_400


def require_postgres() -> str:
    problem = server_problem("postgres")
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the service tests: {problem}")
        pytest.skip(f"no postgres server: {problem}")
    return os.environ["TRUNKKEY_POSTGRES_DSN"]


@dataclass
class Service:
    client: Any
    clock: ManualClock
    app: Any
    courier: SigningKey
    config: Config

    def consent(self, **overrides: object) -> dict[str, Any]:
        body: dict[str, object] = {
            "vehicle_id": VIN, "retailer": "amazon", "expires": self.clock.now() + 30 * DAY,
        }
        body.update(overrides)
        response = self.client.post("/carmaker/consents", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def mint(self, order: str = "order-1", **overrides: object) -> dict[str, Any]:
        now = self.clock.now()
        body: dict[str, object] = {
            "vehicle_id": VIN, "courier_key": to_text(self.courier.public_key.to_cose_key()),
            "not_before": now, "expires": now + 4 * HOUR,
        }
        body.update(overrides)
        response = self.client.post(f"/retailers/amazon/orders/{order}/token", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def presentation(self, minted: dict[str, Any], *, vehicle_id: str = VIN) -> dict[str, Any]:
        """What the car posts: the token, the chain, and the courier's proof of its challenge."""
        challenge = secrets.token_bytes(16)
        proof = make_proof(
            self.courier, token=from_text(minted["token"]), vehicle_id=vehicle_id,
            challenge=challenge,
        )
        return {
            "vehicle_id": vehicle_id, "action": "trunk", "token": minted["token"],
            "chain": minted["chain"], "proof": to_text(proof), "challenge": to_text(challenge),
        }

    def verify(self, body: dict[str, Any], key: str | None = None) -> Any:
        headers = {} if key is None else {"Idempotency-Key": key}
        return self.client.post("/cloud/verify", json=body, headers=headers)


@pytest.fixture
def service() -> Iterator[Service]:
    dsn = require_postgres()
    tables = "tk_svc_" + secrets.token_hex(5)
    clock = ManualClock(START)
    config = Config(dsn=dsn, keys=Keys.generate("amazon"), clock=clock, tables=tables)
    app = create_app(config)
    try:
        with fastapi_testclient.TestClient(app) as client:
            yield Service(client, clock, app, SigningKey.generate(), config)
    finally:
        app.state.backend.store.drop()
        drop_namespace("postgres", tables + "_ledger")


def assert_problem(response: Any, reason: Reason | str) -> dict[str, Any]:
    """``response`` is the RFC 9457 document for ``reason``, with the advised status."""
    assert response.headers["content-type"] == PROBLEM_JSON, response.text
    body = dict(response.json())
    assert body["reason"] == str(reason), body
    assert body["status"] == response.status_code
    assert body["type"].endswith("/" + str(reason))
    assert body["title"]
    assert body["detail"]
    if isinstance(reason, Reason):
        advice = advice_for(reason)
        assert response.status_code == advice.status
        assert body["remedy"] == advice.remedy.value
        assert body["title"] == advice.title
    return body


# -- the flow ------------------------------------------------------------------

def test_mint_verify_allowed_then_already_used_then_revoked(service: Service) -> None:
    consent = service.consent()
    minted = service.mint()
    allowed = service.verify(service.presentation(minted))
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["reason"] == "allowed"
    assert allowed.json()["token_id"] == minted["token_id"]
    assert allowed.json()["order_ref"] == "order-1"
    # The same presentation again: the ledger has spent it.
    assert_problem(service.verify(service.presentation(minted)), Reason.ALREADY_USED)
    # The owner revokes one token, then the whole consent.
    second = service.mint("order-2")
    revoked = service.client.post("/owner/revocations", json={"token_id": second["token_id"]})
    assert revoked.status_code == 201, revoked.text
    assert revoked.json()["version"] == 1
    assert_problem(service.verify(service.presentation(second)), Reason.TOKEN_REVOKED)
    third = service.mint("order-3")
    withdrawn = service.client.post(
        "/owner/revocations", json={"consent_id": consent["consent_id"]}
    )
    assert withdrawn.json()["version"] == 2
    assert_problem(service.verify(service.presentation(third)), Reason.GRANT_REVOKED)
    # No consent left: the retailer cannot mint, and says why.
    refused = service.client.post(
        "/retailers/amazon/orders/order-4/token",
        json={"vehicle_id": VIN, "courier_key": to_text(service.courier.public_key.to_cose_key()),
              "not_before": START, "expires": START + HOUR},
    )
    assert_problem(refused, "no_consent")
    # The cars fetch the newest list, which carries both revocations.
    latest = service.client.get("/carmaker/revocations/latest").json()
    assert latest["version"] == 2


def test_a_revocation_made_through_one_worker_holds_in_every_other(service: Service) -> None:
    service.consent()
    minted = service.mint()
    other_worker = create_app(service.config)
    with fastapi_testclient.TestClient(other_worker) as other:
        service.client.post("/owner/revocations", json={"token_id": minted["token_id"]})
        presented = other.post("/cloud/verify", json=service.presentation(minted))
        assert_problem(presented, Reason.TOKEN_REVOKED)


def test_revoking_nothing_or_an_unknown_consent_is_refused(service: Service) -> None:
    assert_problem(service.client.post("/owner/revocations", json={}), "nothing_to_revoke")
    unknown = to_text(bytes(32))
    assert_problem(
        service.client.post("/owner/revocations", json={"consent_id": unknown}),
        "nothing_to_revoke",
    )
    assert_problem(service.client.get("/carmaker/revocations/latest"), "no_revocations")


# -- each class of denial ------------------------------------------------------

def _flip_last_byte(text: str) -> str:
    raw = bytearray(from_text(text))
    raw[-1] ^= 1
    return to_text(bytes(raw))


def test_bytes_that_are_not_a_token_are_400_and_an_oversized_one_413(service: Service) -> None:
    service.consent()
    body = service.presentation(service.mint())
    assert_problem(service.verify({**body, "token": to_text(b"\x01\x02")}), Reason.MALFORMED)
    assert_problem(service.verify({**body, "token": to_text(bytes(2000))}), Reason.TOO_LARGE)


def test_a_forged_or_misdirected_token_is_403_and_an_alarm(service: Service) -> None:
    service.consent()
    minted = service.mint()
    body = service.presentation(minted)
    forged = assert_problem(
        service.verify({**body, "token": _flip_last_byte(minted["token"])}),
        Reason.BAD_SIGNATURE,
    )
    assert forged["remedy"] == Remedy.ALARM.value
    assert_problem(
        service.verify(service.presentation(minted, vehicle_id="WP0ZZZ99ZTS392124")),
        Reason.WRONG_VEHICLE,
    )
    assert_problem(service.verify({**body, "proof": None}), Reason.PROOF_MISSING)
    assert_problem(
        service.verify({**body, "proof": _flip_last_byte(body["proof"])}), Reason.PROOF_INVALID
    )
    # None of these spent the token: the courier's own presentation still opens.
    assert service.verify(body).status_code == 200


def test_time_denials_say_retry_or_re_mint(service: Service) -> None:
    service.consent()
    early = service.mint("later", not_before=START + 2 * HOUR, expires=START + 3 * HOUR)
    response = service.verify(service.presentation(early))
    assert assert_problem(response, Reason.NOT_YET_VALID)["remedy"] == "retry"
    assert int(response.headers["Retry-After"]) == 2 * HOUR
    minted = service.mint()
    service.clock.advance(5 * HOUR)
    assert assert_problem(
        service.verify(service.presentation(minted)), Reason.EXPIRED
    )["remedy"] == "re-mint"


def test_a_daily_limit_is_429_with_retry_after_midnight(service: Service) -> None:
    service.consent(daily_limit=1)
    assert service.verify(service.presentation(service.mint("a"))).status_code == 200
    response = service.verify(service.presentation(service.mint("b")))
    assert_problem(response, Reason.DAILY_LIMIT_REACHED)
    assert int(response.headers["Retry-After"]) == DAY - START % DAY


def test_a_ledger_that_does_not_answer_is_503_retry(service: Service) -> None:
    service.consent()
    body = service.presentation(service.mint())
    service.app.state.backend.ledger.close()
    response = service.verify(body)
    assert assert_problem(response, Reason.LEDGER_UNAVAILABLE)["remedy"] == "retry"
    assert response.headers["Retry-After"] == "1"


def test_an_unreadable_request_is_a_problem_document_too(service: Service) -> None:
    service.consent()
    body = service.presentation(service.mint())
    assert_problem(service.verify({**body, "token": "not base64url!"}), "invalid_request")
    assert_problem(service.verify({**body, "token": body["token"] + "="}), "invalid_request")
    assert_problem(service.verify({**body, "surprise": 1}), "invalid_request")
    assert_problem(service.verify({**body, "action": "start-engine"}), "invalid_request")
    assert_problem(
        service.client.post("/carmaker/consents", json={
            "vehicle_id": VIN, "retailer": "mallory", "expires": START + DAY,
        }),
        "unknown_retailer",
    )


# -- a lost reply --------------------------------------------------------------

def test_a_retry_with_the_same_key_gets_the_first_answer_and_nothing_else_does(
    service: Service,
) -> None:
    service.consent()
    body = service.presentation(service.mint())
    key = body["challenge"]  # one key per presentation: the car's challenge
    first = service.verify(body, key)
    assert first.status_code == 200
    assert first.json()["replayed"] is False
    retried = service.verify(body, key)
    assert retried.status_code == 200
    assert retried.json() == {**first.json(), "replayed": True}
    # Without the key, or with another one, it is a replay of a spent token.
    assert_problem(service.verify(body), Reason.ALREADY_USED)
    assert_problem(service.verify(body, "another-key-1"), Reason.ALREADY_USED)
    # The same key with another request is refused, never answered "allowed".
    other = service.presentation(service.mint("order-2"))
    assert_problem(service.verify(other, key), "idempotency_key_reused")


def test_a_reply_lost_before_it_was_recorded_is_recovered_by_the_retry(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.consent()
    body = service.presentation(service.mint())
    store = service.app.state.backend.store

    def lost(**_: object) -> None:
        raise ConnectionError("the reply and its record were lost")

    with monkeypatch.context() as patched:
        patched.setattr(store, "settle", lost)
        assert service.verify(body, "key-of-the-car-1").status_code == 200
    # Another key finds the record pending: in progress, retry.
    busy = service.verify(body, "key-of-someone-else")
    assert assert_problem(busy, "request_in_progress")["remedy"] == "retry"
    # The car's retry: the ledger says already_used, and the record shows it was this key.
    recovered = service.verify(body, "key-of-the-car-1")
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["replayed"] is True
    assert service.verify(body, "key-of-the-car-1").json()["replayed"] is True


def test_a_stale_pending_record_is_taken_over_and_the_spend_stays_single_use(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.consent()
    body = service.presentation(service.mint())
    store = service.app.state.backend.store
    with monkeypatch.context() as patched:
        patched.setattr(store, "settle", lambda **_: None)  # the process died here
        assert service.verify(body, "first-key-1").status_code == 200
    service.clock.advance(120)
    # Another key takes the stale record over; the ledger still refuses the spent token.
    assert_problem(service.verify(body, "second-key-2"), Reason.ALREADY_USED)


def test_spend_records_are_pruned_once_no_token_can_still_be_presented(
    service: Service,
) -> None:
    service.consent()
    body = service.presentation(service.mint())
    key = body["challenge"]
    assert service.verify(body, key).status_code == 200
    backend = service.app.state.backend
    assert backend.prune() == 0  # the token could still be presented: keep its record
    service.clock.advance(DAY + 1000)
    assert backend.prune() == 1
    # The token is long expired: the verifier says so, record or no record.
    assert_problem(service.verify(body, key), Reason.EXPIRED)


def test_concurrent_presentations_under_many_keys_open_once(service: Service) -> None:
    service.consent()
    body = service.presentation(service.mint())
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: service.verify(body, f"racing-key-{n}"), range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 1, [a.text for a in answers]
    for answer in answers:
        if answer.status_code != 200:
            assert answer.json()["reason"] in {"already_used", "request_in_progress"}


def test_an_unreadable_proof_does_not_keep_the_token_from_its_courier(service: Service) -> None:
    service.consent()
    body = service.presentation(service.mint())
    assert_problem(service.verify({**body, "proof": "!!"}, "courier-key-1"), "invalid_request")
    assert service.verify(body, "courier-key-2").status_code == 200


def test_a_denied_attempt_does_not_keep_the_token_from_its_courier(service: Service) -> None:
    service.consent()
    minted = service.mint()
    body = service.presentation(minted)
    thief = {**body, "proof": _flip_last_byte(body["proof"])}
    assert_problem(service.verify(thief, "thief-key-1"), Reason.PROOF_INVALID)
    assert service.verify(body, "courier-key-1").status_code == 200


# -- OpenAPI -------------------------------------------------------------------

def test_openapi_lists_every_endpoint_and_its_problem_responses(service: Service) -> None:
    spec = service.client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {
        "/carmaker/consents", "/retailers/{retailer}/orders/{order_ref}/token",
        "/cloud/verify", "/owner/revocations", "/carmaker/revocations/latest",
    } <= set(paths)
    verify = paths["/cloud/verify"]["post"]["responses"]
    for status in ("200", "400", "403", "409", "413", "429", "503"):
        assert status in verify, status
    problem_ref = verify["409"]["content"][PROBLEM_JSON]["schema"]["$ref"]
    assert problem_ref == "#/components/schemas/Problem"
    assert "already_used" in verify["409"]["description"]
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "reason"} <= set(problem["properties"])
    assert "Remedy" in spec["components"]["schemas"]
    for path, method in (("/carmaker/consents", "post"), ("/owner/revocations", "post")):
        assert "422" in paths[path][method]["responses"]
    params = {p["name"] for p in paths["/cloud/verify"]["post"].get("parameters", [])}
    assert "Idempotency-Key" in params


def test_keys_load_from_a_folder_of_saved_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.app import _keys_from

    saved = {"carmaker-root": SigningKey.generate(), "cloud": SigningKey.generate(),
             "retailer-amazon": SigningKey.generate(), "retailer-otto": SigningKey.generate()}
    for name, key in saved.items():
        key.save(tmp_path / f"{name}.pem", password=b"correct horse")
    monkeypatch.setenv("TRUNKKEY_KEY_PASSWORD", "correct horse")
    keys = _keys_from(str(tmp_path))
    assert keys.carmaker_root.public_key == saved["carmaker-root"].public_key
    assert keys.cloud.public_key == saved["cloud"].public_key
    assert {name: key.public_key for name, key in keys.retailers.items()} == {
        "amazon": saved["retailer-amazon"].public_key, "otto": saved["retailer-otto"].public_key,
    }
    monkeypatch.setenv("TRUNKKEY_KEY_PASSWORD", "wrong")
    with pytest.raises(DecodeError, match="wrong password"):
        _keys_from(str(tmp_path))


# -- uvicorn on loopback -------------------------------------------------------

def _listening_socket() -> socket.socket:
    """A loopback socket on a free port, handed to uvicorn whole: no other process can
    take the port between choosing it and serving on it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def _wait_ready(http: Any, process: subprocess.Popen[bytes], deadline_s: float) -> None:
    """Poll readiness until it answers, the server dies, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"uvicorn exited with {process.returncode}: {err[-2000:]!r}")
        with contextlib.suppress(httpx2.TransportError):  # not listening yet: poll again
            if http.get("/healthz").status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"uvicorn not ready within {deadline_s} s")


def test_the_service_runs_under_uvicorn_on_loopback() -> None:
    dsn = require_postgres()
    tables = "tk_svc_" + secrets.token_hex(5)
    sock = _listening_socket()
    port = int(sock.getsockname()[1])
    env = {
        **os.environ, "TRUNKKEY_POSTGRES_DSN": dsn, "TRUNKKEY_SERVICE_KEYS": "ephemeral",
        "TRUNKKEY_SERVICE_TABLES": tables,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "service.app:app_from_env",
         "--app-dir", str(ROOT / "examples"), "--fd", str(sock.fileno()),
         "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(sock.fileno(),),
    )
    courier = SigningKey.generate()
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            _wait_ready(http, process, 30)
            now = int(time.time())
            consent = http.post("/carmaker/consents", json={
                "vehicle_id": VIN, "retailer": "amazon", "expires": now + DAY,
            })
            assert consent.status_code == 201, consent.text
            minted = http.post("/retailers/amazon/orders/o-1/token", json={
                "vehicle_id": VIN, "courier_key": to_text(courier.public_key.to_cose_key()),
                "not_before": now, "expires": now + HOUR,
            }).json()
            challenge = secrets.token_bytes(16)
            proof = make_proof(courier, token=from_text(minted["token"]), vehicle_id=VIN,
                               challenge=challenge)
            body = {"vehicle_id": VIN, "action": "trunk", "token": minted["token"],
                    "chain": minted["chain"], "proof": to_text(proof),
                    "challenge": to_text(challenge)}
            key = {"Idempotency-Key": to_text(challenge)}
            assert http.post("/cloud/verify", json=body, headers=key).status_code == 200
            assert http.post("/cloud/verify", json=body, headers=key).json()["replayed"]
            again = http.post("/cloud/verify", json=body)
            assert again.status_code == 409
            assert again.headers["content-type"] == PROBLEM_JSON
            assert again.json()["reason"] == "already_used"
            assert "/cloud/verify" in http.get("/openapi.json").json()["paths"]
    finally:
        sock.close()
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        for table in ("_consents", "_revocations", "_spends", "_ledger"):
            drop_namespace("postgres", tables + table)
