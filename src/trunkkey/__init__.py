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
    from .advice import Advice as Advice
    from .advice import Remedy as Remedy
    from .advice import advice_for as advice_for
    from .checkpoint import Checkpoint as Checkpoint
    from .checkpoint import LogBundle as LogBundle
    from .claims import Action as Action
    from .claims import Purpose as Purpose
    from .claims import TokenClaims as TokenClaims
    from .clock import Clock as Clock
    from .clock import ManualClock as ManualClock
    from .clock import SystemClock as SystemClock
    from .cose import Typ as Typ
    from .encodings import TextDecodeError as TextDecodeError
    from .encodings import TextFormat as TextFormat
    from .encodings import TransportFootprint as TransportFootprint
    from .encodings import decode_text as decode_text
    from .encodings import encode_text as encode_text
    from .encodings import transport_footprint as transport_footprint
    from .errors import AccessDenied as AccessDenied
    from .errors import DecodeError as DecodeError
    from .errors import HardwareKeyError as HardwareKeyError
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
    from .ledger import AsyncLedger as AsyncLedger
    from .ledger import Ledger as Ledger
    from .ledger import MemoryLedger as MemoryLedger
    from .ledger import SqliteLedger as SqliteLedger
    from .logentry import EntryKind as EntryKind
    from .logentry import LogEntry as LogEntry
    from .observe import DecisionCounters as DecisionCounters
    from .observe import DecisionHook as DecisionHook
    from .observe import fan_out as fan_out
    from .observe import token_ref as token_ref
    from .parcels import ParcelRecord as ParcelRecord
    from .parcels import Parcels as Parcels
    from .pkcs11 import Pkcs11Signer as Pkcs11Signer
    from .pkcs11 import Pkcs11Token as Pkcs11Token
    from .proof import make_proof as make_proof
    from .reasons import Reason as Reason
    from .sealed import CarKemKey as CarKemKey
    from .sealed import CarKeyring as CarKeyring
    from .sealed import CarPublicKey as CarPublicKey
    from .sealed import KeyringEntry as KeyringEntry
    from .sealed import kem_key_id as kem_key_id
    from .sealed import open_sealed as open_sealed
    from .sealed import seal as seal
    from .sealed_bundle import Unsealed as Unsealed
    from .sealed_bundle import open_bundle as open_bundle
    from .sealed_pq import CarHybridKemKey as CarHybridKemKey
    from .sealed_pq import CarHybridPublicKey as CarHybridPublicKey
    from .signing import CompositeSigner as CompositeSigner
    from .signing import SigningBackend as SigningBackend
    from .trust import TrustedKey as TrustedKey
    from .trust import TrustStore as TrustStore
    from .verifier import Decision as Decision
    from .verifier import Verifier as Verifier
    from .verifier import VerifierPolicy as VerifierPolicy
    from .verifier_async import AsyncVerifier as AsyncVerifier

#: Where each public name is defined: the module imported on its first use.
_DEFINED_IN: dict[str, str] = {
    "Advice": "advice",
    "Remedy": "advice",
    "advice_for": "advice",
    "Checkpoint": "checkpoint",
    "LogBundle": "checkpoint",
    "Action": "claims",
    "Purpose": "claims",
    "TokenClaims": "claims",
    "Clock": "clock",
    "ManualClock": "clock",
    "SystemClock": "clock",
    "Typ": "cose",
    "TextDecodeError": "encodings",
    "TextFormat": "encodings",
    "TransportFootprint": "encodings",
    "decode_text": "encodings",
    "encode_text": "encodings",
    "transport_footprint": "encodings",
    "AccessDenied": "errors",
    "DecodeError": "errors",
    "HardwareKeyError": "errors",
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
    "AsyncLedger": "ledger",
    "Ledger": "ledger",
    "MemoryLedger": "ledger",
    "SqliteLedger": "ledger",
    "EntryKind": "logentry",
    "LogEntry": "logentry",
    "DecisionCounters": "observe",
    "DecisionHook": "observe",
    "fan_out": "observe",
    "token_ref": "observe",
    "ParcelRecord": "parcels",
    "Parcels": "parcels",
    "Pkcs11Signer": "pkcs11",
    "Pkcs11Token": "pkcs11",
    "make_proof": "proof",
    "Reason": "reasons",
    "CarKemKey": "sealed",
    "CarKeyring": "sealed",
    "CarPublicKey": "sealed",
    "Unsealed": "sealed_bundle",
    "open_bundle": "sealed_bundle",
    "KeyringEntry": "sealed",
    "kem_key_id": "sealed",
    "open_sealed": "sealed",
    "seal": "sealed",
    "CarHybridKemKey": "sealed_pq",
    "CarHybridPublicKey": "sealed_pq",
    "CompositeSigner": "signing",
    "SigningBackend": "signing",
    "TrustedKey": "trust",
    "TrustStore": "trust",
    "Decision": "verifier",
    "Verifier": "verifier",
    "VerifierPolicy": "verifier",
    "AsyncVerifier": "verifier_async",
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
    "Advice",
    "Algorithm",
    "AsyncLedger",
    "AsyncVerifier",
    "CarHybridKemKey",
    "CarHybridPublicKey",
    "CarKemKey",
    "CarKeyring",
    "CarPublicKey",
    "Checkpoint",
    "CheckpointStore",
    "Clock",
    "CompositeSigner",
    "Decision",
    "DecisionCounters",
    "DecisionHook",
    "DecodeError",
    "EntryKind",
    "Geofence",
    "HardwareKeyError",
    "HistoryOutcome",
    "InsecureKeyFile",
    "InvalidRequest",
    "Issuer",
    "KeyFileError",
    "KeyringEntry",
    "Ledger",
    "LedgerCorrupted",
    "LedgerError",
    "Location",
    "LogBundle",
    "LogEntry",
    "ManualClock",
    "MemoryLedger",
    "ParcelRecord",
    "Parcels",
    "Pkcs11Signer",
    "Pkcs11Token",
    "Purpose",
    "Reason",
    "Remedy",
    "SignatureError",
    "SigningBackend",
    "SigningKey",
    "SqliteLedger",
    "SystemClock",
    "TextDecodeError",
    "TextFormat",
    "TokenClaims",
    "TransportFootprint",
    "TrunkkeyError",
    "TrustStore",
    "TrustedKey",
    "Typ",
    "Unsealed",
    "UnverifiedToken",
    "VerificationKey",
    "Verifier",
    "VerifierPolicy",
    "advice_for",
    "decode_text",
    "encode_text",
    "fan_out",
    "inspect_unverified",
    "kem_key_id",
    "make_proof",
    "open_bundle",
    "open_sealed",
    "seal",
    "token_ref",
    "transport_footprint",
]
