"""trunkkey: one-time, single-use tokens that open a parked car's trunk once.

The public API is what this module exports; everything else is internal.

Every name is imported when first used (PEP 562), so that a process which
starts for one decision loads only the modules that decision needs: ``from
trunkkey import Verifier`` loads the verifier and what it imports, not the
inspector, the other ledgers, consent or the command line. Type checkers
read the imports under ``TYPE_CHECKING``; ``tests/test_cold_start.py`` holds
them and the table below to the same names.
"""

import typing as _typing

from ._lazy import lazy_names as _lazy_names

__version__ = "0.1.0"

if _typing.TYPE_CHECKING:
    from .checkpoint import Checkpoint as Checkpoint
    from .checkpoint import LogBundle as LogBundle
    from .claims import Action as Action
    from .claims import Purpose as Purpose
    from .claims import TokenClaims as TokenClaims
    from .clock import Clock as Clock
    from .clock import ManualClock as ManualClock
    from .clock import SystemClock as SystemClock
    from .cose import Typ as Typ
    from .errors import AccessDenied as AccessDenied
    from .errors import DecodeError as DecodeError
    from .errors import InsecureKeyFile as InsecureKeyFile
    from .errors import InvalidRequest as InvalidRequest
    from .errors import KeyFileError as KeyFileError
    from .errors import LedgerCorrupted as LedgerCorrupted
    from .errors import LedgerError as LedgerError
    from .errors import SignatureError as SignatureError
    from .errors import TrunkkeyError as TrunkkeyError
    from .geo import Geofence as Geofence
    from .geo import Location as Location
    from .history import CheckpointStore as CheckpointStore
    from .history import HistoryOutcome as HistoryOutcome
    from .inspect import UnverifiedToken as UnverifiedToken
    from .inspect import inspect_unverified as inspect_unverified
    from .issuer import Issuer as Issuer
    from .keys import Algorithm as Algorithm
    from .keys import SigningKey as SigningKey
    from .keys import VerificationKey as VerificationKey
    from .ledger import Ledger as Ledger
    from .ledger import MemoryLedger as MemoryLedger
    from .ledger import SqliteLedger as SqliteLedger
    from .logentry import EntryKind as EntryKind
    from .logentry import LogEntry as LogEntry
    from .observe import DecisionCounters as DecisionCounters
    from .observe import DecisionHook as DecisionHook
    from .observe import fan_out as fan_out
    from .observe import token_ref as token_ref
    from .proof import make_proof as make_proof
    from .reasons import Reason as Reason
    from .trust import TrustedKey as TrustedKey
    from .trust import TrustStore as TrustStore
    from .verifier import Decision as Decision
    from .verifier import Verifier as Verifier
    from .verifier import VerifierPolicy as VerifierPolicy

#: Where each public name is defined: the module imported on its first use.
_DEFINED_IN: dict[str, str] = {
    "Checkpoint": "checkpoint",
    "LogBundle": "checkpoint",
    "Action": "claims",
    "Purpose": "claims",
    "TokenClaims": "claims",
    "Clock": "clock",
    "ManualClock": "clock",
    "SystemClock": "clock",
    "Typ": "cose",
    "AccessDenied": "errors",
    "DecodeError": "errors",
    "InsecureKeyFile": "errors",
    "InvalidRequest": "errors",
    "KeyFileError": "errors",
    "LedgerCorrupted": "errors",
    "LedgerError": "errors",
    "SignatureError": "errors",
    "TrunkkeyError": "errors",
    "Geofence": "geo",
    "Location": "geo",
    "CheckpointStore": "history",
    "HistoryOutcome": "history",
    "UnverifiedToken": "inspect",
    "inspect_unverified": "inspect",
    "Issuer": "issuer",
    "Algorithm": "keys",
    "SigningKey": "keys",
    "VerificationKey": "keys",
    "Ledger": "ledger",
    "MemoryLedger": "ledger",
    "SqliteLedger": "ledger",
    "EntryKind": "logentry",
    "LogEntry": "logentry",
    "DecisionCounters": "observe",
    "DecisionHook": "observe",
    "fan_out": "observe",
    "token_ref": "observe",
    "make_proof": "proof",
    "Reason": "reasons",
    "TrustedKey": "trust",
    "TrustStore": "trust",
    "Decision": "verifier",
    "Verifier": "verifier",
    "VerifierPolicy": "verifier",
}

#: The submodules ``import trunkkey`` used to load as a side effect, so that
#: ``trunkkey.keys`` still works after a bare ``import trunkkey``.
_SUBMODULES = frozenset({
    "_sodium", "authority", "cbor", "claims", "clock", "cose", "errors", "geo", "inspect",
    "issuer", "keys", "ledger", "proof", "reasons", "trust", "verifier",
})


__getattr__, __dir__ = _lazy_names(globals(), _DEFINED_IN, _SUBMODULES)


__all__ = [
    "AccessDenied",
    "Action",
    "Algorithm",
    "Checkpoint",
    "CheckpointStore",
    "Clock",
    "Decision",
    "DecisionCounters",
    "DecisionHook",
    "DecodeError",
    "EntryKind",
    "Geofence",
    "HistoryOutcome",
    "InsecureKeyFile",
    "InvalidRequest",
    "Issuer",
    "KeyFileError",
    "Ledger",
    "LedgerCorrupted",
    "LedgerError",
    "Location",
    "LogBundle",
    "LogEntry",
    "ManualClock",
    "MemoryLedger",
    "Purpose",
    "Reason",
    "SignatureError",
    "SigningKey",
    "SqliteLedger",
    "SystemClock",
    "TokenClaims",
    "TrunkkeyError",
    "TrustStore",
    "TrustedKey",
    "Typ",
    "UnverifiedToken",
    "VerificationKey",
    "Verifier",
    "VerifierPolicy",
    "fan_out",
    "inspect_unverified",
    "make_proof",
    "token_ref",
]
