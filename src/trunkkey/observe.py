"""Observing decisions: a hook, the ``trunkkey`` loggers, counters, sanitised errors.

Nothing here decides anything. The verifier and the vehicle unit hand every
decision they have made to a :class:`DecisionLog`, which logs it and passes
it to the caller's hook; whatever the log or the hook does — including
raising — the decision already made is the one returned (fail closed: a
broken hook can neither open a trunk nor deny a good token, and its error is
logged). See ``docs/observability.md`` for the fields and what is never
logged.

No exporter is imported here: :class:`DecisionCounters` is a hook that
counts per reason code, and its :meth:`~DecisionCounters.snapshot` is a plain
``dict[str, int]`` a Prometheus or OpenTelemetry adapter can read.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import re
import sys
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from ._sodium import sha256
from .reasons import Reason

if TYPE_CHECKING:
    import logging

#: The library's logger; the components log to its children.
LOGGER_NAME = "trunkkey"
# logging's levels, without importing it (see _logger).
_INFO, _WARNING, _ERROR = 20, 30, 40

#: Denials that say the car or backend is faulty, not the token: warnings.
#: A tuple, not a set: membership by identity, without Enum's Python-level hash.
_FAULTS = (Reason.LEDGER_UNAVAILABLE, Reason.ACTUATOR_FAILED, Reason.CLOCK_UNTRUSTED)
#: Longest error text kept in a decision's detail or a log record.
MAX_ERROR_TEXT = 200


class Decided(Protocol):
    """What a hook receives: a :class:`~trunkkey.Decision` or a vehicle ``Outcome``."""

    @property
    def reason(self) -> Reason: ...

    @property
    def detail(self) -> str: ...


_D_contra = TypeVar("_D_contra", bound=Decided, contravariant=True)
_DT = TypeVar("_DT", bound=Decided)


class DecisionHook(Protocol[_D_contra]):
    """A callable given every decision, allowed or denied, after it is made."""

    def __call__(self, decision: _D_contra, /) -> None: ...


class DecisionCounters:
    """Thread-safe decision counts per reason code; pass it as a hook.

    ``snapshot()`` lists every reason code (zero included), so an exporter's
    series exist from the start and never appear out of nowhere.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()  # threading.Lock, without threading (cold_start)
        # Keyed by the plain string: an Enum member hashes in Python, a str in C.
        self._counts: dict[str, int] = dict.fromkeys((r._value_ for r in Reason), 0)

    def __call__(self, decision: Decided, /) -> None:
        code: str = decision.reason._value_
        with self._lock:
            self._counts[code] += 1

    def snapshot(self) -> dict[str, int]:
        """Counts so far, keyed by reason code (``"allowed"``, ``"expired"`` …)."""
        with self._lock:
            return dict(self._counts)

    def __repr__(self) -> str:
        counted = {k: v for k, v in self.snapshot().items() if v}
        return f"DecisionCounters({counted!r})"


def fan_out(*hooks: DecisionHook[_DT]) -> DecisionHook[_DT]:
    """One hook calling each of ``hooks`` in turn; one raising does not stop the rest."""
    chain = tuple(hooks)

    def every(decision: _DT, /) -> None:
        failed: Exception | None = None
        for hook in chain:
            try:
                hook(decision)
            except Exception as exc:  # noqa: BLE001 -- the others still get the decision
                failed = failed or exc
        if failed is not None:
            raise failed

    return every


def token_ref(token_id: bytes) -> str:
    """The short fingerprint logs name a token by: never the token or its id.

    16 hex digits of SHA-256 over a fixed label and the token id, so a
    backend that knows the id can find the records of its token, and the
    records alone reveal neither the id nor anything that opens a car.
    """
    # libsodium's SHA-256, not hashlib's: hashlib would load libcrypto on a car's wake.
    return sha256(b"trunkkey token ref\x00" + token_id).hex()[:16]


# -- sanitising error text ------------------------------------------------------
_SANITISE = (
    # Credentials in a URL or DSN: scheme://user:password@host.
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s@]*@"), r"\1***@"),
    # key=value or key: value secrets, as in libpq DSNs and driver messages.
    (
        re.compile(
            r"(?i)\b(password|passwd|pwd|secret|token|pin|api[_-]?key|auth)"
            r"([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;}]+)"
        ),
        r"\1\2***",
    ),
    # Byte strings quoted by a driver (Redis keys carry token ids).
    (re.compile(r"\bb(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"), "b'***'"),
    # Line breaks and other controls: one record, one line.
    (re.compile(r"[\x00-\x1f\x7f]+"), " "),
)
#: A run long enough to be key or token bytes in hex or base64(url).
_RUN = re.compile(r"[A-Za-z0-9+/_-]{20,}=*")


def _run_redacted(match: re.Match[str]) -> str:
    run = match.group()
    # Words and identifiers (``synchronous_standby_names``) stay: one case, no
    # digits. Encoded random bytes almost surely have a digit, both cases, a
    # ``+``, ``/`` or padding.
    word = (run.islower() or run.isupper()) and not any(c.isdigit() or c in "+/=" for c in run)
    return run if word and len(set(run)) > 1 else "***"


def sanitise(text: str) -> str:
    """``text`` without credentials, key-like runs or control characters, bounded."""
    # Bounded first, so a huge message costs little; bounded again after.
    text = text[: 8 * MAX_ERROR_TEXT]
    for pattern, replacement in _SANITISE:
        text = pattern.sub(replacement, text)
    text = _RUN.sub(_run_redacted, text).strip()
    if len(text) > MAX_ERROR_TEXT:
        text = text[: MAX_ERROR_TEXT - 1] + "…"
    return text


def describe_error(exc: BaseException) -> str:
    """``"ClassName: sanitised message"``, or the class name alone if it says nothing."""
    name = type(exc).__name__
    try:
        message = sanitise(str(exc))
    except Exception:  # noqa: BLE001 -- an exception whose str() fails still has a name
        message = ""
    return f"{name}: {message}" if message else name


_null_handler_added = False


def _logger(name: str) -> logging.Logger | None:
    """The logger ``name``, or ``None`` while no code in the process has imported logging.

    A process that never imported :mod:`logging` cannot have configured a
    handler, so there is nowhere a record could go: the car that wakes for
    one decision does not pay for importing logging (``tests/test_cold_start.py``).
    """
    module = sys.modules.get("logging")
    if module is None:
        return None
    global _null_handler_added  # noqa: PLW0603 -- once per process, on first use
    if not _null_handler_added:
        # A library never configures logging, but without a handler of its own
        # its warnings would reach stderr through logging's last resort.
        module.getLogger(LOGGER_NAME).addHandler(module.NullHandler())
        _null_handler_added = True
    logger: logging.Logger = module.getLogger(name)
    return logger


def ledger_failure(exc: BaseException) -> str:
    """The detail of a denial because the ledger raised ``exc``; logged on ``trunkkey.ledger``."""
    described = describe_error(exc)
    logger = _logger(f"{LOGGER_NAME}.ledger")
    if logger is not None and logger.isEnabledFor(_WARNING):
        with contextlib.suppress(Exception):  # the denial stands whatever logging does
            logger.warning(
                "ledger failed: %s", described,
                extra={"error_type": type(exc).__name__, "error": described}, stacklevel=2,
            )
    return f"ledger failed: {described}"


class DecisionLog(Generic[_DT]):
    """Logs each decision of one component and hands it to that component's hook.

    Nothing it does can raise into the caller: a handler, filter or hook that
    fails is ignored or logged, and the decision is returned as it was made.
    """

    __slots__ = ("_hook", "_logger", "_name")

    def __init__(self, component: str, hook: DecisionHook[_DT] | None) -> None:
        if hook is not None and not callable(hook):
            raise TypeError("on_decision must be callable with one decision")
        self._name = f"{LOGGER_NAME}.{component}"
        self._logger = _logger(self._name)
        self._hook = hook

    def record(
        self, decision: _DT, vehicle_id: str, token_id: bytes | None, at: int | None
    ) -> _DT:
        """Log ``decision`` and call the hook; never raises, returns ``decision``.

        On the hot path: with no hook and logging not imported or below
        ``INFO``, this is a few attribute reads and one level check.
        """
        reason = decision.reason
        logger = self._logger or self._bind()
        if logger is not None and logger.isEnabledFor(_WARNING if reason in _FAULTS else _INFO):
            level = _WARNING if reason in _FAULTS else _INFO
            with contextlib.suppress(Exception):  # a broken handler must not change a decision
                ref = None if token_id is None else token_ref(token_id)
                detail = sanitise(decision.detail)
                logger.log(
                    level, "%s: %s (vehicle %s, token %s)", reason.value, detail, vehicle_id, ref,
                    extra={
                        "reason": reason.value, "allowed": reason is Reason.ALLOWED,
                        "detail": detail, "vehicle_id": vehicle_id, "token_ref": ref, "at": at,
                    },
                    stacklevel=2,  # the record names the component's line, not this one
                )
        hook = self._hook
        if hook is not None:
            try:
                hook(decision)
            except Exception as exc:  # noqa: BLE001 -- the decision stands whatever the hook does
                if logger is not None:
                    with contextlib.suppress(Exception):
                        logger.error(
                            "decision hook failed on a %s decision (the decision stands): %s",
                            reason.value, describe_error(exc),
                            extra={"reason": reason.value, "error_type": type(exc).__name__},
                        )
        return decision

    def _bind(self) -> logging.Logger | None:
        self._logger = _logger(self._name)
        return self._logger

    def unexpected(self, exc: BaseException) -> str:
        """The detail of a denial because checking raised ``exc``, logged as an error.

        The detail names the class only; the log adds the sanitised message and
        where it was raised, never a traceback (its text would quote the message raw).
        """
        name = type(exc).__name__
        with contextlib.suppress(Exception):  # the denial stands whatever logging does
            logger = self._logger or self._bind()
            if logger is not None and logger.isEnabledFor(_ERROR):
                import traceback  # noqa: PLC0415 -- only ever needed on this rare path

                frames = traceback.extract_tb(exc.__traceback__)
                last = frames[-1] if frames else None
                where = "?" if last is None else f"{os.path.basename(last.filename)}:{last.lineno}"
                described = describe_error(exc)
                logger.error(
                    "unexpected error while checking, denied: %s at %s", described, where,
                    extra={"error_type": name, "error": described, "where": where},
                    stacklevel=2,
                )
        return f"unexpected error while checking: {name}"
