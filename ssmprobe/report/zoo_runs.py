"""The bundled checkpoints as run folders (`ssmprobe report --zoo`), so the report treats the
zoo like your runs."""

from __future__ import annotations

from pathlib import Path

from ssmprobe.io import write_json
from ssmprobe.report.runs import EVAL_FILES, read_json


def zoo_runs(dest: str | Path) -> list[Path]:
    """The bundled checkpoints (`checkpoint.bundled_dir`, verified against their manifest) as
    run directories under `dest`, so the report treats them like your runs: each holds
    config.json, the checkpoint as best.pt (adversarial training) or last.pt (standard), and
    its eval file from the manifest's accuracies, and what the bundle's cache/ folder ships:
    the run's metrics.jsonl (curves) and the discrepancy and bounds results. Unchanged files
    are left as they are."""
    from ssmprobe.checkpoint import bundled_dir, load_checkpoint
    from ssmprobe.evaluation.sanity import grouped_masking_flags
    from ssmprobe.io import write_bytes

    folder = bundled_dir()
    manifest = read_json(folder / "manifest.json")
    dest = Path(dest)
    foreign = [] if not dest.is_dir() else [
        p.name for p in dest.iterdir() if p.is_file() or f"{p.name}.pt" not in manifest
    ]  # fmt: skip
    if foreign:  # a run of the user's named like the zoo's folder: never mix the two
        raise ValueError(
            f"{dest} holds {', '.join(sorted(foreign)[:3])}, which is not the bundled zoo; the "
            "zoo is written there, so rename or move it"
        )
    made = []
    for name, entry in sorted(manifest.items()):
        ckpt = load_checkpoint(folder / name)  # raises if the file is not the manifest's
        run = Path(dest) / Path(name).stem
        which = entry["checkpoint"]
        write_bytes(run / f"{which}.pt", (folder / name).read_bytes())
        config = {
            "model": entry["model"],
            "train": entry["train"],
            "dataset": entry["dataset"],
            "method": entry["method"],
            "ads": entry["model"].get("ads"),
            "seed": entry["train"].get("seed"),
            "source": f"bundled {name}, epoch {ckpt.meta['epoch']}",
        }
        write_json(run / "config.json", config)
        results, n_by = entry["accuracy"], entry.get("n_by_attack", {})
        subsets = {int(m): acc for m, acc in entry.get("subsets", {}).items()}
        record = {"checkpoint": f"{which}.pt", "dataset": entry["dataset"], "n": entry["n_test"]}
        record |= {"eps": entry["eps"], "results": results}
        if n_by:  # attacks on their own n, with the accuracies on those samples
            record |= {"n_by_attack": n_by, "subsets": entry["subsets"]}
        record["masking"] = grouped_masking_flags(results, entry["n_test"], n_by, subsets)
        if "autoattack_checks" in entry:  # entries bundled before it was kept lack it
            record["autoattack_checks"] = entry["autoattack_checks"]
        write_json(run / EVAL_FILES[which], record)
        cached = folder / "cache" / Path(name).stem  # the zoo's own discrepancy and bounds
        for path in sorted(cached.glob("*")) if cached.is_dir() else []:
            write_bytes(run / path.name, path.read_bytes())  # after the checkpoint: fresh
        made.append(run)
    return made
