"""Copies chosen checkpoints of finished runs into checkpoints/ with a manifest.

Each pair RUN_NAME:BUNDLED_NAME[:CHECKPOINT] takes the run's best.pt (or CHECKPOINT.pt: `last`
for standard training, whose "best" by the paper's PGD-10 rule is an arbitrary epoch, its
PGD-10 accuracy being noise around 10%) and its eval_CHECKPOINT.json.

Files already in the manifest and not named here keep their entries. The report's cached
results of the run (discrepancy, bounds) and its metrics.jsonl (for the curves) go to
cache/BUNDLED_NAME/, replacing those of an earlier entry of that name (the same weights bundled
again keep the cached results their run folder lacks or holds older); bounds results only for
the entries whose bounds the report draws (`report.cache.pick_bounds_runs`: one per family and
dataset; entries not named keep theirs).
The manifest records, per file, its SHA-256, the run's model and training configs, dataset,
method, ε, the seconds its training took (all epochs, from metrics.jsonl), the clean / PGD-10 /
AA accuracy from the run's eval file, each attack's n where it differs from n_test with the
accuracies on those samples (`eval --add`), and the warnings of AutoAttack's own checks there
(not from eval files older than that field), so that a test can check that the bundled weights load
and still score what they scored.

    python analysis/bundle_checkpoints.py runs/calibrate s4_st_preset:s4_st:last \
        s4_pgd_preset:s4_pgd dss_pgd_preset:dss_pgd
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

from ssmprobe.checkpoint import CheckpointError, checkpoint_from_bytes, read_bytes
from ssmprobe.io import replacing, write_bytes, write_json
from ssmprobe.report.cache import pick_bounds_runs
from ssmprobe.report.runs import RunInfo, read_eval_record, read_metrics

CACHES = (
    "metrics.jsonl",
    "discrepancy.csv",
    "discrepancy.json",
    "bounds.csv",
    "bounds.json",
    "bounds_delta.npz",
)


def bundle(runs: str | Path, pairs: list[str], out: str | Path = "checkpoints") -> list[Path]:
    """Copies each RUN_NAME:BUNDLED_NAME[:best|last] of `runs` into `out` and updates its
    manifest.json (entries of other files are kept); returns the copied files. Every pair is
    read and checked before anything is written, so a bad one leaves the bundle as it was."""
    out = Path(out)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    entries = [_entry(Path(runs), pair) for pair in pairs]
    out.mkdir(parents=True, exist_ok=True)
    with replacing():  # the bundle's own files, committed, so in no sidecar: replaced by name
        _copy(out, manifest, entries)
        write_json(manifest_path, dict(sorted(manifest.items())))
    _drop_unused_bounds(out, manifest, {name for _, name, _, _ in entries})
    return [out / f"{name}.pt" for _, name, _, _ in entries]


def _copy(out: Path, manifest: dict, entries: list[tuple[Path, str, bytes, dict]]) -> None:
    """Writes each entry's weights and caches into `out`, its manifest entry into `manifest`."""
    for run, name, data, entry in entries:
        target = out / f"{name}.pt"
        same_weights = manifest.get(target.name, {}).get("sha256") == entry["sha256"]
        write_bytes(target, data)
        manifest[target.name] = entry
        # The report's results, so `report --zoo` need not recompute them. A replaced entry
        # keeps nothing of the old run's; the same weights bundled again (say, re-evaluated)
        # keep the results computed on the bundled copy that the run folder lacks or has in
        # an older version (one the report has since recomputed in a newer format).
        folder = out / "cache" / name
        for cache in CACHES:
            source, bundled = run / cache, folder / cache
            if not source.is_file():
                if not same_weights:
                    bundled.unlink(missing_ok=True)
                continue
            up_to_date = bundled.is_file() and bundled.stat().st_mtime >= source.stat().st_mtime
            if same_weights and up_to_date:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, bundled)


def _entry(runs: Path, pair: str) -> tuple[Path, str, bytes, dict]:
    """The run folder, bundled name, checkpoint bytes and manifest entry of one pair."""
    run_name, name, which = (pair + ":best").split(":")[:3]
    if which not in ("best", "last"):
        raise ValueError(f"{pair}: the checkpoint must be best or last, got {which!r}")
    run = runs / run_name
    source = run / f"{which}.pt"
    data = read_bytes(source)  # read once: parsed, hashed and copied
    ckpt = checkpoint_from_bytes(data, source)  # the source: the manifest is still old
    if not (run / f"eval_{which}.json").is_file():
        raise ValueError(f"{run}: no eval_{which}.json: run `ssmprobe eval` on it first")
    evaluation = read_eval_record(run / f"eval_{which}.json")
    entry = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "model": ckpt.config,
        "dataset": ckpt.meta["dataset"],
        "method": ckpt.meta["method"],
        "checkpoint": which,
        "epoch": ckpt.meta["epoch"],
        "train": json.loads((run / "config.json").read_text())["train"],
        "train_seconds": round(float(read_metrics(run)["seconds"].sum()), 1),
        "eps": evaluation.eps,
        "n_test": evaluation.n,
        "accuracy": evaluation.accuracies,
    }
    if evaluation.checks is not None:  # None: evaluated before eval files kept them
        entry["autoattack_checks"] = evaluation.checks
    if evaluation.n_by_attack:  # attacks on their own n (`eval --add`) and their baselines
        entry["n_by_attack"] = evaluation.n_by_attack
        entry["subsets"] = {str(m): acc for m, acc in sorted(evaluation.subsets.items())}
    return run, name, data, entry


def _drop_unused_bounds(out: Path, manifest: dict[str, dict], bundled: set[str]) -> None:
    """Removes the bounds caches of the entries just `bundled` whose bounds the report does not
    draw; other entries keep theirs (Mamba TRADES's, which docs/theorem.md quotes)."""
    entries = []
    for name, e in sorted(manifest.items()):
        ads = e["model"].get("ads") or "none"
        setting = (e["dataset"], e["model"]["model"], e["method"], ads)
        entries.append(RunInfo(Path(name), *setting, seed=e["train"].get("seed")))
    used = {run.path.stem for run in pick_bounds_runs(entries)}
    for entry in entries:
        if entry.path.stem in bundled and entry.path.stem not in used:
            for cache in CACHES:
                if cache.startswith("bounds"):
                    (out / "cache" / entry.path.stem / cache).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", help="directory of run directories")
    parser.add_argument("pairs", nargs="+", help="RUN_NAME:BUNDLED_NAME[:best|last]")
    parser.add_argument("--out", default="checkpoints")
    args = parser.parse_args()
    try:
        bundle(args.runs, args.pairs, args.out)
    except (ValueError, CheckpointError) as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
