"""Owner consent: grants, offline delegation chains, revocation and key rotation.

The car trusts only its carmaker's root key(s) (:class:`VehicleAnchors`). The
carmaker signs a **grant** to a retailer's key when the owner consents; the
retailer may delegate a narrower grant to a carrier; the carrier signs the
courier's token. The car verifies the whole chain offline
(:class:`ConsentVerifier`, plugged into :class:`~trunkkey.Verifier` with
``consent=``), refuses what signed **revocation lists** revoke
(:class:`RevocationState`), and changes its keys only through signed,
versioned **trust updates** (:class:`TrustUpdater`). See ``docs/consent.md``.

Each name is imported when first used (PEP 562): a car that verifies chains
loads the chain, grant, anchor and revocation modules, not key rotation.
"""

import typing as _typing

from .._lazy import lazy_names as _lazy_names

if _typing.TYPE_CHECKING:
    from .anchors import RootKey as RootKey
    from .anchors import VehicleAnchors as VehicleAnchors
    from .chain import ChainDenial as ChainDenial
    from .chain import ConsentVerifier as ConsentVerifier
    from .chain import GrantCache as GrantCache
    from .chain import ResolvedChain as ResolvedChain
    from .errors import UpdateRefused as UpdateRefused
    from .grant import Grant as Grant
    from .grant import Scope as Scope
    from .grant import access_mask as access_mask
    from .grant import decode_grant as decode_grant
    from .grant import encode_chain as encode_chain
    from .grant import grant_digest as grant_digest
    from .grant import make_grant as make_grant
    from .grant import narrow as narrow
    from .grant import root_scope as root_scope
    from .grant import sign_delegation as sign_delegation
    from .grant import sign_root_grant as sign_root_grant
    from .grant import vehicle_tag as vehicle_tag
    from .revocation import RevocationList as RevocationList
    from .revocation import RevocationState as RevocationState
    from .revocation import sign_revocation_list as sign_revocation_list
    from .rotation import KemKeyEntry as KemKeyEntry
    from .rotation import KeyEntry as KeyEntry
    from .rotation import Role as Role
    from .rotation import TrustUpdate as TrustUpdate
    from .rotation import TrustUpdater as TrustUpdater
    from .rotation import sign_trust_update as sign_trust_update

#: Where each public name is defined: the module imported on its first use.
_DEFINED_IN: dict[str, str] = {
    "RootKey": "anchors",
    "VehicleAnchors": "anchors",
    "ChainDenial": "chain",
    "ConsentVerifier": "chain",
    "GrantCache": "chain",
    "ResolvedChain": "chain",
    "UpdateRefused": "errors",
    "Grant": "grant",
    "Scope": "grant",
    "access_mask": "grant",
    "decode_grant": "grant",
    "encode_chain": "grant",
    "grant_digest": "grant",
    "make_grant": "grant",
    "narrow": "grant",
    "root_scope": "grant",
    "sign_delegation": "grant",
    "sign_root_grant": "grant",
    "vehicle_tag": "grant",
    "RevocationList": "revocation",
    "RevocationState": "revocation",
    "sign_revocation_list": "revocation",
    "KemKeyEntry": "rotation",
    "KeyEntry": "rotation",
    "Role": "rotation",
    "TrustUpdate": "rotation",
    "TrustUpdater": "rotation",
    "sign_trust_update": "rotation",
}

#: The modules ``import trunkkey.consent`` used to load as a side effect.
_SUBMODULES = frozenset({"anchors", "chain", "errors", "grant", "revocation", "rotation"})


__getattr__, __dir__ = _lazy_names(globals(), _DEFINED_IN, _SUBMODULES)


__all__ = [
    "ChainDenial",
    "ConsentVerifier",
    "Grant",
    "GrantCache",
    "KemKeyEntry",
    "KeyEntry",
    "ResolvedChain",
    "RevocationList",
    "RevocationState",
    "Role",
    "RootKey",
    "Scope",
    "TrustUpdate",
    "TrustUpdater",
    "UpdateRefused",
    "VehicleAnchors",
    "access_mask",
    "decode_grant",
    "encode_chain",
    "grant_digest",
    "make_grant",
    "narrow",
    "root_scope",
    "sign_delegation",
    "sign_revocation_list",
    "sign_root_grant",
    "sign_trust_update",
    "vehicle_tag",
]
