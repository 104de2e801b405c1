"""The public surface: every exported name imports, and nothing leaks by accident."""

from __future__ import annotations

import importlib
import subprocess
import sys

import trunkkey


def test_every_public_name_imports_and_is_listed() -> None:
    for name in trunkkey.__all__:
        assert getattr(trunkkey, name) is not None, name
    exported = {n for n in vars(trunkkey) if not n.startswith("_")}
    modules = {n for n, v in vars(trunkkey).items() if type(v) is type(trunkkey)}
    assert exported - modules == set(trunkkey.__all__)


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("trunkkey").joinpath("py.typed").is_file()


def test_importing_trunkkey_pulls_in_no_test_or_server_dependency() -> None:
    code = (
        "import sys, trunkkey; "
        "bad = [m for m in ('hypothesis', 'pytest', 'redis', 'psycopg', 'cwt') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nothing_can_start_or_drive_a_car() -> None:
    # The vocabulary of the library has no such verbs: an Action is trunk or unlock-relock.
    assert {a.value for a in trunkkey.Action} == {"trunk", "unlock-relock"}
    for module_name in ("trunkkey.claims", "trunkkey.verifier", "trunkkey.issuer"):
        module = importlib.import_module(module_name)
        for name in dir(module):
            lowered = name.lower()
            assert not any(v in lowered for v in ("start", "drive", "ignition", "enrol")), name
