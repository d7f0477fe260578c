"""Figures 3 and 4 on digits: the feature discrepancy of every trained preset run.

For each run directory under RUNS named `<model>[_<ads>]_<method>_preset` (the runs of
`calibrate_digits.py`), probes its checkpoint (best.pt for PGD-AT and TRADES, last.pt for ST, as
the bundled checkpoints) on N train and all test samples with PGD-10 at the run's ε, caches the
CSV next to the run (`discrepancy.csv`, reused while newer than the checkpoint), and writes the
combined CSV and the figures (`ssmprobe plot discrepancy`) to OUT.

    python analysis/discrepancy_digits.py [--runs runs/calibrate] [--out figures/discrepancy]
        [--n 1000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ssmprobe.probe.discrepancy import discrepancy, format_summary, save
from ssmprobe.probe.plots import plot_discrepancy
from ssmprobe.report.runs import CONFIG_FILE, read_metrics


def checkpoint(run: Path) -> Path | None:
    """The run's probed checkpoint, or None while the run has not finished its epochs."""
    config = json.loads((run / CONFIG_FILE).read_text()) if (run / CONFIG_FILE).is_file() else {}
    if len(read_metrics(run)) < config.get("train", {}).get("epochs", float("inf")):
        return None
    return run / ("last.pt" if config["method"] == "st" else "best.pt")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="runs/calibrate")
    parser.add_argument("--out", default="figures/discrepancy")
    parser.add_argument("--n", type=int, default=1000, help="samples per split")
    args = parser.parse_args()
    csvs = []
    for run in sorted(Path(args.runs).glob("*_preset")):
        ckpt, cached = checkpoint(run), run / "discrepancy.csv"
        if ckpt is None or not ckpt.is_file():
            print(f"{run.name}: not finished, left out", flush=True)
            continue
        if not cached.is_file() or cached.stat().st_mtime < ckpt.stat().st_mtime:
            result = discrepancy(ckpt, n=args.n, progress=False)
            print(format_summary(result) + "\n", flush=True)
            save([result], cached)
        csvs.append(cached)
    if not csvs:
        raise SystemExit(f"no finished preset runs under {args.runs}")
    frames = [pd.read_csv(c).assign(checkpoint=c.parent.name) for c in csvs]
    combined = Path(args.out) / "discrepancy_digits.csv"
    combined.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_csv(combined, index=False)
    for path in plot_discrepancy(csvs, args.out):
        print("written:", path)
    print("written:", combined)


if __name__ == "__main__":
    main()
