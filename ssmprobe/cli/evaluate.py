"""`ssmprobe eval`: clean, PGD and AutoAttack accuracy of a checkpoint."""

from __future__ import annotations

import argparse
import shutil

from ssmprobe.cli import options as opt
from ssmprobe.cli import usermodel


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from ssmprobe.evaluation.evaluate import evaluate, format_results

    runner = None
    if not args.shards and (args.partition or args.launcher != "local"):
        raise ValueError("--launcher and --partition say where --shards run: give --shards N")
    if args.launcher == "slurm" and shutil.which("sbatch") is None:
        raise ValueError("--launcher slurm: no sbatch on this machine's PATH (no SLURM here)")
    if args.shards:
        from ssmprobe.grid import LaunchOptions, launch_shards

        options = LaunchOptions(launcher=args.launcher, partition=args.partition)
        runner = partial(launch_shards, shards=args.shards, options=options)
    target, data = usermodel.target(args, args.ckpt)
    results = evaluate(
        target,
        opt.comma_list(args.attack, "--attack"),
        data=data,
        n=args.n,
        batch_size=args.batch_size,
        eps=args.eps,
        data_dir=args.data_dir,
        device=args.device,
        progress=not args.quiet,
        reference=opt.reference(args),
        out=args.out,
        force=args.force,
        workers=args.jobs,
        shard_runner=runner,
        add=args.add,
    )
    print(format_results(results))
    if args.out:
        print(f"written: {args.out}")
    return 0


def add(sub: opt.Subparsers) -> None:
    p = opt.command(
        sub,
        "eval",
        "clean, PGD and AutoAttack accuracy of a checkpoint",
        "Evaluate a checkpoint on the first N test samples of its dataset and save "
        "eval_<checkpoint>.json next to it (a bundled one's in the working folder) or at --out.",
    )
    opt.add(p, "ckpt", "one")
    opt.add(p, "attack", "several", default="pgd10,aa")
    opt.add(p, "n", "eval", default=1000)
    opt.add(p, "eps", "attack")
    opt.add(p, "batch_size", "work", default=256)
    opt.add(p, "jobs", "eval", default=1)
    opt.deprecated(p, "--processes", "--jobs")
    p.add_argument(
        "--shards",
        type=opt.POSITIVE,
        help="AutoAttack's batches as this many jobs of the grid's submitit launcher "
        "(--launcher), merged into one eval file; sample for sample the unsharded result",
    )
    p.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="where --shards run: processes on this machine or SLURM jobs",
    )
    p.add_argument("--partition", help="SLURM partition for --shards")
    opt.out(p, "json")
    p.add_argument(
        "--add",
        action="store_true",
        help="add these attacks to the eval file already there (same checkpoint, data and "
        "eps), each on its own --n: e.g. --attack aa --n 100 beside PGD-10 on 2000. On another "
        "n, clean and the file's PGD accuracies are measured on those samples too, so the "
        "masking flags compare the same images",
    )
    opt.data_and_device(p)
    opt.reference_source(p)
    usermodel.add(p.add_argument_group("your own model (with --model pkg.module:factory)"))
    opt.add(p, "quiet", "work")
    p.set_defaults(func=run)
