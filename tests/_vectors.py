"""Where the external conformance vectors live, and what to do when they do not.

The COSE WG examples and Project Wycheproof files live in ``tests/vectors``
(copied with their licences, see its README), so a fresh clone runs them;
``TRUNKKEY_VECTORS`` points the tests at another copy. Missing vectors fail
the run under CI (``CI`` set) and skip it, loudly, elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ENV_VAR = "TRUNKKEY_VECTORS"
REPO_ROOT = Path(__file__).resolve().parents[1]


def vectors_root() -> Path:
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return REPO_ROOT / "tests" / "vectors"


def vector_dir(name: str) -> Path | None:
    """``<root>/<name>`` if it exists, else ``None`` (the test then calls :func:`missing`)."""
    path = vectors_root() / name
    return path if path.is_dir() else None


def missing(name: str) -> None:
    """Fail under CI, skip otherwise: the vectors directory ``name`` is absent."""
    message = (
        f"conformance vectors not found at {vectors_root() / name} "
        f"(set {ENV_VAR} to the directory holding cose-wg/ and wycheproof/)"
    )
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run these tests, not skip them", pytrace=False)
    pytest.skip(message)


def load_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


#: The parameter that stands for "no vectors found" so that collection still
#: yields a test, which then fails (CI) or skips (elsewhere) with the reason.
MISSING = pytest.param(None, id="vectors-missing")
