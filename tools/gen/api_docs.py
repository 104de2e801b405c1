"""Write the generated parts of the docs, so that they can never drift from the code.

* ``docs/api.md``: the reference for every name in ``trunkkey.__all__``, from
  signatures and docstrings.
* the examples section of ``docs/token-format.md`` (between the
  ``BEGIN GENERATED EXAMPLES`` / ``END GENERATED EXAMPLES`` markers): real
  tokens from a fixed key, shown in hex and in CBOR diagnostic notation.

Usage::

    python -m tools.gen.api_docs            # (re)write both
    python -m tools.gen.api_docs --check    # exit 1 if either is stale

``tests/test_docs.py`` runs the check.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import hashlib
import inspect
import re
import sys
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import trunkkey
from tools import ROOT
from trunkkey import Action, Geofence, Issuer, ManualClock, Purpose, SigningKey, TokenClaims
from trunkkey import cbor as tk_cbor
from trunkkey.proof import make_proof, proof_aad

API_MD = ROOT / "docs" / "api.md"
FORMAT_MD = ROOT / "docs" / "token-format.md"
BEGIN = "<!-- BEGIN GENERATED EXAMPLES: python -m tools.gen.api_docs -->"
END = "<!-- END GENERATED EXAMPLES -->"

# -- API reference --------------------------------------------------------------


def _markdown(text: str) -> str:
    """reStructuredText roles and literals, as Markdown code spans."""
    text = re.sub(r":[a-z]+:`~?(?:[\w.]*\.)?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def _doc(obj: object) -> str:
    return _markdown(inspect.cleandoc(obj.__doc__ or "").strip())


def _first_paragraph(obj: object) -> str:
    return _doc(obj).split("\n\n")[0].replace("\n", " ")


def _signature(obj: Any) -> str:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    # Private parameters (test hooks) are not API, and their defaults print addresses.
    public = [
        p.replace(annotation=_Raw(p.annotation)) if isinstance(p.annotation, str) else p
        for p in signature.parameters.values()
        if not p.name.startswith("_")
    ]
    if not public and signature.parameters:
        return ""  # not constructed directly (e.g. SigningKey): the classmethods say how
    ret = signature.return_annotation
    text = str(signature.replace(
        parameters=public,
        return_annotation=_Raw(ret) if isinstance(ret, str) else ret,
    ))
    return re.sub(r"<(\w+\.\w+): [^>]+>", r"\1", text)  # enum defaults as their names


class _Raw:
    """An annotation string printed without quotes."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _own_members(cls: type) -> list[tuple[str, Any]]:
    members = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (property, staticmethod, classmethod)) or inspect.isfunction(value):
            members.append((name, value))
    return members


def _describe_class(name: str, cls: type) -> list[str]:
    kind = "class"
    if issubclass(cls, enum.Enum):
        kind = "enum"
    elif issubclass(cls, BaseException):
        bases = ", ".join(b.__name__ for b in cls.__bases__)
        kind = f"exception ({bases})"
    elif getattr(cls, "_is_protocol", False):
        kind = "protocol"
    elif dataclasses.is_dataclass(cls):
        kind = "frozen dataclass" if cls.__dataclass_params__.frozen else "dataclass"  # type: ignore[attr-defined]
    lines = [f"## `{name}`", "", f"*{kind}*", ""]
    if _doc(cls):
        lines += [_doc(cls), ""]
    if issubclass(cls, enum.Enum):
        lines += ["| member | value |", "|---|---|"]
        lines += [f"| `{m.name}` | `{m.value!r}` |" for m in cls]
        lines.append("")
    elif dataclasses.is_dataclass(cls):
        fields = [f for f in dataclasses.fields(cls) if not f.name.startswith("_")]
        lines += ["| field | type |", "|---|---|"]
        lines += [f"| `{f.name}` | `{f.type}` |" for f in fields]
        lines.append("")
    elif not issubclass(cls, BaseException) and "__init__" in vars(cls):
        constructor = _signature(cls)
        if constructor:
            lines += [f"`{name}{constructor}`", ""]
    for member, value in _own_members(cls):
        if isinstance(value, property):
            lines.append(f"- `.{member}` (property): {_first_paragraph(value)}".rstrip(": "))
            continue
        function = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        sig = _signature(function)
        sig = re.sub(r"^\((self|cls)(, )?", "(", sig)
        prefix = "classmethod " if isinstance(value, classmethod) else ""
        lines.append(f"- {prefix}`{member}{sig}`: {_first_paragraph(value)}".rstrip(": "))
    if lines[-1] != "":
        lines.append("")
    return lines


def api_markdown() -> str:
    lines = [
        "# API reference",
        "",
        "<!-- Generated by `python -m tools.gen.api_docs` from the docstrings; "
        "do not edit by hand. -->",
        "",
        "Every public name of `trunkkey` (its `__all__`), in alphabetical order. Anything "
        "not listed here is internal and may change. For the command line see "
        "[cli.md](cli.md); for test helpers, [testing.md](testing.md).",
        "",
        "| name | what |",
        "|---|---|",
    ]
    names = sorted(trunkkey.__all__, key=str.lower)
    for name in names:
        summary = _first_paragraph(getattr(trunkkey, name))
        lines.append(f"| [`{name}`](#{name.lower()}) | {summary} |")
    lines.append("")
    for name in names:
        obj = getattr(trunkkey, name)
        if inspect.isclass(obj):
            lines += _describe_class(name, obj)
        elif inspect.ismodule(obj):
            lines += [f"## `{name}`", "", "*module*", "", _first_paragraph(obj), ""]
        else:
            lines += [f"## `{name}`", "", "*function*", "", f"`{name}{_signature(obj)}`", ""]
            if _doc(obj):
                lines += [_doc(obj), ""]
    return "\n".join(lines).rstrip() + "\n"


# -- CBOR diagnostic notation ---------------------------------------------------


def diag(value: Any, indent: str = "", notes: dict[int, str] | None = None) -> str:
    """RFC 8949 §8 diagnostic notation; ``notes`` adds a ``/ comment /`` per map key."""
    if isinstance(value, bool) or value is None:
        raise TypeError("trunkkey objects have no simple values")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return f"h'{value.hex()}'"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    inner = indent + "  "
    if isinstance(value, list):
        if all(isinstance(v, int) for v in value):
            return "[" + ", ".join(str(v) for v in value) + "]"
        return "[\n" + ",\n".join(inner + diag(v, inner) for v in value) + "\n" + indent + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = []
        for key, member in value.items():  # decode order = deterministic order
            note = f" / {notes[key]} /" if notes and key in notes else ""
            items.append(f"{inner}{diag(key)}: {diag(member, inner)}{note}")
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    raise TypeError(type(value).__name__)


_HEADER_NOTES = {1: "alg", 4: "kid", 16: "typ"}
_CLAIM_NOTES = {
    1: "iss", 3: "aud", 4: "exp", 5: "nbf", 6: "iat", 7: "cti", 8: "cnf",
    -65537: "access", -65538: "geofence", -65539: "order",
}


def _example_key(label: str) -> SigningKey:
    seed = hashlib.sha256(f"trunkkey docs example {label}".encode()).digest()
    pem = ed25519.Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey.from_pem(pem)


def _split(token: bytes) -> tuple[bytes, bytes, bytes]:
    item = tk_cbor.decode(token[1:])  # peel tag 18 (0xd2) off first
    return item[0], item[2], item[3]


def _envelope(token: bytes) -> str:
    protected, payload, signature = _split(token)
    header = diag(tk_cbor.decode(protected), "  ", _HEADER_NOTES)
    claims = diag(tk_cbor.decode(payload), "  ", _CLAIM_NOTES)
    return (
        "18([\n"
        f"  / protected / << {header} >>,\n"
        "  / unprotected / {},\n"
        f"  / payload / << {claims} >>,\n"
        f"  / signature / {diag(signature)}\n"
        "])"
    )


def _wrap_hex(data: bytes, width: int = 96) -> str:
    text = data.hex()
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


def examples_markdown() -> str:
    issuer_key = _example_key("issuer")
    device_key = _example_key("courier device")
    start = 1_777_885_200  # 2026-05-04 09:00:00 UTC
    issuer = Issuer(issuer_key, "shop.example", clock=ManualClock(start - 600))
    vehicle = "WAUZZZ8V0KA000001"
    base = TokenClaims(
        issuer="shop.example", vehicle_id=vehicle, not_before=start,
        expires=start + 4 * 3600, issued_at=start - 600,
        token_id=hashlib.sha256(b"example 1").digest()[:16],
        action=Action.TRUNK, purpose=Purpose.DELIVERY,
    )
    plain = issuer.sign_claims(base)
    full = issuer.sign_claims(dataclasses.replace(
        base, token_id=hashlib.sha256(b"example 2").digest()[:16],
        geofence=Geofence.from_degrees(48.1371540, 11.5761240, 50),
        courier_key=device_key.public_key, order_ref=b"112-4408817-2231408",
    ))
    challenge = bytes(range(16))
    proof = make_proof(device_key, token=full, vehicle_id=vehicle, challenge=challenge)
    p_protected, p_payload, p_signature = _split(proof)
    aad_items = tk_cbor.decode(proof_aad(full, vehicle))
    out = [
        BEGIN,
        "",
        "Both examples are signed by the Ed25519 key whose seed is "
        "`SHA-256(\"trunkkey docs example issuer\")`; Ed25519 is deterministic, so "
        "`tools/gen/api_docs.py` reproduces these bytes exactly and the tests check them.",
        "",
        f"Issuer public key, COSE_Key: `{issuer_key.public_key.to_cose_key().hex()}` "
        f"(kid `{issuer_key.kid.hex()}`).",
        "",
        f"### Example 1: a trunk token, no geofence, no `cnf` ({len(plain)} bytes)",
        "",
        "```text",
        _wrap_hex(plain),
        "```",
        "",
        "```cbor-diag",
        _envelope(plain),
        "```",
        "",
        "`access` 5 = `0x01` (trunk) | `0x04` (delivery). The window is 09:00 to 13:00 UTC on "
        "4 May 2026; it was issued at 08:50. Verified at 10:00 by the car it names:",
        "",
        "```python",
        "from trunkkey import ManualClock, MemoryLedger, TrustedKey, TrustStore, "
        "VerificationKey, Verifier",
        "",
        f'EXAMPLE_1_HEX = "{plain.hex()}"',
        f'ISSUER_COSE_KEY = "{issuer_key.public_key.to_cose_key().hex()}"',
        "",
        "issuer_key = VerificationKey.from_cose_key(bytes.fromhex(ISSUER_COSE_KEY))",
        "verifier = Verifier(",
        '    trust_store=TrustStore([TrustedKey.create(issuer_key, "shop.example")]),',
        f"    ledger=MemoryLedger(), clock=ManualClock({start + 3600}),",
        ")",
        "decision = verifier.verify(",
        f'    bytes.fromhex(EXAMPLE_1_HEX), vehicle_id="{vehicle}", action="trunk"',
        ")",
        'assert decision.reason == "allowed"',
        "```",
        "",
        f"### Example 2: with geofence, `cnf` and order reference ({len(full)} bytes)",
        "",
        "```text",
        _wrap_hex(full),
        "```",
        "",
        "```cbor-diag",
        _envelope(full),
        "```",
        "",
        "The geofence is 50 m around 48.1371540 N, 11.5761240 E. The courier device key "
        f"(kid `{device_key.kid.hex()}`, seed `SHA-256(\"trunkkey docs example courier "
        "device\")`) sits in `cnf` as a bare COSE_Key (kty, crv, x).",
        "",
        f"### Example 3: the courier's proof for example 2 ({len(proof)} bytes)",
        "",
        f"The car's challenge is `{challenge.hex()}`. The external AAD is "
        f"`[vehicle_id, SHA-256(token)]` = `[{diag(aad_items[0])}, {diag(aad_items[1])}]`.",
        "",
        "```cbor-diag",
        "18([\n"
        f"  / protected / << {diag(tk_cbor.decode(p_protected), '  ', _HEADER_NOTES)} >>,\n"
        "  / unprotected / {},\n"
        f"  / payload: the challenge / {diag(p_payload)},\n"
        f"  / signature / {diag(p_signature)}\n"
        "])",
        "```",
        "",
        END,
    ]
    return "\n".join(out)


def format_markdown(current: str) -> str:
    if BEGIN not in current or END not in current:
        raise SystemExit(f"{FORMAT_MD} lacks the generated-examples markers")
    head, _, rest = current.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + examples_markdown() + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    wanted = {
        API_MD: api_markdown(),
        FORMAT_MD: format_markdown(FORMAT_MD.read_text(encoding="utf-8")),
    }
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text("utf-8") != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run python -m tools.gen.api_docs")
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
