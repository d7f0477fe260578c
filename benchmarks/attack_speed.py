"""Attack speed on the bundled PGD-AT checkpoints, every speed-up on and off in one run.

For each family's `FAMILY_pgd.pt` on the first N test digits: ms per forward + backward pass
to the input at batch 100 (weights frozen, as in an attack; the least disturbed of --repeat,
off and on alternating pass by pass), and the wall time and accuracy of PGD-10 and of standard
AutoAttack, each measured twice: with `SSMPROBE_NO_SPEEDUPS=1` (kernels recomputed every pass;
AutoAttack in one process with `ssmprobe eval`'s batch) and without (the defaults;
AutoAttack's batches of `--batch-size` over `--workers` processes). Per-sample results agree
where both use one batch size (sharding never changes them, `tests/test_attack_speed.py`);
across batch sizes AutoAttack's random starts differ, so the table says whether they still
agree. Time it alone on the machine: a second job on the same cores slows both several-fold.

    python benchmarks/attack_speed.py [--families dss,mamba] [--n 100] [--no-aa] [--workers 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from ssmprobe.attacks import attack_mode, evaluate_attack, parse_attack
from ssmprobe.data import load_dataset, make_loader
from ssmprobe.evaluation.shards import sharded_attack
from ssmprobe.loading import load_model
from ssmprobe.models import FAMILIES
from ssmprobe.models.base import speedups


def pass_ms(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeat: int
) -> dict[bool, float]:
    """Best-of-repeat ms of one forward + backward to the input, weights frozen, with the
    speed-ups off (False) and on (True), the two alternating pass by pass so that the VM's
    drift touches both alike."""
    times: dict[bool, list[float]] = {False: [], True: []}
    with attack_mode(model, True):
        for _ in range(repeat + 1):  # the first pass warms caches and allocators up
            for on in (False, True):
                with speedups(on):
                    x_in = x.detach().requires_grad_(True)
                    start = time.perf_counter()
                    torch.nn.functional.cross_entropy(model(x_in), y).backward()
                    times[on].append(time.perf_counter() - start)
    return {on: 1000 * min(t[1:]) for on, t in times.items()}  # the least disturbed pass


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2, help="AutoAttack processes when on")
    parser.add_argument("--batch-size", type=int, default=50, help="AutoAttack's batch when on")
    parser.add_argument(
        "--off-batch-size",
        type=int,
        default=256,
        help="AutoAttack's batch when off (default: `ssmprobe eval`'s, one batch for n <= 256)",
    )
    parser.add_argument("--no-aa", action="store_true", help="skip AutoAttack")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    rows = []
    for family in args.families.split(","):
        name = f"{family}_pgd.pt"
        model = load_model(name)
        data = load_dataset("digits", "test").head(args.n)
        x, y = data[:]
        row: dict[str, Any] = {"family": family}
        passes = pass_ms(model, x[:100], y[:100], args.repeat)
        for on in (False, True):
            tag = "on" if on else "off"
            with speedups(on):
                row[f"pass_{tag}"] = passes[on]
                pgd = parse_attack("pgd10", "digits")
                loader = make_loader(data, 100)
                row[f"pgd_s_{tag}"], res = timed(
                    evaluate_attack, model, loader, pgd, progress=False
                )
                row[f"pgd_acc_{tag}"] = res["acc"]
                if not args.no_aa:
                    workers = args.workers if on else 1
                    batch = args.batch_size if on else args.off_batch_size
                    row[f"aa_s_{tag}"], result = timed(
                        sharded_attack, name, "aa", args.n, batch, workers
                    )
                    row[f"aa_correct_{tag}"] = result.correct
            print(family, tag, {k: v for k, v in row.items() if k.endswith(tag)}, flush=True)
        rows.append(row)
    print()
    head = "| family | pass ms off | on | ratio | PGD-10 s off | on | ratio | PGD-10 acc off / on |"
    if not args.no_aa:
        head += " AA s off | on | ratio | AA acc off / on | same per sample |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        cells = [
            r["family"],
            f"{r['pass_off']:.1f}",
            f"{r['pass_on']:.1f}",
            f"{r['pass_off'] / r['pass_on']:.2f}x",
            f"{r['pgd_s_off']:.2f}",
            f"{r['pgd_s_on']:.2f}",
            f"{r['pgd_s_off'] / r['pgd_s_on']:.2f}x",
            f"{100 * r['pgd_acc_off']:.2f} / {100 * r['pgd_acc_on']:.2f}",
        ]
        if not args.no_aa:
            off, on = r["aa_correct_off"], r["aa_correct_on"]
            cells += [
                f"{r['aa_s_off']:.1f}",
                f"{r['aa_s_on']:.1f}",
                f"{r['aa_s_off'] / r['aa_s_on']:.2f}x",
                f"{100 * sum(off) / len(off):.2f} / {100 * sum(on) / len(on):.2f}",
                "yes" if off == on else "NO",
            ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
