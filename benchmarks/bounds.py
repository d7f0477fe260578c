"""Time of `ssmprobe bounds` on one model at length L: every channel, kernel, eigenvalue and
spectral forms and the exact error (`bounds.lti.model_rows`, without S5's per-state rows),
then the spectral factor λ_max(HᵀH) of every kernel alone, with each channel's Lanczos run
stopping when it converges (the default) and with all of them running `iters` steps (`tol` 0,
the cost before per-channel stopping). Default: a 4-layer d = 128 S4 at the CIFAR-10 preset.

    python benchmarks/bounds.py [--model s4] [--preset cifar10] [--ckpt s5_pgd.pt] [--L 1024]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from ssmprobe.bounds.lti import model_rows, perturbation_law, summarise_rows
from ssmprobe.bounds.theorem import spectral_norm_sq
from ssmprobe.loading import load_model
from ssmprobe.models import FAMILIES, build_model, model_config


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    lti = [name for name, family in FAMILIES.items() if not family.time_varying]
    parser.add_argument("--model", default="s4", choices=lti)
    parser.add_argument("--preset", default="cifar10", choices=["digits", "mnist", "cifar10"])
    parser.add_argument("--ckpt", help="a trained checkpoint instead (its own model and size)")
    parser.add_argument("--L", type=int, default=1024)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.ckpt:
        model = load_model(args.ckpt, "cpu")
        meta = model.meta
        what = f"{meta['config']['model']} from {args.ckpt}"
    else:
        model, what = build_model(model_config(args.model, args.preset)), args.model
        what += f" ({args.preset} preset, fresh)"
    law = perturbation_law("uniform", 8 / 255, mu=4 / 255)
    rows: list = []
    total = seconds(lambda: rows.extend(model_rows(model, args.L, law, states=False)))
    with torch.no_grad():
        kernels = [layer.impulse_response(args.L).double() for layer in model.ssm_layers().values()]
    stopping = seconds(lambda: [spectral_norm_sq(h) for h in kernels])
    every_step = seconds(lambda: [spectral_norm_sq(h, tol=0.0) for h in kernels])
    count = sum(h[..., 0].numel() for h in kernels)
    print(
        f"{what}: {len(summarise_rows(rows))} layers, {len(rows)} rows, L = {args.L}, "
        f"{torch.get_num_threads()} thread(s)\n"
        f"  every bound and the exact error: {total:.1f} s\n"
        f"  λ_max(HᵀH) of {count} kernels: {stopping:.1f} s stopping per channel, "
        f"{every_step:.1f} s with every channel running all steps"
    )


if __name__ == "__main__":
    main()
