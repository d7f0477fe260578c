"""Training throughput at paper scale: seconds per epoch for every family and method.

Times a few optimizer steps of each model on random data shaped like the chosen preset
(MNIST: batch 256, L = 784, C = 1; CIFAR-10: L = 1024, C = 3) and extrapolates to one epoch
(60,000 or 50,000 samples). `--amp` adds bfloat16 autocast (CUDA only).

    python benchmarks/train_speed.py --preset mnist --device cuda [--amp] [--methods st,pgd]
"""

from __future__ import annotations

import argparse
import time

import torch

from ssmprobe.models import FAMILIES, build_model, model_config
from ssmprobe.training.fit import _autocast, train_config, training_loss

TRAIN_SIZE = {"mnist": 60_000, "cifar10": 50_000, "digits": 1437}


def seconds_per_step(model, config, x, y, device, amp: bool, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    for i in range(steps + 1):  # the first step warms up kernels and allocator
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with _autocast(device, amp):
            loss = training_loss(model, model, x, y, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="mnist", choices=sorted(TRAIN_SIZE))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=",".join(FAMILIES))
    parser.add_argument("--methods", default="st,pgd,trades")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    data_shape = {"mnist": (784, 1), "cifar10": (1024, 3), "digits": (64, 1)}[args.preset]
    print(f"preset {args.preset}, device {device}, amp {args.amp}")
    for name in args.models.split(","):
        model = build_model(model_config(name, args.preset)).to(device)
        for method in args.methods.split(","):
            config = train_config(args.preset, name, method=method)
            x = torch.rand(config.batch_size, *data_shape, device=device)
            y = torch.randint(0, 10, (config.batch_size,), device=device)
            step = seconds_per_step(model, config, x, y, device, args.amp, args.steps)
            epoch = step * TRAIN_SIZE[args.preset] / config.batch_size
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
            print(
                f"{name:6s} {method:7s} {step * 1e3:9.1f} ms/step  {epoch:8.1f} s/epoch  "
                f"peak {peak:5.1f} GiB",
                flush=True,
            )


if __name__ == "__main__":
    main()
