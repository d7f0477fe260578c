"""`ssmprobe table` and `report`: Tables 1-2, and every table and figure of a folder of runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ssmprobe.cli import options as opt
from ssmprobe.cli import usermodel


def table(args: argparse.Namespace) -> int:
    from ssmprobe.report.runs import collect_runs
    from ssmprobe.report.tables import write_tables

    paths = write_tables(collect_runs(args.runs), Path(args.out))
    for name in ("md", "seeds_md"):
        if name in paths:
            print(paths[name].read_text())
    print("written: " + ", ".join(map(str, paths.values())))
    return 0


def report(args: argparse.Namespace) -> int:
    from ssmprobe.report.build import ReportOptions, build_report
    from ssmprobe.report.model import model_report
    from ssmprobe.report.zoo_runs import zoo_runs

    options = ReportOptions(
        attacks=tuple(opt.comma_list(args.attack, "--attack")),
        n_eval=args.n,
        n_probe=args.n_probe,
        data_dir=args.data_dir,
        progress=not args.quiet,
        self_contained=args.self_contained,
        formats=opt.formats(args),
        workers=args.jobs,
        studies=tuple(args.study),
    )
    steps = {"log": _quiet} if args.quiet else {}  # the step lines too, not only the bars
    out = Path(args.out)  # RUNS/report, or report_<factory> for your model, unless given
    if usermodel.given(args):
        if args.study:
            raise ValueError("--study goes with a folder of runs, not with --model")
        model, data = usermodel.target(args, None)
        result = model_report(model, data, out, options, **steps)
    else:
        if args.model or args.components or args.data or args.weights:
            raise ValueError("--components, --data and --weights go with --model pkg:factory")
        if args.zoo:
            zoo_runs(Path(args.runs) / "zoo")
        result = build_report(args.runs, out, options, **steps)  # progress lines on stderr
    if result.up_to_date:
        print(f"nothing new under {args.runs}: {out} is up to date")
    else:
        print(f"written ({len(result.written)} changed): " + ", ".join(map(str, result.written)))
    print("\n".join(result.findings))
    print(f"report: {result.report_html.resolve()}")
    return 0


def add(sub: opt.Subparsers) -> None:
    p = opt.command(
        sub,
        "table",
        "Tables 1-2: Best / Last / Diff of Clean, PGD-10, AA",
        "Tables 1-2 of every run under RUNS (table.md, .csv, .tex): Best / Last / Diff of "
        "Clean, PGD-10 and AutoAttack accuracy; ‡ marks suspected gradient masking, § a warning "
        "of AutoAttack's own checks. Settings trained with several seeds also get "
        "table_seeds.md / .csv / .tex: mean ± sample standard deviation over the seeds. --out "
        "defaults to RUNS.",
    )
    p.add_argument("runs", help="folder of run folders")
    opt.out(p, "folder")
    p.set_defaults(
        func=table,
        default_out=lambda args: args.runs,
        out_names=[f"{t}.{e}" for t in ("table", "table_seeds") for e in ("md", "csv", "tex")],
    )

    p = opt.command(
        sub,
        "report",
        "every table and figure of all runs, and report.md / report.html",
        "Reads every run folder under --runs, computes what is missing and caches it next to "
        "the run (eval_best/last.json with --attack on --n test samples; the feature "
        "discrepancy of the probed checkpoint on --n-probe samples per split; Theorem 4.1.1 on "
        "one run per family), then writes Tables 1-2, the training curves, Figures 3-4, the "
        "bounds figures, the poisoning figure of any `ssmprobe poison` results under --runs, "
        "report.md and report.html (which links the PNGs beside it; --self-contained embeds "
        "them) into --out, by default RUNS/report. A second run with nothing new rewrites no "
        "file. With --model pkg.module:factory (your own model, --components, --data): its "
        "accuracy under --attack, its feature discrepancy and, where a reader knows its SSM "
        "layers, Theorem 4.1.1, into --out (default report_<factory>). Progress lines go to "
        "stderr, the written files and findings to stdout.",
    )
    p.add_argument("--runs", default="runs", help="folder of run folders")
    opt.out(p, "folder")
    opt.add(p, "attack", "several", default="pgd10,aa")
    opt.add(p, "n", "report", default=360)
    opt.deprecated(p, "--n-eval", "--n")
    p.add_argument(
        "--n-probe",
        type=opt.POSITIVE,
        default=360,
        help="samples per split for the discrepancy (as `discrepancy --n`)",
    )
    opt.add(p, "data_dir")
    p.add_argument(
        "--zoo",
        action="store_true",
        help="also report the bundled checkpoints (written as run folders to RUNS/zoo)",
    )
    p.add_argument(
        "--self-contained",
        action="store_true",
        help="embed the images in report.html as data URIs (one large file that opens on its "
        "own) instead of linking the PNGs written beside it",
    )
    p.add_argument(
        "--study",
        action="append",
        default=[],
        metavar="DIR",
        help="also show the committed results of an analysis (a folder with study.json, as "
        "analysis/cifar10_jac.py writes to figures/cifar10_jac); repeat for several",
    )
    opt.add(p, "pdf")
    opt.add(p, "jobs", "report", default=os.cpu_count() or 1)
    opt.add(p, "quiet", "report")
    usermodel.add(p.add_argument_group("your own model"), with_model=True, required=False)
    p.set_defaults(
        func=report, default_out=_default_out, out_names=["report.md", "report.html", "report.pdf"]
    )


def _quiet(line: str) -> None:
    """The report's step lines under --quiet: none."""


def _default_out(args: argparse.Namespace) -> Path:
    if usermodel.given(args):
        return Path(f"report_{args.model.rpartition(':')[2]}")
    return Path(args.runs) / "report"
