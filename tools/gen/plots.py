"""Draw the plots of docs/performance.md from the benchmark's JSON.

Run:  python -m tools.gen.plots [tools/bench/results/latest.json] [--out DIR]

Writes into ``docs/performance/`` by default:

* ``rates.png``: trunkkey beside the signature floors and the peers;
* ``chain_depth.png``: µs per verification against the number of grants;
* ``ledger_size.png``: µs per verification against live ledger entries;
* ``fleet.png``: verifier throughput against the number of cars, and 1 vs 2 processes;
* ``cold_start.png``: with ``--cold-start FILE`` (``python -m tools.bench.cold_start
  --json FILE``), each process's time and peak memory as multiples of its floor,
  beside issue 18's targets.

Needs the ``plot`` extra (matplotlib); exits with 2 if it is missing.
With ``--markdown`` it prints the tables of docs/performance.md instead
(no matplotlib needed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tools import ROOT

#: What each colour of rates.png stands for: the legend says it, not the reader's guess.
RATE_COLOURS = {
    "tab:blue": "trunkkey, in-memory ledger",
    "tab:green": "trunkkey, SQLite ledger (fsync per token)",
    "tab:gray": "signature floor (the bare library call)",
    "tab:orange": "python-cwt (peer)",
    "tab:red": "PyJWT (peer)",
}


def _rates(plt: Any, data: dict[str, Any], out: Path) -> None:
    rates = data["rates"]
    shown = [
        ("trunkkey mint", "mint", "tab:blue"),
        ("libsodium sign (floor)", "floor_ed25519_sign_libsodium", "tab:gray"),
        ("python-cwt encode", "peer_cwt_encode", "tab:orange"),
        ("PyJWT encode", "peer_jwt_encode", "tab:red"),
        ("trunkkey verify", "verify_memory", "tab:blue"),
        ("libsodium verify (floor)", "floor_ed25519_verify_libsodium", "tab:gray"),
        ("OpenSSL Ed25519 verify", "floor_ed25519_verify_openssl", "tab:gray"),
        ("python-cwt decode", "peer_cwt_decode", "tab:orange"),
        ("PyJWT decode", "peer_jwt_decode", "tab:red"),
        ("trunkkey verify + proof", "verify_proof_memory", "tab:blue"),
        ("trunkkey 2-link chain, cached", "verify_chain2_cached", "tab:blue"),
        ("trunkkey 2-link chain, uncached", "verify_chain2_uncached", "tab:blue"),
        ("trunkkey verify, SQLite ledger", "verify_sqlite", "tab:green"),
    ]
    shown = [(label, rates.get(key), colour) for label, key, colour in shown]
    shown = [(label, value, colour) for label, value, colour in shown if value is not None]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    labels = [label for label, _, _ in shown]
    ax.barh(labels, [v for _, v, _ in shown], color=[c for _, _, c in shown])
    for y, (_, value, _) in enumerate(shown):
        ax.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    ax.invert_yaxis()
    # Room on the right for the longest bar's label.
    ax.set_xlim(0, max(v for _, v, _ in shown) * 1.15)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.set_xlabel("operations per second (best round, one core)")
    ax.set_title("trunkkey beside its signature floors and its peers")
    used = [c for c in RATE_COLOURS if any(colour == c for _, _, colour in shown)]
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c, label=RATE_COLOURS[c])
                       for c in used], loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "rates.png", dpi=100)
    plt.close(fig)


def _chain_depth(plt: Any, data: dict[str, Any], out: Path) -> bool:
    depth = data["growth"].get("chain_depth_us")
    if depth is None:
        return False
    floor = 1e6 / data["rates"]["floor_ed25519_verify_libsodium"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, style in (("cached", "o-"), ("uncached", "s-")):
        xs = sorted(depth[kind], key=int)
        ax.plot([int(x) for x in xs], [depth[kind][x] for x in xs], style,
                label=f"grant cache {'warm' if kind == 'cached' else 'off'}")
    xs = list(range(5))
    ax.plot(xs, [(2 + x) * floor for x in xs], ":", color="gray",
            label="floor: (2 + grants) libsodium verifies")
    ax.plot(xs, [2 * floor] * len(xs), "--", color="gray",
            label="floor: 2 verifies (token + proof)")
    ax.set_xticks(xs)
    ax.set_xlabel("grants in the chain (0 = retailer trusted directly)")
    ax.set_ylabel("µs per verification (with proof)")
    ax.set_ylim(bottom=0)
    ax.set_title("Cost against consent-chain depth")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "chain_depth.png", dpi=100)
    plt.close(fig)
    return True


def _ledger_size(plt: Any, data: dict[str, Any], out: Path) -> None:
    sizes = data["growth"]["ledger_size_us"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind, title in ((axes[0], "memory", "in-memory ledger"),
                            (axes[1], "sqlite", "SQLite ledger (fsync per token)")):
        xs = sorted(sizes[kind], key=int)
        ax.plot([int(x) for x in xs], [sizes[kind][x] for x in xs], "o-")
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("live entries in the ledger")
        ax.set_ylabel("µs per verification")
        ax.set_title(title)
    fig.suptitle("Cost against ledger size")
    fig.tight_layout()
    fig.savefig(out / "ledger_size.png", dpi=100)
    plt.close(fig)


def _fleet(plt: Any, data: dict[str, Any], out: Path) -> None:
    growth = data["growth"]
    cars = growth["fleet_vehicles_per_second"]
    scaling = growth["fleet_scaling"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind, style in (("memory", "o-"), ("sqlite", "s-")):
        xs = sorted(cars[kind], key=int)
        axes[0].plot([int(x) for x in xs], [cars[kind][x] for x in xs], style,
                     label=f"{'in-memory' if kind == 'memory' else 'durable (SQLite)'} ledgers")
    axes[0].set_xscale("log")
    axes[0].set_ylim(bottom=0)
    axes[0].set_xlabel("cars served by one process")
    axes[0].set_ylabel("verifications per second")
    axes[0].set_title("One process, more cars")
    axes[0].legend(fontsize=8)
    kinds = [k for k in ("memory", "sqlite", "sqlite-baseline") if k in scaling]
    one = [scaling[k]["by_procs"]["1"]["per_second"] for k in kinds]
    two = [scaling[k]["by_procs"]["2"]["per_second"] for k in kinds]
    xs = list(range(len(kinds)))
    axes[1].bar([x - 0.2 for x in xs], one, width=0.4, label="1 process")
    axes[1].bar([x + 0.2 for x in xs], two, width=0.4, label="2 processes")
    for x, k in zip(xs, kinds, strict=True):
        axes[1].text(x + 0.2, two[x], f"x{scaling[k]['speedup']:.2f}", ha="center",
                     va="bottom", fontsize=9)
    names = {"memory": "in-memory", "sqlite": "durable (SQLite)",
             "sqlite-baseline": "disk alone\n(no verifier)"}
    axes[1].set_xticks(xs, [names[k] for k in kinds])
    # Bars on a linear axis from zero: their lengths are what the eye compares.
    axes[1].set_ylim(0, max(two + one) * 1.12)
    axes[1].set_ylabel("per second, all processes together")
    axes[1].set_title("1 against 2 processes")
    axes[1].legend(fontsize=8)
    fig.suptitle("Fleet: verifier throughput over independent cars")
    fig.tight_layout()
    fig.savefig(out / "fleet.png", dpi=100)
    plt.close(fig)


def cold_start(plt: Any, data: dict[str, Any], out: Path) -> None:
    rows = [r for r in data["rows"] if r["time_ratio"] is not None and r["floor"] != "bare"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    labels = [r["label"] for r in rows]
    for ax, key, target, title in (
        (axes[0], "time_ratio", 1.5, "wall time, x its floor"),
        (axes[1], "memory_ratio", 1.3, "peak RSS, x its floor's"),
    ):
        values = [r[key] for r in rows]
        colours = ["tab:green" if r[key.replace("ratio", "target")] else "tab:blue" for r in rows]
        ax.barh(labels, values, color=colours)
        for y, value in enumerate(values):
            ax.text(value, y, f" {value:.2f}", va="center", fontsize=8)
        ax.axvline(1.0, color="tab:gray", linewidth=1)
        ax.axvline(target, color="tab:red", linestyle="--", linewidth=1,
                   label=f"issue 18 target ({target}x; green rows)")
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(data["header"], fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "cold_start.png", dpi=100)
    plt.close(fig)


def _n(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(data: dict[str, Any]) -> str:
    """The benchmark's figures as the Markdown tables of docs/performance.md."""
    from tools.bench.run import RATES  # noqa: PLC0415 -- the labels live with the benchmark

    rates = data["rates"]
    floor = rates["floor_ed25519_verify_libsodium"]
    lines = ["| measure | per second | µs each | x libsodium verify |", "|---|---:|---:|---:|"]
    for name, label in RATES.items():
        rate = rates.get(name)
        lines.append(f"| {label} | {_n(rate, ',.0f')} | {_n(1e6 / rate if rate else None, '.1f')}"
                     f" | {_n(rate / floor if rate else None, '.3f')} |")
    lines += ["", "| size | bytes |", "|---|---:|"]
    lines += [f"| {name} | {_n(v, 'd')} |" for name, v in data["sizes"].items()]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {name} | {_n(v, '.3f')} |" for name, v in data["ratios"].items()]
    lines += ["", "| overhead beyond the signature operations | µs |", "|---|---:|"]
    lines += [f"| {name} | {_n(v, '.1f')} |" for name, v in data["overhead_us"].items()]
    if data.get("python_us"):
        lines += ["", "| trunkkey alone, signature checks stubbed | µs |", "|---|---:|"]
        lines += [f"| {name} | {_n(v, '.1f')} |" for name, v in data["python_us"].items()]
    lines += ["", "| target | measured | verdict |", "|---|---:|---|"]
    for t in data["targets"]:
        verdict = "n/a" if t["met"] is None else ("**met**" if t["met"] else "not met")
        lines.append(f"| {t['target']} | {_n(t['value'], '.3f')} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path,
                        default=ROOT / "tools" / "bench" / "results" / "latest.json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance")
    parser.add_argument("--cold-start", type=Path, metavar="FILE",
                        help="draw only cold_start.png, from tools.bench.cold_start --json")
    parser.add_argument("--markdown", action="store_true",
                        help="print the Markdown tables instead of drawing")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.results.read_text())))
        return 0
    try:
        import matplotlib  # noqa: PLC0415 -- the optional plot extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("needs matplotlib: pip install matplotlib (or pip install -e '.[plot]' in a "
              "checkout)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.cold_start is not None:
        cold_start(plt, json.loads(args.cold_start.read_text()), args.out)
        print(f"wrote cold_start.png into {args.out}")
        return 0
    data = json.loads(args.results.read_text())
    _rates(plt, data, args.out)
    _ledger_size(plt, data, args.out)
    _fleet(plt, data, args.out)
    drawn = ["rates", "ledger_size", "fleet"]
    if _chain_depth(plt, data, args.out):
        drawn.append("chain_depth")
    print(f"wrote {', '.join(f'{name}.png' for name in drawn)} into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
