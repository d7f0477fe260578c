"""Final evaluation of a checkpoint: clean, PGD and AutoAttack accuracy (Tables 1-2 columns).

Runs on the first `n` samples of the checkpoint's test set (a fixed subset, so best and last
are scored on the same images), streams over batches, and saves `eval_<checkpoint>.json`
beside the checkpoint in the run-directory format that `report.runs.collect_runs` reads.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ssmprobe.attacks import AutoAttackWarning, attack_config, evaluate_attack, score
from ssmprobe.checkpoint import bundled_dir, resolve_checkpoint
from ssmprobe.data import load_dataset, make_loader
from ssmprobe.evaluation.sanity import (
    collapse_flag,
    grouped_masking_flags,
    is_pgd,
    masking_flags,
)
from ssmprobe.evaluation.shards import ShardResult, sharded_attack
from ssmprobe.inputs import as_names
from ssmprobe.interop.reference import Reference
from ssmprobe.interop.userdata import UserData, user_batches
from ssmprobe.io import check_output_file, replacing, write_json
from ssmprobe.loading import load_model

# Runs AutoAttack's batches somewhere and merges them: (checkpoint, attack, n=, batch_size=,
# seed=, eps=, data_dir=) -> ShardResult (`shards.sharded_attack`, `grid.launch_shards`).
ShardRunner = Callable[..., ShardResult]


def evaluate(
    path: str | Path | nn.Module,
    attacks: list[str],
    n: int = 1000,
    batch_size: int = 256,
    eps: float | None = None,
    data_dir: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    seed: int = 0,
    reference: Reference | None = None,
    out: str | Path | None = None,
    workers: int = 1,
    shard_runner: ShardRunner | None = None,
    data: UserData | None = None,
    force: bool = False,
    add: bool = False,
) -> dict[str, Any]:
    """Accuracy of the checkpoint at `path` under each attack spec (pgd10, aa, ...), saved to
    `out` (default eval_<checkpoint>.json next to it; for a bundled checkpoint, in the working
    folder), which is checked before any work: a new path or a file ssmprobe wrote, or with
    `force` any regular file but a checkpoint (`io.check_output_file`).

    ℓ∞ attacks use `eps`, else the run's training eps, else the dataset's preset budget.
    Returns and saves {"checkpoint", "dataset", "n", "eps", "results": {"clean": acc, ...},
    "masking": [reasons to suspect gradient masking (`evaluation.sanity.masking_flags`)],
    "autoattack_checks": [AutoAttack's own check warnings, e.g. Square still succeeding after
    the gradient attacks, which its AA accuracy already counts]}.
    With `reference`, `path` is a state dict of the paper's reference code (`Reference`).
    `path` may be a model in memory (`ssmprobe.wrap`'s) with its `data` (`evaluate_model`).

    With `workers` > 1, AutoAttack's batches of `batch_size` run in that many processes
    (`evaluation.shards`); `shard_runner` runs them elsewhere instead (the grid's submitit
    launcher). Either way the result equals the unsharded one sample for sample, and the
    record keeps AutoAttack's per-sample results under "per_sample" (1: still correct).

    With `add`, the attacks join the eval file already at `out` (`merge_records`), which must
    be of the same checkpoint file, data and eps: AutoAttack on the first 100 beside PGD-10 on
    2,000. On an n of its own an attack is listed in "n_by_attack", and the clean and PGD
    accuracies are also measured on those first n samples ("subsets"), so that the masking
    flags compare accuracies on the same images.
    """
    attacks = as_names(attacks, "attacks", "['pgd10', 'aa']")
    if isinstance(path, nn.Module):  # a model in memory (`ssmprobe.wrap`'s) and its data
        if data is None:
            raise ValueError(
                "a model needs data=: (x, y) tensors, a Dataset, a DataLoader or a file"
            )
        if add:
            raise ValueError("add joins a checkpoint's eval file; a model in memory has none")
        return evaluate_model(path, data, attacks, n, batch_size, eps, progress, seed, out, force)
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    sharded = workers > 1 or shard_runner is not None
    if sharded and reference is not None:
        raise ValueError("sharded AutoAttack loads the checkpoint in each worker: `ssmprobe "
                         "import` the reference file first")  # fmt: skip
    path = Path(path)
    out = check_output_file(out or default_eval_path(path), inputs=[path], force=force)
    old = read_record(out) if add else None
    model = load_model(path, device, reference)
    meta = model.meta
    dataset = meta["dataset"]
    configs = [attack_config(spec, meta, eps) for spec in attacks]
    labels = [c.label for c in configs]
    if old is not None and n != old["n"]:  # the file's PGD accuracies on these n too
        configs += [
            attack_config(k, meta, eps) for k in old["results"] if is_pgd(k) and k not in labels
        ]
    linf_eps = next(
        (c.eps for c in configs if c.norm == "Linf"),
        eps if eps is not None else meta.get("train", {}).get("eps"),
    )
    test = load_dataset(dataset, "test", data_dir).head(n)
    header = {"file": meta.get("file"), "dataset": dataset, "data_source": test.source}
    if old is not None:  # before any work: a mismatch found after AutoAttack would waste it
        check_joinable(old, {**header, "eps": linf_eps})
    loader = make_loader(test, batch_size)
    clean = score(model, loader)
    results = {"clean": clean["acc"]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AutoAttackWarning)
        per_sample = {}
        for config in configs:
            if sharded and config.kind.shardable:
                runner = shard_runner or partial(sharded_attack, workers=workers, progress=progress)
                shards = runner(
                    path, config.label, n=len(test), batch_size=batch_size, seed=seed,
                    eps=config.eps, data_dir=data_dir,
                )  # fmt: skip
                for check in shards.checks:  # as the unsharded run's warnings would be
                    warnings.warn(check, AutoAttackWarning, stacklevel=2)
                per_sample[config.label] = [int(c) for c in shards.correct]
                results[config.label] = shards.accuracy
                continue
            results[config.label] = evaluate_attack(
                model, loader, config, progress=progress, seed=seed
            )["acc"]
    checks = list(  # AutoAttack's own checks go into the record, once each
        dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, AutoAttackWarning))
    )
    for w in caught:  # any other warning goes on
        if not issubclass(w.category, AutoAttackWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    record = {
        "checkpoint": path.name,
        **header,  # the file's path and SHA-256; data_source: "official" or the image folder
        "n": len(test),
        "eps": linf_eps,
        "results": results,
        "prediction": _prediction(clean),
        "masking": masking_flags(results),
        "autoattack_checks": checks,
    }
    if per_sample:
        record["per_sample"] = per_sample
    if old is not None:
        record = merge_records(old, record, labels)
    with replacing(force):
        write_json(out, record)
    return record


def _prediction(clean: dict[str, Any]) -> dict[str, Any]:
    """What the model predicts on the clean samples: its most frequent class and that class's
    share (`sanity.collapse_flag` reads a constant prediction from them)."""
    return {"top_class": clean["top_class"], "top_share": clean["top_share"]}


def read_record(path: Path) -> dict[str, Any]:
    """The eval file at `path`, for `evaluate`'s `add`; ValueError if it is absent or is not an
    eval file."""
    if not path.is_file():
        raise ValueError(f"{path}: no eval file to add to; evaluate without --add first")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path}: not an eval file (not JSON); evaluate without --add") from None
    if not (
        isinstance(record, dict)
        and isinstance(record.get("results"), dict)
        and isinstance(record.get("n"), int)
    ):
        raise ValueError(f'{path}: not an eval file (no "results" and "n"); evaluate without --add')
    return record


def check_joinable(old: dict[str, Any], new: dict[str, Any]) -> None:
    """ValueError unless the eval records `old` and `new` (or the header of one about to be
    measured) are of the same checkpoint file, dataset, data source and eps. A record older
    than "data_source" was on the official files, as `format_results` reads it."""
    for key in ("dataset", "data_source", "eps"):
        before, now = (r.get(key, "official" if key == "data_source" else None) for r in (old, new))
        if before != now:
            raise ValueError(
                f"the eval file has {key} {before!r} and this evaluation {now!r}: only figures "
                "on the same data and eps join one file; evaluate without --add"
            )
    digests = [(r.get("file") or {}).get("sha256") for r in (old, new)]
    if None not in digests and digests[0] != digests[1]:
        raise ValueError(
            "the eval file is of another checkpoint file (its SHA-256 differs): the checkpoint "
            "changed since; evaluate without --add"
        )


def merge_records(old: dict[str, Any], new: dict[str, Any], attacks: list[str]) -> dict[str, Any]:
    """The eval record `old` with the accuracies of `attacks` from `new`, a record of the same
    checkpoint file, data and eps (ValueError if not). On `old`'s n they replace its figures;
    on another n they are listed in "n_by_attack", and all of `new`'s results (clean and the
    PGD figures measured beside them) are kept under "subsets" by that n. The masking flags are
    recomputed on same-image groups, AutoAttack's checks and per-sample results joined."""
    check_joinable(old, new)
    n, m = old["n"], new["n"]
    results = {**old["results"], **{a: new["results"][a] for a in attacks}}
    n_by = {a: k for a, k in old.get("n_by_attack", {}).items() if a not in attacks or m != n}
    subsets = {int(k): v for k, v in old.get("subsets", {}).items()}
    if m != n:
        n_by |= dict.fromkeys(attacks, m)
        subsets[m] = {**subsets.get(m, {}), **new["results"]}
    merged = {**old, "results": results}
    if m == n and "prediction" in new:  # clean on the file's own samples: also the newer record
        merged["prediction"] = new["prediction"]
    merged.pop("n_by_attack", None)
    merged.pop("subsets", None)
    if n_by:
        merged["n_by_attack"] = n_by
    if subsets:
        merged["subsets"] = {str(k): subsets[k] for k in sorted(subsets)}
    merged["masking"] = grouped_masking_flags(results, n, n_by, subsets)
    checks = [*old.get("autoattack_checks", []), *new["autoattack_checks"]]
    merged["autoattack_checks"] = list(dict.fromkeys(checks))
    per_sample = {**old.get("per_sample", {}), **new.get("per_sample", {})}
    if per_sample:
        merged["per_sample"] = per_sample
    return merged


def evaluate_model(
    model: nn.Module,
    data: UserData,
    attacks: list[str],
    n: int = 1000,
    batch_size: int = 256,
    eps: float | None = None,
    progress: bool = True,
    seed: int = 0,
    out: str | Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """`evaluate` for a model in memory (`ssmprobe.wrap`'s) on the user's `data`
    ((x, y), a Dataset, a DataLoader or a .pt/.npz file): clean accuracy, each attack at `eps`
    (else the wrap's declared budget) and the masking flags; saved to `out` when given."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    out = check_output_file(out, force=force) if out is not None else None
    meta = dict(getattr(model, "meta", None) or {"dataset": "custom", "train": {}})
    configs = [attack_config(spec, meta, eps) for spec in attacks]

    def batches() -> Iterable[tuple[Tensor, Tensor]]:  # streamed anew for each pass
        return user_batches(model, data, batch_size, n)

    count = sum(len(y) for _, y in batches())
    if count == 0:
        raise ValueError("data holds no samples")
    clean = score(model, batches())
    results = {"clean": clean["acc"]}
    for config in configs:
        results[config.label] = evaluate_attack(
            model, batches(), config, progress=progress, seed=seed
        )["acc"]
    record = {
        "checkpoint": meta.get("model", type(model).__name__),  # what format_results names
        "input": meta.get("input"),
        "dataset": meta["dataset"],
        "n": count,
        "eps": next((c.eps for c in configs if c.norm == "Linf"), eps),
        "results": results,
        "prediction": _prediction(clean),
        "masking": masking_flags(results),
    }
    if out is not None:
        with replacing(force):
            write_json(out, record)
    return record


def default_eval_path(ckpt: Path) -> Path:
    """eval_<checkpoint>.json beside the checkpoint, or in the working folder for a bundled one
    (the zoo, inside the clone or site-packages, is never written to)."""
    resolved = resolve_checkpoint(ckpt)
    inside_zoo = resolved.is_file() and resolved.resolve().parent == bundled_dir().resolve()
    return (
        Path(f"eval_{resolved.stem}.json")
        if inside_zoo
        else ckpt.with_name(f"eval_{ckpt.stem}.json")
    )


def format_results(record: dict[str, Any]) -> str:
    """One line: the checkpoint, then each accuracy in %; then one warning line per reason to
    suspect gradient masking, for a constant prediction, and per AutoAttack check that warned."""
    n_by = record.get("n_by_attack", {})
    parts = [
        f"{name} {100 * acc:.2f}%" + (f" (n={n_by[name]})" if name in n_by else "")
        for name, acc in record["results"].items()
    ]
    source = record.get("data_source", "official")
    data = record["dataset"] + ("" if source == "official" else f" from {source}")
    line = f"{record['checkpoint']} ({data}, n={record['n']}): " + "  ".join(parts)
    lines = [f"\nwarning: suspected gradient masking: {f}" for f in record.get("masking", [])]
    prediction = record.get("prediction")  # absent from records older than the field
    collapsed = prediction and collapse_flag(
        prediction["top_class"], prediction["top_share"], record["n"]
    )
    lines += [f"\nwarning: collapsed: {collapsed}"] if collapsed else []
    lines += [f"\nwarning: {check}" for check in record.get("autoattack_checks", [])]
    return line + "".join(lines)
