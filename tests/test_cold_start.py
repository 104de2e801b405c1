"""A car that wakes for one decision loads only what that decision needs.

``trunkkey``, ``trunkkey.ledger`` and ``trunkkey.consent`` import each public name on first use
(PEP 562). These tests keep it so: a fresh interpreter that imports trunkkey,
or verifies one token against a SQLite ledger, must not load the server
ledgers, their clients, consent or the command line; and every lazily
exported name is the very object its defining module holds, under the same
names a type checker reads.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import trunkkey
import trunkkey.consent
import trunkkey.ledger

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "trunkkey"

#: Modules the cold path (wake, one trusted key, a SQLite ledger, one plain
#: token) must never load: each costs start-up time and memory on every wake.
NEVER_ON_THE_COLD_PATH = (
    "psycopg",
    "redis",
    "trunkkey.ledger.postgres",
    "trunkkey.ledger.redis",
    "trunkkey.ledger._deadline",
    "psycopg_pool",
    "trunkkey.ledger.redis_async",
    "trunkkey.ledger.postgres_async",
    "trunkkey.verifier_async",
    "trunkkey.cli",
    "trunkkey.consent",
    "trunkkey.inspect",
    "trunkkey.testing",
    "trunkkey.vehicle",
    # A signing key in a hardware token is the backend's business, never the car's wake.
    "pkcs11",
    "trunkkey.pkcs11",
)

#: OpenSSL, twice over: ``cryptography`` (its key serialisation, for PEM and
#: DER that an Ed25519 car with a COSE_Key never reads) and the standard
#: library's ``hashlib`` and ``hmac``, whose import loads libcrypto (3.4 MiB
#: resident) for a SHA-256, BLAKE2b and comparison libsodium already has.
OPENSSL_MODULES = (
    "cryptography.hazmat.primitives.serialization",
    "cryptography",
    "_hashlib",
    "hashlib",
    "hmac",
)

#: Standard-library modules a decision does without: pathlib brings
#: urllib.parse and ipaddress (5 ms at each wake); a ledger path stays a string
#: until it is created, moved aside or asked for as ``ledger.path``; the locks
#: are ``_thread``'s, which ``threading.Lock`` is.
NOT_FOR_A_DECISION = ("pathlib", "urllib", "ipaddress", "threading")


def _loaded_by(code: str, *args: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def _banned(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded for n in names if m == n or m.startswith(n + "."))


def test_import_trunkkey_loads_no_ledger_backend_consent_cli_or_openssl() -> None:
    loaded = _loaded_by("import trunkkey")
    assert "trunkkey" in loaded
    assert _banned(loaded, NEVER_ON_THE_COLD_PATH + OPENSSL_MODULES) == []
    # Not even the core: every name waits for its first use (only the loader itself is there).
    assert sorted(m for m in loaded if m.startswith("trunkkey.")) == ["trunkkey._lazy"]


_ONE_DECISION = """
import sys
from trunkkey import (Action, Issuer, SigningKey, SqliteLedger, SystemClock, TrustedKey,
                      TrustStore, VerificationKey, Verifier)
key = SigningKey.generate()
now = SystemClock().now()
token = Issuer(key, "amazon").mint(vehicle_id="VIN1", action=Action.TRUNK,
                                   not_before=now - 60, expires=now + 600)
public = VerificationKey.from_cose_key(key.public_key.to_cose_key())
with SqliteLedger(sys.argv[1] + "/ledger.sqlite") as ledger:
    verifier = Verifier(trust_store=TrustStore([TrustedKey.create(public, "amazon")]),
                        ledger=ledger, clock=SystemClock())
    assert verifier.verify(token, vehicle_id="VIN1", action="trunk").allowed
"""


@pytest.fixture(scope="module")
def one_decision(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    return _loaded_by(_ONE_DECISION, str(tmp_path_factory.mktemp("car")))


def test_one_ed25519_decision_loads_no_server_ledger_consent_or_cli(
    one_decision: set[str],
) -> None:
    assert "trunkkey.verifier" in one_decision
    assert "trunkkey.ledger.sqlite" in one_decision
    assert _banned(one_decision, NEVER_ON_THE_COLD_PATH) == []
    # Needed only to examine a write-ahead log that looks damaged.
    assert _banned(one_decision, ("shutil", "tempfile")) == []
    # Decisions are logged only once the application has imported logging
    # itself: until then no handler can exist (trunkkey.observe._logger).
    assert _banned(one_decision, ("logging", "traceback")) == []


def test_one_ed25519_decision_loads_no_openssl_serialisation(one_decision: set[str]) -> None:
    assert _banned(one_decision, OPENSSL_MODULES) == []


def test_one_ed25519_decision_loads_no_pathlib_or_url_parsing(one_decision: set[str]) -> None:
    # What the dependencies load themselves is theirs, not trunkkey's: cbor2
    # before 6 imports threading, for one.
    floor = _loaded_by("import nacl.bindings, cbor2, sqlite3")
    assert _banned(one_decision - floor, NOT_FOR_A_DECISION) == []


def test_a_ledger_module_import_builds_no_schema_database() -> None:
    # The expected schemas are built from the DDL in memory when first
    # compared; an import that built all three cost three SQLite databases.
    _loaded_by(
        "from trunkkey.ledger import _sqlite_file\n"
        "assert _sqlite_file._schema_of.cache_info().currsize == 0\n"
    )


def test_a_normal_wake_builds_only_the_current_schema(tmp_path: Path) -> None:
    from trunkkey.ledger import SqliteLedger

    SqliteLedger(tmp_path / "car.sqlite").close()
    _loaded_by(
        "import sys\n"
        "from trunkkey.ledger import SqliteLedger, _sqlite_file\n"
        "SqliteLedger(sys.argv[1]).close()\n"
        "assert _sqlite_file._schema_of.cache_info().currsize == 1\n",
        str(tmp_path / "car.sqlite"),
    )


_CLI_VERIFY = """
import sys
from trunkkey import Action, Issuer, SigningKey, SystemClock
from trunkkey.cli import main
key = SigningKey.generate()
with open(sys.argv[1] + "/issuer.cose", "wb") as f:
    f.write(key.public_key.to_cose_key())
now = SystemClock().now()
token = Issuer(key, "amazon").mint(vehicle_id="VIN1", action=Action.TRUNK,
                                   not_before=now - 60, expires=now + 600)
assert main(["verify", token.hex(), "--trust", sys.argv[1] + "/issuer.cose:amazon",
             "--vehicle", "VIN1", "--action", "trunk",
             "--ledger", sys.argv[1] + "/ledger.sqlite"]) == 0
"""


def test_trunkkey_verify_imports_only_its_own_command_group(tmp_path: Path) -> None:
    loaded = _loaded_by(_CLI_VERIFY, str(tmp_path))
    assert "trunkkey.cli.verify" in loaded
    others = ("trunkkey.cli.grants", "trunkkey.cli.log", "trunkkey.cli.revocations",
              "trunkkey.cli.simulate", "trunkkey.cli.keys", "trunkkey.cli._report")
    # Consent only for --root; the car's log and its audit never for verify.
    never = (*others, "trunkkey.consent", "trunkkey.vehicle", "trunkkey.audit", "redis", "psycopg")
    assert _banned(loaded, never) == []
    assert _banned(loaded, OPENSSL_MODULES) == []


def test_every_command_is_mapped_to_the_group_that_defines_it() -> None:
    from trunkkey import cli

    defined = {cmd.name: group.__name__.rsplit(".", 1)[1]
               for group in cli.GROUPS for cmd in group.COMMANDS}
    assert defined == cli._GROUP_OF
    assert [c.name for c in cli.COMMANDS] == list(defined)


def test_help_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from trunkkey.cli import _GROUP_OF, main

    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in _GROUP_OF)


def _lazy_packages() -> list[ModuleType]:
    return [trunkkey, trunkkey.ledger, trunkkey.consent]


@pytest.mark.parametrize("package", _lazy_packages(), ids=lambda p: p.__name__)
def test_every_lazy_name_is_the_object_its_defining_module_holds(package: ModuleType) -> None:
    defined_in: dict[str, str] = package._DEFINED_IN
    assert set(defined_in) == set(package.__all__)
    for name, module in defined_in.items():
        home = importlib.import_module(f"{package.__name__}.{module}")
        assert getattr(package, name) is getattr(home, name), name


def _type_checking_imports(init: Path) -> dict[str, str]:
    """``{name: module}`` from the ``from .module import name as name`` lines type checkers read."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                assert imp.level == 1
                assert imp.module is not None
                for alias in imp.names:
                    assert alias.asname == alias.name, "re-export as the same name"
                    found[alias.name] = imp.module
    return found


@pytest.mark.parametrize(
    ("package", "init"),
    [
        (trunkkey, SRC / "__init__.py"),
        (trunkkey.ledger, SRC / "ledger" / "__init__.py"),
        (trunkkey.consent, SRC / "consent" / "__init__.py"),
    ],
    ids=["trunkkey", "trunkkey.ledger", "trunkkey.consent"],
)
def test_type_checkers_see_the_names_the_runtime_exports(package: ModuleType, init: Path) -> None:
    assert _type_checking_imports(init) == package._DEFINED_IN


def test_dir_lists_every_public_name_and_the_submodules_before_first_use() -> None:
    loaded = _loaded_by(
        "import trunkkey, trunkkey.ledger\n"
        "listed = set(dir(trunkkey)) | {'ledger.' + n for n in dir(trunkkey.ledger)}\n"
        "wanted = set(trunkkey.__all__) | {'ledger.' + n for n in trunkkey.ledger.__all__}\n"
        "wanted |= {'keys', 'verifier', 'ledger', 'ledger.sqlite', 'ledger.postgres'}\n"
        "assert wanted <= listed, wanted - listed\n"
    )
    assert "trunkkey.verifier" not in loaded  # dir() imported nothing


def test_submodules_stay_reachable_from_a_bare_import() -> None:
    # Code that did ``import trunkkey`` then used ``trunkkey.keys`` kept working
    # when the package stopped importing everything up front.
    loaded = _loaded_by(
        "import trunkkey\n"
        "assert trunkkey.keys.KID_LENGTH == 8\n"
        "assert trunkkey.ledger.sqlite.SqliteLedger is trunkkey.SqliteLedger\n"
    )
    assert "trunkkey.ledger.postgres" not in loaded


def test_a_chain_verifier_loads_no_key_rotation_or_file_writing() -> None:
    loaded = _loaded_by(
        "from trunkkey.consent import ConsentVerifier, RevocationState, RootKey, VehicleAnchors"
    )
    assert "trunkkey.consent.chain" in loaded
    # Trust updates and the temporary files they are written through wait for an update.
    assert _banned(loaded, ("trunkkey.consent.rotation", "tempfile", "trunkkey.cli")) == []


def test_an_unknown_name_is_an_attribute_error_and_an_import_error() -> None:
    assert not hasattr(trunkkey, "StartEngine")
    assert not hasattr(trunkkey.ledger, "MongoLedger")
    with pytest.raises(ImportError):
        exec("from trunkkey import StartEngine", {})  # noqa: S102 -- a fixed statement


def test_a_server_ledger_still_imports_by_name() -> None:
    loaded = _loaded_by(
        "from trunkkey.ledger import PostgresLedger, RedisLedger\n"
        "assert PostgresLedger.__module__ == 'trunkkey.ledger.postgres'\n"
        "assert RedisLedger.__module__ == 'trunkkey.ledger.redis'\n"
    )
    # Their client libraries still wait for a ledger to be constructed.
    assert _banned(loaded, ("psycopg", "redis")) == []


def test_cold_start_benchmark_prints_every_row_and_target() -> None:
    # No timing is asserted: one round on a shared machine says nothing about speed.
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.cold_start", "--runs", "1"],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)),
    )
    assert done.returncode == 0, done.stderr
    bench = importlib.import_module("tools.bench.cold_start")
    for row in bench.ROWS:
        assert f"| {row.label} |" in done.stdout, row.label
    targets = [line for line in done.stdout.splitlines() if line.startswith("target ")]
    assert len(targets) == 4
    assert all(line.endswith((": holds", ": MISSED")) for line in targets)
