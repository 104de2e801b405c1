"""The verifier for asyncio backends: the same checks, the ledger awaited.

:class:`AsyncVerifier` runs steps 1 to 10 (size, envelope, signer, key
validity, signature, claims, revocation, scope, window, geofence, proof)
through the very functions the synchronous :class:`~trunkkey.Verifier` runs —
they do no I/O, so there is nothing to await in them — and awaits only step
11, the ledger's atomic spend, whose outcome (or failure) becomes a decision
through the one translation both verifiers share. A check changed in
``verifier.py`` is changed here by that change alone.
"""

from __future__ import annotations

from inspect import iscoroutinefunction

from .authority import TokenAuthority
from .claims import Action, Purpose
from .clock import Clock
from .errors import InvalidRequest, LedgerError
from .geo import Location
from .ledger.base import AsyncLedger, SpendOutcome
from .observe import DecisionHook
from .sealed import CarKeyring
from .trust import TrustStore
from .verifier import Decision, Verifier, VerifierPolicy, keep_until, spend_decision


class _SpendsElsewhere:
    """The synchronous ledger of the verifier whose checks an AsyncVerifier reuses.

    Never spent through: the async verifier awaits its own ledger. Should a
    spend ever reach this one, it fails, and a failing ledger denies.
    """

    def spend(self, *_: object, **__: object) -> SpendOutcome:
        raise LedgerError("an AsyncVerifier spends through its async ledger only")

    def consume(self, *_: object, **__: object) -> bool:
        raise LedgerError("an AsyncVerifier spends through its async ledger only")

    def prune(self, *_: object, **__: object) -> int:
        return 0

    def count(self) -> int:
        return 0

    def close(self) -> None:
        return None


class AsyncVerifier:
    """Checks tokens offline like :class:`~trunkkey.Verifier`; awaits an async ledger.

    ``ledger`` is an :class:`~trunkkey.ledger.AsyncLedger`, e.g.
    ``await AsyncRedisLedger.open(url)`` or ``await AsyncPostgresLedger.open(dsn)``.
    Many verifications may run at once on one event loop; each spends
    atomically in the ledger, so of any number presenting one token, one opens.
    """

    def __init__(
        self,
        *,
        trust_store: TrustStore,
        ledger: AsyncLedger,
        clock: Clock,
        policy: VerifierPolicy | None = None,
        consent: TokenAuthority | None = None,
        on_decision: DecisionHook[Decision] | None = None,
        car_keys: CarKeyring | None = None,
    ) -> None:
        """``on_decision`` is called with every decision, as by :class:`~trunkkey.Verifier`."""
        if not isinstance(ledger, AsyncLedger) or not iscoroutinefunction(ledger.spend):
            raise InvalidRequest(
                "ledger must implement trunkkey.ledger.AsyncLedger (async spend); a "
                "synchronous ledger goes with trunkkey.Verifier"
            )
        # The checks themselves: one Verifier, whose own ledger is never used.
        self._checks = Verifier(
            trust_store=trust_store, ledger=_SpendsElsewhere(), clock=clock, policy=policy,
            consent=consent, on_decision=on_decision, car_keys=car_keys,
        )
        self._ledger = ledger
        self._clock = clock

    @property
    def policy(self) -> VerifierPolicy:
        return self._checks.policy

    @property
    def trust_store(self) -> TrustStore:
        return self._checks.trust_store

    def __repr__(self) -> str:
        return f"AsyncVerifier({self.trust_store!r}, {self._ledger!r}, {self.policy!r})"

    async def verify(
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
        """As :meth:`trunkkey.Verifier.verify` (the clock is read once), awaited."""
        decision = await self._check(
            token, self._clock.now(), vehicle_id, action, purpose, location, proof, challenge,
            chain,
        )
        # Logged and handed to the hook by the very code the synchronous verifier uses.
        return self._checks._observe(decision, vehicle_id)

    async def verify_at(
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
        """As :meth:`trunkkey.Verifier.verify_at`, awaited."""
        decision = await self._check(
            token, now, vehicle_id, action, purpose, location, proof, challenge, chain
        )
        return self._checks._observe(decision, vehicle_id)

    async def _check(  # noqa: PLR0917 -- as Verifier._check
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
        checked = self._checks._before_spend(
            token, now, vehicle_id, action, purpose, location, proof, challenge, chain
        )
        if isinstance(checked, Decision):
            return checked
        signer, claims, parcels = checked
        outcome: SpendOutcome | Exception
        try:
            outcome = await self._ledger.spend(
                claims.vehicle_id, claims.token_id, keep_until(claims),
                issued_at=claims.issued_at, at=now, limits=signer.limits,
            )
        except Exception as exc:  # noqa: BLE001 -- any ledger fault denies access
            outcome = exc
        return spend_decision(outcome, claims, now, parcels)
