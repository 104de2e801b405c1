"""The HTTP face of the reference service: routes, problem documents, OpenAPI.

``create_app(config)`` builds the application; ``app_from_env()`` is the
factory uvicorn runs (``docs/service.md``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import psycopg
from fastapi import FastAPI, Header, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from trunkkey import Decision, InvalidRequest, Reason, SigningKey
from trunkkey.consent import UpdateRefused

from .backend import Backend, Config, Keys, ServiceError
from .models import (
    Allowed,
    ConsentRecorded,
    ConsentRequest,
    Minted,
    MintRequest,
    RevocationPublished,
    RevokeRequest,
    VerifyRequest,
)
from .problems import (
    DEFAULT_PROBLEM_BASE,
    VERIFIER_DENIALS,
    Problem,
    problem,
    problem_responses,
)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", min_length=8, max_length=128, pattern=r"^[\x21-\x7e]+$",
        description="One per presentation (e.g. the car's challenge): a retry with the "
        "same key and body gets the first answer back instead of already_used.",
    ),
]
OrderRef = Annotated[str, PathParam(min_length=1, max_length=64)]


def _retry_after(decision: Decision) -> int | None:
    """Seconds until a retry can succeed, when the decision tells."""
    if decision.reason is Reason.NOT_YET_VALID and decision.claims is not None:
        return decision.claims.not_before - decision.at
    if decision.reason is Reason.DAILY_LIMIT_REACHED:
        return 86_400 - decision.at % 86_400  # counters are per UTC day
    if decision.reason is Reason.LEDGER_UNAVAILABLE:
        return 1
    return None


def create_app(config: Config, *, problem_base: str = DEFAULT_PROBLEM_BASE) -> FastAPI:
    backend = Backend(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        backend.close()

    app = FastAPI(
        title="trunkkey reference service", version="1.0.0", lifespan=lifespan,
        description="Consent, minting, cloud verification and revocation for one-time "
        "trunk tokens. Every error is an RFC 9457 problem document with a stable `reason`.",
    )
    app.state.backend = backend

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return problem(exc.code, exc.detail, base=problem_base, instance=request.url.path)

    @app.exception_handler(InvalidRequest)
    async def invalid(request: Request, exc: InvalidRequest) -> JSONResponse:
        return problem("invalid_request", str(exc), base=problem_base,
                       instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def unreadable(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(
            ".".join(str(p) for p in e["loc"]) + ": " + str(e["msg"]) for e in exc.errors()
        )
        return problem("invalid_request", where[:500], base=problem_base,
                       instance=request.url.path)

    @app.exception_handler(psycopg.Error)
    async def database(request: Request, exc: psycopg.Error) -> JSONResponse:
        return problem("store_unavailable", type(exc).__name__, base=problem_base,
                       instance=request.url.path)

    @app.exception_handler(UpdateRefused)
    async def refused(request: Request, exc: UpdateRefused) -> JSONResponse:
        return problem(exc.reason, exc.detail, base=problem_base, instance=request.url.path)

    common = ("invalid_request",)

    @app.post(
        "/carmaker/consents", status_code=201, response_model=ConsentRecorded,
        tags=["carmaker"], summary="Record the owner's consent and sign the retailer's grant",
        responses=problem_responses(*common, "unknown_retailer"),
    )
    def record_consent(body: ConsentRequest) -> ConsentRecorded:
        return backend.record_consent(body)

    @app.post(
        "/retailers/{retailer}/orders/{order_ref}/token", status_code=201,
        response_model=Minted, tags=["retailer"],
        summary="Mint a courier-bound token for an order",
        responses=problem_responses(*common, "unknown_retailer", "no_consent"),
    )
    def mint(retailer: str, order_ref: OrderRef, body: MintRequest) -> Minted:
        return backend.mint(retailer, order_ref, body)

    @app.post(
        "/cloud/verify", response_model=Allowed, tags=["cloud"],
        summary="Decide on a presentation for a car that asks the backend",
        responses=problem_responses(
            *common, *VERIFIER_DENIALS, "idempotency_key_reused", "request_in_progress",
            "store_unavailable",
        ),
    )
    def verify(
        request: Request, body: VerifyRequest, idempotency_key: IdempotencyKey = None
    ) -> Allowed | JSONResponse:
        answer = backend.verify(body, idempotency_key)
        if isinstance(answer, Allowed):
            return answer
        return problem(
            answer.reason, answer.detail, base=problem_base, instance=request.url.path,
            retry_after=_retry_after(answer),
        )

    @app.post(
        "/owner/revocations", status_code=201, response_model=RevocationPublished,
        tags=["owner"], summary="Revoke a consent or a token: the carmaker signs a new list",
        responses=problem_responses(*common, "nothing_to_revoke", "store_unavailable"),
    )
    def revoke(body: RevokeRequest) -> RevocationPublished:
        return backend.revoke(body)

    @app.get(
        "/carmaker/revocations/latest", response_model=RevocationPublished,
        tags=["carmaker"], summary="The newest signed revocation list, to push to cars",
        responses=problem_responses("no_revocations"),
    )
    def latest_revocations() -> RevocationPublished:
        return backend.latest_revocations()

    @app.get("/healthz", tags=["ops"], summary="Readiness: the database answers")
    def healthz() -> dict[str, str]:
        backend.store.latest_revocations()
        return {"status": "ok"}

    # FastAPI lists a schema only if a route returns it; problems are written by hand.
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    extra_schemas = {"Problem": problem_schema, **problem_schema.pop("$defs", {})}
    original = app.openapi

    def openapi() -> dict[str, object]:
        schema = original()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(extra_schemas)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _keys_from(directory: str) -> Keys:
    """``carmaker-root.pem``, ``cloud.pem`` and ``retailer-<name>.pem`` from ``directory``
    (written by ``SigningKey.save``; with a password, it is ``TRUNKKEY_KEY_PASSWORD``)."""
    if directory == "ephemeral":
        return Keys.generate()
    folder = Path(directory)
    # The variable the CLI reads too; SigningKey.load refuses a file others can read.
    password = os.environb.get(b"TRUNKKEY_KEY_PASSWORD")

    def load(path: Path) -> SigningKey:
        return SigningKey.load(path, password=password)

    retailers = {p.stem.removeprefix("retailer-"): load(p) for p in folder.glob("retailer-*.pem")}
    return Keys(carmaker_root=load(folder / "carmaker-root.pem"), retailers=retailers,
                cloud=load(folder / "cloud.pem"))


def app_from_env() -> FastAPI:
    """The application as uvicorn runs it, configured by the environment.

    ``TRUNKKEY_POSTGRES_DSN`` (required), ``TRUNKKEY_SERVICE_KEYS`` (a folder of
    PEM keys, or ``ephemeral`` for fresh keys that die with the process: demos
    and tests only), ``TRUNKKEY_SERVICE_TABLES`` (table prefix, default
    ``tk_service``).
    """
    dsn = os.environ["TRUNKKEY_POSTGRES_DSN"]
    keys = _keys_from(os.environ["TRUNKKEY_SERVICE_KEYS"])
    tables = os.environ.get("TRUNKKEY_SERVICE_TABLES", "tk_service")
    return create_app(Config(dsn=dsn, keys=keys, tables=tables))
