"""`ssmprobe import` and `export`: checkpoints of the paper's reference code."""

from __future__ import annotations

import argparse

from ssmprobe.cli import options as opt
from ssmprobe.interop.reference import (
    ADS_FORM_NAMES,
    REFERENCE_FAMILIES,
    export_checkpoint,
    import_reference,
)


def import_(args: argparse.Namespace) -> int:
    out, source = import_reference(args.state_dict, args.out, args.model, args.dataset, args.ads)
    if source["ads_form"]:
        form = source["ads_form"]
        print(f"AdS form: {form} ({ADS_FORM_NAMES[form]})")
    print(f"written: {out} ({args.model} trained on {args.dataset}, from {args.state_dict})")
    return 0


def export(args: argparse.Namespace) -> int:
    count = export_checkpoint(args.ckpt, args.out)
    print(f"written: {args.out} ({count} tensors in the reference layout)")
    return 0


def add(sub: opt.Subparsers) -> None:
    p = opt.command(
        sub,
        "import",
        "convert a state dict of the paper's reference code into an ssmprobe checkpoint",
        "Reads a plain torch.save(model.state_dict()) of the reference S4 or Mamba classifier "
        "(loaded with weights_only=True: nothing in it runs), checks every key and shape, and "
        "writes a native checkpoint whose model reproduces that code's forward (its view input "
        "order, no GELUs, AdS in the form its keys hold: scale.weight alone is the paper's "
        "σ(W y) ⊙ y, scale and bias with biases the Jacobian follow-up's; --ads names σ), with "
        "the source file, its SHA-256, the AdS form and the converter in meta['source'].",
    )
    p.add_argument("state_dict", help="the reference code's .pt file")
    opt.add(p, "model", "reference", required=True, choices=REFERENCE_FAMILIES)
    opt.add(p, "dataset", "reference", required=True)
    opt.add(p, "ads", "reference")
    opt.out(p, "checkpoint", required=True)
    p.set_defaults(func=import_)
    p = opt.command(
        sub,
        "export",
        "write a --arch reference checkpoint under the reference code's key names",
        "The inverse of `import`: the weights of an S4 or Mamba checkpoint trained with --arch "
        "reference as a plain state dict in the reference code's layout (mapping_layers.i, "
        "norms.i, input, post_norm, output; S4's kernel with C̃ for the length of the "
        "checkpoint's dataset).",
    )
    opt.add(p, "ckpt", "one", required=True)
    opt.out(p, "checkpoint", required=True)
    p.set_defaults(func=export)
