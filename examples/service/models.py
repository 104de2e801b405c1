"""The JSON bodies of the service. Bytes travel as unpadded base64url (``encoding.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ActionName = Literal["trunk", "unlock-relock"]
PurposeName = Literal["delivery", "return-pickup"]
B64 = "unpadded base64url"


class _Body(BaseModel):
    # An unknown member is a client bug to hear about, not to ignore.
    model_config = ConfigDict(extra="forbid")


class Place(_Body):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    radius_m: int = Field(gt=0, le=100_000)


class Position(_Body):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class ConsentRequest(_Body):
    """The owner's consent, as the carmaker's app collected it."""

    vehicle_id: str = Field(min_length=1, max_length=64)
    retailer: str = Field(min_length=1, max_length=64)
    actions: list[ActionName] = Field(default=["trunk"], min_length=1)
    purposes: list[PurposeName] = Field(default=["delivery"], min_length=1)
    not_before: int | None = Field(default=None, description="Unix seconds; default now")
    expires: int = Field(description="Unix seconds")
    daily_limit: int | None = Field(default=None, ge=1, le=1000)
    places: list[Place] | None = Field(default=None, min_length=1, max_length=8)


class ConsentRecorded(BaseModel):
    consent_id: str = Field(description=f"the grant's digest, {B64}")
    grant: str = Field(description=f"the signed grant (COSE_Sign1), {B64}")
    vehicle_id: str
    retailer: str
    not_before: int
    expires: int


class MintRequest(_Body):
    vehicle_id: str = Field(min_length=1, max_length=64)
    courier_key: str = Field(description=f"the courier device's public COSE_Key, {B64}")
    not_before: int
    expires: int
    action: ActionName = "trunk"
    purpose: PurposeName = "delivery"
    geofence: Place | None = None


class Minted(BaseModel):
    token: str = Field(description=f"the token (COSE_Sign1), {B64}")
    chain: str = Field(description=f"the consent chain to present with it, {B64}")
    token_id: str
    order_ref: str
    not_before: int
    expires: int


class VerifyRequest(_Body):
    """What a car that asks the backend sends: the presentation it received."""

    vehicle_id: str = Field(min_length=1, max_length=64)
    action: ActionName
    purpose: PurposeName | None = None
    token: str = Field(description=B64)
    chain: str | None = Field(default=None, description=B64)
    proof: str | None = Field(default=None, description=B64)
    challenge: str | None = Field(default=None, description=f"the car's challenge, {B64}")
    location: Position | None = None


class Allowed(BaseModel):
    reason: Literal["allowed"] = "allowed"
    token_id: str
    order_ref: str | None
    issuer: str
    action: ActionName
    purpose: PurposeName
    not_before: int
    expires: int
    decided_at: int
    replayed: bool = Field(
        default=False,
        description="true when this is the recorded answer to an earlier request "
        "with the same Idempotency-Key (the token was spent once, by that request)",
    )


class RevokeRequest(_Body):
    """What the owner withdraws: a consent, or one token."""

    consent_id: str | None = Field(default=None, description=f"grant digest, {B64}")
    token_id: str | None = Field(default=None, description=f"token id, {B64}")


class RevocationPublished(BaseModel):
    version: int
    issued_at: int
    revocation_list: str = Field(description=f"the signed list for the cars, {B64}")
