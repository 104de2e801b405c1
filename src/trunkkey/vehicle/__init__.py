"""The vehicle side: the car's telematics unit around the core verifier."""

from .accesslog import AccessLog as AccessLog
from .accesslog import JournalStore as JournalStore
from .accesslog import MemoryJournal as MemoryJournal
from .challenge import ChallengeBook as ChallengeBook
from .challenge import ChallengeRefusal as ChallengeRefusal
from .events import Event as Event
from .events import EventBus as EventBus
from .events import EventKind as EventKind
from .events import GapDetector as GapDetector
from .kemkeys import CarKemKeys as CarKemKeys
from .kemproposal import KemProposal as KemProposal
from .kemproposal import read_kem_proposal as read_kem_proposal
from .kemproposal import sign_kem_proposal as sign_kem_proposal
from .kemproposal import verify_kem_proposal as verify_kem_proposal
from .latch import Actuator as Actuator
from .presence import PresenceBeacon as PresenceBeacon
from .presence import PresenceSecret as PresenceSecret
from .presence import PresenceWindow as PresenceWindow
from .presence import presence_ids as presence_ids
from .receipt import Receipt as Receipt
from .receipt import parcels_in_receipt as parcels_in_receipt
from .receipt import sign_receipt as sign_receipt
from .receipt import verify_receipt as verify_receipt
from .state import Opening as Opening
from .state import Outcome as Outcome
from .state import UnitConfig as UnitConfig
from .state import UnitState as UnitState
from .timekeeping import FileTimeStore as FileTimeStore
from .timekeeping import MemoryTimeStore as MemoryTimeStore
from .timekeeping import SyncOutcome as SyncOutcome
from .timekeeping import TimeKeeper as TimeKeeper
from .timekeeping import TimeState as TimeState
from .timekeeping import TimeStateStore as TimeStateStore
from .timekeeping import TimeSync as TimeSync
from .timekeeping import make_time_sync as make_time_sync
from .timekeeping import read_time_sync as read_time_sync
from .unit import Positioning as Positioning
from .unit import VehicleUnit as VehicleUnit
from .updates import ConsentUpdates as ConsentUpdates
from .updates import UpdateOutcome as UpdateOutcome
from .updates import consent_verifier as consent_verifier

__all__ = [
    "AccessLog",
    "Actuator",
    "CarKemKeys",
    "ChallengeBook",
    "ChallengeRefusal",
    "ConsentUpdates",
    "Event",
    "EventBus",
    "EventKind",
    "FileTimeStore",
    "GapDetector",
    "JournalStore",
    "KemProposal",
    "MemoryJournal",
    "MemoryTimeStore",
    "Opening",
    "Outcome",
    "Positioning",
    "PresenceBeacon",
    "PresenceSecret",
    "PresenceWindow",
    "Receipt",
    "SyncOutcome",
    "TimeKeeper",
    "TimeState",
    "TimeStateStore",
    "TimeSync",
    "UnitConfig",
    "UnitState",
    "UpdateOutcome",
    "VehicleUnit",
    "consent_verifier",
    "make_time_sync",
    "parcels_in_receipt",
    "presence_ids",
    "read_kem_proposal",
    "read_time_sync",
    "sign_kem_proposal",
    "sign_receipt",
    "verify_kem_proposal",
    "verify_receipt",
]
