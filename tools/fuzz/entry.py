"""atheris entry point: ``python -m tools.fuzz.entry TARGET [libFuzzer args...]``."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["trunkkey", "tools.fuzz"]):
    from tools.fuzz.targets import TARGETS


def main() -> None:
    name = sys.argv.pop(1)
    target = TARGETS[name]
    target(b"")  # build the fixed world before fuzzing starts
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
