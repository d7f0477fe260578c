"""AutoAttack's samples split across processes or machines, merged sample for sample.

The first n test samples are cut, in order, into batches of `batch_size`; every batch is attacked
with the same `seed` (as `attacks.evaluate_attack` does batch by batch), so a sample's result
depends on its index, the batch size and the seed, never on how many workers ran or which one
took its batch. Shard i of k takes batches i, i + k, i + 2k, ...; merging the shards gives the
unsharded result sample for sample. Only AutoAttack is sharded: PGD draws its random starts
from one generator running across batches, which a split would change.

    result = sharded_attack("dss_pgd.pt", "aa", n=100, batch_size=50, workers=2)
    result.correct          # per sample: the adversarial prediction equals the label
"""

from __future__ import annotations

import json
import math
import queue
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ssmprobe.attacks import (
    ATTACKS,
    AutoAttackWarning,
    attack_config,
    attack_mode,
    run_attack,
)
from ssmprobe.attacks.run import Estimate
from ssmprobe.data import load_dataset
from ssmprobe.io import write_json
from ssmprobe.loading import load_model


@dataclass
class ShardResult:
    """Per-sample correctness of some of a run's `total` batches (`batches[b]`: that batch's
    samples, in order) and AutoAttack's own check warnings."""

    batches: dict[int, list[bool]]
    total: int
    checks: list[str] = field(default_factory=list)

    @property
    def correct(self) -> list[bool]:
        """Every sample's result in order; refuses a gap (a shard missing from a merge)."""
        missing = sorted(set(range(self.total)) - set(self.batches))
        if missing:
            raise ValueError(f"batches {missing} are missing: merge every shard")
        return [c for b in sorted(self.batches) for c in self.batches[b]]

    @property
    def accuracy(self) -> float:
        correct = self.correct
        return sum(correct) / len(correct)


# In a worker of `sharded_attack` that shows progress: where each batch's (samples, seconds) go.
_done: Queue | None = None


def _report_to(done: Queue | None) -> None:
    global _done
    _done = done


def shard_batches(n: int, batch_size: int, shards: int, index: int) -> list[int]:
    """The batch indices shard `index` of `shards` attacks."""
    if not 0 <= index < shards:
        raise ValueError(f"shard index must be in [0, {shards}), got {index}")
    return list(range(index, math.ceil(n / batch_size), shards))


def attack_shard(
    ckpt: str | Path,
    spec: str,
    n: int,
    batch_size: int,
    batches: Sequence[int],
    seed: int = 0,
    eps: float | None = None,
    data_dir: str | Path | None = None,
    threads: int | None = None,
) -> ShardResult:
    """Attacks the given batches of the checkpoint's first `n` test samples."""
    if threads is not None:
        torch.set_num_threads(threads)
    model = load_model(ckpt)
    meta = model.meta
    config = attack_config(spec, meta, eps)
    if not config.kind.shardable:
        shardable = ", ".join(k.name for k in ATTACKS.values() if k.shardable)
        raise ValueError(f"only {shardable} are sharded, not {spec!r}")
    data = load_dataset(meta["dataset"], "test", data_dir).head(n)
    results: dict[int, list[bool]] = {}
    with warnings.catch_warnings(record=True) as caught, attack_mode(model, True):
        warnings.simplefilter("always", AutoAttackWarning)
        for b in batches:
            start = time.perf_counter()
            x, y = data[b * batch_size : (b + 1) * batch_size]
            x_adv = run_attack(model, x, y, config, seed=seed)
            with torch.no_grad():
                results[b] = (model(x_adv).argmax(-1) == y).tolist()
            if _done is not None:
                _done.put((len(y), time.perf_counter() - start))
    checks = [str(w.message) for w in caught if issubclass(w.category, AutoAttackWarning)]
    return ShardResult(results, math.ceil(len(data) / batch_size), list(dict.fromkeys(checks)))


def merge(parts: Sequence[ShardResult]) -> ShardResult:
    """One result from the shards' (each batch once)."""
    totals = {part.total for part in parts}
    if len(totals) != 1:
        raise ValueError(f"the shards come from runs of different sizes ({sorted(totals)} batches)")
    batches: dict[int, list[bool]] = {}
    for part in parts:
        twice = set(batches) & set(part.batches)
        if twice:
            raise ValueError(f"batches {sorted(twice)} come from two shards")
        batches |= part.batches
    checks = list(dict.fromkeys(c for part in parts for c in part.checks))
    return ShardResult(dict(sorted(batches.items())), totals.pop(), checks)


def sharded_attack(
    ckpt: str | Path,
    spec: str,
    n: int,
    batch_size: int = 256,
    workers: int = 1,
    seed: int = 0,
    eps: float | None = None,
    data_dir: str | Path | None = None,
    progress: bool = False,
) -> ShardResult:
    """AutoAttack on the first `n` test samples of a checkpoint, its batches spread over
    `workers` processes on this machine (one intra-op thread each), merged in order; with
    `progress`, a bar of the samples done and an `Estimate` of the wall time left on stderr."""
    if workers < 1 or batch_size < 1 or n < 1:
        raise ValueError(f"workers, batch_size and n must be positive, got {workers}, "
                         f"{batch_size}, {n}")  # fmt: skip
    n_batches = math.ceil(n / batch_size)
    workers = min(workers, n_batches)
    if workers == 1:
        return attack_shard(ckpt, spec, n, batch_size, range(n_batches), seed, eps, data_dir)
    context = get_context("spawn")
    done = context.Queue() if progress else None
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_report_to, initargs=(done,)
    ) as pool:
        jobs = [
            pool.submit(
                attack_shard,
                str(ckpt),
                spec,
                n,
                batch_size,
                shard_batches(n, batch_size, workers, i),
                seed,
                eps,
                data_dir,
                1,
            )
            for i in range(workers)
        ]
        if done is not None:
            _follow(done, jobs, Estimate(spec, n, processes=workers), spec, n)
        return merge([job.result() for job in jobs])


def _follow(done: Queue, jobs: Sequence[Future], estimate: Estimate, what: str, n: int) -> None:
    """A bar of the samples the workers report done, and `estimate` after the first batch,
    until all `n` are reported or every job has ended (a failed one reports no more)."""
    with tqdm(total=n, desc=what, unit="sample", leave=False) as bar:
        while bar.n < n:
            try:
                samples, seconds = done.get(timeout=0.5)
            except queue.Empty:
                if all(job.done() for job in jobs):
                    return
                continue
            estimate.first_done(samples, seconds)
            bar.update(samples)


def save_shard(path: str | Path, result: ShardResult, meta: dict[str, Any]) -> None:
    """A shard's per-sample results and what produced them (checkpoint, attack, n, batch size,
    seed), for `load_shard` and `merge` on another machine."""
    write_json(path, {**meta, "batches": {str(b): c for b, c in result.batches.items()},
                      "total": result.total, "checks": result.checks})  # fmt: skip


def load_shard(path: str | Path) -> tuple[ShardResult, dict[str, Any]]:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        batches = {int(b): [bool(c) for c in cs] for b, cs in record.pop("batches").items()}
        checks = list(record.pop("checks"))
        total = int(record.pop("total"))
    except OSError as err:
        raise ValueError(f"cannot read shard file {path}: {err.strerror}") from None
    except (KeyError, AttributeError, TypeError, ValueError):  # JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not a shard file of `ssmprobe eval --shard`") from None
    return ShardResult(batches, total, checks), record
