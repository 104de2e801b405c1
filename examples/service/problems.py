"""RFC 9457 problem documents: every denial and every service error, one shape.

A denial by the verifier is answered from :data:`trunkkey.advice.ADVICE`
(status, remedy, title), so the service holds no table of its own for the
library's reasons. The few errors that are the service's own (a request it
cannot read, an idempotency key reused) are in :data:`SERVICE_PROBLEMS`.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from trunkkey import Reason, Remedy, advice_for

PROBLEM_JSON = "application/problem+json"
#: Where the problem types are documented; deployers point this at their own copy
#: of docs/service.md. ``example`` is a reserved domain: nothing resolves it by accident.
DEFAULT_PROBLEM_BASE = "https://trunkkey.example/problems/"


class Problem(BaseModel):
    """An RFC 9457 problem document, with the stable reason code and the remedy."""

    type: str = Field(description="URI naming the problem type (one per reason code)")
    title: str = Field(description="Short summary of the problem type; never varies")
    status: int = Field(description="The HTTP status code of this response")
    detail: str = Field(description="What went wrong in this occurrence")
    reason: str = Field(description="The stable reason code (trunkkey.Reason or a service code)")
    remedy: Remedy = Field(description="What to do next: retry, re-mint or alarm")
    instance: str | None = Field(default=None, description="The request path")


#: The service's own problems (not decisions of the verifier): code -> (status, remedy, title).
SERVICE_PROBLEMS: dict[str, tuple[int, Remedy, str]] = {
    "invalid_request": (422, Remedy.ALARM, "Request not understood"),
    "unknown_retailer": (404, Remedy.ALARM, "Unknown retailer"),
    "no_consent": (409, Remedy.ALARM, "No owner consent for this vehicle and retailer"),
    "nothing_to_revoke": (404, Remedy.ALARM, "Nothing to revoke"),
    "no_revocations": (404, Remedy.RETRY, "No revocation list signed yet"),
    "idempotency_key_reused": (422, Remedy.ALARM, "Idempotency key reused for another request"),
    "request_in_progress": (409, Remedy.RETRY, "Another request for this token is in progress"),
    "store_unavailable": (503, Remedy.RETRY, "The service's database did not answer"),
}


def problem(
    code: Reason | str,
    detail: str,
    *,
    base: str = DEFAULT_PROBLEM_BASE,
    instance: str | None = None,
    retry_after: int | None = None,
) -> JSONResponse:
    """The response for reason (or service problem) ``code``."""
    if code in SERVICE_PROBLEMS:
        status, remedy, title = SERVICE_PROBLEMS[str(code)]
    else:
        advice = advice_for(Reason(code))
        status, remedy, title = advice.status, advice.remedy, advice.title
    body = Problem(
        type=base + str(code), title=title, status=status, detail=detail, reason=str(code),
        remedy=remedy, instance=instance,
    )
    headers = {} if retry_after is None else {"Retry-After": str(max(retry_after, 1))}
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=status,
        media_type=PROBLEM_JSON, headers=headers,
    )


def problem_responses(*codes: Reason | str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry for the problems a route can answer with."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        status = (
            SERVICE_PROBLEMS[str(code)][0] if code in SERVICE_PROBLEMS
            else advice_for(Reason(code)).status
        )
        by_status.setdefault(status, []).append(str(code))
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "description": "Problem: " + ", ".join(sorted(names)),
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status, names in sorted(by_status.items())
    }


#: Every denial the verifier can answer with (all reasons but allowed and the
#: vehicle unit's and log judges' own, which a cloud verifier never gives).
VERIFIER_DENIALS: tuple[Reason, ...] = tuple(
    r for r in Reason
    if r is not Reason.ALLOWED
    and r not in {
        Reason.CLOCK_UNTRUSTED, Reason.CHALLENGE_UNKNOWN, Reason.CHALLENGE_EXPIRED,
        Reason.CAR_MOVED, Reason.UNIT_BUSY, Reason.ACTUATOR_FAILED, Reason.ROLLBACK,
        Reason.CHECKPOINT_INVALID, Reason.LOG_FORK, Reason.LOG_ROLLBACK, Reason.LOG_GAP,
    }
)
