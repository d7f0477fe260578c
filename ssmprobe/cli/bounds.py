"""`ssmprobe bounds`: Theorem 4.1.1 checked on a model's trained SSM layers."""

from __future__ import annotations

import argparse

from ssmprobe.bounds.check import PERTURB_CHOICES
from ssmprobe.cli import options as opt
from ssmprobe.cli import usermodel
from ssmprobe.models import FAMILIES


def run(args: argparse.Namespace) -> int:
    from ssmprobe.bounds.check import check_model

    model, source = args.model, args.ckpt
    if usermodel.given(args):  # your own model: its readable SSM layers, --data if given
        model = usermodel.load(args)
        source = usermodel.load_data(args) if args.data is not None else None
    result = check_model(
        model,
        source,
        init=args.init,
        L=args.L,
        perturb=args.perturb,
        eps=args.eps,
        mu=args.mu,
        n=args.n,
        samples=args.samples,
        layers=opt.indices(args.layers),
        channels=opt.indices(args.channels),
        data_dir=args.data_dir,
        reference=opt.reference(args, own_model=True),
        progress=not args.quiet,
    )
    print(result.format())
    written = result.save(args.out)
    if args.figures:
        written += result.figures(args.figures, formats=opt.formats(args))
    print("written: " + ", ".join(map(str, written)))
    return 0


def add(sub: opt.Subparsers) -> None:
    p = opt.command(
        sub,
        "bounds",
        "Theorem 4.1.1's output-error bounds checked on a model's trained SSM layers",
        "For every SSM layer and channel: eigenvalues of A-bar, C-bar B-bar, the impulse "
        "response h1, the kernel-form (eq. 14/15) and eigenvalue-form (eq. 11/16) bounds, the "
        "spectral bound M L lambda_max(H^T H), and the exact output error E||y'-y||^2 of an "
        "i.i.d. input perturbation, with which bounds hold. LTI SISO layers (S4, DSS, Mega's "
        "EMA) per channel; S5's MIMO layer per output channel and per state; Mamba "
        "(time-varying) per inner channel, averaged over the generalised H of --n real test "
        "inputs (--L is then the data's length), with the Delta -> 0 analysis of B-bar. "
        "--model defaults to the --ckpt's family and is needed with --init, without --ckpt (the "
        "bundled MODEL_pgd.pt is checked) and with --from reference. --eps is the noise's scale "
        "(default: 0.1), or with --perturb adversarial the attack's budget (default: the "
        "checkpoint's training ε).",
    )
    opt.add(p, "model", "bounds", type=_family_or_factory)
    opt.add(p, "ckpt", "one")
    p.add_argument("--init", action="store_true", help="a freshly initialised digits model")
    p.add_argument("--L", type=opt.POSITIVE, default=64, help="sequence length")
    opt.add(p, "eps", "bounds")
    p.add_argument("--mu", type=opt.FINITE, default=0.0, help="mean of the perturbation")
    p.add_argument(
        "--perturb",
        choices=PERTURB_CHOICES,
        default="uniform",
        help="i.i.d. noise around --mu, or what PGD-10 changes at each SSM layer's input",
    )
    opt.add(p, "n", "bounds", default=360)
    opt.add(p, "data_dir")
    p.add_argument(
        "--samples", type=opt.COUNT, default=0, help="Monte Carlo draws as a cross-check"
    )
    p.add_argument("--layers", help="layer indices, e.g. 0,1 (default: all)")
    p.add_argument("--channels", help="channel indices, e.g. 0-7 (default: all)")
    opt.out(p, "csv", default="bounds.csv")
    opt.add(p, "figures")
    opt.add(p, "pdf")
    opt.add(p, "quiet", "work")
    opt.reference_source(p, own_model=True)
    usermodel.add(p.add_argument_group("your own model (with --model pkg.module:factory)"))
    p.set_defaults(func=run)


def _family_or_factory(text: str) -> str:
    if text in FAMILIES or ":" in text:
        return text
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from {', '.join(FAMILIES)}, or pkg.module:factory)"
    )
