"""Plot stream fine-tunes' validation curves (issue 21): FRR at zero false accepts and the tail share.

    python -m bench.stream_fit_plot runs/stream_s2 runs/stream_sm2 runs/stream_smb --out docs/img/stream_fit.png

Each run directory holds the ``log.csv`` that ``openkws train stream fit`` writes.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_log(run: Path) -> tuple[list[int], list[float], list[float]]:
    with (run / "log.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["val_frr"]]
    if not rows:
        raise ValueError(f"{run / 'log.csv'} has no validation rows yet")
    return (
        [int(r["step"]) for r in rows],
        [float(r["val_frr"]) for r in rows],
        [float(r["val_tail_share"]) for r in rows],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for run in a.runs:
        steps, frr, tail = read_log(run)
        ax1.plot(steps, [100 * x for x in frr], marker="o", label=run.name)
        ax2.plot(steps, [100 * x for x in tail], marker="o", label=run.name)
    ax1.set(xlabel="step", ylabel="missed at 0 false accepts (%)", title="held-out-voice TTS streams")
    ax2.set(xlabel="step", ylabel="negative windows above median peak (%)", title="tail share")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
