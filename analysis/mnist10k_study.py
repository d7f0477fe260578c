"""The MNIST-10k study: what the runs at L = 784 show, as the report's MNIST section.

Reads what the other steps wrote and writes `--out`/study.json (`ssmprobe report --study`) with
positions.md, bounds.md and findings.md beside it; nothing is trained or attacked here:

- `--out`/table1_mnist10k.md, table2_mnist10k.md, tables_mnist10k.csv (`mnist10k_tables.py`):
  Tables 1-2 beside the paper's;
- `--out`/diagnosis.json / .md (`mnist10k_diagnosis.py`): why PGD-10 can sit above clean;
- each finished run's discrepancy.json and bounds.json under `--runs`, which
  `ssmprobe report --runs runs/mnist10k --out figures/mnist10k/report` computes and caches there;
  its figures (Figure 3, per-position curves, bounds) are shown from `--out`/report.

    python analysis/mnist10k_tables.py && python analysis/mnist10k_diagnosis.py
    ssmprobe report --runs runs/mnist10k --attack pgd10 --n 2000 --out figures/mnist10k/report
    python analysis/mnist10k_study.py [--runs runs/mnist10k] [--out figures/mnist10k]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ssmprobe.io import replacing, write_text
from ssmprobe.probe.positions import growth
from ssmprobe.report.studies import write_study
from ssmprobe.vocab import METHOD_NAMES

L = 784
TITLE = "MNIST-10k at L = 784: Tables 1-2 beside the paper, the PGD-above-clean diagnosis"
SENTENCE = (
    "MNIST-10k is the 10,000 official MNIST test images split 8,000 train / 2,000 test (the "
    "60,000 training images cannot be had offline), L = 784, at the paper's ε = 0.3, α = 0.04, "
    "TRADES β = 1 and 2 layers of d = 128, trained with the CPU preset (5 epochs, batch 64, ε "
    "ramped over the first 2): far fewer images and epochs than the paper's 60,000 and 100, so "
    "a gap to its rows is expected; what the runs can test is the pattern."
)
POSITIONS_SENTENCE = (
    "Squared error between PGD-10 and clean features, mean of the last tenth of the 784 "
    "positions over the first tenth's, at the first SSM's input and the last component's "
    "output, and the factor each SSM layer adds (output ratio / input ratio); test images."
)
BOUNDS_SENTENCE = (
    "Theorem 4.1.1 on each run the report checks (one per family): channels where the "
    "kernel-form upper bound held and where the eigenvalue-form upper bound (eq. 16) failed."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/mnist10k", help="the MNIST-10k run folders")
    parser.add_argument("--out", default="figures/mnist10k", help="where the tables are")
    parser.add_argument("--force", action="store_true", help="replace files ssmprobe did not write")
    args = parser.parse_args(argv)
    try:
        with replacing(args.force):
            return study(Path(args.runs), Path(args.out), parser)
    except (OSError, ValueError) as err:  # OutputError: a file of the user's in the way
        parser.error(str(err))


def study(runs: Path, out: Path, parser: argparse.ArgumentParser) -> int:
    tables = [
        ("Table 1, MNIST rows", "Ours on MNIST-10k beside the paper's on MNIST test.",
         "table1_mnist10k.md"),
        ("Table 2, MNIST rows", "The AdS rows, ours beside the paper's.", "table2_mnist10k.md"),
    ]  # fmt: skip
    missing = [file for _, _, file in tables if not (out / file).is_file()]
    if missing:
        parser.error(f"{', '.join(missing)} not in {out}: run analysis/mnist10k_tables.py first")
    lines = table_findings(pd.read_csv(out / "tables_mnist10k.csv"))
    if (out / "diagnosis.json").is_file():
        diagnosis = json.loads((out / "diagnosis.json").read_text())
        lines += [f"{key}: {row['verdict']['finding']}" for key, row in diagnosis.items()]
        tables.append(("Why PGD-10 can sit above clean", "The tests on each checkpoint.",
                       "diagnosis.md"))  # fmt: skip
    caches = {p.parent.name: p for p in sorted(runs.glob("*/discrepancy.json"))}
    if caches:
        write_text(out / "positions.md", positions_markdown(caches) + "\n")
        tables.append(("Along the 784 steps", POSITIONS_SENTENCE, "positions.md"))
    checks = {p.parent.name: p for p in sorted(runs.glob("*/bounds.json"))}
    if checks:
        write_text(out / "bounds.md", bounds_markdown(checks) + "\n")
        tables.append(("Theorem 4.1.1 at L = 784", BOUNDS_SENTENCE, "bounds.md"))
    bullets = [f"- {x}" for x in lines]
    write_text(out / "findings.md", "\n".join([f"# {TITLE}", "", *bullets, ""]))
    write_study(out, TITLE, SENTENCE, lines, tables, report_figures(out))
    print("\n".join(lines))
    return 0


def table_findings(frame: pd.DataFrame) -> list[str]:
    """One sentence per run we have: ours best / last beside the paper's."""
    lines = []
    for _, r in frame[frame["ours_clean_last"].notna()].iterrows():
        method = METHOD_NAMES.get(r["method"], r["method"])
        ads = "" if r["ads"] == "none" else f" + AdS {r['ads']}"
        lines.append(
            f"{r['model'].upper()} {method}{ads} ({r['run']}): clean {r['ours_clean_best']:.2f} / "
            f"{r['ours_clean_last']:.2f}, PGD-10 {r['ours_pgd10_best']:.2f} / "
            f"{r['ours_pgd10_last']:.2f} (best / last, n = {int(r['n_pgd10_last']):,}); the "
            f"paper's {r['paper_clean_best']:.2f} / {r['paper_clean_last']:.2f} and "
            f"{r['paper_pgd10_best']:.2f} / {r['paper_pgd10_last']:.2f}."
        )
    return lines


def positions_markdown(caches: dict[str, Path]) -> str:
    """Per run and checkpoint: late / early at the first SSM's input, the last output, and the
    range of what each SSM layer adds."""
    lines = ["| run | checkpoint | input | output | each SSM adds |", "|---|---|---:|---:|---:|"]
    for run, path in caches.items():
        for result in json.loads(path.read_text())["results"]:
            test = [g for g in growth(result["steps"], kind=None) if g.split == "test"]
            added = [g.added for g in test if g.component.endswith(".ssm")]
            lines.append(
                f"| {run} | {Path(result['meta']['checkpoint']).name} | {test[0].before:.2f} | "
                f"{test[-1].after:.2f} | {min(added):.2f}-{max(added):.2f} |"
            )
    return "\n".join(lines)


def bounds_markdown(checks: dict[str, Path]) -> str:
    lines = ["| run | layer | channels | kernel upper held | eq. 16 upper failed | "
             "largest measured / eq. 16 |", "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for run, path in checks.items():
        for r in json.loads(path.read_text())["summary"]:
            if "kernel_upper_holds" in r:
                lines.append(f"| {run} | {r['layer']} | {r['channels']} | "
                             f"{r['kernel_upper_holds']} | {r['eigen_violated']} | "
                             f"{r['eigen_max_ratio']:.3g} |")  # fmt: skip
    return "\n".join(lines)


def report_figures(out: Path) -> list[tuple[str, str]]:
    """Figure 3, the per-position curves and the bounds the report drew under `out`/report."""
    from ssmprobe.report.sections import figure_caption

    report = out / "report"
    found = [*sorted(report.glob("discrepancy/figure3_*.png")),
             *sorted(report.glob("discrepancy/steps_*.png")),
             *sorted(report.glob("bounds/bounds_*.png"))]  # fmt: skip
    return [(p.relative_to(out).as_posix(), figure_caption(p)) for p in found]


if __name__ == "__main__":
    raise SystemExit(main())
