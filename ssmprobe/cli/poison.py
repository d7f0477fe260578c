"""`ssmprobe poison`: clean-label poisoning of an SSM's implicit bias."""

from __future__ import annotations

import argparse

from ssmprobe.cli import options as opt

SIZES = ("student_dim", "length", "ext_length", "n_baseline", "n_special", "max_steps")


def run(args: argparse.Namespace) -> int:
    from ssmprobe.poison.experiment import (
        PoisonConfig,
        config_dict,
        first_seeds,
        format_results,
        result_rows,
        run_seeds_in_parallel,
        save_results,
    )
    from ssmprobe.poison.figures import dynamics_title, write_dynamics_figure

    given = {k: getattr(args, k) for k in SIZES if getattr(args, k) is not None}
    given |= {"seeds": first_seeds(args.seeds), "mlp_width": 15 if args.mlp else 0}
    config = PoisonConfig.second(**given) if args.second else PoisonConfig(**given)
    trajectories = run_seeds_in_parallel(config, args.student, args.jobs, not args.quiet)
    print(format_results(result_rows(trajectories)))
    written = save_results(trajectories, config, args.student, args.out)
    if args.figures:
        student = args.student + ("_mlp" if args.mlp else "")
        title = dynamics_title(student, config_dict(config))
        written += write_dynamics_figure(
            trajectories, title, args.figures, student, opt.formats(args)
        )
    print("written: " + ", ".join(map(str, written)))
    return 0


def add(sub: opt.Subparsers) -> None:
    p = opt.command(
        sub,
        "poison",
        "clean-label poisoning of an SSM's implicit bias (Slutzky et al.)",
        "A student SSM fits sequences labelled by a teacher (state dimension 1, A = B = C = 1) "
        "by full-batch gradient descent in float64, once on baseline sequences and once with "
        "special sequences (non-zero only at position L-2, labelled by the teacher) added. "
        "Prints and writes the training and extension loss (outputs on the one-hot sequences "
        "of --ext-length against the teacher's) per seed and setting, a JSON of the training "
        "dynamics, and with --figures their figure.",
    )
    p.add_argument(
        "--student",
        choices=["linear", "dss", "s4"],
        default="linear",
        help="the student: the paper's diagonal linear SSM, or one of the library's own layers "
        "(a DSS or S4 channel, eigenvalues read with discrete())",
    )
    p.add_argument(
        "--student-dim",
        type=opt.POSITIVE,
        help="student state dimension (default: 10, with --second 20)",
    )
    p.add_argument(
        "--length",
        type=opt.POSITIVE,
        help="training sequence length (default: 6, with --second 10)",
    )
    p.add_argument("--ext-length", type=opt.POSITIVE, help="extension length (default: 40)")
    p.add_argument("--n-baseline", type=opt.COUNT, help="baseline sequences (default: 8)")
    p.add_argument("--n-special", type=opt.COUNT, help="special sequences (default: 10)")
    p.add_argument(
        "--seeds", type=opt.POSITIVE, default=4, help="seeds: 200, 201, 204, 205, then 206, ..."
    )
    p.add_argument("--mlp", action="store_true", help="a ReLU network (15 hidden) after the SSM")
    p.add_argument(
        "--second",
        action="store_true",
        help="the paper's second configuration: L 10, N 20, sd_A 0.01, step 0.001, 7 non-zero",
    )
    p.add_argument(
        "--max-steps", type=opt.POSITIVE, help="gradient steps at most (default: 1000000)"
    )
    opt.add(p, "jobs", "poison")
    opt.deprecated(p, "--workers", "--jobs")
    opt.out(p, "csv", default="poison.csv")
    opt.add(p, "figures")
    opt.add(p, "pdf")
    opt.add(p, "quiet", "work")
    opt.renamed(p, "--model", "--student")
    p.set_defaults(func=run)
