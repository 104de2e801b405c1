"""``trunkkey log verify|report``: the owner checks the car's history in plain
words, and reads it as one self-contained page in a real browser."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from trunkkey import Location, Reason, SigningKey
from trunkkey.audit import HistoryExport
from trunkkey.cli import main
from trunkkey.testing.vehicle import Car, World, courier_gossip, courier_present

T0 = 1_800_000_000
CHROMIUM = Path("/usr/bin/chromium")


def _history(tmp: Path) -> tuple[Car, World]:
    world = World(start=T0, state_dir=tmp / "state")
    car = world.enrol_car("VIN-1")
    fence = world.park(car, Location.from_degrees(48.137154, 11.576124))
    courier = SigningKey.generate()
    for _ in range(2):
        token = world.mint(car, courier=courier, geofence=fence)
        assert courier_present(car, token, courier).reason is Reason.ALLOWED
        world.advance(45)
        car.unit.trunk_closed()
        world.advance(3600)
    late = world.mint(car, courier=courier, geofence=fence, window=60)
    world.advance(120)
    assert courier_present(car, late, courier).reason is Reason.EXPIRED
    assert courier_gossip(world, car).accepted
    return car, world


def _files(tmp: Path, export: HistoryExport, car: Car) -> tuple[Path, Path]:
    history = tmp / "history.json"
    history.write_text(export.to_json(), encoding="utf-8")
    key = tmp / "car.pub"
    key.write_bytes(car.unit.public_key.to_pem())
    return history, key


def _run(*argv: str) -> tuple[int, str]:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(list(argv))
    return code, buffer.getvalue()


def test_verify_says_what_was_proven(tmp_path: Path) -> None:
    car, world = _history(tmp_path)
    export = world.history.export("VIN-1", car.unit.receipts)
    history, key = _files(tmp_path, export, car)
    code, text = _run("log", "verify", str(history), "--vehicle-key", str(key))
    assert code == 0, text
    assert "NOT proven" not in text
    assert f"{len(export.entries)} of {len(export.entries)} entries are covered" in text
    assert "2 delivery receipts each prove their opening" in text


def test_verify_says_what_was_not_proven_when_an_entry_was_deleted(tmp_path: Path) -> None:
    car, world = _history(tmp_path)
    export = world.history.export("VIN-1", car.unit.receipts)
    entries = list(export.entries)
    del entries[3]  # someone removed an attempt from the owner's copy
    tampered = HistoryExport(export.vehicle_id, export.checkpoints, tuple(entries),
                             export.receipts)
    history, key = _files(tmp_path, tampered, car)
    code, text = _run("--json", "log", "verify", str(history), "--vehicle-key", str(key))
    assert code == 1
    result = json.loads(text)
    assert not result["ok"]
    reasons = {f["reason"] for f in result["findings"] if not f["proven"]}
    assert "log_fork" in reasons or "log_gap" in reasons


def test_verify_refuses_a_checkpoint_from_another_key(tmp_path: Path) -> None:
    car, world = _history(tmp_path)
    export = world.history.export("VIN-1")
    history, _ = _files(tmp_path, export, car)
    other = tmp_path / "other.pub"
    other.write_bytes(SigningKey.generate().public_key.to_pem())
    code, text = _run("log", "verify", str(history), "--vehicle-key", str(other))
    assert code == 1
    assert "not signed by this car" in text
    assert "[checkpoint_invalid]" in text


def _report(tmp_path: Path) -> tuple[Path, HistoryExport]:
    car, world = _history(tmp_path)
    export = world.history.export("VIN-1", car.unit.receipts)
    history, key = _files(tmp_path, export, car)
    page = tmp_path / "report.html"
    code, text = _run("log", "report", str(history), "--vehicle-key", str(key),
                      "--out", str(page))
    assert code == 0, text
    return page, export


def test_the_report_is_one_self_contained_page(tmp_path: Path) -> None:
    page, export = _report(tmp_path)
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    # Nothing fetched: no URL and no reference to another file anywhere.
    assert not re.search(r"(?i)(src|href)\s*=|url\(|@import|https?:", html)
    assert html.count('class="entry') == len(export.entries)
    assert "Everything in this history is proven." in html
    assert "Access refused: the code had expired" in html
    assert html.count("Trunk opened") == 2


def _browser() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail("headless Chromium (/usr/bin/chromium) is missing: .ci/run installs it")
    pytest.skip("headless Chromium (Debian package 'chromium') is not installed")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    browser = _browser()
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_a_real_browser_shows_every_attempt_on_the_timeline(tmp_path: Path) -> None:
    _browser()
    page, export = _report(tmp_path)
    shown = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert shown.returncode == 0, shown.stderr[-2000:]
    dom = shown.stdout
    items = re.findall(r'<li class="entry[^"]*" data-index="(\d+)" data-kind="([a-z_]+)" '
                       r'data-proven="(yes|no)"', dom)
    assert [int(i) for i, _, _ in items] == list(range(len(export.entries)))
    kinds = [k for _, k, _ in items]
    assert kinds.count("token_allowed") == 2
    assert kinds.count("token_denied") == 1
    assert kinds.count("relocked") == 2
    assert {p for _, _, p in items} == {"yes"}
    assert "Everything in this history is proven." in dom
    screenshot = tmp_path / "report.png"
    shot = _chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1000,1400",
                     page.as_uri())
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000  # a rendered page, kept as the CI artifact
    assert shutil.which(str(CHROMIUM)) is not None
