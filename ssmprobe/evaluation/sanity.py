"""Evaluation sanity flags: accuracy patterns that suggest gradient masking, not robustness.

A gradient-based attack that works can only lower accuracy, and a stronger one lower it further.
So a row is suspect when

- PGD accuracy is above clean accuracy (the attack made the model *more* accurate);
- AutoAttack is more than `AA_GAP` below PGD-10 (gradient-free and adaptive attacks find what
  PGD's gradients cannot: the paper's own MNIST PGD-AT rows show PGD-10 99.9% against AA 0.3%);
- PGD-20 is above PGD-10 (more steps of the same attack should never help the model).

Accuracies are fractions in [0, 1], keyed as in eval files (`clean`, `pgd10`, `pgd20`, `aa`);
an absent key (not evaluated) raises no flag. Only accuracies on the same images are compared:
an eval file whose attacks ran on different numbers of samples keeps each smaller set's own
clean and PGD figures (`evaluate`'s `add`), and `grouped_masking_flags` checks each set alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

AA_GAP = 0.05  # 5 points: the margin issue "A digits default that trains" allows AutoAttack
MARK = "‡"
FOOTNOTE = (
    f"{MARK} suspected gradient masking: PGD above clean, AutoAttack more than "
    f"{100 * AA_GAP:g} points below PGD-10, or PGD-20 above PGD-10."
)
AA_CHECK_MARK = "§"
AA_CHECK_FOOTNOTE = (
    f"{AA_CHECK_MARK} one of AutoAttack's own checks warned (e.g. Square, which needs no "
    "gradients, still lowered accuracy after the gradient attacks); AA already counts what it "
    "found, but the gradient attacks' figures may be optimistic (details in the CSV)."
)
_PGD = re.compile(r"pgd(l2-)?\d+$")  # the labels of `AttackConfig.label`


def is_pgd(label: str) -> bool:
    """Whether `label` (an eval file's key) names a PGD attack: pgd10, pgdl2-20, ..."""
    return bool(_PGD.match(label))


def masking_flags(results: Mapping[str, float]) -> list[str]:
    """Why `results` (one checkpoint's accuracies) suggest gradient masking; empty if nothing."""
    flags = []
    clean = results.get("clean")
    if clean is not None:
        flags += [
            f"{name} {100 * acc:.2f}% above clean {100 * clean:.2f}%"
            for name, acc in results.items()
            if is_pgd(name) and acc > clean
        ]
    pgd10, aa, pgd20 = (results.get(k) for k in ("pgd10", "aa", "pgd20"))
    if pgd10 is not None and aa is not None and pgd10 - aa > AA_GAP + 1e-12:  # float slack
        flags.append(f"aa {100 * aa:.2f}% is {100 * (pgd10 - aa):.2f} points below pgd10")
    if pgd10 is not None and pgd20 is not None and pgd20 > pgd10:
        flags.append(f"pgd20 {100 * pgd20:.2f}% above pgd10 {100 * pgd10:.2f}%")
    return flags


def grouped_masking_flags(
    results: Mapping[str, float],
    n: int,
    n_by_attack: Mapping[str, int],
    subsets: Mapping[int, Mapping[str, float]],
) -> list[str]:
    """`masking_flags` of an eval file's accuracies compared only on the same images: the
    attacks run on its `n` samples (those not in `n_by_attack`), then each subset of the first
    m samples, whose flags name their m."""
    main = {k: v for k, v in results.items() if n_by_attack.get(k, n) == n}
    flags = masking_flags(main)
    for m, subset in sorted(subsets.items()):
        flags += [f"{flag} (first {m} samples)" for flag in masking_flags(subset)]
    return flags


COLLAPSE_SHARE = 0.99  # of the test samples given one class: a constant prediction
COLLAPSE_MARK = "∅"
COLLAPSE_FOOTNOTE = (
    f"{COLLAPSE_MARK} collapsed: the model predicts one class for at least "
    f"{100 * COLLAPSE_SHARE:g}% of the test samples, so its clean and robust accuracy are that "
    "class's share of them, not robustness."
)


def collapse_flag(top_class: int, top_share: float, n: int) -> str | None:
    """Why a checkpoint's accuracies measure no robustness: it gives (almost) every one of the
    `n` test samples the class `top_class`; None when its predictions vary."""
    if top_share < COLLAPSE_SHARE:
        return None
    return (
        f"constant prediction: class {top_class} for {100 * top_share:.1f}% of {n} test samples; "
        "no perturbation changes it, so clean = robust accuracy = that class's share"
    )
