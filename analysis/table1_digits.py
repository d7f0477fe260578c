"""Tables 1-2 and the training curves on `digits`: every family with ST, PGD-AT and TRADES.

Trains each run with the digits preset (ε = 0.1, PGD-10, 30 epochs), evaluates best.pt and
last.pt on the whole test set with clean, PGD-10 and AutoAttack, then writes the table
(Markdown, CSV, LaTeX) and the training-curve figure. Runs that already finished are skipped,
and an interrupted run resumes, so the script can be stopped and started again.

    python analysis/table1_digits.py [--runs runs/digits] [--out figures] [--epochs 30]
        [--models s4,dss,s5,mega,mamba] [--methods st,pgd,trades] [--aa aa|aa-fast]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssmprobe.cli import main as ssmprobe
from ssmprobe.train import train_config


def run(args: list[str]) -> None:
    code = ssmprobe(args)
    if code:
        raise SystemExit(f"ssmprobe {' '.join(args)} failed with {code}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="runs/digits")
    parser.add_argument("--out", default="figures")
    parser.add_argument("--epochs", type=int, default=train_config("digits").epochs)
    parser.add_argument("--models", default="s4,dss,s5,mega,mamba")
    parser.add_argument("--methods", default="st,pgd,trades")
    parser.add_argument("--aa", default="aa", choices=["aa", "aa-fast"])
    parser.add_argument("--extra", default="", help="more train options, e.g. '--ads relu'")
    args = parser.parse_args()
    for model in args.models.split(","):
        for method in args.methods.split(","):
            name = f"{model}_digits_{method}"
            run_dir = Path(args.runs) / name
            last = run_dir / "last.pt"
            done = (
                last.exists()
                and len((run_dir / "metrics.jsonl").read_text().splitlines()) >= args.epochs
            )
            if not done:
                run(
                    [
                        "train",
                        "--model",
                        model,
                        "--method",
                        method,
                        "--epochs",
                        str(args.epochs),
                        "--out",
                        args.runs,
                        "--name",
                        name,
                        *(["--resume"] if last.exists() else []),
                        *args.extra.split(),
                    ]
                )
            for ckpt in ("best", "last"):
                if not (run_dir / f"eval_{ckpt}.json").exists():
                    run(
                        [
                            "eval",
                            "--ckpt",
                            str(run_dir / f"{ckpt}.pt"),
                            "--attack",
                            f"pgd10,{args.aa}",
                            "--n",
                            "360",
                        ]
                    )
            rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
            seconds = sum(r["seconds"] for r in rows) / len(rows)
            print(f"{name}: {seconds:.1f} s per training epoch")
    run(["report", "--runs", args.runs, "--out", args.out])


if __name__ == "__main__":
    main()
