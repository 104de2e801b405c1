"""The verifier: the car's telematics unit deciding whether to open.

Every check lives in :meth:`Verifier.verify_at`, in order, each with its own
reason code. The order is part of the specification (``docs/token-format.md``):
cheap structural checks first, the signature before any claim is believed,
then the claims, then the courier's proof and the parcels it scanned, and
the ledger last — so a token
is spent only when every other check has passed, and a ledger that cannot
write means no access.
"""

from __future__ import annotations

from dataclasses import dataclass
from inspect import iscoroutinefunction
from typing import NoReturn

from ._fastpath import slot_filler
from .authority import Refusal, Signer, TokenAuthority
from .claims import (
    Action,
    Purpose,
    TokenClaims,
    check_name,
    decode_claims,
)
from .clock import Clock
from .cose import signature_holds, split_sign1
from .errors import AccessDenied, DecodeError, InvalidRequest
from .geo import Location
from .issuer import DEFAULT_MAX_LIFETIME
from .ledger.base import Ledger, SpendOutcome
from .observe import DecisionHook, DecisionLog, ledger_failure
from .parcels import ParcelRecord
from .reasons import Reason
from .sealed import CarKeyring
from .sealed_bundle import Unsealed, unseal_presented
from .trust import TrustStore

DEFAULT_MAX_SKEW = 60
#: No policy may allow more clock skew than this: a larger allowance turns
#: a stolen, expired token back into a live one.
MAX_ALLOWED_SKEW = 300
DEFAULT_MAX_TOKEN_SIZE = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifierPolicy:
    """Limits a verifier enforces whatever the token says."""

    max_skew: int = DEFAULT_MAX_SKEW
    max_lifetime: int = DEFAULT_MAX_LIFETIME
    max_token_size: int = DEFAULT_MAX_TOKEN_SIZE

    def __post_init__(self) -> None:
        if type(self.max_skew) is not int or not (0 <= self.max_skew <= MAX_ALLOWED_SKEW):
            raise InvalidRequest(f"max_skew must be 0 to {MAX_ALLOWED_SKEW} seconds")
        if type(self.max_lifetime) is not int or self.max_lifetime <= 0:
            raise InvalidRequest("max_lifetime must be a positive number of seconds")
        if type(self.max_token_size) is not int or not (64 <= self.max_token_size <= 65536):
            raise InvalidRequest("max_token_size must be 64 to 65536 bytes")


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Decision:
    """What the verifier decided, and why. Only a :class:`Verifier` makes one.

    ``claims`` is set whenever the token's signature verified, even if access
    was then denied (an expired or replayed but authentic token), so that
    audits can name the token; it is never set for an unauthenticated one.
    A decision is deliberately not usable as a bool: test ``.allowed``.
    ``parcels``: for an allowed token bound to parcels, which of them the
    courier's device scanned (as commitments; partial if not all).
    """

    reason: Reason
    detail: str
    at: int
    claims: TokenClaims | None = None
    parcels: ParcelRecord | None = None

    def __init__(self, *_: object, **__: object) -> None:
        raise TypeError("Decisions are made by a Verifier, not constructed")

    @property
    def allowed(self) -> bool:
        return self.reason is Reason.ALLOWED

    def __bool__(self) -> NoReturn:
        raise TypeError("test decision.allowed, not the decision itself")

    def raise_for_denial(self) -> None:
        """Raise :class:`AccessDenied` unless access was allowed."""
        if self.reason is not Reason.ALLOWED:
            raise AccessDenied(self.reason, self.detail)


# Decision.__init__ refuses everyone; the verifier fills its decisions' slots.
_fill_decision = slot_filler(Decision, ("reason", "detail", "at", "claims", "parcels"))


def _decision(
    reason: Reason, detail: str, at: int, claims: TokenClaims | None = None,
    parcels: ParcelRecord | None = None,
) -> Decision:
    return _fill_decision(reason, detail, at, claims, parcels)


def _check_request(
    now: object,
    vehicle_id: object,
    action: Action | str,
    purpose: Purpose | str | None,
    location: object,
) -> tuple[Action, Purpose | None]:
    """Validate what the *caller* passed: a mistake there raises, it is not a denial."""
    check_name(vehicle_id, "vehicle_id")
    try:
        wanted_action = action if action.__class__ is Action else Action(action)
        wanted_purpose = (
            purpose if purpose is None or purpose.__class__ is Purpose else Purpose(purpose)
        )
    except ValueError:
        raise InvalidRequest("unknown action or purpose") from None
    if location is not None and not isinstance(location, Location):
        raise InvalidRequest("location must be a trunkkey.Location")
    if type(now) is not int:
        raise InvalidRequest("now must be an int of Unix seconds")
    return wanted_action, wanted_purpose


#: What a refusing ledger's answer means for the courier.
_SPEND_DENIAL = {
    SpendOutcome.ALREADY_USED: (Reason.ALREADY_USED, "token was already used"),
    SpendOutcome.LIMIT_REACHED: (
        Reason.DAILY_LIMIT_REACHED, "a daily limit of the consent has no opening left today"
    ),
    SpendOutcome.ISSUED_BEFORE_LEDGER: (
        Reason.ISSUED_BEFORE_LEDGER,
        "token was issued before this ledger was started afresh; it cannot tell if it was used",
    ),
}


def keep_until(claims: TokenClaims) -> int:
    """How long the ledger keeps a spent token: as long as *any* verifier could
    still take it for unexpired, whatever skew its policy allows (at most
    ``MAX_ALLOWED_SKEW``). Verifiers sharing a ledger may differ in skew: kept
    only for this one's, a token would be pruned while another still accepts it."""
    return claims.expires + MAX_ALLOWED_SKEW


def spend_decision(
    outcome: SpendOutcome | Exception,
    claims: TokenClaims,
    now: int,
    parcels: ParcelRecord | None = None,
) -> Decision:
    """Step 11's answer: what a ledger's spend outcome (or its failure) decides.

    The one translation both verifiers use, the synchronous one and
    :class:`trunkkey.verifier_async.AsyncVerifier`.
    """
    if isinstance(outcome, Exception):  # any ledger fault denies access, its cause kept
        return _decision(Reason.LEDGER_UNAVAILABLE, ledger_failure(outcome), now, claims)
    if outcome is SpendOutcome.FIRST_USE:
        if parcels is None:
            return _decision(Reason.ALLOWED, "all checks passed", now, claims)
        return _decision(
            Reason.ALLOWED, f"all checks passed; {parcels.describe()} scanned", now, claims,
            parcels,
        )
    if isinstance(outcome, SpendOutcome) and outcome in _SPEND_DENIAL:
        reason, detail = _SPEND_DENIAL[outcome]
    else:  # not an answer a ledger may give, whatever it is: deny, and say what came
        reason, detail = Reason.LEDGER_UNAVAILABLE, _answered(outcome)
    return _decision(reason, detail, now, claims)


def _answered(outcome: object) -> str:
    try:
        return f"ledger answered {outcome!r}"[:200]
    except Exception:  # noqa: BLE001 -- a repr that fails still denies
        return f"ledger answered a {type(outcome).__name__}"


class Verifier:
    """Checks tokens offline against a trust store, a clock, a policy and a ledger."""

    def __init__(
        self,
        *,
        trust_store: TrustStore,
        ledger: Ledger,
        clock: Clock,
        policy: VerifierPolicy | None = None,
        consent: TokenAuthority | None = None,
        on_decision: DecisionHook[Decision] | None = None,
        car_keys: CarKeyring | None = None,
    ) -> None:
        """``consent`` (a :class:`trunkkey.consent.ConsentVerifier`) resolves the
        signers of tokens presented with a consent chain, and checks every
        authentic token against its revocation list, chain or no chain.
        ``on_decision`` is called with every decision after it is made
        (:mod:`trunkkey.observe`); if it raises, the decision stands.
        ``car_keys``: this car's KEM keys, which open sealed tokens
        (:mod:`trunkkey.sealed`); without them a sealed token cannot open."""
        if not isinstance(trust_store, TrustStore):
            raise InvalidRequest("trust_store must be a trunkkey.TrustStore")
        if consent is not None and not isinstance(consent, TokenAuthority):
            raise InvalidRequest("consent must be a trunkkey.consent.ConsentVerifier")
        if not isinstance(ledger, Ledger) or iscoroutinefunction(ledger.spend):
            raise InvalidRequest(
                "ledger must implement trunkkey.ledger.Ledger (spend); an async ledger "
                "goes with trunkkey.AsyncVerifier"
            )
        self._trust = trust_store
        self._ledger = ledger
        self._clock = clock
        self._policy = policy if policy is not None else VerifierPolicy()
        #: Resolves consent chains; without it a token presented with a chain is refused.
        self._consent = consent
        self._decisions: DecisionLog[Decision] = DecisionLog("verifier", on_decision)
        if car_keys is not None and not isinstance(car_keys, CarKeyring):
            raise InvalidRequest("car_keys must be a trunkkey.CarKeyring")
        self._car_keys = car_keys

    @property
    def policy(self) -> VerifierPolicy:
        return self._policy

    @property
    def trust_store(self) -> TrustStore:
        return self._trust

    def __repr__(self) -> str:
        return f"Verifier({self._trust!r}, {self._ledger!r}, {self._policy!r})"

    def verify(
        self,
        token: bytes,
        *,
        vehicle_id: str,
        action: Action | str,
        purpose: Purpose | str | None = None,
        location: Location | None = None,
        proof: bytes | None = None,
        challenge: bytes | None = None,
        chain: bytes | None = None,
    ) -> Decision:
        """Decide on ``token`` now (the clock is read once), spending it if allowed.

        ``chain`` is the consent chain the token hangs from (see
        :mod:`trunkkey.consent`), unless a sealed token carries it inside (a
        sealed bundle: then both ways is ``malformed``); without one the
        token's signer must be in the trust store.
        """
        return self._observe(self._check(
            token, self._clock.now(), vehicle_id, action, purpose, location, proof, challenge,
            chain,
        ), vehicle_id)

    def verify_at(
        self,
        token: bytes,
        *,
        now: int,
        vehicle_id: str,
        action: Action | str,
        purpose: Purpose | str | None = None,
        location: Location | None = None,
        proof: bytes | None = None,
        challenge: bytes | None = None,
        chain: bytes | None = None,
    ) -> Decision:
        """Decide on ``token`` at time ``now`` — for a caller that has already
        read (and sanity-checked) its own clock, like the vehicle unit."""
        return self._observe(self._check(
            token, now, vehicle_id, action, purpose, location, proof, challenge, chain
        ), vehicle_id)

    def _observe(self, decision: Decision, vehicle_id: str) -> Decision:
        """Log the decision and hand it to the hook; the decision stands whatever they do."""
        claims = decision.claims
        return self._decisions.record(
            decision, vehicle_id, None if claims is None else claims.token_id, decision.at
        )

    def _check(  # noqa: PLR0917 -- private hot path: positional, no request object per call
        self,
        token: bytes,
        now: int,
        vehicle_id: str,
        action: Action | str,
        purpose: Purpose | str | None,
        location: Location | None,
        proof: bytes | None,
        challenge: bytes | None,
        chain: bytes | None,
    ) -> Decision:
        """Every check, in order (the order is specified in ``docs/token-format.md``)."""
        checked = self._before_spend(
            token, now, vehicle_id, action, purpose, location, proof, challenge, chain
        )
        if isinstance(checked, Decision):
            return checked
        signer, claims, parcels = checked
        return self._spend(claims, signer, now, parcels)

    def _before_spend(  # noqa: PLR0917 -- private hot path, as _check
        self,
        token: bytes,
        now: int,
        vehicle_id: str,
        action: Action | str,
        purpose: Purpose | str | None,
        location: Location | None,
        proof: bytes | None,
        challenge: bytes | None,
        chain: bytes | None,
    ) -> tuple[Signer, TokenClaims, ParcelRecord | None] | Decision:
        """Steps 1 to 10b, with no I/O: the token's signer, claims and the parcels
        scanned (for a parcel-bound token), or the denial.

        Shared with :class:`trunkkey.verifier_async.AsyncVerifier`, which only
        awaits its ledger where this verifier calls its own.
        """
        action, purpose = _check_request(now, vehicle_id, action, purpose, location)
        try:
            opened = self._open(token, now, vehicle_id, chain)
            if isinstance(opened, Decision):
                return opened
            signer, claims = opened
            refused = _scope_refusal(
                claims, signer.trusted.issuer, vehicle_id, action, purpose, now, self._policy
            ) or _presence_refusal(claims, token, vehicle_id, location, proof, challenge)
            if refused is not None:
                return _decision(refused[0], refused[1], now, claims)
            if claims.parcels is None:
                return signer, claims, None
            # 10b. The parcels: after the proof that signs the scan, before the spend.
            scanned = _parcel_check(claims, token, vehicle_id, proof, challenge)
            if not isinstance(scanned, ParcelRecord):
                return _decision(scanned[0], scanned[1], now, claims)
            return signer, claims, scanned
        except Exception as exc:  # noqa: BLE001 -- fail closed on anything unforeseen
            return _decision(Reason.MALFORMED, self._decisions.unexpected(exc), now)

    def _open(
        self, token: bytes, now: int, vehicle_id: str, chain: bytes | None
    ) -> tuple[Signer, TokenClaims] | Decision:
        """Steps 1 to 6: the claims of a token from a trusted, valid key, or the denial."""
        policy, consent = self._policy, self._consent
        # 1. Size, before a single byte is parsed; 1b. a sealed token opens with
        #    this car's keys (with the chain it may carry), or nothing inside is read.
        presented = unseal_presented(
            token, chain, self._car_keys, now=now, verifies_chains=consent is not None,
            cap=policy.max_token_size + self._trust.signature_allowance,
        )
        if not isinstance(presented, Unsealed):
            return _decision(presented[0], presented[1], now)
        token, chain = presented.token, presented.chain
        # 2. The COSE_Sign1 envelope.
        try:
            protected, payload, signature, protected_item, payload_item = split_sign1(token)
        except DecodeError as exc:
            return _decision(Reason.MALFORMED, str(exc), now)
        # 3. The protected header: typ, kid, alg. With a consent chain, the
        #    signer is the chain's last grantee instead, once every link from a
        #    carmaker root has verified.
        authority: TokenAuthority = self._trust if chain is None or consent is None else consent
        signer = authority.token_signer(
            protected, chain, now=now, vehicle_id=vehicle_id, skew=policy.max_skew
        )
        if isinstance(signer, Refusal):
            return _decision(signer.reason, signer.detail, now)
        entry = signer.trusted
        # 4. The key's own validity period.
        if not entry.valid_at(now):
            return _decision(Reason.KEY_NOT_VALID, "signing key outside its validity period", now)
        # 5. The signature, before any claim is believed.
        if not signature_holds(entry.key, signature, protected_item, payload_item):
            return _decision(Reason.BAD_SIGNATURE, "signature does not verify", now)
        # 6. The claims, strictly decoded.
        try:
            claims = decode_claims(payload)
        except DecodeError as exc:
            return _decision(Reason.MALFORMED, f"claims: {exc}", now)
        if claims.expires <= claims.not_before:
            return _decision(Reason.MALFORMED, "window is empty or inverted", now, claims)
        # 6b. Revocation and supersession; under a chain, the chain's narrowest scope.
        if consent is not None:
            refused = consent.check_claims(claims, signer)
            if refused is not None:
                return _decision(refused.reason, refused.detail, now, claims)
        return signer, claims

    def _spend(
        self, claims: TokenClaims, signer: Signer, now: int, parcels: ParcelRecord | None = None
    ) -> Decision:
        """Step 11: single use, daily limits and the ledger's own start, last, in
        one atomic step of the ledger; any fault of the ledger denies."""
        outcome: SpendOutcome | Exception
        try:
            outcome = self._ledger.spend(
                claims.vehicle_id, claims.token_id, keep_until(claims),
                issued_at=claims.issued_at, at=now, limits=signer.limits,
            )
        except Exception as exc:  # noqa: BLE001 -- any ledger fault denies access
            outcome = exc
        return spend_decision(outcome, claims, now, parcels)


def _scope_refusal(  # noqa: PLR0917 -- private step of the verifier's hot path
    claims: TokenClaims,
    issuer: str,
    vehicle_id: str,
    action: Action,
    purpose: Purpose | None,
    now: int,
    policy: VerifierPolicy,
) -> tuple[Reason, str] | None:
    """Steps 7 and 8: who issued the token, for which car and what, and when."""
    if claims.issuer != issuer:
        return Reason.WRONG_ISSUER, "iss does not match the signing key"
    if claims.vehicle_id != vehicle_id:
        return Reason.WRONG_VEHICLE, "token is for another vehicle"
    if claims.action is not action:
        return Reason.WRONG_ACTION, f"token grants {claims.action.value}, not {action.value}"
    if purpose is not None and claims.purpose is not purpose:
        return Reason.WRONG_PURPOSE, f"token is for {claims.purpose.value}, not {purpose.value}"
    if claims.expires - claims.not_before > policy.max_lifetime:
        return (
            Reason.LIFETIME_TOO_LONG,
            f"window of {claims.lifetime} s exceeds {policy.max_lifetime} s",
        )
    skew = policy.max_skew
    if now + skew < claims.not_before or now + skew < claims.issued_at:
        return Reason.NOT_YET_VALID, "window has not started"
    if now - skew >= claims.expires:
        return Reason.EXPIRED, "window has ended"
    return None


def _presence_refusal(  # noqa: PLR0917 -- private step of the verifier's hot path
    claims: TokenClaims,
    token: bytes,
    vehicle_id: str,
    location: Location | None,
    proof: bytes | None,
    challenge: bytes | None,
) -> tuple[Reason, str] | None:
    """Steps 9 and 10: the car is inside the geofence; the courier holds the bound key."""
    if claims.geofence is not None:
        if location is None:
            return Reason.LOCATION_UNKNOWN, "token has a geofence; position unknown"
        if not claims.geofence.contains(location):
            return Reason.OUTSIDE_GEOFENCE, "vehicle is outside the geofence"
    if claims.courier_key is not None:
        if proof is None:
            return Reason.PROOF_MISSING, "token is bound to a device; no proof given"
        if challenge is None:
            return Reason.PROOF_INVALID, "no challenge was issued for this proof"
        if claims.parcels is not None:
            return None  # the scan proof is checked with its scan, in step 10b
        # Imported for a device-bound token only: the proof module compares
        # through hmac, whose import loads OpenSSL's libcrypto (3.4 MiB), a
        # cost a plain token's cold start does not pay.
        from .proof import check_proof  # noqa: PLC0415

        problem = check_proof(
            proof, key=claims.courier_key, token=token, vehicle_id=vehicle_id,
            challenge=challenge,
        )
        if problem is not None:
            return Reason.PROOF_INVALID, problem
    return None


def _parcel_check(
    claims: TokenClaims, token: bytes, vehicle_id: str, proof: bytes | None,
    challenge: bytes | None,
) -> ParcelRecord | tuple[Reason, str]:
    """Steps 10 and 10b for a token bound to parcels (:func:`trunkkey.proof.judge_scan`);
    reached only after :func:`_presence_refusal` found a proof and a challenge."""
    parcels, key = claims.parcels, claims.courier_key
    if parcels is None or key is None or proof is None or challenge is None:
        return Reason.PROOF_INVALID, "no proof to carry a scan"
    from .proof import judge_scan  # noqa: PLC0415 (see _presence_refusal)

    return judge_scan(
        parcels, key, proof=proof, token=token, vehicle_id=vehicle_id, challenge=challenge
    )
