"""``simulate``: the delivery story that ships in the package, told in a few lines.

Only this story runs: a command that executed ``examples/simulate_delivery.py``
from the current directory would run whatever file someone planted there.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..claims import Action
from ..clock import ManualClock
from ..issuer import Issuer
from ..keys import SigningKey
from ..ledger import MemoryLedger
from ..reasons import Reason
from ..trust import TrustedKey, TrustStore
from ..verifier import Verifier
from ._io import EXIT_DENIED, EXIT_OK, Command, Output
from ._show import utc


def _simulate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--builtin", action="store_true",
                   help="accepted for older scripts: the story is always the one in the package")


def _simulate(args: argparse.Namespace, out: Output) -> int:
    del args
    steps = builtin_story()
    ok = all(step["ok"] for step in steps)
    out.data({"source": "builtin", "steps": steps, "ok": ok})
    out.line("built-in story (the full one: python examples/simulate_delivery.py in a checkout):")
    for step in steps:
        mark = "ok " if step["ok"] else "BAD"
        out.line(f"[{mark}] {step['time']}  {step['what']}: {step['reason']}")
    return EXIT_OK if ok else EXIT_DENIED


def builtin_story() -> list[dict[str, Any]]:
    """Mint one trunk token, open once, and show the refusals the core issue lists.

    Each step is one object: when (``at`` in Unix seconds, ``time`` as text),
    what was tried (``what``, ``vehicle``, ``action``), what the car decided
    (``allowed``, ``reason``, ``detail``) and whether that is what the story
    expects (``expected``, ``ok``).
    """
    start = 1_780_000_000  # 2026-05-28 20:26:40 UTC: any fixed time will do
    clock = ManualClock(start)
    key = SigningKey.generate()
    issuer = Issuer(key, "shop.example", clock=clock)
    verifier = Verifier(
        trust_store=TrustStore([TrustedKey.create(key.public_key, "shop.example")]),
        ledger=MemoryLedger(), clock=clock,
    )
    car = "VIN-WAUZZZ-0001"
    token = issuer.mint(vehicle_id=car, action=Action.TRUNK, not_before=start,
                        expires=start + 4 * 3600)
    late = issuer.mint(vehicle_id=car, action=Action.TRUNK, not_before=start,
                       expires=start + 3600)
    other = issuer.mint(vehicle_id="VIN-OTHER-0002", action=Action.TRUNK, not_before=start,
                        expires=start + 3600)
    story: list[tuple[int, str, bytes, str, Action, Reason]] = [
        (600, "courier opens the trunk", token, car, Action.TRUNK, Reason.ALLOWED),
        (660, "same token again", token, car, Action.TRUNK, Reason.ALREADY_USED),
        (700, "trunk token asked to unlock the cabin", token, car, Action.UNLOCK_RELOCK,
         Reason.WRONG_ACTION),
        (720, "token for another car", other, car, Action.TRUNK, Reason.WRONG_VEHICLE),
        (2 * 3600, "a 1-hour token, 2 hours on", late, car, Action.TRUNK, Reason.EXPIRED),
    ]
    steps = []
    for offset, what, presented, vehicle, action, expected in story:
        clock.set(start + offset)
        decision = verifier.verify(presented, vehicle_id=vehicle, action=action)
        steps.append({
            "at": clock.now(), "time": utc(clock.now()), "what": what, "vehicle": vehicle,
            "action": action.value, "allowed": decision.allowed,
            "reason": decision.reason.value, "detail": decision.detail,
            "expected": expected.value, "ok": decision.reason is expected,
        })
    return steps


COMMANDS = (
    Command(
        name="simulate",
        help="run the delivery story: one token opens the trunk once",
        examples=("trunkkey simulate", "trunkkey simulate --json"),
        configure=_simulate_args,
        run=_simulate,
    ),
)
