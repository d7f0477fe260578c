"""The MNIST rows of the paper's Tables 1 and 2 beside our MNIST-10k runs.

Each row is a setting (model, method, AdS) in the paper's layout: Clean, PGD-10 and AA, each
Best / Last / Diff, our number and the paper's in adjacent columns, then the test images n
behind each of our columns (from the eval files: clean and PGD-10 on all 2,000 MNIST-10k test
images, AA on what its eval file says). A setting of the paper's without a run folder is "not
run"; a run folder without an eval file yet is "unfinished" (training, or stopped). Ours are
MNIST-10k (the 10,000 official MNIST test images split 8,000 / 2,000), never MNIST test: the
paper's are MNIST's 10,000 test images after training on its 60,000. Writes into --out
table1_mnist10k.md, table2_mnist10k.md and tables_mnist10k.csv (both tables, one row per line of
them).

    python analysis/mnist10k_tables.py --runs runs/mnist10k --out figures/mnist10k
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from ssmprobe.io import check_output_dir, replacing, write_text
from ssmprobe.report.paper import PaperRow, paper_row, paper_rows
from ssmprobe.report.runs import (
    ACCURACY_COLUMNS,
    COLUMNS,
    EVAL_FILES,
    KEY_COLUMNS,
    TABLE_ATTACKS,
    RunDirError,
    collect_runs,
    display,
    read_eval_record,
    read_run_info,
    skipped_runs,
)
from ssmprobe.report.tables import MISSING, markdown_table, number_cell

DATASET = "mnist10k"
PAPER_DATASET = "mnist"
NOT_RUN, TRAINING = "not run", "unfinished"
SETTING = ["model", "method", "ads"]
Setting = tuple[str, str, str]  # model, method, AdS ("none" without)
N_COLUMNS = [f"n_{attack}_{at}" for attack in TABLE_ATTACKS for at in EVAL_FILES]
CAPTION = (
    "Table {table}, MNIST rows: test accuracy (%) of ours on MNIST-10k (the 10,000 official MNIST "
    "test images split 8,000 train / 2,000 test; {recipes}) beside the paper's on MNIST test "
    "(60,000 train, 10,000 test, 100 epochs); ε = 0.3, α = 0.04. Best: the checkpoint of the "
    "highest test PGD-10 accuracy; under ST that epoch is arbitrary (PGD-10 near 0), so ST "
    "compares at Last. Diff = Best - Last. n: our test images per attack (best / last where "
    "they differ). – : not evaluated or not printed; not run: no run folder; unfinished: no "
    "eval file yet."
)


def table_frame(runs_dir: str | Path) -> pd.DataFrame:
    """One line per (table, setting, run): the paper's MNIST settings in its order, then settings
    only we ran; `run` is the run folder, or "not run" / "unfinished (<run>)"; `ours_<column>`
    and `paper_<column>` for every accuracy column, `n_<attack>_<best|last>`, our `recipe`."""
    runs_dir = Path(runs_dir)
    ours, training = _our_runs(runs_dir)
    settings = [(r.table, (r.model, r.method, r.ads)) for r in paper_rows(dataset=PAPER_DATASET)]
    extra = {key for key in [*ours, *training] if (_table(key), key) not in settings}
    settings += sorted(((_table(key), key) for key in extra), key=lambda s: s[0])
    lines = []
    for table, key in settings:
        paper = paper_row(PAPER_DATASET, *key)
        runs = ours.get(key, []) or [{"run": f"{TRAINING} ({r})"} for r in training.get(key, [])]
        for run in runs or [{"run": NOT_RUN}]:
            line = {"table": table, **dict(zip(SETTING, key, strict=True)), **run}
            lines.append(line | _paper_columns(paper))
    columns = ["table", *SETTING, "run", *_pairs(), *N_COLUMNS, "recipe", "paper_note"]
    frame = pd.DataFrame(lines).reindex(columns=columns)
    frame[N_COLUMNS] = frame[N_COLUMNS].astype("Int64")  # counts, also in the CSV
    return frame


def _table(key: Setting) -> int:
    """The paper's table of a setting: 1 without AdS, 2 with."""
    return 1 if key[2] == "none" else 2


def _pairs() -> list[str]:
    return [f"{who}_{c}" for c in ACCURACY_COLUMNS for who in ("ours", "paper")]


def _paper_columns(paper: PaperRow | None) -> dict[str, Any]:
    if paper is None:
        return {"paper_note": ""}
    return {f"paper_{c}": v for c, v in paper.accuracies().items()} | {"paper_note": paper.note}


def _our_runs(
    runs_dir: Path,
) -> tuple[dict[Setting, list[dict[str, Any]]], dict[Setting, list[str]]]:
    """Our MNIST-10k runs by setting: the evaluated ones (accuracies in % with
    `collect_runs`'s rounding, the n of each attack at best and last, the recipe), and the
    folders of those without an eval file yet (training)."""
    skipped = [path for path, _ in skipped_runs(runs_dir)]  # raises without any run folder
    try:
        frame = collect_runs(runs_dir)
    except RunDirError:
        raise
    except ValueError:  # no run has finished an epoch yet: all of them are in `skipped`
        frame = pd.DataFrame(columns=COLUMNS)
    finished: dict[Setting, list[dict[str, Any]]] = {}
    training: dict[Setting, list[str]] = {}
    for path in skipped:
        info = read_run_info(runs_dir / path)
        if info.dataset == DATASET:
            training.setdefault((info.model, info.method, info.ads), []).append(path)
    for _, row in frame[frame["dataset"] == DATASET].iterrows():
        key = (row["model"], row["method"], row["ads"])
        records = {at: read_eval_record(runs_dir / row["run"] / f) for at, f in EVAL_FILES.items()}
        if not any(record.accuracies for record in records.values()):
            training.setdefault(key, []).append(row["run"])  # checkpoints, no evaluation yet
            continue
        line = {"run": row["run"], "recipe": row["recipe"]}
        line |= {f"ours_{c}": row[c] for c in ACCURACY_COLUMNS}
        for attack in TABLE_ATTACKS:
            for at, record in records.items():
                line[f"n_{attack}_{at}"] = (
                    record.n_of(attack) if attack in record.accuracies else pd.NA
                )
        finished.setdefault(key, []).append(line)
    return finished, training


def _n_cell(row: pd.Series, attack: str) -> str:
    """Our n behind an attack's columns: one number, or best / last where they differ."""
    texts = [
        MISSING if pd.isna(n) else str(int(n))
        for n in row[[f"n_{attack}_best", f"n_{attack}_last"]]
    ]
    return texts[0] if texts[0] == texts[1] else " / ".join(texts)


def table_markdown(frame: pd.DataFrame, table: int) -> str:
    """The lines of `table` as a Markdown table: the setting, the run, each accuracy column as
    ours then the paper's, our n per attack; the paper's notes on its rows below."""
    lines = frame[frame["table"] == table]
    labels = ["model", "method", *(["ads"] if table == 2 else []), "run"]
    headers = [{"ads": "AdS"}.get(c, c.capitalize()) for c in labels]
    for column in ACCURACY_COLUMNS:
        attack, stat = column.rsplit("_", 1)
        name = f"{TABLE_ATTACKS[attack]} {stat.capitalize()}"
        headers += [f"{name} (ours)", f"{name} (paper)"]
    headers += [f"n {name}" for name in TABLE_ATTACKS.values()]
    cells = [
        [display(c, row[c]) if c in KEY_COLUMNS else str(row[c]) for c in labels]
        + [number_cell(row[c]) for c in _pairs()]
        + [_n_cell(row, attack) for attack in TABLE_ATTACKS]
        for _, row in lines.iterrows()
    ]
    recipes = sorted({r for r in lines["recipe"].dropna() if r})
    caption = CAPTION.format(
        table=table, recipes="ours: " + "; ".join(recipes) if recipes else "none evaluated yet"
    )
    notes = [
        f"Paper, {display('model', row['model'])} {display('method', row['method'])}: "
        f"{row['paper_note']}."
        for _, row in lines.drop_duplicates(SETTING).iterrows()
        if row["paper_note"]
    ]
    return markdown_table(caption, headers, cells, len(labels), notes)


def write(runs_dir: str | Path, out: str | Path) -> dict[str, Path]:
    """Writes table1_mnist10k.md, table2_mnist10k.md and tables_mnist10k.csv into `out`."""
    out = check_output_dir(out)
    frame = table_frame(runs_dir)
    paths = {f"table{t}": out / f"table{t}_mnist10k.md" for t in (1, 2)}
    for table in (1, 2):
        write_text(paths[f"table{table}"], table_markdown(frame, table))
    paths["csv"] = out / "tables_mnist10k.csv"
    write_text(paths["csv"], frame.to_csv(index=False, float_format="%.2f"))
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="runs/mnist10k", help="folder of MNIST-10k run folders")
    parser.add_argument("--out", default="figures/mnist10k")
    parser.add_argument("--force", action="store_true", help="replace files ssmprobe did not write")
    args = parser.parse_args(argv)
    try:
        with replacing(args.force):
            paths = write(args.runs, args.out)
    except (OSError, ValueError) as err:  # OutputError, RunDirError, no run folder
        parser.error(str(err))
    print("\n".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
