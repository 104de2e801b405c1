"""The three simulations run, and their stories are what they claim (outcomes, not exit codes)."""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from trunkkey import Reason


def load(name: str) -> ModuleType:
    # examples/ is on pytest's pythonpath: the bare name, as when run as a script.
    return importlib.import_module(name)


# -- simulate_delivery ---------------------------------------------------------

def test_delivery_story_happens_as_told(tmp_path: Path) -> None:
    sim = load("simulate_delivery")
    lines: list[str] = []
    checks = sim.run(str(tmp_path), lines.append)
    outcomes = {c.label: c.actual for c in checks}
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert outcomes["courier's token opens the trunk"] == "allowed"
    assert outcomes["only the trunk is open (trunk, doors)"] == "(True, False)"
    assert outcomes["a second try with the same token"] == "already_used"
    assert outcomes["a cabin unlock with a trunk token"] == "wrong_action"
    assert outcomes["a token for another car"] == "wrong_vehicle"
    assert outcomes["a late token (window over)"] == "expired"
    assert outcomes["pickup token opens the trunk"] == "allowed"
    assert outcomes["pickup receipt"] == "(return-pickup, timeout)"
    assert outcomes["no gap in the event sequence"] == "()"
    # The consent flow: a car that trusts only its carmaker, a two-link chain.
    assert outcomes["token under carrier -> retailer -> consent -> root opens the trunk"] == (
        "allowed"
    )
    assert outcomes["consent car relocked"] == "True"
    # Sealed with its chain inside (issue 15): nothing beside the ciphertext.
    assert outcomes["a sealed token carrying its chain opens the trunk"] == "allowed"
    assert outcomes["what an eavesdropper can name in a sealed token and its chain"] == (
        "nothing"
    )
    assert outcomes["the car applies the carried list, then refuses the chain"] == (
        "grant_revoked"
    )
    assert outcomes["revocation list held by the car"] == "1"
    # The story ends with the owner verifying the car's whole history.
    assert outcomes["the backend accepts the car's log"] == "None"
    assert outcomes["the owner's history is proven in full"] == "True"
    assert outcomes["attempts in the history (allowed, refused)"] == "(2, 4)"
    # Parcels (issue 19): the wrong parcel first, then the right one.
    assert outcomes["the wrong parcel is refused"] == "wrong_parcel"
    assert outcomes["the car stays locked"] == "True"
    assert outcomes["the token stays unspent"] == "0"
    assert outcomes["the right parcel opens the trunk"] == "allowed"
    assert outcomes["the receipt records a partial delivery of the first parcel"] == (
        "(1Z999AA10123456784, True)"
    )
    # Sealed tokens and presence (issue 15): found, opened, and nothing to name.
    # ... to a car whose root is hybrid: the token key it trusts was signed in by that root.
    assert outcomes["the car's root becomes the hybrid root"] == "allowed"
    assert outcomes["the hybrid root installs the retailer's new token key"] == "allowed"
    assert outcomes["a sealed token under the retailer's replaced key"] == "unknown_key"
    assert outcomes["the courier finds the car by its advertisement"] == "True"
    assert outcomes["the sealed token opens the trunk"] == "allowed"
    assert outcomes["what an eavesdropper can name in what it recorded"] == "nothing"
    assert outcomes["the next day, waiting for nobody, the car advertises"] == "None"
    # A car that makes its own KEM keys: endorsed by bound updates, rotated with overlap.
    assert outcomes["a token sealed to a proposed, unendorsed key"] == "cannot_open"
    assert outcomes["the carmaker endorses the car's first KEM key"] == "allowed"
    assert outcomes["a token sealed to the endorsed key opens the trunk"] == "allowed"
    assert outcomes["after the overlap (and a reboot), a token sealed to the old key"] == (
        "cannot_open"
    )
    assert outcomes["a token sealed to the new key opens the trunk"] == "allowed"
    story = "\n".join(lines)
    assert "Retailer verifies the signed receipt" in story
    assert "customer's phone <-" in story
    assert re.search(r"hands the car to its hybrid root \(EDDSA_MLDSA65, \d+ bytes\)", story)
    assert re.search(r"eavesdropper recorded \d+ bytes .* root is hybrid, EDDSA_MLDSA65: "
                     r"Ed25519 \+ ML-DSA-65", story)
    assert re.search(r"presentation = chain \d+ \+ token \d+ \+ proof \d+ = \d+ bytes", story)
    assert re.search(r"eavesdropper recorded \d+ bytes starting d08344a101182aa1235820 \(a "
                     r"sealed token with its consent chain inside, suite HPKE-4\): bytes only",
                     story)


def test_delivery_main_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert load("simulate_delivery").main([]) == 0
    out = capsys.readouterr().out
    assert "Carmaker enrols car" in out
    assert "checks as expected" in out
    assert "BAD" not in out


# -- attacks ---------------------------------------------------------------------

#: What each attack must produce, attempt by attempt, independent of the
#: expectations the example script writes down for itself.
ATTACKS = {
    "replay": ["allowed", "challenge_unknown", "already_used"],
    "other_car": ["wrong_vehicle"],
    "sniffed": ["proof_missing", "proof_invalid", "allowed"],
    "relay": ["challenge_expired", "allowed"],
    "window": ["not_yet_valid", "expired"],
    "moved": ["car_moved", "outside_geofence", "location_unknown"],
    "cabin": ["wrong_action", "allowed", "locked"],
    "clock": ["clock_untrusted", "refused", "refused", "clock_untrusted", "accepted", "expired"],
    "forged": ["bad_signature", "unknown_key", "wrong_type", "allowed"],
    "reboot": ["allowed", "already_used"],
    "crash": ["actuator_failed", "locked", "already_used"],
    "enrol": ["allowed", "wrong_action", "wrong_action", "wrong_action", "wrong_action"],
    # Parcels (issue 19): a signed scan is bound to its token and challenge.
    "replayed_scan": ["allowed", "proof_invalid", "wrong_parcel", "allowed"],
    # Consent chains (issue 4): a car whose only anchor is its carmaker's root.
    "widened_scope": ["scope_widened", "scope_widened", "allowed"],
    "expired_consent": ["grant_expired"],
    "revoked_consent": ["accepted", "grant_revoked", "grant_revoked"],
    "dead_zone": ["key_revoked", "1"],
    "carrier_outside_grant": ["scope_widened", "scope_widened", "scope_widened",
                              "wrong_vehicle"],
    "rolled_back_list": ["accepted", "rollback", "grant_revoked", "rollback"],
    "superseded": ["allowed", "superseded"],
    # Issue 15: a hybrid-rooted car refuses what a broken Ed25519 alone can sign.
    "classical_update_to_hybrid": ["accepted", "unknown_key", "alg_mismatch", "accepted"],
    # The car's access log (issue 16): each tampering detected with its reason.
    "deleted_entry": ["allowed", "log_gap", "accepted"],
    "forked_log": ["allowed", "accepted", "log_fork"],
    "rolled_back_log": ["allowed", "accepted", "log_rollback"],
    # Sealed tokens (issue 15): nothing to name in the bytes; what fails to open is refused.
    "tampered_sealed": ["nothing", "cannot_open", "cannot_open", "cannot_open", "allowed"],
    "sealed_other_car": ["cannot_open", "wrong_vehicle", "allowed"],
    # A chain sealed with its token adds no authority: re-sealing is anyone's.
    "resealed_chain": ["nothing", "chain_invalid", "malformed", "allowed"],
}


def test_every_attack_scene_is_tested() -> None:
    assert {key for key, *_ in load("attacks").SCENES} == set(ATTACKS)


@pytest.mark.parametrize("key", list(ATTACKS))
def test_attack_scene(key: str, tmp_path: Path) -> None:
    (scene,) = load("attacks").run(str(tmp_path), [key])
    assert [a.actual for a in scene.attempts] == ATTACKS[key]
    assert scene.car_safe, "the car was left open, or opened beyond the honest controls"
    assert scene.ok


def test_attacks_main_prints_every_scene(capsys: pytest.CaptureFixture[str]) -> None:
    assert load("attacks").main([]) == 0
    out = capsys.readouterr().out
    assert out.count("=> DEFENDED") == len(ATTACKS)
    assert f"{len(ATTACKS)}/{len(ATTACKS)} attacks defended." in out


def test_attacks_main_refuses_unknown_scene() -> None:
    with pytest.raises(SystemExit):
        load("attacks").main(["nonsense"])


# -- fleet --------------------------------------------------------------------------

@pytest.mark.parametrize("ledger", ["memory", "sqlite"])
def test_fleet_outcomes_are_as_expected(ledger: str) -> None:
    fleet = load("fleet")
    summary = fleet.run(cars=12, deliveries=2, hostile=0.5, procs=1, seed=7, ledger=ledger)
    assert summary.ok
    assert summary.mismatches == []
    assert summary.left_open == 0
    assert sum(summary.by_reason.values()) == summary.attempts
    assert sum(summary.by_scenario.values()) == summary.attempts
    assert summary.by_reason.get("allowed", 0) == summary.by_scenario.get("honest", 0)
    assert summary.receipts_verified == summary.by_scenario.get("honest", 0)
    assert summary.presents_per_second_wall > 0


def test_fleet_all_hostile_never_opens_except_the_replays_honest_half() -> None:
    fleet = load("fleet")
    summary = fleet.run(cars=18, deliveries=3, hostile=1.0, procs=1, seed=3, ledger="memory")
    assert summary.ok
    assert summary.by_reason.get("allowed", 0) == summary.by_scenario.get("replay", 0)
    # Every hostile scenario maps to its own reason code.
    for scenario, count in summary.by_scenario.items():
        if scenario != "honest":
            assert summary.by_reason[fleet.HOSTILE[scenario].value] >= count


def test_fleet_main_json_over_two_processes(capsys: pytest.CaptureFixture[str]) -> None:
    fleet = load("fleet")
    code = fleet.main(["--cars", "8", "--deliveries", "2", "--procs", "2", "--json",
                       "--ledger", "memory"])
    captured = capsys.readouterr()
    assert code == 0
    data = json.loads(captured.out)
    assert data["procs"] == 2
    assert data["cars"] == 8
    assert data["mismatches"] == []
    assert data["attempts"] >= 16
    assert "chunks" in captured.err  # the progress bar


def test_fleet_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert load("fleet").main(["--cars", "6", "--deliveries", "1", "--procs", "1",
                               "--no-progress", "--ledger", "memory"]) == 0
    out = capsys.readouterr().out
    assert "outcome (reason)" in out
    assert "verifications/s" in out


def test_fleet_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # matplotlib is an optional extra: both branches are asserted, never skipped.
    png = tmp_path / "fleet.png"
    code = load("fleet").main(["--cars", "6", "--deliveries", "1", "--procs", "1",
                               "--no-progress", "--ledger", "memory", "--plot", str(png)])
    if importlib.util.find_spec("matplotlib") is None:
        assert code == 2
        assert "needs matplotlib" in capsys.readouterr().err
    else:
        assert code == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fleet_plot_without_matplotlib_fails_before_the_run_with_an_installable_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = load("fleet")
    monkeypatch.setattr(fleet, "have_matplotlib", lambda: False)
    ran: list[object] = []
    monkeypatch.setattr(fleet, "run", lambda **kw: ran.append(kw))
    assert fleet.main(["--cars", "6", "--plot", "out.png"]) == 2
    captured = capsys.readouterr()
    assert ran == []
    assert captured.out == ""
    assert "pip install matplotlib" in captured.err
    assert "trunkkey[plot]" not in captured.err


def test_fleet_plot_tells_expected_refusals_from_unexpected_outcomes() -> None:
    fleet = load("fleet")
    summary = fleet.run(cars=12, deliveries=2, hostile=0.5, procs=1, seed=7, ledger="memory")
    split = fleet.outcome_split(summary)
    assert split["allowed"]["opened"] == summary.by_reason["allowed"]
    refused = sum(parts["refused"] for parts in split.values())
    assert refused == summary.attempts - summary.by_reason["allowed"] > 0
    assert all(parts["unexpected"] == 0 for parts in split.values())
    # One replay the car let through: an unexpected opening, shown apart.
    bad = dataclasses.replace(summary, unexpected_by_reason={"allowed": 1})
    assert fleet.outcome_split(bad)["allowed"]["unexpected"] == 1
    assert fleet.outcome_split(bad)["allowed"]["opened"] == summary.by_reason["allowed"] - 1
    colours = {colour for _, colour, _ in fleet.OUTCOME_KINDS}
    assert len(colours) == 3


class _Stream(io.StringIO):
    def __init__(self, *, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def test_fleet_progress_is_a_few_whole_lines_when_not_on_a_terminal() -> None:
    fleet = load("fleet")
    piped = _Stream(terminal=False)
    bar = fleet.Progress(200, enabled=True, stream=piped)
    for n in range(200):
        bar.step(n)
    text = piped.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10
    assert lines[-1] == "fleet: 200/200 chunks, 199 attempts"
    terminal = _Stream(terminal=True)
    bar = fleet.Progress(3, enabled=True, stream=terminal)
    for n in range(3):
        bar.step(n)
    assert terminal.getvalue().count("\r") == 3
    assert terminal.getvalue().endswith("\n")


def test_fleet_refuses_bad_counts() -> None:
    with pytest.raises(SystemExit):
        load("fleet").main(["--cars", "0"])
    with pytest.raises(SystemExit):
        load("fleet").main(["--hostile", "2"])


def test_fleet_reason_codes_exist() -> None:
    fleet = load("fleet")
    assert all(isinstance(reason, Reason) for reason in fleet.HOSTILE.values())
