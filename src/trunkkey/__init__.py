"""trunkkey: one-time, single-use tokens that open a parked car's trunk once.

The public API is what this module exports; everything else is internal.
"""

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
from .proof import make_proof as make_proof
from .reasons import Reason as Reason
from .trust import TrustedKey as TrustedKey
from .trust import TrustStore as TrustStore
from .verifier import Decision as Decision
from .verifier import Verifier as Verifier
from .verifier import VerifierPolicy as VerifierPolicy

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "Action",
    "Algorithm",
    "Checkpoint",
    "CheckpointStore",
    "Clock",
    "Decision",
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
    "inspect_unverified",
    "make_proof",
]
