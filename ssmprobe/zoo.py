"""The bundled checkpoints ("the zoo") as a table: what each one is and how robust it is.

Every entry comes from `checkpoints/manifest.json`, which also holds each file's SHA-256 (checked
whenever a bundled checkpoint is loaded). The accuracies are those the manifest records: the
first `n_test` test samples of the entry's dataset (an attack run on fewer, AutoAttack on the
first 100 of MNIST-10k's 2,000, says so in `n_by_attack`), ℓ∞ budget `eps`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ssmprobe.checkpoint import bundled_dir
from ssmprobe.models import FAMILY_TITLES
from ssmprobe.vocab import ADS_NAMES, DATASET_NAMES, METHOD_NAMES, samples_text


@dataclass(frozen=True)
class ZooEntry:
    """One bundled checkpoint: load it with `ssmprobe.load_model(entry.name)`."""

    name: str  # s4_pgd, dss_trades_ads-relu, ...
    family: str
    method: str
    ads: str | None
    dataset: str
    clean: float  # accuracies in [0, 1]
    pgd10: float
    aa: float
    eps: float
    n_test: int
    n_by_attack: dict[str, int]  # attacks run on fewer than n_test samples ({"aa": 100})
    checkpoint: str  # which of the run's checkpoints: best or last
    sha256: str


def list_models() -> list[ZooEntry]:
    """Every bundled checkpoint, in the manifest's order."""
    manifest = json.loads((bundled_dir() / "manifest.json").read_text())
    return [
        ZooEntry(
            name=file.removesuffix(".pt"),
            family=entry["model"]["model"],
            method=entry["method"],
            ads=entry["model"]["ads"],
            dataset=entry["dataset"],
            clean=entry["accuracy"]["clean"],
            pgd10=entry["accuracy"]["pgd10"],
            aa=entry["accuracy"]["aa"],
            eps=entry["eps"],
            n_test=entry["n_test"],
            n_by_attack=entry.get("n_by_attack", {}),
            checkpoint=entry["checkpoint"],
            sha256=entry["sha256"],
        )
        for file, entry in manifest.items()
    ]


def format_zoo(entries: list[ZooEntry]) -> str:
    """The zoo as a text table, accuracies in %."""
    head = f"{'name':<26}{'model':<7}{'method':<8}{'AdS':<9}{'data':<11}"
    lines = [head + f"{'clean':>7}{'PGD-10':>8}{'AA':>7}{'eps':>6}  n"]
    for e in entries:
        lines.append(
            f"{e.name:<26}{FAMILY_TITLES[e.family]:<7}{METHOD_NAMES[e.method]:<8}"
            f"{ADS_NAMES[e.ads or 'none']:<9}{DATASET_NAMES[e.dataset]:<11}"
            f"{100 * e.clean:>7.2f}{100 * e.pgd10:>8.2f}{100 * e.aa:>7.2f}{e.eps:>6g}  "
            + samples_text(e.n_test, e.n_by_attack)
        )
    return "\n".join(lines)
