"""How commands present keys, claims and times to a person or a machine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..claims import TokenClaims
from ..cose import Typ
from ..keys import Algorithm, VerificationKey
from ..parcels import ParcelRecord
from ._io import Output


def utc(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (out of range)"


def human_duration(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return sign + ("".join(parts) or "0s")


def alg_name(alg: int) -> str:
    """The COSE name of an algorithm number read from an UNVERIFIED header."""
    try:
        return Algorithm(alg).cose_name
    except ValueError:
        return "unknown"


def typ_name(typ: int) -> str:
    try:
        return f"trunkkey {Typ(typ).name.lower().replace('_', '-')}"
    except ValueError:
        return "not a trunkkey type"


def key_summary(key: VerificationKey) -> dict[str, Any]:
    """``pem`` is None for a post-quantum key, which has no PEM here."""
    return {
        "alg": key.algorithm.cose_name,
        "kid": key.kid.hex(),
        "cose_key": key.to_cose_key().hex(),
        "pem": None if key.algorithm.post_quantum else key.to_pem().decode("ascii"),
    }


def public_file_bytes(key: VerificationKey) -> bytes:
    """A public key file's content: PEM, or for a post-quantum key its COSE_Key as hex
    text (which every ``--trust``/``--public`` option reads)."""
    if key.algorithm.post_quantum:
        return key.to_cose_key().hex().encode("ascii") + b"\n"
    return key.to_pem()


def print_key(out: Output, key: VerificationKey) -> None:
    out.line(f"algorithm: {key.algorithm.cose_name}")
    out.line(f"kid:       {key.kid.hex()}")
    out.line(f"COSE_Key:  {key.to_cose_key().hex()}")
    if not key.algorithm.post_quantum:
        out.line(key.to_pem().decode("ascii").rstrip())


def claims_json(claims: TokenClaims) -> dict[str, Any]:
    g = claims.geofence
    return {
        "issuer": claims.issuer,
        "vehicle_id": claims.vehicle_id,
        "action": claims.action.value,
        "purpose": claims.purpose.value,
        "not_before": claims.not_before,
        "expires": claims.expires,
        "issued_at": claims.issued_at,
        "not_before_utc": utc(claims.not_before),
        "expires_utc": utc(claims.expires),
        "issued_at_utc": utc(claims.issued_at),
        "token_id": claims.token_id.hex(),
        "geofence": None if g is None else {
            "latitude": g.centre.latitude, "longitude": g.centre.longitude,
            "radius_m": g.radius_m,
        },
        "courier_key": None if claims.courier_key is None else {
            "alg": claims.courier_key.algorithm.cose_name,
            "kid": claims.courier_key.kid.hex(),
        },
        # As the text output shows it: the text, and its bytes in hex beside it.
        "order_ref": None if claims.order_ref is None else _order_text(claims.order_ref),
        "order_ref_hex": None if claims.order_ref is None else claims.order_ref.hex(),
        "parcels": None if claims.parcels is None else {
            "count": len(claims.parcels.commitments),
            "commitments": [c.hex() for c in claims.parcels.commitments],
        },
    }


def _order_text(order_ref: bytes) -> str:
    """An order reference as text; bytes that are not UTF-8 show as U+FFFD, as in text output."""
    return order_ref.decode("utf-8", "replace")


def parcels_json(record: ParcelRecord) -> dict[str, Any]:
    """Which parcels were scanned, as commitments: the identifiers are never shown."""
    return {"scanned": [c.hex() for c in record.scanned], "of": record.of,
            "partial": record.partial}


def print_claims(out: Output, claims: TokenClaims) -> None:
    out.line(f"issuer:      {claims.issuer}")
    out.line(f"vehicle:     {claims.vehicle_id}")
    out.line(f"action:      {claims.action.value}")
    out.line(f"purpose:     {claims.purpose.value}")
    out.line(f"not before:  {utc(claims.not_before)}  ({claims.not_before})")
    out.line(
        f"expires:     {utc(claims.expires)}  ({claims.expires}; "
        f"window {human_duration(claims.lifetime)})"
    )
    out.line(f"issued at:   {utc(claims.issued_at)}  ({claims.issued_at})")
    out.line(f"token id:    {claims.token_id.hex()}")
    g = claims.geofence
    if g is None:
        out.line("geofence:    none")
    else:
        out.line(
            f"geofence:    within {g.radius_m} m of "
            f"{g.centre.latitude:.7f},{g.centre.longitude:.7f}"
        )
    if claims.courier_key is None:
        out.line("courier key: none (anyone holding the token may present it)")
    else:
        out.line(
            f"courier key: {claims.courier_key.algorithm.cose_name} "
            f"kid {claims.courier_key.kid.hex()} (proof of possession required)"
        )
    if claims.order_ref is not None:
        shown = _order_text(claims.order_ref)
        out.line(f"order ref:   {claims.order_ref.hex()}  ({shown!r})")
    if claims.parcels is not None:
        out.line(f"parcels:     {len(claims.parcels.commitments)}, committed to "
                 "(a scan of them is required; identifiers are not in the token)")
