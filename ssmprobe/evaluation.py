"""Final evaluation of a checkpoint: clean, PGD and AutoAttack accuracy (Tables 1-2 columns).

Runs on the first `n` samples of the checkpoint's test set (a fixed subset, so best and last
are scored on the same images), streams over batches, and saves `eval_<checkpoint>.json`
beside the checkpoint in the run-directory format that `report.collect_runs` reads.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch

from .attacks import AttackConfig, AutoAttackWarning, evaluate_attack, parse_attack
from .data import load_dataset, make_loader
from .io import write_json
from .models.reference import Reference
from .sanity import masking_flags
from .train import evaluate, load_model


def checkpoint_attack(spec: str, meta: dict[str, Any], eps: float | None = None) -> AttackConfig:
    """The attack `spec` (pgd10, aa, ...) against a checkpoint: ℓ∞ attacks use `eps` (in
    (0, 1]), else the run's training eps and α, else the dataset's preset budget; ℓ2 attacks use
    `eps` (> 0) or the dataset's preset radius."""
    dataset, train = meta["dataset"], meta.get("train", {})
    config = parse_attack(spec, dataset)
    if eps is not None:
        top = 1.0 if config.norm == "Linf" else math.inf
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps <= top:
            bound = "(0, 1]" if config.norm == "Linf" else "(0, inf)"
            raise ValueError(f"eps of an {config.norm} attack must be in {bound}, got {eps!r}")
    if config.norm != "Linf":  # the run's ε is an ℓ∞ budget: an ℓ2 attack keeps its own
        return config if eps is None else parse_attack(spec, dataset, eps=eps)
    linf_eps = eps if eps is not None else train.get("eps")
    if linf_eps is not None:
        alpha = train.get("alpha") if eps is None else None
        config = parse_attack(spec, dataset, eps=linf_eps, alpha=alpha)
    return config


def evaluate_checkpoint(
    path: str | Path,
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
) -> dict[str, Any]:
    """Accuracy of the checkpoint at `path` under each attack spec (pgd10, aa, ...), saved to
    `out` (default eval_<checkpoint>.json next to it).

    ℓ∞ attacks use `eps`, else the run's training eps, else the dataset's preset budget.
    Returns and saves {"checkpoint", "dataset", "n", "eps", "results": {"clean": acc, ...},
    "masking": [reasons to suspect gradient masking (`sanity.masking_flags`)],
    "autoattack_checks": [AutoAttack's own check warnings, e.g. Square still succeeding after
    the gradient attacks, which its AA accuracy already counts]}.
    With `reference`, `path` is a state dict of the paper's reference code (`Reference`).
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    path = Path(path)
    model, meta = load_model(path, device, reference)
    dataset = meta["dataset"]
    configs = [checkpoint_attack(spec, meta, eps) for spec in attacks]
    linf_eps = next(
        (c.eps for c in configs if c.norm == "Linf"),
        eps if eps is not None else meta.get("train", {}).get("eps"),
    )
    test = load_dataset(dataset, "test", data_dir)
    test = test.subset(torch.arange(min(n, len(test))))
    loader = make_loader(test, batch_size)
    results = {"clean": evaluate(model, loader)[1]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AutoAttackWarning)
        for config in configs:
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
        "dataset": dataset,
        "n": len(test),
        "eps": linf_eps,
        "results": results,
        "masking": masking_flags(results),
        "autoattack_checks": checks,
    }
    write_json(Path(out) if out else path.with_name(f"eval_{path.stem}.json"), record)
    return record


def format_results(record: dict[str, Any]) -> str:
    """One line: the checkpoint, then each accuracy in %; then one warning line per reason to
    suspect gradient masking and per AutoAttack check that warned."""
    parts = [f"{name} {100 * acc:.2f}%" for name, acc in record["results"].items()]
    line = f"{record['checkpoint']} ({record['dataset']}, n={record['n']}): " + "  ".join(parts)
    lines = [f"\nwarning: suspected gradient masking: {f}" for f in record.get("masking", [])]
    lines += [f"\nwarning: {check}" for check in record.get("autoattack_checks", [])]
    return line + "".join(lines)
