"""The `ssmprobe` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from . import __version__
from .checkpoint import CheckpointError, save_checkpoint
from .data import DATASETS, DatasetError, load_dataset
from .models import MODELS, PRESETS, build_model, model_config
from .train import TrainConfig, default_device, train_standard


def _train(args: argparse.Namespace) -> int:
    train_set = load_dataset(args.dataset, "train", args.data_dir)
    test_set = load_dataset(args.dataset, "test", args.data_dir)
    overrides = {"d_input": train_set.channels, "n_classes": train_set.num_classes, "ads": args.ads}
    for key in ("d_model", "n_layers", "d_state"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    config = model_config(args.model, args.preset or args.dataset, **overrides)
    torch.manual_seed(args.seed)
    device = torch.device(args.device) if args.device else default_device()
    model = build_model(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.model} on {args.dataset}: {n_params:,} parameters, device {device}")
    train_config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed
    )
    history = train_standard(model, train_set, test_set, train_config, progress=not args.quiet)
    for row in history:
        print(
            f"epoch {row['epoch']:3d}  test clean acc {100 * row['test_clean_acc']:6.2f}%  "
            f"loss {row['test_clean_loss']:.4f}"
        )
    out = Path(args.out) / f"{args.model}_{args.dataset}_st" / "last.pt"
    meta = {"dataset": args.dataset, "method": "st", "epoch": args.epochs, "metrics": history[-1]}
    save_checkpoint(out, config.to_dict(), model.state_dict(), meta)
    print(f"clean accuracy {100 * history[-1]['test_clean_acc']:.2f}%  checkpoint {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssmprobe", description="Adversarial robustness of deep state space models."
    )
    parser.add_argument("--version", action="version", version=f"ssmprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train a sequence classifier",
        description="Train an SSM classifier and save its checkpoint under --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("--model", choices=sorted(MODELS), default="s4")
    train.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    train.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="architecture preset (Table 3); defaults to the dataset's",
    )
    train.add_argument("--ads", choices=["relu", "tanh", "sigmoid"], help="AdS after each SSM")
    train.add_argument("--d-model", type=int, help="hidden width d (preset's if unset)")
    train.add_argument("--n-layers", type=int, help="number of blocks (preset's if unset)")
    train.add_argument("--d-state", type=int, help="state size N (family default if unset)")
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", help="torch device (CUDA when present, else CPU)")
    train.add_argument(
        "--data-dir",
        help="where dataset files are (default $SSMPROBE_DATA or ~/.cache/ssmprobe/data)",
    )
    train.add_argument("--out", default="runs", help="directory for run outputs")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DatasetError, CheckpointError, ValueError) as err:
        print(f"ssmprobe: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
