"""`ssmprobe discrepancy`, `plot` and `attribute`: what happens inside a model under attack."""

from __future__ import annotations

import argparse

from ssmprobe.cli import options as opt
from ssmprobe.cli import usermodel


def discrepancy(args: argparse.Namespace) -> int:
    from ssmprobe.loading import load_model
    from ssmprobe.probe.discrepancy import discrepancy, format_summary, save

    reference = opt.reference(args)
    target, data = usermodel.target(args, args.ckpt)  # your own model: its data as "test"
    targets, extra = ([target], {"data": data}) if data is not None else (target, {})
    for ckpt in targets if data is None else []:  # every file checked before hours of work
        load_model(ckpt, "cpu", reference)
    results = []
    for ckpt in targets:
        result = discrepancy(
            ckpt,
            **extra,
            splits=opt.comma_list(args.split, "--split", "train,test"),
            n=args.n,
            batch_size=args.batch_size,
            attack=args.attack,
            eps=args.eps,
            data_dir=args.data_dir,
            device=args.device,
            seed=args.seed,
            progress=not args.quiet,
            reference=reference,
            spread_seeds=opt.indices(args.spread_seeds) or (),
        )
        print(format_summary(result, opt.FORMS[args.form]) + "\n")
        results.append(result)
    print("written: " + ", ".join(map(str, save(results, args.out))))
    return 0


def plot(args: argparse.Namespace) -> int:
    from ssmprobe.probe.plots import plot_discrepancy

    paths = plot_discrepancy(
        args.results, args.out, norm=opt.FORMS[args.form], formats=opt.formats(args)
    )
    print("written: " + ", ".join(map(str, paths)))
    return 0


def attribute(args: argparse.Namespace) -> int:
    from ssmprobe.probe.attribution import (
        attribute_checkpoint,
        format_attribution,
        save_attribution,
    )

    target, data = usermodel.target(args, args.ckpt)
    result = attribute_checkpoint(
        target,
        data=data,
        n=args.n,
        method=args.attribution,
        split=args.split,
        attack=args.attack,
        eps=args.eps,
        data_dir=args.data_dir,
        device=args.device,
        seed=args.seed,
        n_steps=args.ig_steps,
        reference=opt.reference(args),
        progress=not args.quiet,
    )
    paths = save_attribution(result, args.out, opt.formats(args))
    print(format_attribution(result))
    print("written: " + ", ".join(map(str, paths)))
    return 0


def add(sub: opt.Subparsers) -> None:
    p = opt.command(
        sub,
        "discrepancy",
        "per-component feature discrepancy between clean and adversarial inputs (Figs. 3-4)",
        "For each checkpoint and split: attack the first N samples, record the input and "
        "output features of every component (SSM, linear, attention, AdS, norm) on the clean "
        "and the adversarial forward, and report MSE and sequence-softmax KL before and after "
        "each component, their change and rate (change / before, %), averaged over layers per "
        "component kind. Writes a tidy CSV (one row per checkpoint, layer, component, split, "
        "metric, norm) and a JSON beside it with the per-position curves.",
    )
    opt.add(p, "ckpt", "several", action="append")
    opt.add(p, "split", "several", default="train,test")
    opt.add(p, "n", "discrepancy", default=1000)
    opt.add(p, "batch_size", "work", default=100)
    opt.add(p, "attack", "one", default="pgd10")
    opt.add(p, "eps", "attack")
    opt.add_form(p, "discrepancy")
    opt.add(p, "seed", "attack", default=0)
    p.add_argument(
        "--spread-seeds",
        metavar="SEEDS",
        help="other attack seeds (e.g. 1,2): each kind's rate is also measured with their "
        "random starts, one more probe each; a direction is read only where every seed and the "
        "95%% bootstrap interval over samples (always computed) agree (default: none)",
    )
    opt.out(p, "csv", default="discrepancy.csv")
    opt.data_and_device(p)
    opt.reference_source(p)
    usermodel.add(p.add_argument_group("your own model (with --model pkg.module:factory)"))
    opt.add(p, "quiet", "work")
    p.set_defaults(func=discrepancy)

    p = opt.command(
        sub, "plot", "figures from saved results (discrepancy: Figs. 3-4 and per-position curves)"
    )
    p.add_argument("what", choices=["discrepancy"], help="which results")
    p.add_argument("results", nargs="+", help="CSV files written by `ssmprobe discrepancy`")
    opt.out(p, "figures", default="figures")
    opt.add_form(p, "plot")
    opt.add(p, "pdf")
    p.set_defaults(func=plot)

    p = opt.command(
        sub,
        "attribute",
        "captum attributions: per-time-step inputs, and each component's share of the "
        "adversarial logit drop",
        "Integrated Gradients (black baseline) or Saliency of the true-class logit for the first "
        "N samples, clean and adversarial, drawn image-shaped beside the perturbation; and, per "
        "component, Layer Integrated Gradients from the clean to the adversarial activation at "
        "its exit: the part of the true-class logit drop that flows through it (100% for a "
        "component every path crosses).",
    )
    opt.add(p, "ckpt", "one")
    p.add_argument("--attribution", choices=["ig", "saliency"], default="ig", help="method")
    opt.add(p, "n", "attribute", default=8)
    opt.add(p, "split", "one", default="test", choices=["train", "test"])
    opt.add(p, "attack", "one", default="pgd10")
    opt.add(p, "eps", "attack")
    p.add_argument("--ig-steps", type=opt.POSITIVE, default=32, help="integration steps of IG")
    opt.add(p, "seed", "attack", default=0)
    opt.out(p, "folder", default="figures")
    opt.add(p, "pdf")
    opt.data_and_device(p)
    opt.reference_source(p)
    usermodel.add(p.add_argument_group("your own model (with --model pkg.module:factory)"))
    opt.add(p, "quiet", "work")
    opt.renamed(p, "--method", "--attribution")
    opt.renamed(p, "--steps", "--ig-steps")
    p.set_defaults(func=attribute)
