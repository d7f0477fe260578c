"""Cost of `discrepancy` against the bare work it must do, and its peak memory against N.

Time: for the first N train samples of a checkpoint's dataset, the probe (`probe.discrepancy.
collect`: attack, two recorded forwards, running sums) against the bare work of the same run
(the same attack plus two plain forwards), alternating the two `--repeats` times and keeping
each one's fastest. Overhead = probe / bare - 1 (goal: at most 15%).

Memory: peak resident memory (ru_maxrss) of a fresh process that probes N samples, for two N
(the train split repeated as often as needed), to show that it does not grow with N.

`--ckpt hf-mamba` times a wrapped model instead (`ssmprobe.wrap`): transformers' MambaModel
(random weights, d = 64, 2 layers, state 16) under a linear head on digits, its mixers and norms
as components: the probe's overhead on a user's model.

    python benchmarks/discrepancy.py [--ckpt s4_pgd.pt|hf-mamba] [--n 1000] [--memory-n 1000,5000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import torch

from ssmprobe.attacks import attack_config, run_attack
from ssmprobe.data import load_dataset, make_loader
from ssmprobe.loading import load_model
from ssmprobe.probe.discrepancy import collect


def hf_mamba() -> tuple[torch.nn.Module, dict]:
    """transformers' MambaModel under a linear head, wrapped by pattern."""
    from transformers import MambaConfig, MambaModel

    import ssmprobe

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            config = MambaConfig(hidden_size=64, state_size=16, num_hidden_layers=2, vocab_size=8)
            self.encoder, self.backbone = torch.nn.Linear(1, 64), MambaModel(config)
            self.head = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hidden = self.backbone(inputs_embeds=self.encoder(x)).last_hidden_state
            return self.head(hidden.mean(1))

    torch.manual_seed(0)
    spec = {"ssm": "backbone.layers.*.mixer", "norm": "backbone.layers.*.norm"}
    probe = ssmprobe.wrap(Classifier().eval(), spec, eps=0.1, alpha=0.025, layout="bld")
    return probe, {**probe.meta, "dataset": "digits", "train": {"eps": 0.1, "alpha": 0.025}}


def load(ckpt: str) -> tuple[torch.nn.Module, dict]:
    if ckpt == "hf-mamba":
        return hf_mamba()
    model = load_model(ckpt, "cpu")
    return model, model.meta


def loader(dataset: str, n: int, batch_size: int):
    data = load_dataset(dataset, "train")
    return make_loader(data.subset(torch.arange(n) % len(data)), batch_size)


def bare(model, batches, attack, seed: int = 0) -> None:
    """The attack and the two forwards the probe needs, nothing recorded."""
    generator = torch.Generator().manual_seed(seed)
    for x, y in batches:
        x_adv = run_attack(model, x, y, attack, generator=generator, seed=seed)
        with torch.no_grad():
            model(x), model(x_adv)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_rss_mib(ckpt: str, n: int, batch_size: int) -> float:
    """Peak RSS of a fresh process that probes n train samples."""
    out = subprocess.run(
        [sys.executable, __file__, "--ckpt", ckpt, "--probe-only", str(n),
         "--batch-size", str(batch_size)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default="s4_pgd.pt")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-n", default="1000,5000")
    parser.add_argument("--probe-only", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    model, meta = load(args.ckpt)
    attack = attack_config("pgd10", meta)
    if args.probe_only:
        collect(model, loader(meta["dataset"], args.probe_only, args.batch_size), attack,
                progress=False)  # fmt: skip
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    batches = list(loader(meta["dataset"], args.n, args.batch_size))
    times = {"bare": [], "probe": []}
    for _ in range(args.repeats):
        times["bare"].append(timed(lambda: bare(model, batches, attack)))
        times["probe"].append(timed(lambda: collect(model, batches, attack, progress=False)))
    best = {k: min(v) for k, v in times.items()}
    print(
        f"{args.ckpt}, {args.n} {meta['dataset']} train samples, {attack.label} at eps "
        f"{attack.eps:g}, {torch.get_num_threads()} thread(s): bare {best['bare']:.2f} s, "
        f"probe {best['probe']:.2f} s, overhead {100 * (best['probe'] / best['bare'] - 1):+.1f}%"
    )
    sizes = [int(s) for s in args.memory_n.split(",") if s]
    peaks = {n: peak_rss_mib(args.ckpt, n, args.batch_size) for n in sizes}
    print("peak RSS: " + ", ".join(f"N = {n}: {mib:.0f} MiB" for n, mib in peaks.items()))
    if len(peaks) > 1:
        low, high = min(peaks.values()), max(peaks.values())
        print(f"largest / smallest: {high / low:.3f}")


if __name__ == "__main__":
    main()
