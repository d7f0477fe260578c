"""`ssmprobe train`: one run, ST, PGD-AT or TRADES."""

from __future__ import annotations

import argparse

from ssmprobe.cli import options as opt
from ssmprobe.models import FAMILIES, PRESETS
from ssmprobe.models.ads import FORMS
from ssmprobe.models.dss import B_NORMS
from ssmprobe.models.registry import ARCHS
from ssmprobe.training.augment import AUGMENTS
from ssmprobe.training.run import ARCH_OPTIONS, TRAIN_OPTIONS, train
from ssmprobe.vocab import METHODS


def run(args: argparse.Namespace) -> int:
    given = {k: getattr(args, k) for k in (*ARCH_OPTIONS, *TRAIN_OPTIONS) if hasattr(args, k)}
    done = train(
        args.model,
        args.dataset,
        args.method,
        ads=args.ads,
        out=args.out,
        name=args.name,
        resume=args.resume,
        force=args.force,
        preset=args.preset,
        arch=args.arch,
        data_dir=args.data_dir,
        device=args.device,
        progress=not args.quiet,
        **given,
    )
    if done.history:
        print(done.summary())
    return 0


def add(sub: opt.Subparsers) -> None:
    p = opt.command(
        sub,
        "train",
        "train a classifier (ST, PGD-AT or TRADES)",
        "Train an SSM classifier into OUT/NAME: metrics.jsonl after every epoch, best.pt "
        "(highest test PGD accuracy) and last.pt. Unset options take the preset's value "
        "(Table 4 for mnist and cifar10). Run under torchrun for data-parallel training.",
    )
    opt.add(p, "model", "family", choices=list(FAMILIES), default="s4")
    opt.add(p, "dataset", "train", default="digits")
    p.add_argument(
        "--method", choices=METHODS, default="st", help="st: standard, pgd: PGD-AT, trades: TRADES"
    )
    opt.add(p, "ads", "train")
    p.add_argument(
        "--ads-form",
        choices=FORMS,
        help="paper: AdS as the paper and its code compute it, σ(W y) ⊙ y; jac (0.2.0's "
        "'reference'): as the Jacobian follow-up's code does, σ(W_s y + b_s) ⊙ y + σ(W_b y + "
        "b_b) (default: paper)",
    )
    p.add_argument(
        "--b-norm",
        choices=B_NORMS,
        help="DSS only: its B̄. exp: the ZOH (e^{λΔ} - 1)/λ of DSS-exp; softmax: the paper's "
        "eq. 7, (e^{λΔ} - 1)/(λ(e^{LλΔ} - 1)) with L the sequence length, i.e. DSS-softmax. "
        "Both give the same set of kernels (the factor e^{LλΔ} - 1 moves into C); the "
        "parametrisation, and so training, differs (default: exp)",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="architecture and training preset (default: the dataset's)",
    )
    p.add_argument("--d-model", type=opt.POSITIVE, help="hidden width d (default: the preset's)")
    p.add_argument("--n-layers", type=opt.POSITIVE, help="number of blocks (default: the preset's)")
    p.add_argument("--d-state", type=opt.POSITIVE, help="state size N (default: the family's)")
    p.add_argument(
        "--arch",
        choices=sorted(ARCHS),
        help="table3: the paper's Table 3 as written; reference: its reference code's blocks "
        "(LayerNorm(x + block(x)), no GELU in the S4 block, the paper's AdS, x.view(B, HW, C)), "
        "which produced Tables 1-2 (default: reference for mnist and cifar10, table3 for digits)",
    )
    p.add_argument(
        "--augment",
        choices=AUGMENTS,
        help="random 4-pixel crop and horizontal flip of each training image, as the "
        "reference code does for CIFAR-10 (default: the preset's, crop-flip for cifar10, else "
        "none)",
    )
    p.add_argument(
        "--residual",
        action=argparse.BooleanOptionalAction,
        help="skip connection around each block (default: the preset's, on for Mamba at digits)",
    )
    p.add_argument(
        "--epochs",
        type=opt.POSITIVE,
        help="training epochs (default: the preset's, or the family's departure from it)",
    )
    opt.add(p, "batch_size", "train")
    p.add_argument(
        "--lr",
        type=opt.POSITIVE_FLOAT,
        help="AdamW learning rate, cosine-annealed (default: the preset's or the family's)",
    )
    opt.add(p, "eps", "train")
    p.add_argument("--alpha", type=opt.POSITIVE_FLOAT, help="PGD step size (default: the preset's)")
    p.add_argument(
        "--eps-warmup",
        type=opt.COUNT,
        metavar="EPOCHS",
        help="ramp the training attack's ε (and α) linearly from 0 over the first EPOCHS "
        "epochs; per-epoch evaluation always uses the full ε (default: the preset's)",
    )
    p.add_argument(
        "--steps", type=opt.POSITIVE, help="PGD steps (default: the preset's, 10 as in the paper)"
    )
    p.add_argument(
        "--beta", type=opt.number(float, 0), help="TRADES KL weight (default: the preset's)"
    )
    opt.add(p, "seed", "train", default=0)
    p.add_argument(
        "--train-eval-size",
        type=opt.POSITIVE,
        help="size of the fixed train subset evaluated after every epoch (default: the "
        "preset's, 360 on digits, 500 on mnist10k, 1000 on MNIST and CIFAR-10)",
    )
    p.add_argument(
        "--test-eval-size",
        type=opt.POSITIVE,
        help="test samples evaluated after every epoch (default: the preset's, all; 500 on "
        "mnist10k)",
    )
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    opt.data_and_device(p)
    opt.out(p, "runs", default="runs")
    p.add_argument(
        "--name",
        help="run folder name (default: the zoo's name and the dataset, "
        "MODEL_METHOD[_ads-ADS]_DATASET[_seedN]: dss_trades_ads-relu_digits)",
    )
    p.add_argument("--resume", action="store_true", help="continue from NAME/last.pt (must exist)")
    opt.add(p, "force", "train")
    opt.add(p, "quiet", "train")
    p.set_defaults(func=run)
