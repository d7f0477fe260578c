"""Time of `ssmprobe bounds` on a paper-scale model: a 4-layer d = 128 S4 (CIFAR-10 preset) at
L = 1024, every channel, kernel, eigenvalue and spectral forms and the exact error.

    python benchmarks/bounds.py [--model s4] [--L 1024]
"""

from __future__ import annotations

import argparse
import time

import torch

from ssmprobe.layer_bounds import model_rows, perturbation_law, summarise_rows
from ssmprobe.models import build_model, model_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="s4", choices=["s4", "dss", "mega"])
    parser.add_argument("--L", type=int, default=1024)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(model_config(args.model, "cifar10"))
    law = perturbation_law("uniform", 8 / 255, mu=4 / 255)
    start = time.perf_counter()
    rows = model_rows(model, args.L, law)
    seconds = time.perf_counter() - start
    layers = summarise_rows(rows)
    print(
        f"{args.model} (cifar10 preset, {len(layers)} layers, {len(rows)} channels), L = {args.L}, "
        f"{torch.get_num_threads()} thread(s): {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
