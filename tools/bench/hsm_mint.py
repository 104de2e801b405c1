"""Minting with a key in a PKCS#11 token (SoftHSM2) beside the same with a key in memory.

Makes a SoftHSM2 token in a temporary directory (its own ``SOFTHSM2_CONF``),
generates an Ed25519 and a P-256 key inside it, non-extractable, and times
``Issuer.mint`` with each, then with a :class:`~trunkkey.SigningKey` of the
same algorithm. Each figure is the best of ``--rounds`` rounds of ``--mints``
mints. Needs ``softhsm2`` (Debian) and the ``pkcs11`` extra.

    python -m tools.bench.hsm_mint                # 3 rounds of 2,000 mints
    python -m tools.bench.hsm_mint --mints 50     # smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

LIBRARY = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN, PIN = "bench", "bench-pin-0000"  # a throwaway token in a temporary directory
ED25519_OID = bytes.fromhex("06032b6570")


def _make_token(home: Path) -> None:
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read when the module first loads, below
    subprocess.run(  # noqa: S603 -- our fixed arguments, no input
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN,  # noqa: S607
         "--pin", PIN, "--so-pin", PIN], check=True, capture_output=True,
    )
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism
    from pkcs11.util.ec import encode_named_curve_parameters

    with pkcs11.lib(LIBRARY).get_token(token_label=TOKEN).open(user_pin=PIN, rw=True) as s:
        for label, key_type, mechanism, curve in (
            ("ed25519", KeyType.EC_EDWARDS, Mechanism.EC_EDWARDS_KEY_PAIR_GEN, ED25519_OID),
            ("p256", KeyType.EC, Mechanism.EC_KEY_PAIR_GEN,
             encode_named_curve_parameters("secp256r1")),
        ):
            s.create_domain_parameters(key_type, {Attribute.EC_PARAMS: curve}, local=True) \
                .generate_keypair(store=True, label=label, mechanism=mechanism,
                                  private_template={Attribute.EXTRACTABLE: False,
                                                    Attribute.SENSITIVE: True})


def _rate(key: object, mints: int, rounds: int) -> float:
    from trunkkey import Issuer, ManualClock

    clock = ManualClock(1_800_000_000)
    issuer = Issuer(key, "retailer.example", clock=clock)  # type: ignore[arg-type]
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(mints):
            issuer.mint(vehicle_id="1HGCM82633A004352", action="trunk",
                        not_before=clock.now(), expires=clock.now() + 3600)
        best = min(best, time.perf_counter() - start)
    return mints / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mints", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from trunkkey import Algorithm, Pkcs11Token, SigningKey

    with tempfile.TemporaryDirectory(prefix="trunkkey-hsm-bench-") as home:
        _make_token(Path(home))
        with Pkcs11Token.open(library=LIBRARY, token_label=TOKEN, pin=PIN) as token:
            for label, algorithm in (("ed25519", Algorithm.EDDSA), ("p256", Algorithm.ES256)):
                in_token = _rate(token.signer(label), args.mints, args.rounds)
                in_memory = _rate(SigningKey.generate(algorithm), args.mints, args.rounds)
                print(f"{algorithm.cose_name:6} mints/s: SoftHSM2 {in_token:8,.0f}   "
                      f"in memory {in_memory:8,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
