"""`ssmprobe zoo`: the bundled checkpoints and their accuracies."""

from __future__ import annotations

import argparse

from ssmprobe.cli import options as opt


def run(args: argparse.Namespace) -> int:
    from ssmprobe.zoo import format_zoo, list_models

    print(format_zoo(list_models()))
    return 0


def add(sub: opt.Subparsers) -> None:
    p = opt.command(
        sub,
        "zoo",
        "the bundled checkpoints: family, method, AdS, clean / PGD-10 / AA accuracy",
        "The bundled checkpoints with the accuracies their manifest records (ε and the number "
        "of test samples in the last columns). Any name works where a command takes --ckpt "
        "(`ssmprobe eval --ckpt dss_pgd`) and in Python (`ssmprobe.load_model('dss_pgd')`).",
    )
    p.set_defaults(func=run)
