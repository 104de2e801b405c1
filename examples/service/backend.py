"""The service's parties and what each endpoint does, without HTTP.

In production the carmaker, the retailer and the cloud verifier are three
backends with keys in three HSMs; here they share one process so that the
whole flow can be read (and tested) in one place.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from trunkkey import (
    Clock,
    Decision,
    Geofence,
    Issuer,
    Location,
    Reason,
    SigningKey,
    SystemClock,
    TrustStore,
    VerificationKey,
    Verifier,
)
from trunkkey.consent import (
    ConsentVerifier,
    GrantCache,
    RevocationList,
    RevocationState,
    RootKey,
    UpdateRefused,
    VehicleAnchors,
    access_mask,
    encode_chain,
    grant_digest,
    make_grant,
    sign_revocation_list,
    sign_root_grant,
)
from trunkkey.ledger import PostgresLedger

from .encoding import from_text, to_text
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
from .store import ClaimKind, ServiceStore


class ServiceError(Exception):
    """A request the service refuses before any decision (a problem of SERVICE_PROBLEMS)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class Keys:
    carmaker_root: SigningKey
    #: retailer name -> its signing key (the name is the token's ``iss``)
    retailers: Mapping[str, SigningKey]
    #: The cloud verifier's own key (VehicleAnchors wants one; it signs nothing here).
    cloud: SigningKey

    @classmethod
    def generate(cls, *retailers: str) -> Keys:
        return cls(
            carmaker_root=SigningKey.generate(),
            retailers={name: SigningKey.generate() for name in retailers or ("amazon",)},
            cloud=SigningKey.generate(),
        )


@dataclass(kw_only=True)
class Config:
    dsn: str
    keys: Keys
    clock: Clock = field(default_factory=SystemClock)
    #: Prefix of every table: the ledger's and the service's own.
    tables: str = "tk_service"
    #: How long a pending spend record blocks other keys before it may be taken over;
    #: well above the ledger's own deadline, so a live request is never overtaken.
    stale_after: int = 60


def _bytes(value: str, what: str) -> bytes:
    try:
        return from_text(value)
    except ValueError as exc:
        raise ServiceError("invalid_request", f"{what}: {exc}") from None


def _optional_bytes(value: str | None, what: str) -> bytes | None:
    return None if value is None else _bytes(value, what)


def _allowed(decision: Decision, *, replayed: bool = False) -> Allowed:
    claims = decision.claims
    if claims is None:  # an allowed or already_used decision always carries its claims
        raise ServiceError("invalid_request", "decision without claims")
    return Allowed(
        token_id=to_text(claims.token_id),
        order_ref=None if claims.order_ref is None
        else claims.order_ref.decode("utf-8", "backslashreplace"),
        issuer=claims.issuer, action=claims.action.value, purpose=claims.purpose.value,
        not_before=claims.not_before, expires=claims.expires, decided_at=decision.at,
        replayed=replayed,
    )


class Backend:
    """Carmaker, retailer and cloud verifier, over one PostgreSQL database."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = config.clock
        keys = config.keys
        self.store = ServiceStore(config.dsn, prefix=config.tables)
        self.ledger = PostgresLedger(config.dsn, table=config.tables + "_ledger")
        # The cloud verifies for every car of the fleet: the chain is checked for
        # the vehicle id in each request, so the anchors' own id names the cloud.
        self.anchors = VehicleAnchors(
            vehicle_id="cloud-verifier", vehicle_key=keys.cloud,
            roots=[RootKey(key=keys.carmaker_root.public_key)],
        )
        self.revocations = RevocationState()
        self.verifier = Verifier(
            trust_store=TrustStore(), ledger=self.ledger, clock=self.clock,
            consent=ConsentVerifier(
                anchors=self.anchors, revocations=self.revocations, cache=GrantCache()
            ),
        )
        self._revoking = threading.Lock()
        latest = self.store.latest_revocations()
        if latest is not None:
            self._apply(latest)

    def prune(self) -> int:
        """Drop what can no longer matter: spent tokens past their expiry (the ledger's
        own rule) and spend records older than any token can live. Run it from a
        periodic job; returns how many spend records went."""
        now = self.clock.now()
        self.ledger.prune(now)
        policy = self.verifier.policy
        return self.store.prune_spends(
            now - policy.max_lifetime - 2 * policy.max_skew - self.config.stale_after
        )

    def close(self) -> None:
        self.ledger.close()
        self.store.close()

    # -- carmaker: the owner's consent ----------------------------------------
    def record_consent(self, request: ConsentRequest) -> ConsentRecorded:
        retailer = self.config.keys.retailers.get(request.retailer)
        if retailer is None:
            raise ServiceError("unknown_retailer", f"no retailer named {request.retailer!r}")
        now = self.clock.now()
        places = None if request.places is None else [
            Geofence.from_degrees(p.latitude, p.longitude, p.radius_m) for p in request.places
        ]
        grant = make_grant(
            grantee=retailer.public_key, grantee_name=request.retailer,
            access=access_mask(request.actions, request.purposes),
            not_before=now if request.not_before is None else request.not_before,
            expires=request.expires, depth=0, vehicle_ids=[request.vehicle_id], places=places,
            daily_limit=request.daily_limit,
        )
        signed = sign_root_grant(self.config.keys.carmaker_root, grant)
        digest = grant_digest(signed)
        self.store.record_consent(
            digest=digest, vehicle_id=request.vehicle_id, retailer=request.retailer,
            grant=signed, not_before=grant.not_before, expires=grant.expires, at=now,
        )
        return ConsentRecorded(
            consent_id=to_text(digest), grant=to_text(signed), vehicle_id=request.vehicle_id,
            retailer=request.retailer, not_before=grant.not_before, expires=grant.expires,
        )

    # -- retailer: a courier-bound token for an order -------------------------
    def mint(self, retailer: str, order_ref: str, request: MintRequest) -> Minted:
        key = self.config.keys.retailers.get(retailer)
        if key is None:
            raise ServiceError("unknown_retailer", f"no retailer named {retailer!r}")
        grant = self._consent_for(request.vehicle_id, retailer, request.not_before,
                                  request.expires)
        try:
            courier = VerificationKey.from_cose_key(_bytes(request.courier_key, "courier_key"))
        except ServiceError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any unreadable key is the client's error
            raise ServiceError("invalid_request", f"courier_key: {type(exc).__name__}") from None
        fence = None if request.geofence is None else Geofence.from_degrees(
            request.geofence.latitude, request.geofence.longitude, request.geofence.radius_m
        )
        issuer = Issuer(key, retailer, clock=self.clock)
        claims = issuer.claims_for(
            vehicle_id=request.vehicle_id, action=request.action, purpose=request.purpose,
            not_before=request.not_before, expires=request.expires, geofence=fence,
            courier_key=courier, order_ref=order_ref.encode("utf-8"),
        )
        return Minted(
            token=to_text(issuer.sign_claims(claims)), chain=to_text(encode_chain([grant])),
            token_id=to_text(claims.token_id), order_ref=order_ref,
            not_before=claims.not_before, expires=claims.expires,
        )

    def _consent_for(self, vehicle_id: str, retailer: str, nbf: int, exp: int) -> bytes:
        """The newest recorded, unrevoked consent whose window holds the token's."""
        revoked = self.revocations.current.grants
        found = self.store.consent_grants(vehicle_id, retailer, not_before=nbf, expires=exp)
        for digest, signed in found:
            if digest not in revoked:
                return signed
        raise ServiceError(
            "no_consent", f"no consent of the owner of {vehicle_id} covers this window"
        )

    # -- cloud: verify for a car that asks ------------------------------------
    def decide(self, request: VerifyRequest) -> Decision:
        # Another worker may have published a list: never decide on an older one.
        try:
            newer = self.store.revocations_newer_than(self.revocations.version)
        except Exception as exc:  # noqa: BLE001 -- unknown revocations: refuse, retry later
            raise ServiceError("store_unavailable", type(exc).__name__) from None
        if newer is not None:
            self._apply(newer)
        location = None if request.location is None else Location.from_degrees(
            request.location.latitude, request.location.longitude
        )
        return self.verifier.verify(
            _bytes(request.token, "token"), vehicle_id=request.vehicle_id,
            action=request.action, purpose=request.purpose, location=location,
            proof=_optional_bytes(request.proof, "proof"),
            challenge=_optional_bytes(request.challenge, "challenge"),
            chain=_optional_bytes(request.chain, "chain"),
        )

    def verify(self, request: VerifyRequest, key: str | None) -> Allowed | Decision:
        """The allowed answer, or the denial; with ``key``, a retry gets its first answer."""
        if key is None:
            # A request without a key takes the token's record too, under a key no
            # client can send (a header value has no space), so that a key that
            # holds the record knows no other request of this service spent it.
            key = "anonymous " + secrets.token_hex(16)
        token_digest = hashlib.sha256(_bytes(request.token, "token")).digest()
        fingerprint = hashlib.sha256(request.model_dump_json().encode("utf-8")).digest()
        try:
            claim = self.store.claim(
                key=key, token_digest=token_digest, fingerprint=fingerprint,
                now=self.clock.now(), stale_after=self.config.stale_after,
            )
        except Exception as exc:  # noqa: BLE001 -- no record, no promise: refuse, retry later
            raise ServiceError("store_unavailable", type(exc).__name__) from None
        if claim.kind is ClaimKind.REPLAY and claim.answer is not None:
            return Allowed.model_validate_json(claim.answer).model_copy(update={"replayed": True})
        if claim.kind is ClaimKind.KEY_REUSED:
            raise ServiceError("idempotency_key_reused", "this key was sent with another request")
        if claim.kind is ClaimKind.IN_PROGRESS:
            raise ServiceError("request_in_progress", "another request holds this token")
        try:
            decision = self.decide(request)
        except BaseException:
            # Nothing was decided, so nothing was spent: free the record now
            # rather than leave it to go stale.
            if claim.kind is not ClaimKind.OTHER:
                with contextlib.suppress(Exception):
                    self.store.release(key=key, token_digest=token_digest)
            raise
        if claim.kind is ClaimKind.OTHER:
            return _allowed(decision) if decision.allowed else decision
        # NEW or RESUME: this key has held the token's record since before any
        # spend it made, so under RESUME an already_used token was spent by
        # this key's own earlier attempt, whose answer was lost.
        if decision.allowed or (
            claim.kind is ClaimKind.RESUME and decision.reason is Reason.ALREADY_USED
        ):
            answer = _allowed(decision, replayed=not decision.allowed)
            # If the answer cannot be recorded the spend still stands: a retry
            # finds the record pending and resumes.
            with contextlib.suppress(Exception):
                self.store.settle(
                    key=key, token_digest=token_digest,
                    answer=answer.model_copy(update={"replayed": False}).model_dump_json(),
                )
            return answer
        # Not spent by this request: free the token for its next presenter (a
        # record left behind is taken over once stale).
        with contextlib.suppress(Exception):
            self.store.release(key=key, token_digest=token_digest)
        return decision

    # -- owner: revoke --------------------------------------------------------
    def revoke(self, request: RevokeRequest) -> RevocationPublished:
        grant = _optional_bytes(request.consent_id, "consent_id")
        token = _optional_bytes(request.token_id, "token_id")
        if grant is None and token is None:
            raise ServiceError("nothing_to_revoke", "name a consent_id or a token_id")
        if grant is not None and not self.store.has_consent(grant):
            raise ServiceError("nothing_to_revoke", "no consent with this id was recorded")
        with self._revoking:
            for _ in range(5):
                latest = self.store.latest_revocations()
                held = self._apply(latest) if latest is not None else RevocationList()
                now = self.clock.now()
                signed = sign_revocation_list(
                    self.config.keys.carmaker_root, version=held.version + 1, issued_at=now,
                    grants=held.grants | ({grant} if grant else set()),
                    keys=held.keys, tokens=held.tokens | ({token} if token else set()),
                    supersede=held.supersede,
                )
                if self.store.save_revocations(held.version + 1, signed):
                    self._apply(signed)
                    return RevocationPublished(
                        version=held.version + 1, issued_at=now, revocation_list=to_text(signed)
                    )
        raise ServiceError("store_unavailable", "revocation list version kept changing")

    def latest_revocations(self) -> RevocationPublished:
        latest = self.store.latest_revocations()
        if latest is None:
            raise ServiceError("no_revocations", "the carmaker has not revoked anything yet")
        held = self._apply(latest)
        return RevocationPublished(
            version=held.version, issued_at=held.issued_at, revocation_list=to_text(latest)
        )

    def _apply(self, signed: bytes) -> RevocationList:
        """Bring this process's list up to ``signed`` (no-op if it holds it or newer)."""
        try:
            return self.revocations.apply(signed, self.anchors, now=self.clock.now())
        except UpdateRefused as exc:
            if exc.reason is not Reason.ROLLBACK:
                raise
            return self.revocations.current
