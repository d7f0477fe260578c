"""Training-curve figures (Figs. 1, 2, 5) and the metrics reader, on hand-built run dirs."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from run_fixtures import metrics_rows, write_run

from ssmprobe.io import WRITTEN
from ssmprobe.report.curves import (
    make_training_figure,
    plot_training_curves,
    read_metrics,
    write_figures,
)
from ssmprobe.report.runs import RunDirError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SERIES = ["train clean", "train PGD-10", "test clean", "test PGD-10"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    return [
        write_run(tmp_path, "s4_pgd", model="s4", dataset="digits", epochs=7, best_epoch=4),
        write_run(
            tmp_path, "dss", model="dss", method="trades", ads="relu", epochs=5, best_epoch=2
        ),
    ]


def test_figure_has_two_panels_per_run_with_four_curves_and_the_best_epoch(
    two_runs: list[Path],
) -> None:
    fig = make_training_figure(two_runs)
    axes = fig.axes
    assert len(axes) == 4
    assert [sub.get_suptitle() for sub in fig.subfigs] == [
        "S4 · PGD-AT · Digits",
        "DSS + ReLU AdS · TRADES · Digits",
    ]
    assert [ax.get_title() for ax in axes] == [
        "Loss",
        "Accuracy (best epoch 4)",
        "Loss",
        "Accuracy (best epoch 2)",
    ]
    assert all(ax.get_xlabel() == "Epoch" for ax in axes)
    assert [ax.get_ylabel() for ax in axes] == ["Cross-entropy loss", "Accuracy (%)"] * 2
    for ax, best in zip(axes, [4, 4, 2, 2], strict=True):
        *curves, marker = ax.get_lines()
        assert [line.get_label() for line in curves] == SERIES
        assert [line.get_linestyle() for line in curves] == ["-", "--", "-", "--"]
        train, test = to_rgb(curves[0].get_color()), to_rgb(curves[2].get_color())
        assert to_rgb(curves[1].get_color()) == train and to_rgb(curves[3].get_color()) == test
        assert train != test
        assert marker.get_linestyle() == ":" and list(marker.get_xdata()) == [best, best]
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        *SERIES,
        "best epoch (highest test PGD-10 acc.)",
    ]


def test_labels_name_the_runs_pgd_steps(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", epochs=3)
    config = json.loads((run / "config.json").read_text())
    config["train"]["steps"] = 3
    (run / "config.json").write_text(json.dumps(config))
    labels = [t.get_text() for t in make_training_figure(run).legends[0].get_texts()]
    assert labels == [
        "train clean",
        "train PGD-3",
        "test clean",
        "test PGD-3",
        "best epoch (highest test PGD-3 acc.)",
    ]


def test_curves_carry_the_metrics_with_accuracy_in_percent(two_runs: list[Path]) -> None:
    fig = make_training_figure(two_runs[0])
    loss_ax, acc_ax = fig.axes
    rows = metrics_rows(7, 4)
    test_pgd_acc = acc_ax.get_lines()[3]
    np.testing.assert_array_equal(test_pgd_acc.get_xdata(), range(1, 8))
    np.testing.assert_allclose(test_pgd_acc.get_ydata(), [100 * r["test_pgd_acc"] for r in rows])
    np.testing.assert_allclose(
        loss_ax.get_lines()[1].get_ydata(), [r["train_pgd_loss"] for r in rows]
    )
    assert acc_ax.get_ylim()[0] <= 0 and acc_ax.get_ylim()[1] >= 100


def test_png_is_written_and_valid(two_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "figs" / "curves.png"
    assert plot_training_curves(two_runs, out) == out
    width, height = png_size(out)
    assert (width, height) == (11 * 150, int((0.5 + 3.2 * 2) * 150))
    assert 20_000 < out.stat().st_size < 5_000_000
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == [WRITTEN, "curves.png"]  # no temporary file left


def test_an_interrupted_save_leaves_the_previous_png(
    two_runs: list[Path], tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "figs" / "curves.png"
    plot_training_curves(two_runs, out)
    before = out.read_bytes()

    def crash(self: Figure, file: BinaryIO, **kwargs: object) -> None:
        file.write(PNG_MAGIC + b"half a picture")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", crash)
    with pytest.raises(KeyboardInterrupt):
        plot_training_curves(two_runs[:1], out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == [WRITTEN, "curves.png"]


def test_pdf_path_writes_pdf_and_png(two_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "curves.pdf"
    plot_training_curves(two_runs[1], out)
    assert out.read_bytes()[:5] == b"%PDF-"
    assert png_size(tmp_path / "curves.png")[0] == 11 * 150


def test_unknown_image_format_is_refused(two_runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png or \.pdf"):
        plot_training_curves(two_runs, tmp_path / "curves.svg")


def test_a_folder_of_runs_gives_one_row_per_run_in_table_order(
    two_runs: list[Path], tmp_path: Path
) -> None:
    fig = make_training_figure(tmp_path)
    assert [sub.get_suptitle().split(" ")[0] for sub in fig.subfigs] == ["S4", "DSS"]


def test_a_run_without_finished_epochs_gets_empty_panels(tmp_path: Path) -> None:
    run = write_run(tmp_path, "fresh", epochs=0)
    fig = make_training_figure(run)
    assert all(not ax.get_lines() for ax in fig.axes)
    assert fig.axes[0].texts[0].get_text() == "no finished epoch yet"


def test_write_figures_makes_one_figure_per_dataset_and_method(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "a", model="s4", method="pgd", epochs=3)
    write_run(runs, "b", model="dss", method="pgd", epochs=3)
    write_run(runs, "c", model="s4", method="st", epochs=3)
    write_run(runs, "d", model="s5", method="st", epochs=None)
    (runs / "d" / "last.pt").touch()  # a run (not a skipped folder) without its metrics
    with pytest.warns(UserWarning, match="no metrics.jsonl"):
        paths = write_figures(runs, tmp_path / "figs")
    assert [p.name for p in paths] == ["curves_digits_st.png", "curves_digits_pgd.png"]
    assert all(png_size(p)[0] == 11 * 150 for p in paths)
    assert png_size(paths[1])[1] == int((0.5 + 3.2 * 2) * 150)  # two PGD-AT runs, two rows


def write_lines(tmp_path: Path, text: str) -> Path:
    run = write_run(tmp_path, "r", epochs=None)
    (run / "metrics.jsonl").write_text(text)
    return run


def test_read_metrics_gives_one_row_per_epoch(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", epochs=5)
    df = read_metrics(run)
    assert df["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert df["test_pgd_acc"].tolist() == [r["test_pgd_acc"] for r in metrics_rows(5, 3)]


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in metrics_rows(3, 2)]
    run = write_lines(tmp_path, "\n".join(lines[:2]) + "\n" + lines[2][:25])
    with pytest.warns(UserWarning, match=r"metrics\.jsonl: skipping line 3, cut short"):
        df = read_metrics(run)
    assert df["epoch"].tolist() == [1, 2]


def test_blank_lines_are_ignored(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in metrics_rows(2, 1)]
    run = write_lines(tmp_path, lines[0] + "\n\n" + lines[1] + "\n\n")
    assert read_metrics(run)["epoch"].tolist() == [1, 2]


def test_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in metrics_rows(3, 2)]
    run = write_lines(tmp_path, "\n".join([lines[0], lines[1][:20], lines[2]]) + "\n")
    with pytest.raises(RunDirError, match=r"r/metrics\.jsonl: line 2 is not valid JSON"):
        read_metrics(run)


def test_row_without_integer_epoch_is_an_error(tmp_path: Path) -> None:
    run = write_lines(tmp_path, '{"epoch": 1}\n{"epoch": "2"}\n')
    with pytest.raises(RunDirError, match='line 2 is not an object with an integer "epoch"'):
        read_metrics(run)


def test_missing_metrics_file_names_the_run(tmp_path: Path) -> None:
    run = write_run(tmp_path, "no_metrics", epochs=None)
    with pytest.raises(FileNotFoundError, match="no_metrics"):
        read_metrics(run)
