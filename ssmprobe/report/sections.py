"""The report's sections: each table or group of figures with its title and the sentence on
what it shows (`_sections`), and their assembly into report.md (`render_markdown`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ssmprobe.evaluation.sanity import AA_CHECK_FOOTNOTE, FOOTNOTE
from ssmprobe.report.runs import RunInfo, display
from ssmprobe.vocab import DATASET_NAMES


@dataclass
class Section:
    """One table or group of figures of the report, with the sentence saying what it shows."""

    title: str
    sentence: str
    images: list[Path] = field(default_factory=list)
    table: str | None = None  # a Markdown table (table.md's text)
    notes: list[str] = field(default_factory=list)  # findings, as a list under the sentence
    captions: dict[Path, str] = field(default_factory=dict)  # else from the file's name

    def caption(self, path: Path) -> str:
        return self.captions.get(path) or figure_caption(path)


def link(path: Path, out: Path) -> str:
    """`path` as report.md / report.html in `out` reach it (a study's figures may sit beside
    `out`, not in it)."""
    return Path(os.path.relpath(path, out)).as_posix()


def _sections(
    frame: pd.DataFrame,
    tables: dict[str, Path],
    curves: list[Path],
    discrepancy: list[Path],
    bounds: dict[Path, list[Path]],
    runs: Sequence[RunInfo],
    poison: list[Path],
    skipped: Sequence[tuple[str, str]] = (),
) -> list[Section]:
    flagged = (frame["masking"].fillna("") != "").sum()
    checked = (frame["aa_checks"].fillna("") != "").sum()
    unknown = frame["aa_checks"].isna().sum()
    sections = [
        Section(
            "Tables 1-2: accuracy at the best and last checkpoint",
            "Clean, PGD-10 and AutoAttack test accuracy of every run at its best epoch (highest "
            "PGD-10 among epochs that learned) and its last, and their difference (robust "
            f"overfitting); {flagged} row(s) flagged for suspected gradient masking"
            f" and {checked} where AutoAttack's own checks warned"
            + (
                f" (not recorded for {unknown}, evaluated before eval files kept them)."
                if unknown
                else "."
            )
            + (f" {FOOTNOTE}" if flagged else "")
            + (f" {AA_CHECK_FOOTNOTE}" if checked else ""),
            table=tables["md"].read_text(encoding="utf-8"),
        )
    ]
    if skipped:
        sections.append(
            Section(
                "Skipped runs",
                f"{len(skipped)} run folder(s) left out of every table and figure: "
                + "; ".join(f"`{path}`: {why}" for path, why in skipped)
                + ".",
            )
        )
    if "gap_md" in tables:
        sections.append(
            Section(
                "Robust generalisation gap",
                "The paper's other sign of robust overfitting: how far adversarial accuracy on "
                "the training data runs ahead of the test set, at the best and the last epoch.",
                table=tables["gap_md"].read_text(encoding="utf-8"),
            )
        )
    if "seeds_md" in tables:
        sections.append(
            Section(
                "Seeds: mean and spread of the settings trained more than once",
                "The same accuracies averaged over each setting's seeds, with their sample "
                "standard deviation: a gap between two settings smaller than that spread is not "
                "a finding.",
                table=tables["seeds_md"].read_text(encoding="utf-8"),
            )
        )
    if curves:
        sections.append(
            Section(
                "Figures 1, 2 and 5: training curves",
                "Loss and accuracy on train and test, clean and under PGD-10, after every epoch; "
                "the dotted line marks the best epoch, where test PGD-10 accuracy peaks.",
                _pngs(curves),
            )
        )
    pngs = _pngs(discrepancy)
    top = discrepancy[0].parent if discrepancy else None  # out/discrepancy: the first dataset's
    rates = [p for p in pngs if p.stem.startswith("figure")]
    apart = {p.parent.name == "zoo" for p in rates}
    datasets = any(p.parent not in (top, top / "zoo") for p in rates if top)
    for stem, title, sentence in (
        (
            "figure3_discrepancy",
            "Figure 3: feature discrepancy per component",
            "How much each component changes the MSE and KL between clean and adversarial "
            "features (after / before - 1, averaged over layers), train and test, per run.",
        ),
        (
            "figure4_discrepancy_ads",
            "Figure 4: feature discrepancy with AdS",
            "The same rates for models with the adaptive scaling (AdS) module after the SSM.",
        ),
    ):
        drawn = [p for p in pngs if p.stem == stem]
        if drawn:
            if len(apart) > 1:
                sentence += " Your runs and the bundled zoo's are drawn apart."
            sentence += " Each dataset is drawn apart." if datasets else ""
            sections.append(Section(title, sentence, drawn))
    for verdict_md in (p for p in discrepancy if p.name == "verdicts.md"):
        on = "" if verdict_md.parent == top else f" ({display('dataset', verdict_md.parent.name)})"
        sections.append(
            Section(
                "Figures 3-4: verdicts in the plain and the relative form" + on,
                "Rates (%) on test inputs in the plain form d(f', f) and in the paper's relative "
                "form d(f', f)/||f||, bold where the two disagree on raise or lower, and the "
                "scale-free amplification (||Δ_out||/||Δ_in||) / (||f_out||/||f_in||), bold "
                "where the component amplifies the attack more than the clean signal.",
                table=verdict_md.read_text(encoding="utf-8"),
            )
        )
    steps = [p for p in pngs if p.stem.startswith("steps_")]
    if steps:
        sections.append(
            Section(
                "Per-position discrepancy",
                "Squared error between clean and adversarial features at each sequence position, "
                "before and after each SSM, for every probed checkpoint.",
                steps,
            )
        )
    by_path = {run.path: run for run in runs}
    for path, files in bounds.items():
        if _pngs(files):
            run = by_path[path]
            sections.append(
                Section(
                    f"Theorem 4.1.1 on {run.title}",
                    "Measured output error of each channel against the kernel-form, "
                    "eigenvalue-form and spectral upper bounds (and, for LTI layers, against "
                    "the sequence length, with the eigenvalues of Ā).",
                    _pngs(files),
                )
            )
    if poison:
        sections.append(
            Section(
                "Clean-label poisoning of the implicit bias",
                "Training dynamics of baseline (blue) and poisoned (red) students: largest "
                "eigenvalues of Ā, effective rank, training and extension loss.",
                _pngs(poison),
            )
        )
    return sections


_CAPTIONS = (  # (stem prefix, what the figure shows), the longest prefix first
    ("figure3_", "Figure 3: feature discrepancy rate of each component, models without AdS"),
    ("figure4_", "Figure 4: feature discrepancy rate of each component, models with AdS"),
    ("steps_", "Squared error between clean and adversarial features along the sequence, {}"),
    ("bounds_vs_L_", "Median exact error and bounds against the sequence length L, {}"),
    ("bounds_", "Measured output error of each channel against its bounds, {}"),
    ("eigenvalues_", "Eigenvalues of Ā in the complex plane, with the unit circle, {}"),
    ("delta_", "Mamba's step Δ_k: ||B̄_k||, the naive ZOH's error, |C̄_k B̄_k| and Ā_k, {}"),
    ("poison_dynamics_", "Poisoning: baseline against poisoned students' training dynamics, {}"),
)  # fmt: skip


def figure_caption(path: Path) -> str:
    """What the figure at `path` shows, from its kind (the stem's prefix) and its subject."""
    stem = path.stem
    folders = (path.parent.name, path.parent.parent.name)
    zoo = " (the bundled zoo)" if folders[0] == "zoo" else ""
    # a second dataset's folder (discrepancy/mnist10k, discrepancy/mnist10k/zoo) names it
    zoo = "".join(f", {display('dataset', f)}" for f in folders if f in DATASET_NAMES) + zoo
    if stem.startswith("curves_"):
        dataset, _, method = stem.removeprefix("curves_").rpartition("_")
        return (
            f"Training curves of the {display('method', method)} runs on "
            f"{display('dataset', dataset)}: loss and accuracy, train and test, clean and "
            "under PGD-10, per epoch; the dotted line marks the best epoch"
        )
    for prefix, caption in _CAPTIONS:
        if stem.startswith(prefix):
            subject = stem.removeprefix(prefix).replace("_", " ")
            return caption.format(subject) + zoo
    return stem.replace("_", " ")


def _pngs(paths: Sequence[Path]) -> list[Path]:
    return [p for p in paths if p.suffix == ".png"]


def render_markdown(findings: Sequence[str], sections: Sequence[Section], out: Path) -> str:
    lines = ["# ssmprobe report", "", *(f"- {f}" for f in findings), ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        lines += [section.sentence, ""] if section.sentence else []
        lines += [*(f"- {n}" for n in section.notes), ""] if section.notes else []
        if section.table:
            lines += [section.table.rstrip("\n"), ""]
        lines += [f"![{section.caption(p)}]({link(p, out)})" for p in section.images]
        if section.images:
            lines.append("")
    return "\n".join(lines)
