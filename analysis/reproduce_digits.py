"""The paper's grid on `digits`, evaluated, bundled as the zoo and reported.

Runs: S4, DSS, S5, Mega, Mamba x ST, PGD-AT, TRADES, and S4, DSS x AdS (ReLU, Tanh, Sigmoid) x
PGD-AT, TRADES, each at the digits preset with its family's departures
(`registry.FAMILY_PRESETS`, `train.FAMILY_TRAIN_PRESETS`), cheapest first. Each finished run is
evaluated (clean, PGD-10 and AutoAttack on best.pt and last.pt, `--n` test digits); at the end
`ssmprobe report` writes the tables, figures and report into `--out`, and `--bundle` copies
every finished run with its cached results into checkpoints/ (`bundle_checkpoints.bundle`:
best.pt after adversarial training, last.pt after standard training). Finished runs are
skipped and killed ones resume, so the script can be stopped and started again; two copies on
disjoint `--models` share a 2-core CPU.

    python analysis/reproduce_digits.py [--runs runs/digits] [--out figures]
        [--models s4,dss,s5,mega,mamba] [--methods st,pgd,trades] [--n 360] [--bundle]
        [--no-report] [--list]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundle_checkpoints import bundle

from ssmprobe.cli import main as ssmprobe
from ssmprobe.report import METRICS_FILE, read_metrics

FAMILIES = ("s4", "dss", "s5", "mega", "mamba")
METHODS = ("st", "pgd", "trades")
ADS = ("relu", "tanh", "sigmoid")
ADS_FAMILIES = ("s4", "dss")
# Cheapest first: ST, then adversarial training by family speed (benchmarks/train_speed.py).
COST = {"s5": 0, "s4": 1, "dss": 2, "mega": 3, "mamba": 4}


def grid(models: list[str], methods: list[str]) -> list[tuple[str, str, str | None]]:
    """(model, method, ads) of every run, cheapest first."""
    runs = [(m, method, None) for m in models for method in methods]
    runs += [
        (m, method, ads)
        for m in models
        if m in ADS_FAMILIES
        for method in methods
        if method != "st"
        for ads in ADS
    ]
    return sorted(runs, key=lambda r: (r[1] != "st", r[2] is not None, COST[r[0]], r))


def run_name(model: str, method: str, ads: str | None) -> str:
    return f"{model}_{method}" + (f"_ads-{ads}" if ads else "")


def finished(run: Path) -> bool:
    if not (run / "config.json").is_file() or not (run / METRICS_FILE).is_file():
        return False
    epochs = json.loads((run / "config.json").read_text())["train"]["epochs"]
    return len(read_metrics(run)) >= epochs


def call(args: list[str]) -> None:
    if code := ssmprobe(args):
        raise SystemExit(f"ssmprobe {' '.join(args)} failed with {code}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="runs/digits")
    parser.add_argument("--out", default="figures")
    parser.add_argument("--models", default=",".join(FAMILIES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--n", type=int, default=360, help="test digits per evaluation")
    parser.add_argument("--bundle", action="store_true", help="copy each run into checkpoints/")
    parser.add_argument("--no-report", action="store_true", help="train and evaluate only")
    parser.add_argument("--list", action="store_true", help="list the runs and their state")
    args = parser.parse_args()
    models, methods = args.models.split(","), args.methods.split(",")
    for name, given, known in (("models", models, FAMILIES), ("methods", methods, METHODS)):
        if unknown := set(given) - set(known):
            parser.error(f"unknown {name} {sorted(unknown)}; known: {', '.join(known)}")
    runs = Path(args.runs)
    for model, method, ads in grid(models, methods):
        name = run_name(model, method, ads)
        run = runs / name
        if args.list:
            state = "finished" if finished(run) else "started" if run.exists() else "to do"
            print(f"{name:<26}{state}")
            continue
        if not finished(run):
            print(f"== training {name}", flush=True)
            call(
                [
                    "train",
                    *("--model", model, "--method", method, "--dataset", "digits"),
                    *(["--ads", ads] if ads else []),
                    *("--out", str(runs), "--name", name, "--quiet"),
                    *(["--resume"] if (run / "last.pt").exists() else []),
                ]
            )
        for which in ("best", "last"):
            evaluation = run / f"eval_{which}.json"
            if not evaluation.is_file() or json.loads(evaluation.read_text())["n"] != args.n:
                print(f"== evaluating {name}/{which}.pt", flush=True)
                call(
                    [
                        "eval",
                        *("--ckpt", str(run / f"{which}.pt"), "--attack", "pgd10,aa"),
                        *("--n", str(args.n), "--quiet"),
                    ]
                )
    if args.list:
        return
    if not args.no_report:
        call(["report", "--runs", str(runs), "--out", args.out, "--n-eval", str(args.n)])
    if args.bundle:  # after the report, so the zoo ships its discrepancy and bounds too
        done = [r for r in grid(models, methods) if finished(runs / run_name(*r))]
        bundle(
            runs,
            [f"{run_name(*r)}:{run_name(*r)}:{'last' if r[1] == 'st' else 'best'}" for r in done],
        )


if __name__ == "__main__":
    main()
