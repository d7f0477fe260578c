"""Speed of `ssmprobe poison`'s trainer against a plain autograd loop (issue 9's benchmark).

Gradient steps per second of (a) the batched closed-form numpy trainer, all 2·S runs (S seeds ×
baseline/poisoned) in one step, and (b) a plain PyTorch autograd loop: one run at a time, the
student as its recurrence, float64, the same adaptive step. Then the wall time of the whole
default experiment (`run_seeds_in_parallel`, 4 seeds) with one process and with one per core.

    python benchmarks/poison.py [--steps 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ssmprobe.poison.experiment import (
    LinearStudent,
    PoisonConfig,
    init_student,
    run_seeds_in_parallel,
    training_set,
)


def closed_form_rate(config: PoisonConfig, steps: int) -> float:
    runs = [(s, seed) for s in ("baseline", "poisoned") for seed in config.seeds]
    student = LinearStudent(runs, config)
    lr = np.full(len(runs), 1e-3)
    start = time.perf_counter()
    for _ in range(steps):
        student.loss_and_norm()
        student.step(lr)
    return steps * len(runs) / (time.perf_counter() - start)


def autograd_rate(config: PoisonConfig, steps: int) -> float:
    """Run-steps per second of one run at a time with autograd through the recurrence."""
    inputs, targets = (torch.from_numpy(v) for v in training_set(200, config, poisoned=True))
    params = [torch.tensor(v, requires_grad=True) for v in init_student(200, config).values()]
    a, b, c = params
    moment = 0.0
    start = time.perf_counter()
    for t in range(steps):
        x = torch.zeros(len(inputs), config.student_dim, dtype=torch.float64)
        for k in range(config.length):
            x = a * x + b * inputs[:, k, None]
        loss = ((x @ c - targets) ** 2).mean()
        grads = torch.autograd.grad(loss, params)
        norm = sum(g.norm() for g in grads).item()
        moment = 0.8 * moment + 0.2 * norm
        lr = config.base_lr / ((moment / (1 - 0.8 ** (t + 1))) ** 0.5 + 1e-6)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= lr * g
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    config = PoisonConfig()
    fast = closed_form_rate(config, args.steps)
    slow = autograd_rate(config, args.steps)
    print(f"closed form, 8 runs batched: {fast:,.0f} run-steps/s")
    print(f"plain autograd loop, 1 run:  {slow:,.0f} run-steps/s  (ratio {fast / slow:.0f}x)")
    for workers in (1, None):
        start = time.perf_counter()
        run_seeds_in_parallel(config, workers=workers, progress=False)
        label = "1 process" if workers == 1 else "1 per core"
        print(
            f"default experiment (4 seeds x 2 settings), {label}: "
            f"{time.perf_counter() - start:.2f} s"
        )


if __name__ == "__main__":
    main()
