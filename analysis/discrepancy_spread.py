"""The spread of every zoo checkpoint's component-kind rates (issue 41): a bootstrap interval
over the 360 samples of each split and the rates under attack seeds 1 and 2 beside seed 0's
(the committed verdicts'), which directions are not resolved, and the layers that disagree.

Resumable: each checkpoint's result is kept in OUT/spread/<name>.json and skipped when there.

    python analysis/discrepancy_spread.py [--out figures/discrepancy] [--n 360] [--seeds 1,2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from ssmprobe.checkpoint import bundled_dir
from ssmprobe.io import write_json, write_text
from ssmprobe.probe.discrepancy import discrepancy
from ssmprobe.probe.verdicts import spread_markdown


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="figures/discrepancy")
    parser.add_argument("--n", type=int, default=360, help="samples per split")
    parser.add_argument("--seeds", default="1,2", help="attack seeds besides 0")
    args = parser.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    folder = Path(args.out) / "spread"
    manifest = json.loads((bundled_dir() / "manifest.json").read_text())
    rows, seconds = [], 0.0
    for name in sorted(manifest):
        cache = folder / f"{Path(name).stem}.json"
        if not cache.is_file():
            start = time.perf_counter()
            result = discrepancy(name, n=args.n, progress=False, spread_seeds=seeds)
            seconds = time.perf_counter() - start
            write_json(cache, {"seconds": seconds, "spread": result.spread})
            print(f"{name}: {seconds:.0f} s", flush=True)
        cached = json.loads(cache.read_text())
        rows += cached["spread"]
        seconds += cached["seconds"]
    frame = pd.DataFrame(rows)
    frame["checkpoint"] = frame["checkpoint"].map(lambda c: Path(c).stem)
    frame.drop(columns=["seed_rates", "layers"]).assign(
        seed_rates=[json.dumps(r["seed_rates"]) for r in rows],
        layers=[json.dumps(r["layers"]) for r in rows],
    ).to_csv(Path(args.out) / "spread.csv", index=False)
    text = spread_markdown(rows, seeds=(0, *seeds), n=args.n)
    timing = f"\nWall time of the probes (3 seeds each): {seconds / 60:.0f} min.\n"
    write_text(Path(args.out) / "spread.md", text + timing)
    print(text)


if __name__ == "__main__":
    main()
