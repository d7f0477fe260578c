"""The paper's grid of runs as independent jobs, launched through submitit.

`paper_grid(dataset)` lists the runs of Tables 1-2: S4, DSS, S5, Mega, Mamba x ST, PGD-AT,
TRADES, and S4, DSS x AdS (ReLU, Tanh, Sigmoid) x PGD-AT, TRADES, cheapest first. Each run is
one job: `training.run.train` into RUNS/NAME (resuming from last.pt when a previous job was
killed or preempted), then `evaluation.evaluate.evaluate` of best.pt and last.pt.
`launch` skips finished runs and submits the rest through submitit: its local executor runs them as
processes on this machine (and in the tests), its SLURM executor spreads them over a cluster
with the GPUs and time each job asks for; a job with more than one GPU runs the training under
`torchrun`. A preempted SLURM job is simply submitted again: it resumes.

`--seeds 0,1,2` repeats every run with each seed; seed 0 keeps the plain name, others add
`_seed<n>` (`s4_pgd_seed1`), so a grid run once can gain seeds later without retraining.

`expected_hours` turns measured seconds per epoch (`SECONDS_PER_EPOCH`) into GPU-hours for
`--dry-run`. The command line of analysis/reproduce_*.py is `ssmprobe.cli.grid`.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssmprobe.checkpoint import resolve_checkpoint
from ssmprobe.evaluation.shards import ShardResult, attack_shard, merge, shard_batches
from ssmprobe.models import FAMILIES
from ssmprobe.report.runs import METRICS_FILE, read_eval_record, read_metrics, stale
from ssmprobe.training.run import run_files
from ssmprobe.vocab import ADS_ACTIVATIONS, METHODS

POLL_SECONDS = 2.0  # how often a local launch looks for ended jobs


# Measured seconds per training epoch, (dataset, family, method) -> (seconds, GPU it ran on).
# Only what was measured is here; `expected_hours` reports the rest as unmeasured.
SECONDS_PER_EPOCH: dict[tuple[str, str, str], tuple[float, str]] = {
    ("mnist", "s4", "pgd"): (43.0, "H100"),
    ("mnist", "mamba", "pgd"): (749.0, "H100, pure-PyTorch scan"),
}


@dataclass(frozen=True)
class GridRun:
    """One run of the grid: what to train and where (RUNS/name)."""

    model: str
    method: str
    dataset: str
    ads: str | None = None
    options: tuple[tuple[str, Any], ...] = field(default=())  # more `training.run.train` options
    seed: int = 0

    @property
    def setting(self) -> str:
        """The name of what is trained, the same for every seed: s4_pgd_ads-relu."""
        return f"{self.model}_{self.method}" + (f"_ads-{self.ads}" if self.ads else "")

    @property
    def name(self) -> str:
        """The run folder's name: the setting, then _seed<n> for seeds other than 0."""
        return self.setting + (f"_seed{self.seed}" if self.seed else "")

    def train_kwargs(self, runs: Path) -> dict[str, Any]:
        """The arguments of `training.run.train` for this run: resumed from last.pt where it
        exists, started over where a killed job left files but no last.pt."""
        found = run_files(runs / self.name)
        return {
            "model": self.model,
            "dataset": self.dataset,
            "method": self.method,
            "ads": self.ads,
            "out": str(runs),
            "name": self.name,
            "seed": self.seed,
            "resume": "last.pt" in found,
            "force": bool(found) and "last.pt" not in found,
            "progress": False,
            **dict(self.options),
        }


def paper_grid(
    dataset: str,
    models: Sequence[str] | None = None,
    methods: Sequence[str] = METHODS,
    options: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
) -> list[GridRun]:
    """Every run of Tables 1-2 on `dataset` among `models` and `methods`, once per seed,
    cheapest first (all of seed 0 before the next seed's)."""
    models = list(FAMILIES) if models is None else models
    unknown = sorted({*models} - set(FAMILIES)) + sorted({*methods} - set(METHODS))
    if unknown:
        known = f"{', '.join(FAMILIES)}; {', '.join(METHODS)}"
        raise ValueError(f"unknown models or methods {unknown}; known: {known}")
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, got {list(seeds)}")
    settings = [(m, method, None) for m in models for method in methods]
    settings += [
        (m, method, ads)
        for m in models
        if FAMILIES[m].ads_rows
        for method in methods
        if method != "st"
        for ads in ADS_ACTIVATIONS
    ]
    runs = [
        GridRun(model, method, dataset, ads, tuple((options or {}).items()), seed)
        for model, method, ads in settings
        for seed in seeds
    ]
    return sorted(runs, key=_cheapest_first)


def _cheapest_first(run: GridRun) -> tuple:
    """Seed, then ST before AT, plain before AdS, cheap families first (`Family.cost`)."""
    cost = FAMILIES[run.model].cost
    return (run.seed, run.method != "st", run.ads is not None, cost, run.name)


def select(grid: Sequence[GridRun], patterns: Sequence[str]) -> list[GridRun]:
    """The runs of `grid` whose name or setting (the name without _seed<n>: every seed of
    it) matches one of `patterns` (shell-style, `fnmatch`)."""
    from fnmatch import fnmatchcase

    def matches(run: GridRun, pattern: str) -> bool:
        return fnmatchcase(run.name, pattern) or fnmatchcase(run.setting, pattern)

    unmatched = [p for p in patterns if not any(matches(r, p) for r in grid)]
    if unmatched:
        raise ValueError(f"no run of the grid matches {unmatched}")
    return [r for r in grid if any(matches(r, p) for p in patterns)]


def finished(run_dir: Path) -> bool:
    """Whether the run in `run_dir` has trained all the epochs its config asks for."""
    config = run_dir / "config.json"
    if not config.is_file() or not (run_dir / METRICS_FILE).is_file():
        return False
    return len(read_metrics(run_dir)) >= json.loads(config.read_text())["train"]["epochs"]


def evaluated(run_dir: Path, n: int, attacks: str = "pgd10,aa", which: str | None = None) -> bool:
    """Whether the eval file of `which` checkpoint (best or last; None: both) holds every
    attack of `attacks` (and the clean accuracy) on at least `n` test samples, and is of the
    checkpoint as it is now (`report.runs.stale`: by the SHA-256 the file records)."""
    if which is None:
        return all(evaluated(run_dir, n, attacks, w) for w in ("best", "last"))
    path, ckpt = run_dir / f"eval_{which}.json", run_dir / f"{which}.pt"
    if not path.is_file() or (ckpt.is_file() and stale(path, ckpt)):
        return False
    record = read_eval_record(path)
    wanted = {"clean", *attacks.split(",")}
    return wanted <= set(record.accuracies) and all(record.n_of(a) >= n for a in wanted)


@dataclass(frozen=True)
class JobSpec:
    """What one job does; a plain value, so submitit can pickle it to a worker."""

    run: GridRun
    runs: str
    n_eval: int = 1000
    attacks: str = "pgd10,aa"
    gpus: int = 0


def run_job(spec: JobSpec) -> str:
    """Trains (or resumes) the run and evaluates best.pt and last.pt; returns the run's path.
    With more than one GPU the training runs under torchrun, one process per GPU."""
    from ssmprobe.evaluation.evaluate import evaluate
    from ssmprobe.training.run import train

    runs = Path(spec.runs)
    run_dir = runs / spec.run.name
    kwargs = spec.run.train_kwargs(runs)
    if not finished(run_dir):
        if spec.gpus > 1:
            entry = ["-m", "ssmprobe.training.run", json.dumps(kwargs)]
            subprocess.run(["torchrun", f"--nproc_per_node={spec.gpus}", *entry], check=True)
        else:
            train(**kwargs)
    for which in ("best", "last"):
        if not evaluated(run_dir, spec.n_eval, spec.attacks, which):
            evaluate(
                run_dir / f"{which}.pt",
                spec.attacks.split(","),
                n=spec.n_eval,
                data_dir=kwargs.get("data_dir"),
                progress=False,
                force=True,  # the run folder's own cache, older ones written before the sidecar
            )
    return str(run_dir)


@dataclass(frozen=True)
class LaunchOptions:
    """How jobs are launched: `local` (this machine) or `slurm`, per-job resources."""

    launcher: str = "local"
    gpus: int = 0  # per job
    timeout_min: int = 24 * 60
    cpus: int = 1
    partition: str | None = None
    logs: str = "runs/.submitit"
    parallel: int = 1  # local: jobs at once


def pending(
    grid: Sequence[GridRun], runs: Path, n_eval: int, attacks: str = "pgd10,aa"
) -> list[GridRun]:
    """The runs of `grid` that still have training or evaluation to do."""
    return [
        r
        for r in grid
        if not (finished(runs / r.name) and evaluated(runs / r.name, n_eval, attacks))
    ]


def launch(
    grid: Sequence[GridRun],
    runs: str | Path,
    options: LaunchOptions = LaunchOptions(),
    n_eval: int = 1000,
    attacks: str = "pgd10,aa",
    log: Callable[[str], None] = print,
) -> list[str]:
    """Submits every pending run of `grid` as one job and waits for them; returns the run
    paths. Finished runs are skipped without a job. A job that fails does not stop the others:
    when all have ended, `GridError` names each failed run and its log."""
    import submitit  # noqa: F401  (fails at once without the [grid] extra, work or not)

    runs = Path(runs)
    todo = pending(grid, runs, n_eval, attacks)
    skipped = len(grid) - len(todo)
    log(f"{len(todo)} run(s) to do, {skipped} finished and skipped")
    if not todo:
        return []
    # torchrun starts the per-GPU processes inside the job
    executor = _executor(options, gpus_per_node=options.gpus, tasks_per_node=1)
    specs = [JobSpec(r, str(runs), n_eval, attacks, options.gpus) for r in todo]
    # A cluster queues every job at once; this machine keeps `parallel` running, starting
    # the next as soon as one ends (a cheap run does not wait for an expensive neighbour).
    width = max(options.parallel, 1) if options.launcher == "local" else len(specs)
    queue, running, done, failed = list(specs), {}, [], []
    while queue or running:
        while queue and len(running) < width:
            spec = queue.pop(0)
            job = executor.submit(run_job, spec)
            running[job] = spec.run.name
            log(f"job {job.job_id}: {spec.run.name}")
        ended = [job for job in running if job.done()]
        for job in ended:
            name = running.pop(job)
            try:
                done.append(job.result())
            except Exception as err:  # any job error: the others go on
                raised = re.findall(r"^\w*(?:Error|Exception)\b.*$", str(err), re.MULTILINE)
                reason = raised[-1] if raised else repr(err)  # the job's own error, not submitit's
                failed.append(f"{name} ({reason}; log: {job.paths.stderr})")
                log(f"job {job.job_id}: {name} failed, see {job.paths.stderr}")
        if not ended:
            time.sleep(POLL_SECONDS)
    if failed:
        raise GridError(f"{len(failed)} of {len(specs)} run(s) failed: " + "; ".join(failed))
    return done


def _executor(options: LaunchOptions, **params: Any) -> Any:
    """A submitit executor for `options` (local or SLURM), with the job time, CPUs and
    partition they give and any further `params`."""
    import submitit

    if options.launcher not in ("local", "slurm"):
        raise ValueError(f"launcher must be local or slurm, got {options.launcher!r}")
    executor = submitit.AutoExecutor(folder=options.logs, cluster=options.launcher)
    params |= {"timeout_min": options.timeout_min, "cpus_per_task": options.cpus}
    if options.launcher == "slurm" and options.partition:
        params["slurm_partition"] = options.partition
    executor.update_parameters(**params)
    return executor


def launch_shards(
    ckpt: str | Path,
    spec: str,
    n: int,
    batch_size: int,
    seed: int = 0,
    eps: float | None = None,
    data_dir: str | Path | None = None,
    shards: int = 2,
    options: LaunchOptions = LaunchOptions(),
) -> ShardResult:
    """AutoAttack on the first `n` test samples of `ckpt` as `shards` submitit jobs (this
    machine or SLURM, `options`), each attacking every shards-th batch; merged in order, the
    result equals the unsharded one sample for sample (`evaluation.shards`)."""
    executor = _executor(options)
    shards = min(shards, -(-n // batch_size))
    ckpt = str(resolve_checkpoint(ckpt))  # a job on another machine needs the file's path
    jobs = [
        executor.submit(
            attack_shard,
            ckpt,
            spec,
            n,
            batch_size,
            shard_batches(n, batch_size, shards, i),
            seed,
            eps,
            data_dir,
            options.cpus,
        )
        for i in range(shards)
    ]
    return merge([job.result() for job in jobs])


class GridError(RuntimeError):
    """Some jobs of a launch failed (the others ran to their end)."""


def expected_hours(grid: Sequence[GridRun], epochs: Callable[[GridRun], int]) -> dict[str, Any]:
    """GPU-hours of training `grid` from `SECONDS_PER_EPOCH`: per run (None where unmeasured)
    and the measured total."""
    rows = []
    for run in grid:
        measured = SECONDS_PER_EPOCH.get((run.dataset, run.model, run.method))
        hours = None if measured is None else measured[0] * epochs(run) / 3600
        rows.append({"run": run.name, "epochs": epochs(run), "gpu_hours": hours})
    known = [r["gpu_hours"] for r in rows if r["gpu_hours"] is not None]
    return {"rows": rows, "measured_total": sum(known), "unmeasured": len(rows) - len(known)}
