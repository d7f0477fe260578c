"""Tables 1-2 of the paper, rendered from `report.runs.collect_runs`'s frame: Best / Last / Diff
for Clean, PGD-10 and AA as Markdown, CSV and booktabs LaTeX.

`write_tables` writes that table (one row per run, in the order of `collect_runs`), each file
atomically (`io.atomic_file`), so an interrupted report never leaves a half-written table. When a
setting was trained with several seeds, `seed_summary` gives its mean and sample standard
deviation over them, which `write_tables` adds as `table_seeds.md`, `.csv` and `.tex`: one
seed's gap between two settings means little at digits scale. `gap_markdown` is the robust
generalisation gap of the adversarially trained runs (`table_gap.md`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ssmprobe.evaluation.sanity import (
    AA_CHECK_FOOTNOTE,
    AA_CHECK_MARK,
    COLLAPSE_FOOTNOTE,
    COLLAPSE_MARK,
    FOOTNOTE,
    MARK,
)
from ssmprobe.io import write_text
from ssmprobe.report.runs import (
    ACCURACY_COLUMNS,
    COLUMNS,
    GAP_COLUMNS,
    KEY_COLUMNS,
    RECIPE_COLUMNS,
    STATS,
    TABLE_ATTACKS,
    display,
)
from ssmprobe.training.selection import LEARNED_FACTOR

MISSING = "–"
FALLBACK_MARK = "†"
CAPTION = (
    "Test accuracy (%) at the best checkpoint (highest PGD-10 test accuracy among epochs with "
    f"clean accuracy >= {LEARNED_FACTOR:g}x chance; {FALLBACK_MARK}: no epoch reached that, "
    "best over all epochs) and the last; Diff = Best - Last; – = not evaluated."
)

SEEDS_CAPTION = (
    "Mean ± sample standard deviation over seeds of the test accuracy (%) at the best and last "
    "checkpoint, for the settings trained with several seeds of one recipe (epochs, train-eval "
    "size, test samples n; the zoo's runs apart from yours); (k): only k of them have the value."
)

GAP_CAPTION = (
    "Robust generalisation gap: PGD-10 accuracy (%) on the trainer's fixed train subset and on "
    "the test set at the best and the last epoch (metrics.jsonl), Gap = train - test in points. "
    "These are the trainer's per-epoch PGD-10 runs, whose random starts differ from the "
    "evaluation's, so Test PGD-10 can differ from Tables 1-2's PGD-10 by a point or two."
)
_HEADERS = {
    "dataset": "Dataset",
    "model": "Model",
    "method": "Method",
    "ads": "AdS",
    "seed": "Seed",
    "epochs": "Epochs",
    "best_epoch": "Best epoch",
    "best_rule": "Best rule",
    "masking": "Suspected masking",
    "aa_checks": "AutoAttack checks",
    "collapse": "Collapsed",
    "run": "Run",
    "recipe": "Recipe",
    "zoo": "Zoo",
    "seeds": "Seeds",
    **{f"{a}_{s}": f"{name} {s.capitalize()}" for a, name in TABLE_ATTACKS.items() for s in STATS},
    **{
        f"{c}_{at}": f"{name} {at.capitalize()}"
        for at in ("best", "last")
        for c, name in (
            ("train_pgd", "Train PGD-10"),
            ("test_pgd", "Test PGD-10"),
            ("gap", "Robust gap"),
        )
    },
}
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
    "±": r"$\pm$",
}


def gap_markdown(df: pd.DataFrame) -> str:
    """The robust generalisation gap of the adversarially trained runs as a Markdown table."""
    at = df[(df["method"] != "st") & df["gap_last"].notna()]
    shown = ["dataset", "model", "method", "ads", *_told_apart_by(at)]
    cells = [
        [*(display(c, row[c]) if c in KEY_COLUMNS else _cell(row[c]) for c in shown)]
        + [number_cell(row[c]) for c in GAP_COLUMNS]
        for _, row in at.iterrows()
    ]
    headers = [_HEADERS[c] for c in (*shown, *GAP_COLUMNS)]
    return markdown_table(GAP_CAPTION, headers, cells, len(shown), [])


def write_tables(df: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Writes table.md, table.csv and table.tex for `collect_runs`'s frame into `out_dir`.

    Markdown and LaTeX have the paper's layout: Dataset, Model, Method, AdS (only when some run
    has AdS), Seed (only when some setting was run with several seeds), then Best / Last / Diff
    under Clean, PGD-10 and AA, missing values as "–". The CSV has every column of the frame
    with the paper's names, empty cells for missing values, so it reads back as numbers.
    Returns {"md": path, "csv": path, "tex": path}, "gap_md" (table_gap.md, `gap_markdown`) when
    some adversarially trained run has per-epoch metrics, and "seeds_md", "seeds_csv", "seeds_tex"
    (table_seeds.*) when some setting has several seeds (`seed_summary`).
    """
    missing = [c for c in (*KEY_COLUMNS, "seed", *ACCURACY_COLUMNS) if c not in df]
    if missing:
        raise ValueError(f"the frame lacks columns {missing}; pass the result of collect_runs")
    if df.empty:
        raise ValueError("no runs to tabulate (the frame is empty)")
    out_dir = Path(out_dir)
    labels = df.copy()
    for column in KEY_COLUMNS:
        labels[column] = [display(column, key) for key in df[column]]
    notes = []
    for column, mark, flagged, note in (
        ("best_rule", FALLBACK_MARK, lambda c: c == "all", None),  # best.pt of an untrained run
        ("masking", MARK, lambda c: c.fillna("") != "", FOOTNOTE),
        ("aa_checks", AA_CHECK_MARK, lambda c: c.fillna("") != "", AA_CHECK_FOOTNOTE),
        ("collapse", COLLAPSE_MARK, lambda c: c.fillna("") != "", COLLAPSE_FOOTNOTE),
    ):
        if column in df:
            rows = flagged(df[column])
            labels.loc[rows, "method"] = labels.loc[rows, "method"] + " " + mark
            if rows.any() and note:
                notes.append(note)
    shown = ["dataset", "model", "method"]
    if (df["ads"] != "none").any():
        shown.append("ads")
    shown += _told_apart_by(df)
    cells = [
        [*(_cell(row[c]) for c in shown), *(number_cell(row[c]) for c in ACCURACY_COLUMNS)]
        for _, row in labels.iterrows()
    ]
    csv_frame = labels[[c for c in COLUMNS if c in labels]].rename(columns=_HEADERS)
    paths = {name: out_dir / f"table.{name}" for name in ("md", "csv", "tex")}
    write_text(paths["md"], _markdown(shown, cells, notes))
    write_text(paths["csv"], csv_frame.to_csv(index=False, float_format="%.2f"))
    write_text(paths["tex"], _latex([_HEADERS[c] for c in shown], cells, notes))
    if "gap_last" in df and ((df["method"] != "st") & df["gap_last"].notna()).any():
        paths["gap_md"] = out_dir / "table_gap.md"
        write_text(paths["gap_md"], gap_markdown(df))
    summary = seed_summary(df)
    if not summary.empty:
        paths |= {f"seeds_{e}": out_dir / f"table_seeds.{e}" for e in ("md", "csv", "tex")}
        headers, cells = _seed_cells(summary)
        n_labels = len(headers) - len(SEED_STATS)
        write_text(paths["seeds_md"], markdown_table(SEEDS_CAPTION, headers, cells, n_labels, []))
        write_text(paths["seeds_csv"], summary.to_csv(index=False, float_format="%.2f"))
        write_text(
            paths["seeds_tex"],
            _latex(headers[:n_labels], cells, [], SEEDS_CAPTION, ("best", "last")),
        )
    return paths


SEED_STATS = [f"{attack}_{stat}" for attack in TABLE_ATTACKS for stat in ("best", "last")]


def _recipes(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with the columns that tell recipes apart (`RECIPE_COLUMNS`), filled where a frame
    built by hand lacks them: every run yours, one recipe."""
    defaults = {"zoo": False, "recipe": ""}
    return df.assign(**{c: v for c, v in defaults.items() if c not in df})


def _told_apart_by(df: pd.DataFrame) -> list[str]:
    """The columns that tell the table's rows apart where rows share a setting: Run where they
    differ in recipe or origin (yours, the zoo's), Seed where they are seeds of one recipe."""
    df = _recipes(df)
    shown = []
    if (df.groupby(KEY_COLUMNS, sort=False)[["zoo", "recipe"]].nunique() > 1).any(axis=None):
        shown.append("run")
    if df.duplicated(RECIPE_COLUMNS).any():
        shown.append("seed")
    return shown


def seed_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per setting (dataset, model, method, AdS) and recipe (`RECIPE_COLUMNS`: your runs
    apart from the zoo's, and only runs of one recipe) run with several seeds: `seeds` (how
    many runs), then for Best and Last of Clean, PGD-10 and AA the mean over the runs that have
    the value (`<column>_mean`), its sample standard deviation (`_std`, NaN from one value) and
    that count (`_n`). Table order; empty when no setting has several seeds."""
    df = _recipes(df)
    repeated = df[df.duplicated(RECIPE_COLUMNS, keep=False)]
    rows = []
    for key, group in repeated.groupby(RECIPE_COLUMNS, sort=False):
        row: dict[str, Any] = dict(zip(RECIPE_COLUMNS, key, strict=True)) | {"seeds": len(group)}
        for column in SEED_STATS:
            values = group[column].dropna()
            row |= {
                f"{column}_mean": values.mean(),
                f"{column}_std": values.std(ddof=1),
                f"{column}_n": len(values),
            }
        rows.append(row)
    return pd.DataFrame(rows)


def _seed_cells(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The seed table's headers and cells: labels, Seeds, then "mean ± std" per statistic."""
    shown = ["dataset", "model", "method", *(["ads"] if (summary["ads"] != "none").any() else [])]
    if summary.duplicated(KEY_COLUMNS).any():  # one setting, several recipes: say which
        shown += ["zoo", "recipe"]

    def cell(row: pd.Series, column: str) -> str:
        n = row[f"{column}_n"]
        if n == 0:
            return MISSING
        text = f"{row[f'{column}_mean']:.2f}"
        text += f" ± {row[f'{column}_std']:.2f}" if n > 1 else ""
        return text + (f" ({n})" if n < row["seeds"] else "")

    cells = [
        [*(_label(c, row[c]) for c in shown), str(row["seeds"])]
        + [cell(row, c) for c in SEED_STATS]
        for _, row in summary.iterrows()
    ]
    headers = [*(_HEADERS[c] for c in (*shown, "seeds")), *(_HEADERS[c] for c in SEED_STATS)]
    return headers, cells


def _label(column: str, value: Any) -> str:
    if column == "zoo":
        return "zoo" if value else "yours"
    return display(column, value) if column in KEY_COLUMNS else _cell(value)


def _cell(value: Any) -> str:
    return MISSING if pd.isna(value) else str(value)


def number_cell(value: float) -> str:
    """An accuracy (%) as the tables print it, two decimals; NaN (not evaluated) as "–"."""
    return MISSING if pd.isna(value) else f"{value:.2f}"


def _markdown(shown: Sequence[str], cells: list[list[str]], notes: Sequence[str]) -> str:
    header = [_HEADERS[c] for c in (*shown, *ACCURACY_COLUMNS)]
    return markdown_table(CAPTION, header, cells, len(shown), notes)


def markdown_table(
    caption: str,
    header: Sequence[str],
    cells: list[list[str]],
    n_labels: int,
    notes: Sequence[str],
) -> str:
    """A captioned Markdown table, the first `n_labels` columns left-aligned, the rest right."""
    cells = [[text.replace("|", r"\|") for text in row] for row in cells]  # a name with a pipe
    widths = [max(len(text) for text in column) for column in zip(header, *cells, strict=True)]

    def line(texts: Sequence[str]) -> str:
        padded = [
            text.ljust(w) if j < n_labels else text.rjust(w)
            for j, (text, w) in enumerate(zip(texts, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            "-" * (w + 2) if j < n_labels else "-" * (w + 1) + ":" for j, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join(
        [
            caption,
            "",
            line(header),
            rule,
            *(line(row) for row in cells),
            "",
            *(f"{note}\n" for note in notes),
        ]
    )


def _latex(
    labels: Sequence[str],
    cells: list[list[str]],
    notes: Sequence[str],
    caption: str = CAPTION,
    stats: Sequence[str] = STATS,
) -> str:
    """A booktabs table: the `labels` columns' headers, then each attack's `stats` under a
    spanning header; `cells` hold the label texts, then the numbers."""
    n = len(labels)
    k = len(stats)
    spans = "".join(
        rf"\cmidrule(lr){{{n + 1 + k * i}-{n + k * (i + 1)}}}" for i in range(len(TABLE_ATTACKS))
    )
    lines = [
        "% " + caption,
        rf"\begin{{tabular}}{{{'l' * n}{'r' * k * len(TABLE_ATTACKS)}}}",
        r"\toprule",
        " & " * n
        + " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{name}}}" for name in TABLE_ATTACKS.values())
        + r" \\",
        spans,
        " & ".join([*labels, *[s.capitalize() for s in stats] * len(TABLE_ATTACKS)]) + r" \\",
        r"\midrule",
    ]
    previous: list[str] = []
    for row in cells:
        if previous and row[0] != previous[0]:
            lines.append(r"\midrule")
        # Like the paper, a dataset / model / method is printed only where it changes.
        printed = list(row)
        for j in range(min(3, n)):
            if row[: j + 1] == previous[: j + 1]:
                printed[j] = ""
        texts = [*map(_latex_escape, printed[:n]), *map(_latex_number, printed[n:])]
        lines.append(" & ".join(texts) + r" \\")
        previous = row
    lines += [r"\bottomrule", r"\end{tabular}", *(f"% {note}" for note in notes), ""]
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def _latex_number(text: str) -> str:
    """A printed accuracy, its minus sign (Diff < 0) in math mode rather than a hyphen."""
    return f"$-${text[1:]}" if text.startswith("-") else _latex_escape(text)
