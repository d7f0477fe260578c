"""What `ssmprobe report` computes for a run and caches next to it, and when a cache is stale.

A cache counts while it was made from the checkpoint's bytes as they are (the SHA-256 it
records, `report.runs.stale`), whatever the files' modification times after a clone or copy:

- `eval_best.json`, `eval_last.json`: clean, PGD-10 and AutoAttack accuracy on the first
  `n_eval` test samples (`evaluation.evaluate.evaluate`, masking flags included);
- `discrepancy.csv` / `.json`: the feature discrepancy (§4.2) of the run's probed checkpoint,
  best.pt after adversarial training, last.pt after standard training (whose "best" is an
  epoch of PGD-10 noise around chance), on `n_probe` samples of each split;
- `bounds.csv` / `.json`: Theorem 4.1.1 on the probed checkpoint of one run per family and
  dataset (`pick_bounds_runs`: PGD-AT without AdS, else the family's first run), at the
  dataset's sequence length (64 for digits, 784 for MNIST, 1024 for CIFAR-10): uniform noise
  at the run's ε and mean μ = `FIGURE_MU` (0.05, as docs/theorem.md quotes; at μ = 0 both lower
  bounds are zero) for LTI layers, with Mamba's H over `n_probe` test inputs, and the bounds
  against the sequence length its figure draws. A cache of another μ (the law it records) is
  computed again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssmprobe.attacks import parse_attack
from ssmprobe.models import FAMILIES
from ssmprobe.report.runs import EVAL_FILES, RunInfo, read_eval, read_json, stale

if TYPE_CHECKING:
    from ssmprobe.bounds.check import BoundsCheck
    from ssmprobe.report.build import ReportOptions

DISCREPANCY_FILE = "discrepancy.csv"
BOUNDS_FILE = "bounds.csv"


def ensure_eval(run: RunInfo, options: ReportOptions, log: Callable[[str], None]) -> None:
    """eval_best.json / eval_last.json of `run`, computed where missing, older than the
    checkpoint or lacking one of the attacks."""
    from ssmprobe.evaluation.evaluate import evaluate, format_results

    labels = {parse_attack(spec, run.dataset).label for spec in options.attacks}
    for which, name in EVAL_FILES.items():
        ckpt, cache = run.path / f"{which}.pt", run.path / name
        if not ckpt.is_file():
            continue
        if not stale(cache, ckpt) and labels <= set(read_eval(cache)):
            continue
        log(f"evaluating {ckpt} ({', '.join(options.attacks)}, n = {options.n_eval})")
        record = evaluate(
            ckpt,
            list(options.attacks),
            n=options.n_eval,
            data_dir=options.data_dir,
            progress=options.progress,
            force=True,  # the run's own cache, older ones written before the sidecar
        )
        log("  " + format_results(record))


def ensure_discrepancy(
    run: RunInfo, options: ReportOptions, log: Callable[[str], None]
) -> Path | None:
    """The run's cached discrepancy CSV (computed when missing or stale); None without a
    probed checkpoint."""
    from ssmprobe.probe.discrepancy import discrepancy, save

    ckpt = _probed(run)
    if ckpt is None:
        return None
    cache = run.path / DISCREPANCY_FILE
    if stale(cache, ckpt) or not _has_nsr(cache):
        log(f"discrepancy of {ckpt} (n = {options.n_probe} per split)")
        result = discrepancy(
            ckpt, n=options.n_probe, data_dir=options.data_dir, progress=options.progress
        )
        save([result], cache)
    return cache


def _has_nsr(cache: Path) -> bool:
    """Whether a discrepancy CSV holds the NSR rows (files written before them do not)."""
    with cache.open(encoding="utf-8") as f:
        return any(",nsr," in line for line in f)


def pick_bounds_runs(runs: Sequence[RunInfo]) -> list[RunInfo]:
    """One run per (dataset, family): PGD-AT without AdS when there is one, else the first."""
    chosen: dict[tuple[str, str], RunInfo] = {}
    for run in runs:
        key = (run.dataset, run.model)
        if run.model not in FAMILIES:
            continue
        if key not in chosen or (
            (run.method, run.ads) == ("pgd", "none")
            and (chosen[key].method, chosen[key].ads) != ("pgd", "none")
        ):
            chosen[key] = run
    return list(chosen.values())


def ensure_bounds(run: RunInfo, options: ReportOptions, log: Callable[[str], None]) -> BoundsCheck:
    """The run's Theorem 4.1.1 check at its dataset's sequence length, from its cache,
    recomputed (and cached) where the cache is older than the probed checkpoint, was checked at
    another length or lacks what the figures need (the law, Mamba's Δ points). A recomputed
    check keeps the cached bounds against L of the same checkpoint and law: they do not depend
    on the length of the check."""
    from ssmprobe.bounds.check import check_model, load_check
    from ssmprobe.bounds.figures import FIGURE_MU
    from ssmprobe.data import DATASETS

    cache, ckpt = run.path / BOUNDS_FILE, _probed(run)
    length = DATASETS[run.dataset].seq_len if run.dataset in DATASETS else 64
    cached = None if stale(cache, ckpt) else load_check(cache, ckpt)
    same_law = cached is not None and (cached.law is None or cached.law.mu == FIGURE_MU)
    if cached is not None and same_law and length == cached.L:
        return cached
    log(f"Theorem 4.1.1 on {ckpt} (L = {length}, μ = {FIGURE_MU:g})")
    eps = read_json(run.path / "config.json").get("train", {}).get("eps", 0.1)
    check = check_model(
        run.model, ckpt, L=length, eps=eps, mu=FIGURE_MU, n=options.n_probe,
        data_dir=options.data_dir, progress=options.progress,
    )  # fmt: skip
    if cached is not None and same_law and check.law is not None:
        check.lengths = cached.lengths
    check.save(cache)
    return check


def _keep_lengths(check: BoundsCheck, jobs: Sequence[Future], cache: Path) -> None:
    """Saves the bounds against L, from one job per length, with the check in its cache (the
    zoo's caches ship them)."""
    from ssmprobe.bounds.figures import stack_lengths

    check.lengths = stack_lengths([job.result() for job in jobs])
    check.save(cache)


def _read_bounds(run_dir: Path) -> dict[str, Any] | None:
    path = (run_dir / BOUNDS_FILE).with_suffix(".json")
    return read_json(path) if path.is_file() else None


def _probed(run: RunInfo) -> Path | None:
    ckpt = run.path / ("last.pt" if run.method == "st" else "best.pt")
    return ckpt if ckpt.is_file() else None
