"""Run a command against a throwaway replicated topology, its address in the environment.

    python -m tools.faults.with_replicated postgres_pair -- \
        python -m tools.faults.growth --ledger postgres --tokens 100000
    python -m tools.faults.with_replicated redis_cluster -- \
        python -m tools.faults.race --ledger redis_cluster --races 10000

Uses the topology ``tools/start-services.sh --replicated`` started when its
address is exported, else starts a throwaway one (tools/faults/replicated.py);
sets ``TRUNKKEY_POSTGRES_PAIR_DSN`` (and ``TRUNKKEY_POSTGRES_DSN``, so every
harness that takes a PostgreSQL DSN runs on the pair) or
``TRUNKKEY_REDIS_CLUSTER_URL``, runs the command, stops what it started and
exits with the command's status. (The growth and race harnesses also take
``--ledger postgres_pair`` / ``redis_cluster`` directly.)
"""

from __future__ import annotations

import os
import subprocess
import sys

from .ledgers import REPLICATED_ENV
from .race_replicated import topology


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] not in REPLICATED_ENV or args[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    kind, command = args[0], args[2:]
    with topology(kind):
        env = dict(os.environ)
        if kind == "postgres_pair":
            env["TRUNKKEY_POSTGRES_DSN"] = env[REPLICATED_ENV[kind]]
        return subprocess.run(command, env=env, check=False).returncode  # noqa: S603


if __name__ == "__main__":
    sys.exit(main())
