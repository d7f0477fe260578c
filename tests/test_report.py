"""Tables 1-2 from hand-built run directories: exact numbers, order, missing values, files."""

from __future__ import annotations

import json
import math
import tempfile
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from run_fixtures import write_run

from ssmprobe.evaluation.sanity import FOOTNOTE
from ssmprobe.report import tables as report
from ssmprobe.report.runs import (
    ACCURACY_COLUMNS,
    COLUMNS,
    RunDirError,
    collect_runs,
    read_metrics,
)
from ssmprobe.report.tables import write_tables

# Numbers from the paper's Tables 1-2 (as fractions, the way `ssmprobe eval` writes them).
S4_ST = (
    {"clean": 0.9916, "pgd10": 0.0457, "aa": 0.0007},
    {"clean": 0.9915, "pgd10": 0.0072, "aa": 0.0},
)
DSS_PGD = (
    {"clean": 0.5987, "pgd10": 0.9995, "aa": 0.0062},
    {"clean": 0.3222, "pgd10": 0.9989, "aa": 0.0},
)
DSS_RELU = (
    {"clean": 0.5882, "pgd10": 0.9986, "aa": 0.0009},
    {"clean": 0.49, "pgd10": 0.998, "aa": 0.0},
)
MAMBA_NO_AA = ({"clean": 0.9884, "pgd10": 0.9886}, {"clean": 0.9883, "pgd10": 0.9879})


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Five runs, written in an order (and with names) unlike the table's order."""
    root = tmp_path / "runs"
    write_run(
        root,
        "mnist/dss_pgd_relu",
        model="dss",
        dataset="mnist",
        ads="relu",
        best=DSS_RELU[0],
        last=DSS_RELU[1],
    )
    write_run(root, "mnist/dss_pgd", model="dss", dataset="mnist", best=DSS_PGD[0], last=DSS_PGD[1])
    write_run(
        root,
        "digits/mamba_trades",
        model="mamba",
        method="trades",
        best=MAMBA_NO_AA[0],
        last=MAMBA_NO_AA[1],
    )
    # Still training: evaluated at its best checkpoint only, 4 epochs so far, best at epoch 2.
    write_run(
        root,
        "digits/s5_pgd",
        model="s5",
        best={"clean": 0.9, "pgd10": 0.5},
        last=None,
        epochs=4,
        best_epoch=2,
    )
    write_run(root, "digits/s4_st", model="s4", method="st", best=S4_ST[0], last=S4_ST[1])
    return root


def row_of(df: pd.DataFrame, run: str) -> pd.Series:
    (index,) = df.index[df["run"] == run]
    return df.loc[index]


def test_best_last_diff_in_percent_with_two_decimals(runs: Path) -> None:
    df = collect_runs(runs)
    assert list(df.columns) == COLUMNS
    s4 = row_of(df, "digits/s4_st")
    assert [s4[c] for c in ACCURACY_COLUMNS] == [
        99.16,
        99.15,
        0.01,
        4.57,
        0.72,
        3.85,
        0.07,
        0.0,
        0.07,
    ]
    dss = row_of(df, "mnist/dss_pgd")
    assert [dss[c] for c in ACCURACY_COLUMNS] == [
        59.87,
        32.22,
        27.65,
        99.95,
        99.89,
        0.06,
        0.62,
        0.0,
        0.62,
    ]
    relu = row_of(df, "mnist/dss_pgd_relu")
    assert (relu["dataset"], relu["model"], relu["method"], relu["ads"]) == (
        "mnist",
        "dss",
        "pgd",
        "relu",
    )
    assert [relu[c] for c in ACCURACY_COLUMNS] == [
        58.82,
        49.0,
        9.82,
        99.86,
        99.8,
        0.06,
        0.09,
        0.0,
        0.09,
    ]


def test_rows_follow_the_papers_order(runs: Path) -> None:
    df = collect_runs(runs)
    assert list(df["run"]) == [
        "digits/s4_st",
        "digits/s5_pgd",
        "digits/mamba_trades",
        "mnist/dss_pgd",  # no AdS before AdS
        "mnist/dss_pgd_relu",
    ]


def test_order_of_models_methods_ads_and_unknown_names(tmp_path: Path) -> None:
    names = [
        ("a", "mamba", "st", None),
        ("b", "s4", "trades", None),
        ("c", "s4", "pgd", "sigmoid"),
        ("d", "s4", "pgd", "tanh"),
        ("e", "s4", "pgd", "relu"),
        ("f", "s4", "pgd", None),
        ("g", "mega", "st", None),
        ("h", "dss", "st", None),
        ("i", "s5", "st", None),
        ("j", "aaa_custom", "st", None),
        ("k", "s4", "st", None),
    ]
    for name, model, method, ads in names:
        write_run(tmp_path, name, model=model, method=method, ads=ads, epochs=1)
    df = collect_runs(tmp_path)
    assert list(df["run"]) == ["k", "f", "e", "d", "c", "b", "h", "i", "g", "a", "j"]


@settings(max_examples=40, deadline=None)
@given(best=st.floats(0, 1), last=st.floats(0, 1))
def test_every_printed_row_adds_up(best: float, last: float) -> None:
    """Best and Last are rounded first, so the printed Diff is exactly printed Best - Last."""
    with tempfile.TemporaryDirectory() as root:
        write_run(Path(root), "r", best={"pgd10": best}, last={"pgd10": last}, epochs=None)
        row = collect_runs(root).iloc[0]
    printed = {k: Decimal(f"{row[f'pgd10_{k}']:.2f}") for k in ("best", "last", "diff")}
    assert printed["diff"] == printed["best"] - printed["last"]
    assert printed["best"] == Decimal(f"{100 * best:.2f}")


def test_missing_attack_and_missing_eval_file_are_nan(runs: Path) -> None:
    df = collect_runs(runs)
    mamba = row_of(df, "digits/mamba_trades")
    assert [mamba[c] for c in ACCURACY_COLUMNS[:6]] == [98.84, 98.83, 0.01, 98.86, 98.79, 0.07]
    assert all(math.isnan(mamba[c]) for c in ("aa_best", "aa_last", "aa_diff"))
    s5 = row_of(df, "digits/s5_pgd")
    assert (s5["clean_best"], s5["pgd10_best"]) == (90.0, 50.0)
    assert all(math.isnan(s5[c]) for c in ACCURACY_COLUMNS if c not in ("clean_best", "pgd10_best"))


def test_epochs_and_best_epoch_come_from_metrics(runs: Path, tmp_path: Path) -> None:
    df = collect_runs(runs)
    assert (row_of(df, "digits/s5_pgd")["epochs"], row_of(df, "digits/s5_pgd")["best_epoch"]) == (
        4,
        2,
    )
    assert (row_of(df, "digits/s4_st")["epochs"], row_of(df, "digits/s4_st")["best_epoch"]) == (
        6,
        3,
    )
    write_run(tmp_path / "fresh", "run", epochs=None, best=S4_ST[0])  # evaluated, no metrics
    fresh = collect_runs(tmp_path / "fresh").iloc[0]
    assert pd.isna(fresh["epochs"]) and pd.isna(fresh["best_epoch"])
    write_run(tmp_path / "started", "run", epochs=None)  # only config.json: no row
    with pytest.raises(ValueError, match=r"no finished runs .* run: no finished epoch"):
        collect_runs(tmp_path / "started")


def test_csv_holds_the_exact_numbers_and_empty_cells_for_missing(
    runs: Path, tmp_path: Path
) -> None:
    paths = write_tables(collect_runs(runs), tmp_path / "out")
    lines = paths["csv"].read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        "Dataset,Model,Method,AdS,Seed,Clean Best,Clean Last,Clean Diff,PGD-10 Best,PGD-10 Last,"
        "PGD-10 Diff,AA Best,AA Last,AA Diff,Train PGD-10 Best,Test PGD-10 Best,Robust gap Best,"
        "Train PGD-10 Last,Test PGD-10 Last,Robust gap Last,Epochs,Best epoch,Best rule,"
        "Suspected masking,AutoAttack checks,Collapsed,Zoo,Recipe,Run"
    )
    dss = next(line for line in lines if line.endswith(",mnist/dss_pgd"))
    assert dss == (
        "MNIST,DSS,PGD-AT ‡,–,0,59.87,32.22,27.65,99.95,99.89,0.06,0.62,0.00,0.62,"
        "60.00,50.00,10.00,90.00,30.00,60.00,6,3,learned,"
        "best: pgd10 99.95% above clean 59.87%; best: aa 0.62% is 99.33 points below pgd10; "
        "last: pgd10 99.89% above clean 32.22%; last: aa 0.00% is 99.89 points below pgd10,,,"
        "False,6 epochs · n 1000,mnist/dss_pgd"
    )
    assert (
        "Digits,Mamba,TRADES ‡,–,0,98.84,98.83,0.01,98.86,98.79,0.07,,,,"
        "60.00,50.00,10.00,90.00,30.00,60.00,6,3,learned,"
        "best: pgd10 98.86% above clean 98.84%,,,False,6 epochs · n 1000,digits/mamba_trades"
        in lines
    )
    back = pd.read_csv(paths["csv"])
    assert back["Clean Diff"].tolist()[:1] == [0.01]  # reads back as numbers
    assert back["AA Best"].isna().sum() == 2


def markdown_rows(text: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]


def test_markdown_has_the_papers_columns_and_every_row(runs: Path, tmp_path: Path) -> None:
    paths = write_tables(collect_runs(runs), tmp_path)
    header, rule, *rows = markdown_rows(paths["md"].read_text(encoding="utf-8"))
    stats = [
        f"{attack} {stat}"
        for attack in ("Clean", "PGD-10", "AA")
        for stat in ("Best", "Last", "Diff")
    ]
    assert header == ["Dataset", "Model", "Method", "AdS", *stats]
    assert all(set(cell) <= {"-", ":"} for cell in rule)
    expected = """
        Digits S4     ST     –    99.16 99.15  0.01  4.57  0.72 3.85 0.07 0.00 0.07
        Digits S5     PGD-AT –    90.00 –      –    50.00  –    –    –    –    –
        Digits Mamba  TRADES_‡ –    98.84 98.83  0.01 98.86 98.79 0.07 –    –    –
        MNIST  DSS    PGD-AT_‡ –    59.87 32.22 27.65 99.95 99.89 0.06 0.62 0.00 0.62
        MNIST  DSS    PGD-AT_‡ ReLU 58.82 49.00  9.82 99.86 99.80 0.06 0.09 0.00 0.09
    """
    assert rows == [
        [cell.replace("_", " ") for cell in line.split()] for line in expected.strip().splitlines()
    ]


def test_latex_is_booktabs_with_a_two_level_header(runs: Path, tmp_path: Path) -> None:
    tex = write_tables(collect_runs(runs), tmp_path)["tex"].read_text(encoding="utf-8")
    lines = tex.splitlines()
    assert r"\begin{tabular}{llllrrrrrrrrr}" in lines
    top = lines.index(r"\toprule")
    assert lines[top + 1] == (
        r" &  &  &  & \multicolumn{3}{c}{Clean} & \multicolumn{3}{c}{PGD-10} & "
        r"\multicolumn{3}{c}{AA} \\"
    )
    assert lines[top + 2] == r"\cmidrule(lr){5-7}\cmidrule(lr){8-10}\cmidrule(lr){11-13}"
    assert lines[top + 3] == (
        r"Dataset & Model & Method & AdS & Best & Last & Diff & Best & Last & Diff & Best & Last & "
        r"Diff \\"
    )
    assert lines[top + 4] == r"\midrule"
    body = lines[top + 5 : lines.index(r"\bottomrule")]
    expected = r"""
        Digits|S4|ST|--|99.16|99.15|0.01|4.57|0.72|3.85|0.07|0.00|0.07
        |S5|PGD-AT|--|90.00|--|--|50.00|--|--|--|--|--
        |Mamba|TRADES ‡|--|98.84|98.83|0.01|98.86|98.79|0.07|--|--|--
        \midrule
        MNIST|DSS|PGD-AT ‡|--|59.87|32.22|27.65|99.95|99.89|0.06|0.62|0.00|0.62
        |||ReLU|58.82|49.00|9.82|99.86|99.80|0.06|0.09|0.00|0.09
    """  # a dataset / model / method is printed where it changes; \midrule between datasets
    cells = [line.strip().split("|") for line in expected.strip().splitlines()]
    assert [line.removesuffix(r" \\").split(" & ") for line in body] == cells
    assert all(line.endswith(r" \\") for line in body if line != r"\midrule")
    assert lines[-2:] == [r"\end{tabular}", f"% {FOOTNOTE}"]  # the masking footnote after it


def test_latex_prints_a_negative_diff_with_a_minus_sign(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "x", best={"clean": 0.1}, last={"clean": 0.23})
    tex = write_tables(collect_runs(tmp_path / "runs"), tmp_path)["tex"].read_text(encoding="utf-8")
    assert r"Digits & S4 & PGD-AT & 10.00 & 23.00 & $-$13.00 & -- & -- &" in tex


def test_latex_escapes_special_characters(tmp_path: Path) -> None:
    write_run(
        tmp_path / "runs",
        "x",
        dataset="my_data&50%",
        model="s4|custom",
        best=S4_ST[0],
        last=S4_ST[1],
    )
    tex = write_tables(collect_runs(tmp_path / "runs"), tmp_path)["tex"].read_text(encoding="utf-8")
    assert r"my\_data\&50\% & s4|custom & PGD-AT & " in tex
    assert "my_data" not in tex
    md = (tmp_path / "table.md").read_text(encoding="utf-8")
    assert markdown_rows(md.replace("\\|", "¦"))[2][:2] == ["my_data&50%", "s4¦custom"]


def test_ads_column_only_when_a_run_has_ads_and_seed_column_only_when_repeated(
    tmp_path: Path,
) -> None:
    for seed in (0, 1):
        write_run(tmp_path / "runs", f"s4_{seed}", seed=seed, best=S4_ST[0], last=S4_ST[1])
    paths = write_tables(collect_runs(tmp_path / "runs"), tmp_path)
    header, _, *rows = markdown_rows(paths["md"].read_text(encoding="utf-8"))
    assert header[:4] == ["Dataset", "Model", "Method", "Seed"]
    assert [row[3] for row in rows] == ["0", "1"]
    assert r"Dataset & Model & Method & Seed & Best" in paths["tex"].read_text(encoding="utf-8")


def test_seed_summary_gives_mean_and_sample_std_over_seeds(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    pgd = [0.90, 0.92, 0.97]  # mean 93, sample std sqrt(13)
    for seed, value in enumerate(pgd):
        aa = {"aa": 0.85} if seed == 0 else {}  # AA of one seed only
        write_run(root, f"s4_{seed}", seed=seed, best={"clean": 0.99, "pgd10": value} | aa)
    write_run(root, "dss", model="dss", best=S4_ST[0], last=S4_ST[1])  # one seed: not summarised
    frame = collect_runs(root)
    summary = report.seed_summary(frame)
    assert len(summary) == 1 and summary.loc[0, "model"] == "s4" and summary.loc[0, "seeds"] == 3
    row = summary.loc[0]
    assert row["pgd10_best_mean"] == pytest.approx(93.0)
    assert row["pgd10_best_std"] == pytest.approx(math.sqrt(13.0))
    assert (row["aa_best_mean"], row["aa_best_n"]) == (85.0, 1) and math.isnan(row["aa_best_std"])
    assert row["clean_last_n"] == 0

    paths = write_tables(frame, tmp_path)
    header, _, *rows = markdown_rows(paths["seeds_md"].read_text(encoding="utf-8"))
    assert header[:5] == ["Dataset", "Model", "Method", "Seeds", "Clean Best"]
    cells = dict(zip(header, rows[0], strict=True))
    assert cells["PGD-10 Best"] == f"93.00 ± {math.sqrt(13):.2f}"
    assert (cells["AA Best"], cells["Clean Last"]) == ("85.00 (1)", "–")
    csv = pd.read_csv(paths["seeds_csv"])
    assert csv.loc[0, "pgd10_best_mean"] == pytest.approx(93.0)
    tex = paths["seeds_tex"].read_text(encoding="utf-8")
    assert r"\multicolumn{2}{c}{PGD-10}" in tex and r"\cmidrule(lr){5-6}" in tex
    assert rf"93.00 $\pm$ {math.sqrt(13):.2f}" in tex and "85.00 (1)" in tex


def test_no_seed_table_without_repeated_seeds(runs: Path, tmp_path: Path) -> None:
    assert set(write_tables(collect_runs(runs), tmp_path)) == {"md", "csv", "tex", "gap_md"}
    assert not (tmp_path / "table_seeds.tex").exists()
    assert not (tmp_path / "table_seeds.md").exists()


def test_autoattack_checks_are_kept_and_marked(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, "old", best=S4_ST[0], last=S4_ST[1])  # eval files from before the field
    write_run(root, "no_aa", model="mamba", best=MAMBA_NO_AA[0], last=MAMBA_NO_AA[1])
    run = write_run(root, "warned", model="dss", best=DSS_PGD[0], last=DSS_PGD[1])
    check = "AutoAttack: Square Attack has decreased the robust accuracy of 0.96%."
    payload = json.loads((run / "eval_best.json").read_text()) | {"autoattack_checks": [check]}
    (run / "eval_best.json").write_text(json.dumps(payload))
    frame = collect_runs(root).set_index("run")
    assert frame.loc["warned", "aa_checks"] == f"best: {check}"
    assert pd.isna(frame.loc["old", "aa_checks"])  # AutoAttack ran, its checks were not kept
    assert frame.loc["no_aa", "aa_checks"] == ""  # no AutoAttack, nothing to check
    md = write_tables(frame.reset_index(), tmp_path)["md"].read_text(encoding="utf-8")
    assert "PGD-AT ‡ §" in md and "§ one of AutoAttack's own checks warned" in md
    assert markdown_rows(md)[2][1:3] == ["S4", "PGD-AT"]  # the old run is not marked

    (run / "eval_best.json").write_text(json.dumps(payload | {"autoattack_checks": "Square"}))
    with pytest.raises(RunDirError, match="autoattack_checks"):
        collect_runs(root)


def test_tables_are_replaced_whole(runs: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    paths = write_tables(collect_runs(runs), out)
    tex = paths["tex"].read_text(encoding="utf-8")

    def interrupted(*args: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_latex", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_tables(collect_runs(runs).iloc[:1], out)
    assert paths["md"].read_text(encoding="utf-8").count("| Digits") == 1  # rewritten
    assert paths["tex"].read_text(encoding="utf-8") == tex  # the old table, whole
    assert sorted(p.name for p in out.iterdir()) == [
        ".ssmprobe-written.json", "table.csv", "table.md", "table.tex", "table_gap.md",
    ]  # fmt: skip


def test_runs_are_found_at_any_depth_but_not_in_hidden_folders(tmp_path: Path) -> None:
    write_run(tmp_path, "a/b/c/deep", best=S4_ST[0], last=S4_ST[1])
    write_run(tmp_path, ".ipynb_checkpoints/copy", best=S4_ST[0], last=S4_ST[1])
    assert list(collect_runs(tmp_path)["run"]) == ["a/b/c/deep"]


def test_missing_runs_folder_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        collect_runs(tmp_path / "nowhere")


def test_no_runs_says_what_a_run_directory_holds(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no runs found under .*empty.*config\.json"):
        collect_runs(tmp_path / "empty")


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("eval_best.json", '{"results": {"clean": 0.9', "eval_best.json: not valid JSON"),
        ("eval_last.json", '{"results": {"aa": 52.0}}', r"eval_last.json: results\['aa'\] = 52"),
        ("eval_last.json", '{"clean": 0.5}', 'eval_last.json: expected an object with a "results"'),
        ("eval_best.json", '{"results": {}, "n": "360"}', 'eval_best.json: "n" must be a number'),
        ("eval_best.json", '{"results": {}, "n": -1}', 'eval_best.json: "n" must be a number'),
        ("eval_last.json", '{"results": {}, "eps": "0.1"}', 'eval_last.json: "eps" must be a'),
        ("config.json", "{", "config.json: not valid JSON"),
        ("config.json", '{"model": {"model": "s4"}}', "config.json: needs the strings"),
        ("metrics.jsonl", '{"epoch": 1}\n{"epoch": 2\n{"epoch": 3}\n', "metrics.jsonl: line 2 "),
    ],
)
def test_a_corrupt_file_raises_an_error_naming_it(
    tmp_path: Path, file: str, content: str, message: str
) -> None:
    run = write_run(tmp_path, "broken", best=S4_ST[0], last=S4_ST[1])
    (run / file).write_text(content)
    with pytest.raises(RunDirError, match=message) as info:
        collect_runs(tmp_path)
    assert str(run / file) in str(info.value)
    assert isinstance(info.value, ValueError)  # the CLI reports ValueErrors as clean messages


def test_null_attack_counts_as_not_run(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", best=S4_ST[0], last=S4_ST[1])
    payload = json.loads((run / "eval_last.json").read_text())
    payload["results"]["aa"] = None
    (run / "eval_last.json").write_text(json.dumps(payload))
    row = collect_runs(tmp_path).iloc[0]
    assert row["aa_best"] == 0.07 and math.isnan(row["aa_last"]) and math.isnan(row["aa_diff"])


def test_read_metrics_keeps_the_last_row_of_a_repeated_epoch(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", epochs=None)
    rows = [
        {"epoch": 2, "test_pgd_acc": 0.1},
        {"epoch": 1, "test_pgd_acc": 0.2},
        {"epoch": 2, "test_pgd_acc": 0.3},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = read_metrics(run)
    assert df["epoch"].tolist() == [1, 2] and df["test_pgd_acc"].tolist() == [0.2, 0.3]
