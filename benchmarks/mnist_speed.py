"""Training and attack speed at MNIST's length (L = 784), the paper's MNIST architecture; with
`--dataset cifar10`, at CIFAR-10's (L = 1024, 3 channels, 4 layers: the published S4s' setting).

For each family, on random inputs shaped like MNIST at `--batch` (default 64, the CPU preset's):
ms of one training forward + backward (ST), of one forward + backward to the input with the
weights frozen (what every attack step costs), and of one whole PGD-AT and TRADES step
(10-step attack, training loss, backward, AdamW step). Each is the least disturbed of
`--repeat` (the VM's drift reaches 2x between runs). Time it alone on the machine: a second job
on the same cores slows both several-fold. To compare two versions of the code, run this file
against each (`PYTHONPATH=<other checkout> python benchmarks/mnist_speed.py`), alternating.

    python benchmarks/mnist_speed.py [--families s4,dss,s5] [--batch 64] [--repeat 3]
    python benchmarks/mnist_speed.py --dataset cifar10 --families s4 --batch 100
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ssmprobe.attacks import attack_mode
from ssmprobe.data import DATASETS
from ssmprobe.models import build_model, model_config
from ssmprobe.models.registry import ARCHS
from ssmprobe.training.fit import train_config, training_loss


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warms caches and allocators up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def family_row(family: str, batch: int, repeat: int, dataset: str = "mnist") -> list[float]:
    """ms of a training pass, a frozen pass, a PGD-AT step and a TRADES step of `family`."""
    torch.manual_seed(0)
    model = build_model(model_config(family, dataset, **ARCHS["reference"]))
    info = DATASETS[dataset]
    x, y = torch.rand(batch, info.seq_len, info.channels), torch.randint(0, 10, (batch,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def training_pass() -> None:
        F.cross_entropy(model(x), y).backward()

    def frozen_pass() -> None:
        with attack_mode(model, True):
            F.cross_entropy(model(x.clone().requires_grad_(True)), y).backward()

    def step(method: str) -> Callable[[], None]:
        config = train_config(dataset, family, method=method, batch_size=batch)

        def run() -> None:
            loss = training_loss(model, model, x, y, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return run

    row = [best_ms(f, repeat) for f in (training_pass, frozen_pass)]
    return row + [best_ms(step(m), max(1, repeat - 1)) for m in ("pgd", "trades")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", default="s4,dss,s5")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.dataset} (L = {DATASETS[args.dataset].seq_len})")  # fmt: skip
    print("| family | training fwd+bwd ms | frozen pass ms | PGD-AT step ms | TRADES step ms |")
    print("|---|---:|---:|---:|---:|")
    for family in args.families.split(","):
        row = family_row(family, args.batch, args.repeat, args.dataset)
        print(f"| {family} | " + " | ".join(f"{v:.0f}" for v in row) + " |", flush=True)

if __name__ == "__main__":
    main()
