"""``keygen`` and ``pubkey``: make a key pair, show the public half of a private key."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..keys import Algorithm, SigningKey, VerificationKey
from ._io import (
    EXIT_OK,
    CliError,
    Command,
    Output,
    load_signing_key,
    password_flag,
    read_password_file,
)
from ._show import key_summary, print_key, public_file_bytes

#: ``--alg`` choices: the classical keys, and the post-quantum ones of issue 15.
_ALGORITHMS = {
    "ed25519": Algorithm.EDDSA, "p256": Algorithm.ES256,
    "mldsa44": Algorithm.MLDSA44, "eddsa-mldsa65": Algorithm.EDDSA_MLDSA65,
    "es256-mldsa65": Algorithm.ES256_MLDSA65,
}


def _keygen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alg", choices=tuple(_ALGORITHMS), default="ed25519",
                   help="Ed25519 (default), ECDSA P-256, or a post-quantum key: ML-DSA-44 "
                        "(a token key) or the EdDSA+ML-DSA-65 or ES256+ML-DSA-65 composite "
                        "(a hybrid root); a post-quantum key is written as a COSE_Key, "
                        "never encrypted")
    p.add_argument("--kem", choices=("x25519", "mlkem768-x25519"), default=None,
                   help="make a car's KEM key instead, which opens tokens sealed to it "
                        "(x25519: HPKE-4; mlkem768-x25519: the post-quantum hybrid); the "
                        "public key is what a backend seals to")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="where to write the private key (PEM or, post-quantum, COSE_Key; "
                        "created with mode 0600)")
    p.add_argument("--public-out", metavar="PATH",
                   help="also write the public key here (PEM or, post-quantum, COSE_Key "
                        "hex; world-readable)")
    p.add_argument("--force", action="store_true", help="replace an existing key file")
    p.add_argument("--password-file", metavar="PATH",
                   help="encrypt the private key with the password in this file")


def _keygen(args: argparse.Namespace, out: Output) -> int:
    algorithm = _ALGORITHMS[args.alg]
    for target in (args.out, args.public_out):
        if target and not args.force and Path(target).exists():
            raise CliError(f"{target!r} exists; pass --force to replace it")
    if args.kem is not None:
        return _kem_keygen(args, out)
    if algorithm.post_quantum and args.password_file:
        # No PEM (hence no PKCS#8 encryption) for ML-DSA here: refuse rather than
        # write in the clear a key the user asked to have encrypted.
        raise CliError(f"the {algorithm.cose_name} key file is a COSE_Key and cannot be "
                       "encrypted: keep it in a key store, or drop --password-file")
    password = read_password_file(args.password_file) if args.password_file else None
    key = SigningKey.generate(algorithm)
    key.save(args.out, password=password, overwrite=args.force)
    if args.public_out:
        _write_public(Path(args.public_out), key.public_key, force=args.force)
    out.data({"private_key_file": args.out, "public_key_file": args.public_out,
              **key_summary(key.public_key)})
    out.line(f"private key written to {args.out} (mode 0600"
             f"{', encrypted' if password else ''})")
    if args.public_out:
        out.line(f"public key written to {args.public_out}")
    print_key(out, key.public_key)
    return EXIT_OK


def _kem_keygen(args: argparse.Namespace, out: Output) -> int:
    from ..sealed import CarKemKey  # noqa: PLC0415 -- loads cryptography and pyhpke
    from ..sealed_pq import CarHybridKemKey  # noqa: PLC0415

    if args.password_file:
        raise CliError("a car's KEM key file is not encrypted: it lives in the car's key store")
    hybrid = args.kem == "mlkem768-x25519"
    key = CarHybridKemKey.generate() if hybrid else CarKemKey.generate()
    suite = "HPKE-MLKEM768-X25519" if hybrid else "HPKE-4"
    key.save(args.out, overwrite=args.force)
    public = key.public_key
    if args.public_out:
        _write_public(Path(args.public_out), public.to_pem(), force=args.force)
    out.data({"private_key_file": args.out, "public_key_file": args.public_out,
              "kem": args.kem, "suite": suite, "public_key_bytes": len(public.raw)})
    out.line(f"car KEM key ({args.kem}, for {suite}) written to {args.out} (mode 0600)")
    if args.public_out:
        out.line(f"public key written to {args.public_out}: seal tokens to it with --seal-to")
    return EXIT_OK


def _write_public(path: Path, key: VerificationKey | bytes, *, force: bool) -> None:
    try:
        with path.open("wb" if force else "xb") as f:
            f.write(key if isinstance(key, bytes) else public_file_bytes(key))
    except FileExistsError:
        raise CliError(f"{str(path)!r} exists; pass --force to replace it") from None
    except OSError as exc:
        raise CliError(f"cannot write {str(path)!r}: {exc.strerror}") from None


def _pubkey_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", required=True, metavar="PATH", help="private key file")
    p.add_argument("--format", choices=("text", "pem", "cose-hex"), default="text",
                   help="text (default), or just the PEM or COSE_Key hex, for a file")
    password_flag(p)


def _pubkey(args: argparse.Namespace, out: Output) -> int:
    public = load_signing_key(args.key, password_file=args.password_file).public_key
    out.data(key_summary(public))
    if args.format == "pem":
        if public.algorithm.post_quantum:
            raise CliError(f"the {public.algorithm.cose_name} key has no PEM here; "
                           "use --format cose-hex")
        out.line(public.to_pem().decode("ascii").rstrip())
    elif args.format == "cose-hex":
        out.line(public.to_cose_key().hex())
    else:
        print_key(out, public)
    return EXIT_OK


COMMANDS = (
    Command(
        name="keygen",
        help="make a signing key pair; write the private key owner-only",
        examples=(
            "trunkkey keygen --out issuer.key --public-out issuer.pub",
            "trunkkey keygen --alg p256 --out handheld.key --public-out handheld.pub",
            "trunkkey keygen --out issuer.key --password-file pw.txt   # encrypted PEM",
            "trunkkey keygen --alg mldsa44 --out issuer-pq.key --public-out issuer-pq.pub",
            "trunkkey keygen --alg eddsa-mldsa65 --out root.key --public-out root.pub",
            "trunkkey keygen --alg es256-mldsa65 --out root.key --public-out root.pub",
            "trunkkey keygen --kem x25519 --out car-kem.key --public-out car-kem.pub",
        ),
        configure=_keygen_args,
        run=_keygen,
    ),
    Command(
        name="pubkey",
        help="print the public key and kid of a private key file",
        examples=(
            "trunkkey pubkey --key issuer.key",
            "trunkkey pubkey --key issuer.key --format pem > issuer.pub",
            "TRUNKKEY_KEY_PASSWORD=... trunkkey pubkey --key encrypted.key --format cose-hex",
        ),
        configure=_pubkey_args,
        run=_pubkey,
    ),
)
