"""trunkkey's development tools, importable from the repository root.

``bench`` (the benchmark command and its results), ``fuzz`` (atheris targets),
``faults`` (crash, race, latency and growth harnesses against real ledgers) and
``gen`` (the generated docs, vectors and plots). None of it ships in the wheel;
run each as ``python -m tools.<package>.<module>`` from the repository root.
"""

from pathlib import Path

#: The repository root: generators write docs/ and benchmarks write results here.
ROOT = Path(__file__).resolve().parents[1]
