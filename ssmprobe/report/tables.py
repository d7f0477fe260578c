"""Tables 1-2 of the paper from run directories: Best / Last / Diff for Clean, PGD-10 and AA.

A run directory is a folder holding `config.json` (see the run-directory contract: the trainer
writes `config.json` and `metrics.jsonl`, `ssmprobe eval` writes `eval_best.json` and
`eval_last.json`). `collect_runs` finds every run under a folder, at any depth, and gives one
row per run:

- `dataset`, `model`, `method`, `ads` ("none" without AdS), `seed`: from `config.json`;
- `clean_best`, `clean_last`, `clean_diff`, and the same for `pgd10` and `aa`: test accuracy in
  % rounded to 2 decimals, as in the paper; `diff = best - last` of the rounded values, so a
  printed row always adds up. An eval file or an attack that is absent gives NaN (printed "–");
- `epochs` (finished epochs), `best_epoch` and `best_rule` from `metrics.jsonl` by
  `training.selection.best_epoch`, the trainer's rule for best.pt (highest test PGD-10 accuracy
  among epochs that have learned, the earliest on a tie; `best_rule` says whether that pool or, when
  no epoch learned, all epochs were searched), NA without it; `run`: the run's path relative
  to the runs folder;
- `train_pgd_best`, `test_pgd_best`, `gap_best` and the same for `last`: PGD-10 accuracy (%) on
  the trainer's fixed train subset and on the test set at the best and the last epoch
  (`metrics.jsonl`), and their difference, the robust generalisation gap (train - test, in
  points; the paper's second sign of robust overfitting, beside Best - Last), NaN without it;
- `masking`: the reasons to suspect gradient masking (`evaluation.sanity.masking_flags`), and
  `aa_checks`: the warnings of AutoAttack's own checks kept in the eval files (say, Square
  still lowering accuracy after the gradient attacks), each prefixed by its checkpoint; NA
  when AutoAttack ran before eval files kept them and nothing else says it warned.

Rows are sorted by dataset (digits, mnist, cifar10), model (S4, DSS, S5, Mega, Mamba), method
(ST, PGD-AT, TRADES), AdS (none, ReLU, Tanh, Sigmoid), seed; names outside these lists follow
the known ones alphabetically. `write_tables` writes that table as Markdown, CSV and booktabs
LaTeX, each file atomically (`io.atomic_file`), so an interrupted report never leaves a
half-written table. When a setting was trained with several seeds, `seed_summary` gives its
mean and sample standard deviation over them, which `write_tables` adds as `table_seeds.md`,
`.csv` and `.tex`: one seed's gap between two settings means little at digits scale.

A file that is there but unreadable (invalid JSON, wrong fields, an accuracy outside [0, 1])
raises `RunDirError` naming it: silently dropping a run would make a table look complete when
it is not.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ssmprobe.attacks import attack_title
from ssmprobe.evaluation.sanity import (
    AA_CHECK_FOOTNOTE,
    AA_CHECK_MARK,
    FOOTNOTE,
    MARK,
    masking_flags,
)
from ssmprobe.io import write_text
from ssmprobe.models import FAMILY_TITLES
from ssmprobe.training.selection import LEARNED_FACTOR, BestChoice, best_epoch
from ssmprobe.vocab import ADS_NAMES, DATASET_NAMES, METHOD_NAMES

TABLE_ATTACKS = {a: attack_title(a) for a in ("clean", "pgd10", "aa")}  # the paper's columns
STATS = ("best", "last", "diff")
MISSING = "–"
FALLBACK_MARK = "†"
CAPTION = (
    "Test accuracy (%) at the best checkpoint (highest PGD-10 test accuracy among epochs with "
    f"clean accuracy >= {LEARNED_FACTOR:g}x chance; {FALLBACK_MARK}: no epoch reached that, "
    "best over all epochs) and the last; Diff = Best - Last; – = not evaluated."
)

SEEDS_CAPTION = (
    "Mean ± sample standard deviation over seeds of the test accuracy (%) at the best and last "
    "checkpoint, for the settings trained with several seeds; (k): only k of them have the value."
)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILES = {"best": "eval_best.json", "last": "eval_last.json"}

ACCURACY_COLUMNS = [f"{attack}_{stat}" for attack in TABLE_ATTACKS for stat in STATS]
GAP_COLUMNS = [f"{c}_{at}" for at in ("best", "last") for c in ("train_pgd", "test_pgd", "gap")]
GAP_CAPTION = (
    "Robust generalisation gap: PGD-10 accuracy (%) on the trainer's fixed train subset and on "
    "the test set at the best and the last epoch (metrics.jsonl), Gap = train - test in points. "
    "These are the trainer's per-epoch PGD-10 runs, whose random starts differ from the "
    "evaluation's, so Test PGD-10 can differ from Tables 1-2's PGD-10 by a point or two."
)
KEY_COLUMNS = ["dataset", "model", "method", "ads"]
COLUMNS = [
    *KEY_COLUMNS,
    "seed",
    *ACCURACY_COLUMNS,
    *GAP_COLUMNS,
    "epochs",
    "best_epoch",
    "best_rule",
    "masking",
    "aa_checks",
    "run",
]
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
    "run": "Run",
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
_DISPLAY = {
    "dataset": DATASET_NAMES,
    "model": FAMILY_TITLES,
    "method": METHOD_NAMES,
    "ads": ADS_NAMES,
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


class RunDirError(ValueError):
    """A file of a run directory is present but unusable (corrupt JSON, wrong fields)."""


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run, read from its `config.json`."""

    path: Path
    dataset: str
    model: str
    method: str
    ads: str
    seed: int | None
    pgd_steps: int = 10  # steps of the PGD run after every epoch (train.steps; 10 in the paper)
    n_classes: int = 10  # chance level for the best-epoch rule (model.n_classes)

    @property
    def title(self) -> str:
        """E.g. "S4 · PGD-AT · MNIST", or "DSS + ReLU AdS · TRADES · Digits"."""
        return setting_title(self.dataset, self.model, self.method, self.ads)


def setting_title(dataset: str, model: str, method: str, ads: str) -> str:
    """A setting in the paper's names: "DSS + ReLU AdS · TRADES · Digits" ("none": no AdS)."""
    name = display("model", model) + ("" if ads == "none" else f" + {display('ads', ads)} AdS")
    return f"{name} · {display('method', method)} · {display('dataset', dataset)}"


def display(column: str, key: str) -> str:
    """The paper's name for a dataset / model / method / AdS key; unknown keys as they are."""
    return _DISPLAY[column].get(key, key)


def sort_key(run: RunInfo) -> tuple:
    """Table order: the paper's order of datasets, models, methods and AdS, then the seed."""
    return (
        *(_rank(column, getattr(run, column)) for column in KEY_COLUMNS),
        -1 if run.seed is None else run.seed,
        str(run.path),
    )


def find_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Every run directory under `runs_dir` (itself included), in table order.

    Folders whose name starts with a dot (editor and notebook caches) are not searched.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        raise FileNotFoundError(f"runs folder not found: {runs_dir}")
    if not runs_dir.is_dir():
        raise NotADirectoryError(f"runs folder is a file, not a folder: {runs_dir}")
    configs = [
        path
        for path in runs_dir.rglob(CONFIG_FILE)
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(runs_dir).parts[:-1])
    ]
    if not configs:
        raise ValueError(
            f"no runs found under {runs_dir}: a run directory is a folder holding {CONFIG_FILE} "
            f"(written by `ssmprobe train`), with {METRICS_FILE} and the "
            f"{' / '.join(EVAL_FILES.values())} files of `ssmprobe eval` next to it"
        )
    return sorted((read_run_info(path.parent) for path in configs), key=sort_key)


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Dataset, model, method, AdS and seed of the run in `run_dir`, from its config.json."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    config = read_json(path)
    if not isinstance(config, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(config).__name__}")
    model = config.get("model")
    model_dict = model if isinstance(model, dict) else {}
    values = {
        "dataset": config.get("dataset"),
        "model": model_dict.get("model") if isinstance(model, dict) else model,
        "method": config.get("method"),
    }
    bad = [f"{key} ({value!r})" for key, value in values.items() if not isinstance(value, str)]
    if bad:
        raise RunDirError(
            f"{path}: needs the strings dataset, method and model (or model.model); "
            f"missing or not a string: {', '.join(bad)}"
        )
    ads = config["ads"] if "ads" in config else model_dict.get("ads")
    if ads is not None and not isinstance(ads, str):
        raise RunDirError(f"{path}: ads must be null or a string, got {ads!r}")
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    seed = config.get("seed", train.get("seed"))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RunDirError(f"{path}: seed must be an integer, got {seed!r}")
    steps = train.get("steps", 10)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise RunDirError(f"{path}: train.steps must be a positive integer, got {steps!r}")
    n_classes = model_dict.get("n_classes", 10)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise RunDirError(f"{path}: model.n_classes must be an integer >= 2, got {n_classes!r}")
    return RunInfo(
        run_dir, **values, ads=ads or "none", seed=seed, pgd_steps=steps, n_classes=n_classes
    )


def read_json(path: Path) -> Any:
    """The parsed contents of a JSON file; RunDirError naming the file if it is not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RunDirError(f"{path}: not a text file ({err.reason} at byte {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RunDirError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
            "the file is corrupt or was cut short: re-run the step that writes it"
        ) from None


def read_eval(path: Path) -> dict[str, float]:
    """Accuracies (fractions) by attack name from an eval_*.json; {} if the file is absent."""
    return read_eval_record(path).accuracies


@dataclass(frozen=True)
class EvalRecord:
    """What an eval_*.json says: accuracies (fractions) by attack name, attacks that were not
    run left out; the test samples `n` (0 if absent) and `eps` (None if absent); `checks`, the
    warnings of AutoAttack's own checks (`autoattack_checks`): [] if it ran no AutoAttack, None
    if it ran AutoAttack but predates the field (not known)."""

    accuracies: dict[str, float]
    n: int = 0
    eps: float | None = None
    checks: list[str] | None = None


def read_eval_record(path: Path) -> EvalRecord:
    """The EvalRecord of an eval_*.json, empty (no accuracies, checks []) if the file is
    absent; RunDirError naming the file and field if it is there but malformed."""
    if not path.is_file():
        return EvalRecord({}, checks=[])
    payload = read_json(path)
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, dict):
        raise RunDirError(f'{path}: expected an object with a "results" object of accuracies')
    accuracies = {}
    for attack, value in results.items():
        if value is None:  # an attack that was not run, written as null
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0.0 <= value <= 1.0  # also rejects NaN
        ):
            raise RunDirError(
                f"{path}: results[{attack!r}] = {value!r} is not an accuracy in [0, 1] "
                "(accuracies are fractions, not percentages)"
            )
        accuracies[attack] = float(value)
    n, eps = payload.get("n", 0), payload.get("eps")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise RunDirError(f'{path}: "n" must be a number of test samples, got {n!r}')
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, int | float)):
        raise RunDirError(f'{path}: "eps" must be a number, got {eps!r}')
    if "autoattack_checks" not in payload:
        known = None if any(k.startswith("aa") for k in accuracies) else []
        return EvalRecord(accuracies, n, eps, known)
    checks = payload["autoattack_checks"]
    if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
        raise RunDirError(f'{path}: "autoattack_checks" must be a list of strings')
    return EvalRecord(accuracies, n, eps, checks)


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The per-epoch metrics of a run (metrics.jsonl), one row per epoch, sorted by epoch.

    A last line that does not parse is what an interrupted run leaves: it is skipped with a
    warning. A bad line anywhere else means the file is corrupt, and raises RunDirError naming
    the file and line. If an epoch appears twice (a resumed run), its last row wins.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} in {run_dir} (has the run finished an epoch?)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise RunDirError(f"{path}: not a text file ({err.reason} at byte {err.start})") from None
    numbered = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    rows = []
    for i, line in numbered:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if i == numbered[-1][0]:
                warnings.warn(
                    f"{path}: skipping line {i}, cut short ({err.msg}); "
                    "the run was probably interrupted while writing it",
                    stacklevel=2,
                )
                continue
            raise RunDirError(f"{path}: line {i} is not valid JSON ({err.msg})") from None
        if (
            not isinstance(row, dict)
            or isinstance(row.get("epoch"), bool)
            or not isinstance(row.get("epoch"), int)
        ):
            raise RunDirError(f'{path}: line {i} is not an object with an integer "epoch"')
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else ["epoch"])
    frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch", kind="stable")
    return frame.reset_index(drop=True)


def best_choice(metrics: pd.DataFrame, n_classes: int) -> BestChoice | None:
    """The epoch the trainer keeps as best.pt (`training.selection.best_epoch`); None without the
    test accuracy columns or any complete row."""
    needed = ["epoch", "test_clean_acc", "test_pgd_acc"]
    if not set(needed) <= set(metrics):
        return None
    return best_epoch(metrics[needed].dropna().to_dict("records"), n_classes)


def robust_gap(metrics: pd.DataFrame, best: int | None) -> dict[str, float]:
    """PGD-10 accuracy (%) on train and test and their gap at the `best` epoch and the last
    one (`GAP_COLUMNS`); an epoch or a column that is missing gives NaN."""
    out = dict.fromkeys(GAP_COLUMNS, math.nan)
    if not {"train_pgd_acc", "test_pgd_acc"} <= set(metrics) or metrics.empty:
        return out
    rows = {"last": metrics.iloc[-1]}
    if best is not None and (metrics["epoch"] == best).any():
        rows["best"] = metrics[metrics["epoch"] == best].iloc[-1]
    for at, row in rows.items():
        train, test = (round(100 * float(row[f"{s}_pgd_acc"]), 2) for s in ("train", "test"))
        out |= {f"train_pgd_{at}": train, f"test_pgd_{at}": test}
        out[f"gap_{at}"] = round(train - test, 2)
    return out


def gap_markdown(df: pd.DataFrame) -> str:
    """The robust generalisation gap of the adversarially trained runs as a Markdown table."""
    at = df[(df["method"] != "st") & df["gap_last"].notna()]
    shown = ["dataset", "model", "method", "ads"] + (
        ["seed"] if at.duplicated(KEY_COLUMNS).any() else []
    )
    cells = [
        [*(display(c, row[c]) if c in _DISPLAY else _cell(row[c]) for c in shown)]
        + [_number(row[c]) for c in GAP_COLUMNS]
        for _, row in at.iterrows()
    ]
    headers = [_HEADERS[c] for c in (*shown, *GAP_COLUMNS)]
    return _markdown_table(GAP_CAPTION, headers, cells, len(shown), [])


def collect_runs(runs_dir: str | Path) -> pd.DataFrame:
    """One row per run under `runs_dir`, with the columns of `COLUMNS` (module docstring)."""
    runs_dir = Path(runs_dir)
    rows = []
    for run in find_runs(runs_dir):
        row: dict[str, Any] = {key: getattr(run, key) for key in (*KEY_COLUMNS, "seed")}
        records = {c: read_eval_record(run.path / name) for c, name in EVAL_FILES.items()}
        fractions = {c: record.accuracies for c, record in records.items()}
        checks = {c: record.checks for c, record in records.items()}
        percent = {c: {k: round(100 * v, 2) for k, v in r.items()} for c, r in fractions.items()}
        row["masking"] = "; ".join(
            f"{c}: {flag}" for c, results in fractions.items() for flag in masking_flags(results)
        )
        warned = "; ".join(f"{c}: {check}" for c, found in checks.items() for check in found or [])
        row["aa_checks"] = pd.NA if not warned and None in checks.values() else warned
        for attack in TABLE_ATTACKS:
            best = percent["best"].get(attack, math.nan)
            last = percent["last"].get(attack, math.nan)
            row |= {f"{attack}_best": best, f"{attack}_last": last}
            row[f"{attack}_diff"] = round(best - last, 2)  # NaN if either is missing
        if (run.path / METRICS_FILE).is_file():
            metrics = read_metrics(run.path)
            row["epochs"] = len(metrics)
            best = best_choice(metrics, run.n_classes)
            if best is not None:
                row["best_epoch"], row["best_rule"] = best.epoch, best.rule
            row |= robust_gap(metrics, None if best is None else best.epoch)
        row["run"] = run.path.relative_to(runs_dir).as_posix()
        rows.append(row)
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    frame[[*ACCURACY_COLUMNS, *GAP_COLUMNS]] = frame[[*ACCURACY_COLUMNS, *GAP_COLUMNS]].astype(
        float
    )
    for column in ("seed", "epochs", "best_epoch"):
        frame[column] = frame[column].astype("Int64")
    return frame


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
    for column in _DISPLAY:
        labels[column] = [display(column, key) for key in df[column]]
    notes = []
    for column, mark, flagged, note in (
        ("best_rule", FALLBACK_MARK, lambda c: c == "all", None),  # best.pt of an untrained run
        ("masking", MARK, lambda c: c.fillna("") != "", FOOTNOTE),
        ("aa_checks", AA_CHECK_MARK, lambda c: c.fillna("") != "", AA_CHECK_FOOTNOTE),
    ):
        if column in df:
            rows = flagged(df[column])
            labels.loc[rows, "method"] = labels.loc[rows, "method"] + " " + mark
            if rows.any() and note:
                notes.append(note)
    shown = ["dataset", "model", "method"]
    if (df["ads"] != "none").any():
        shown.append("ads")
    if df.duplicated(KEY_COLUMNS).any():
        shown.append("seed")
    cells = [
        [*(_cell(row[c]) for c in shown), *(_number(row[c]) for c in ACCURACY_COLUMNS)]
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
        write_text(paths["seeds_md"], _markdown_table(SEEDS_CAPTION, headers, cells, n_labels, []))
        write_text(paths["seeds_csv"], summary.to_csv(index=False, float_format="%.2f"))
        write_text(
            paths["seeds_tex"],
            _latex(headers[:n_labels], cells, [], SEEDS_CAPTION, ("best", "last")),
        )
    return paths


SEED_STATS = [f"{attack}_{stat}" for attack in TABLE_ATTACKS for stat in ("best", "last")]


def seed_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per setting (dataset, model, method, AdS) run with several seeds: `seeds` (how many
    runs), then for Best and Last of Clean, PGD-10 and AA the mean over the runs that have the
    value (`<column>_mean`), its sample standard deviation (`_std`, NaN from one value) and
    that count (`_n`). Table order; empty when no setting has several seeds."""
    repeated = df[df.duplicated(KEY_COLUMNS, keep=False)]
    rows = []
    for key, group in repeated.groupby(KEY_COLUMNS, sort=False):
        row: dict[str, Any] = dict(zip(KEY_COLUMNS, key, strict=True)) | {"seeds": len(group)}
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

    def cell(row: pd.Series, column: str) -> str:
        n = row[f"{column}_n"]
        if n == 0:
            return MISSING
        text = f"{row[f'{column}_mean']:.2f}"
        text += f" ± {row[f'{column}_std']:.2f}" if n > 1 else ""
        return text + (f" ({n})" if n < row["seeds"] else "")

    cells = [
        [*(display(c, row[c]) for c in shown), str(row["seeds"])]
        + [cell(row, c) for c in SEED_STATS]
        for _, row in summary.iterrows()
    ]
    headers = [*(_HEADERS[c] for c in (*shown, "seeds")), *(_HEADERS[c] for c in SEED_STATS)]
    return headers, cells


def _rank(column: str, key: str) -> tuple[int, str]:
    order = list(_DISPLAY[column])
    return (order.index(key), "") if key in order else (len(order), key)


def _cell(value: Any) -> str:
    return MISSING if pd.isna(value) else str(value)


def _number(value: float) -> str:
    return MISSING if pd.isna(value) else f"{value:.2f}"


def _markdown(shown: Sequence[str], cells: list[list[str]], notes: Sequence[str]) -> str:
    header = [_HEADERS[c] for c in (*shown, *ACCURACY_COLUMNS)]
    return _markdown_table(CAPTION, header, cells, len(shown), notes)


def _markdown_table(
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
