"""Hand-built run directories in the run-directory contract's format, for report and plot tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def metrics_rows(epochs: int, best: int) -> list[dict[str, Any]]:
    """Per-epoch rows whose test PGD-10 accuracy peaks at epoch `best` (robust overfitting)."""
    rows = []
    for epoch in range(1, epochs + 1):
        rise = epoch / epochs  # in (0, 1], so every accuracy stays in [0, 1]
        test_pgd = 0.5 - 0.4 * abs(epoch - best) / epochs
        rows.append(
            {
                "epoch": epoch,
                "lr": 1e-3,
                "seconds": 1.5,
                "train_loss": 1.0 / epoch,
                "train_clean_loss": 0.8 / epoch,
                "train_clean_acc": 0.9 + 0.1 * rise,
                "train_pgd_loss": 1.2 / epoch,
                "train_pgd_acc": 0.3 + 0.6 * rise,
                "test_clean_loss": 0.9 / epoch,
                "test_clean_acc": 0.85 + 0.1 * rise,
                "test_pgd_loss": 1.0 + 0.1 * abs(epoch - best),
                "test_pgd_acc": test_pgd,
            }
        )
    return rows


def write_run(
    root: Path,
    name: str,
    *,
    model: str = "s4",
    dataset: str = "digits",
    method: str = "pgd",
    ads: str | None = None,
    seed: int = 0,
    best: dict[str, float] | None = None,
    last: dict[str, float] | None = None,
    epochs: int | None = 6,
    best_epoch: int = 3,
) -> Path:
    """A run directory `root/name`; `best` / `last` are the eval results (fractions), None
    leaves that eval file out; `epochs` None leaves metrics.jsonl out."""
    run = root / name
    run.mkdir(parents=True)
    config = {
        "model": {"model": model, "d_model": 16, "n_layers": 1, "ads": ads},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 1e-3, "seed": seed},
        "dataset": dataset,
        "method": method,
        "ads": ads,
        "seed": seed,
    }
    (run / "config.json").write_text(json.dumps(config))
    if epochs is not None:
        lines = [json.dumps(row) + "\n" for row in metrics_rows(epochs, best_epoch)]
        (run / "metrics.jsonl").write_text("".join(lines))
    for which, results in (("best", best), ("last", last)):
        if results is not None:
            payload = {"checkpoint": f"{which}.pt", "n": 1000, "eps": 0.3, "results": results}
            (run / f"eval_{which}.json").write_text(json.dumps(payload))
    return run
