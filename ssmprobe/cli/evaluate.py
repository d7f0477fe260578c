"""`ssmprobe eval`: clean, PGD and AutoAttack accuracy of a checkpoint."""

from __future__ import annotations

import argparse

from ssmprobe.cli import options as opt


def run(args: argparse.Namespace) -> int:
    from ssmprobe.evaluation.evaluate import evaluate_checkpoint, format_results

    results = evaluate_checkpoint(
        args.ckpt,
        opt.comma_list(args.attack),
        n=args.n,
        batch_size=args.batch_size,
        eps=args.eps,
        data_dir=args.data_dir,
        device=args.device,
        progress=not args.quiet,
        reference=opt.reference(args),
        out=args.out,
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
    opt.add(p, "ckpt", required=True)
    opt.add(p, "attack", default="pgd10,aa")
    opt.add(p, "n", default=1000)
    opt.add(p, "eps")
    opt.add(p, "batch_size", default=256)
    opt.out(p, "json")
    opt.data_and_device(p)
    opt.reference_source(p)
    opt.add(p, "quiet")
    p.set_defaults(func=run)
