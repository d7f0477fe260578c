"""The report keys runs by run: your runs beside the zoo's copy of the same setting, seeds only
of one recipe, run folders with nothing yet skipped; report.html renders its Markdown, has a
table of contents and captions; figure titles name runs, never paths; the bounds at μ = 0.05."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
from run_fixtures import write_run

from ssmprobe.checkpoint import bundled_dir
from ssmprobe.io import LOCK
from ssmprobe.report.build import ReportOptions, build_report
from ssmprobe.report.runs import collect_runs, skipped_runs
from ssmprobe.report.studies import StudyError, read_study, write_study
from ssmprobe.report.tables import seed_summary, write_tables

ACC = {"clean": 0.95, "pgd10": 0.2, "aa": 0.1}


def zoo_copy(root: Path, name: str, epochs: int = 30, seed: int = 0) -> Path:
    """A run folder as `zoo_runs` writes it (config.json's source says "bundled")."""
    run = write_run(root, f"zoo/{name}", model="s5", method="st", seed=seed, last=ACC)
    config = json.loads((run / "config.json").read_text())
    config["train"] |= {"epochs": epochs, "train_eval_size": 360}
    config["source"] = f"bundled {name}.pt, epoch {epochs}"
    (run / "config.json").write_text(json.dumps(config))
    return run


def make_study(folder: Path) -> Path:
    """A study as an analysis writes it: findings, one table, one figure, beside the report."""
    folder.mkdir(parents=True)
    (folder / "accuracy.md").write_text("| model | clean |\n|---|---:|\n| **nat** | 68.3 |\n")
    shutil.copy(bundled_dir() / "cache" / "s5_st" / "discrepancy.csv", folder / "d.csv")
    from matplotlib.figure import Figure

    Figure(figsize=(1, 1)).savefig(folder / "spectrum.png")
    write_study(folder, "Published S4", "Two checkpoints on JPEG images.", ["GP is **robust**."],
                [("Accuracy", "Clean accuracy.", "accuracy.md")],
                [("spectrum.png", "Eigenvalues of both models")])  # fmt: skip
    return folder


def markdown_rows(text: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]


def test_your_run_and_the_zoos_are_two_rows_told_apart_by_run_not_two_seeds(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "s5_st_digits", model="s5", method="st", epochs=15, last=ACC)
    zoo_copy(runs, "s5_st")
    (runs / "s5_pgd_digits").mkdir()  # an interrupted train: only config.json
    shutil.copy(runs / "s5_st_digits" / "config.json", runs / "s5_pgd_digits" / "config.json")
    frame = collect_runs(runs)
    assert list(frame["run"]) == ["s5_st_digits", "zoo/s5_st"]
    assert list(frame["zoo"]) == [False, True]
    assert list(frame["recipe"]) == ["15 epochs · n 1000", "30 epochs · train-eval 360 · n 1000"]
    [(path, why)] = skipped_runs(runs)
    assert path == "s5_pgd_digits" and "no finished epoch" in why
    assert seed_summary(frame).empty  # not averaged as two seeds
    paths = write_tables(frame, tmp_path / "out")
    assert "seeds_md" not in paths
    header, _, *rows = markdown_rows(paths["md"].read_text(encoding="utf-8"))
    assert header[:4] == ["Dataset", "Model", "Method", "Run"] and "Seed" not in header
    assert [row[3] for row in rows] == ["s5_st_digits", "zoo/s5_st"]


def test_a_run_being_trained_is_skipped_until_its_lock_is_released(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "s5_st_digits", model="s5", method="st", last=ACC)
    training = write_run(runs, "s5_pgd_digits", model="s5", method="pgd", last=ACC)
    (training / LOCK).write_text(f"{os.getpid()}\n")  # a live process holds it
    [(path, why)] = skipped_runs(runs)
    assert path == "s5_pgd_digits" and f"being written by process {os.getpid()}" in why
    assert list(collect_runs(runs)["run"]) == ["s5_st_digits"]
    (training / LOCK).write_text("999999999\n")  # its process has ended: a killed train
    assert skipped_runs(runs) == [] and len(collect_runs(runs)) == 2


def test_a_train_killed_before_its_last_epoch_is_skipped_until_evaluated(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "s5_st_digits", model="s5", method="st", last=ACC)
    killed = write_run(runs, "s5_pgd_digits", model="s5", method="pgd", epochs=5)
    for name in ("best.pt", "last.pt"):
        (killed / name).write_bytes(b"")
    metrics = killed / "metrics.jsonl"
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:2]))
    [(path, why)] = skipped_runs(runs)
    assert path == "s5_pgd_digits" and "interrupted after 2 of 5 epochs" in why
    assert list(collect_runs(runs)["run"]) == ["s5_st_digits"]
    # an eval file is the user's word that these checkpoints are the run's
    (killed / "eval_best.json").write_text((runs / "s5_st_digits" / "eval_last.json").read_text())
    assert skipped_runs(runs) == [] and len(collect_runs(runs)) == 2


def test_seeds_are_averaged_only_within_one_recipe_and_origin(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, pgd in enumerate((0.8, 0.9)):
        write_run(
            runs, f"mine_{seed}", model="s5", method="st", seed=seed, last=ACC | {"pgd10": pgd}
        )
    write_run(runs, "longer", model="s5", method="st", epochs=30, last=ACC)  # another recipe
    zoo_copy(runs, "s5_st", epochs=6)  # the zoo's: never a seed of yours
    frame = collect_runs(runs)
    summary = seed_summary(frame)
    assert len(summary) == 1 and summary.loc[0, "seeds"] == 2
    assert summary.loc[0, "pgd10_last_mean"] == pytest.approx(85.0)
    paths = write_tables(frame, tmp_path / "out")
    header, _, *rows = markdown_rows(paths["md"].read_text(encoding="utf-8"))
    assert header[3:5] == ["Run", "Seed"] and len(rows) == 4
    seeds = markdown_rows(paths["seeds_md"].read_text(encoding="utf-8"))
    assert seeds[0][:3] == ["Dataset", "Model", "Method"] and len(seeds) == 3


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """The demo's layout: your S5 ST run, the zoo's S5 ST beside it, an interrupted run; the
    checkpoint and caches are the bundled S5 ST's, so nothing is computed. Records the labels
    of each Figure 3 row and the title of every figure drawn."""
    from ssmprobe.probe import plots
    from ssmprobe.report import build, curves

    root = tmp_path_factory.mktemp("demo")
    runs, out = root / "runs", root / "out"
    cache = bundled_dir() / "cache" / "s5_st"
    mine = write_run(runs, "s5_st_digits", model="s5", method="st", epochs=15)
    zoo = zoo_copy(runs, "s5_st")
    for run in (mine, zoo):
        shutil.copy(bundled_dir() / "s5_st.pt", run / "last.pt")
        os.utime(run / "last.pt", (1e9, 1e9))  # older than every cache
        for name in ("discrepancy.csv", "discrepancy.json"):
            shutil.copy(cache / name, run / name)
        record = {"checkpoint": "last.pt", "n": 100, "eps": 0.1, "results": ACC}
        (run / "eval_last.json").write_text(json.dumps(record))
    (runs / "s5_pgd_digits").mkdir()
    shutil.copy(mine / "config.json", runs / "s5_pgd_digits" / "config.json")

    seen: dict = {"rates": [], "titles": []}
    make_rate, make_steps = plots.make_rate_figure, plots.make_steps_figure
    make_training = curves.make_training_figure

    def rate(summary, title):  # type: ignore[no-untyped-def]
        fig = make_rate(summary, title)
        seen["rates"].append((title, [t.get_text() for t in fig.axes[0].get_xticklabels()]))
        seen["titles"].append(fig._suptitle.get_text())
        return fig

    def steps(result):  # type: ignore[no-untyped-def]
        fig = make_steps(result)
        seen["titles"].append(fig._suptitle.get_text())
        return fig

    def training(paths):  # type: ignore[no-untyped-def]
        fig = make_training(paths)
        seen["titles"] += [sub._suptitle.get_text() for sub in fig.subfigs]
        return fig

    patch = pytest.MonkeyPatch()
    patch.setattr(plots, "make_rate_figure", rate)
    patch.setattr(plots, "make_steps_figure", steps)
    patch.setattr(curves, "make_training_figure", training)
    patch.setattr(build, "pick_bounds_runs", lambda runs: [])  # the bounds: tested below
    study = make_study(root / "study")
    options = ReportOptions(
        attacks=("pgd10",), n_eval=24, n_probe=16, progress=False, studies=(str(study),)
    )
    try:
        build_report(runs, out, options, log=lambda _: None)
    finally:
        patch.undo()
    return runs, out, seen


def test_the_demo_layout_gives_two_rows_and_one_s5_slot_per_figure(demo) -> None:
    _, out, seen = demo
    assert not (out / "table_seeds.md").exists()
    header, _, *rows = markdown_rows((out / "table.md").read_text(encoding="utf-8"))
    assert "Run" in header and [row[header.index("Run")] for row in rows] == [
        "s5_st_digits", "zoo/s5_st",
    ]  # fmt: skip
    assert (out / "discrepancy" / "figure3_discrepancy.png").is_file()
    assert (out / "discrepancy" / "zoo" / "figure3_discrepancy.png").is_file()
    assert [labels for _, labels in seen["rates"]] == [["S5"], ["S5"]]  # one slot each
    assert [title.rsplit(", ", 1)[1] for title, _ in seen["rates"]] == [
        "your runs", "the bundled zoo",
    ]  # fmt: skip
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Skipped runs" in md and "`s5_pgd_digits`: no finished epoch" in md
    assert "s5_pgd_digits" not in (out / "table.md").read_text(encoding="utf-8")


def test_figure_titles_name_runs_never_paths(demo) -> None:
    _, _, seen = demo
    titles = seen["titles"]
    assert titles and not [t for t in titles if "/" in t]
    assert "S5 · ST · Digits (s5_st_digits)" in titles  # the curves tell namesakes apart
    assert "S5 · ST · Digits (s5_st, bundled zoo)" in titles
    assert any(t.startswith("s5_st_digits, last.pt: S5 ST") for t in titles)  # per position


def test_report_html_renders_markdown_with_contents_and_captions(demo) -> None:
    _, out, _ = demo
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "**" not in page and "<strong>" in page  # the verdicts' bold cells
    assert '<nav class="toc">' in page and 'href="#s1-tables-1-2' in page
    captions = [c.split("</figcaption>")[0] for c in page.split("<figcaption>")[1:]]
    assert captions and not [c for c in captions if c.endswith(".png") or "/" in c]
    assert any(c.startswith("Figure 3: feature discrepancy") for c in captions)
    assert any(c.startswith("Training curves of the ST runs on Digits") for c in captions)


def test_inline_markdown_escapes_html_first() -> None:
    from ssmprobe.report.html import inline

    assert inline("**1.03** < `a|b` [docs](https://x.org/a?b=1&c=2)") == (
        '<strong>1.03</strong> &lt; <code>a|b</code> <a href="https://x.org/a?b=1&amp;c=2">docs</a>'
    )
    assert inline("[x](javascript:alert(1))").startswith('<a href="#">')
    assert inline("<b>2 * 3 ** 4</b>") == "&lt;b&gt;2 * 3 ** 4&lt;/b&gt;"


def test_a_workers_warning_is_raised_again_here() -> None:
    """Not printed raw by the worker (concurrent/futures/process.py), but raised in this
    process, where `ssmprobe`'s one-line warnings show it."""
    from ssmprobe.report.workers import figure_pool

    with figure_pool(2) as pool:
        job = pool.submit(warnings.warn, "no metrics.jsonl, left out of the figures")
        with pytest.warns(UserWarning, match="left out of the figures") as caught:
            assert job.result() is None
    assert "process.py" not in caught[0].filename


def test_bounds_are_recomputed_at_the_docs_mu_and_the_datasets_length(
    tmp_path: Path, monkeypatch
) -> None:
    """A cached check at μ = 0 (the zoo's) is computed again at μ = 0.05; one at 0.05 is kept.
    A check of an MNIST run at digits' L = 64 is computed again at 784, keeping the cached
    bounds against L (they do not depend on the check's length)."""
    from ssmprobe.bounds import check as check_module
    from ssmprobe.bounds.figures import FIGURE_MU
    from ssmprobe.bounds.lti import perturbation_law
    from ssmprobe.report.cache import ensure_bounds
    from ssmprobe.report.runs import read_run_info

    assert FIGURE_MU == 0.05

    class Cached:
        def __init__(self, mu: float, L: int = 64, lengths: dict | None = None) -> None:
            self.law = perturbation_law("uniform", 0.1, mu)
            self.L, self.lengths = L, lengths

        def save(self, path: Path) -> None:
            pass

    calls = []

    def check_model(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((kwargs["mu"], kwargs["L"]))
        return Cached(kwargs["mu"], kwargs["L"])

    monkeypatch.setattr(check_module, "check_model", check_model)
    options = ReportOptions(progress=False)
    runs = {}
    for dataset in ("digits", "mnist10k"):
        run_dir = write_run(tmp_path, f"s4_pgd_{dataset}", model="s4", dataset=dataset)
        (run_dir / "best.pt").write_bytes(b"")
        os.utime(run_dir / "best.pt", (1e9, 1e9))
        (run_dir / "bounds.csv").write_text("")
        runs[dataset] = read_run_info(run_dir)
    monkeypatch.setattr(check_module, "load_check", lambda cache, ckpt: Cached(0.0))
    assert ensure_bounds(runs["digits"], options, lambda _: None).law.mu == 0.05
    assert calls == [(0.05, 64)]
    swept = {"layers.0.ssm": {"L": [16.0]}}
    monkeypatch.setattr(check_module, "load_check", lambda cache, ckpt: Cached(0.05, 64, swept))
    ensure_bounds(runs["digits"], options, lambda _: None)
    assert calls == [(0.05, 64)]  # kept
    check = ensure_bounds(runs["mnist10k"], options, lambda _: None)
    assert calls[-1] == (0.05, 784) and check.lengths is swept


def test_a_study_is_shown_after_the_runs_with_its_findings_table_and_captions(demo) -> None:
    _, out, _ = demo
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.index("## Skipped runs") < md.index("## Published S4\n")
    assert "- GP is **robust**." in md and "## Published S4: Accuracy" in md
    assert "![Eigenvalues of both models](../study/spectrum.png)" in md  # beside the report
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<li>GP is <strong>robust</strong>.</li>" in page
    assert '<img src="../study/spectrum.png"' in page
    assert "<figcaption>Eigenvalues of both models</figcaption>" in page


def test_a_bad_study_is_one_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match=r"no study\.json"):
        read_study(tmp_path)
    study = make_study(tmp_path / "s")
    (study / "spectrum.png").unlink()
    with pytest.raises(StudyError, match=r"names files that are not there: .*spectrum\.png"):
        read_study(study)
    (study / "study.json").write_text('{"title": "x"}')
    with pytest.raises(StudyError, match="is not a study"):
        read_study(study)
    raw = {"title": "t", "sentence": "", "findings": [], "tables": [],
           "figures": [{"file": "../outside.png", "caption": "x"}]}  # fmt: skip
    (tmp_path / "outside.png").write_bytes(b"")
    (study / "study.json").write_text(json.dumps(raw))
    with pytest.raises(StudyError, match=r"names files outside its folder: .*outside\.png"):
        read_study(study)


@pytest.mark.parametrize(
    "name, payload",
    [
        ("eval_best.json", lambda d: {"n": 1, "results": {}, "file": {"sha256": d}}),
        ("bounds.csv", lambda d: {"meta": {"L": 64, "file": {"sha256": d}}}),
        ("discrepancy.csv", lambda d: {"results": [{"meta": {"file": {"sha256": d}}}]}),
    ],
)
def test_a_cache_is_stale_when_its_checkpoints_bytes_change_whatever_the_times(
    tmp_path: Path, name: str, payload
) -> None:
    """Eval, bounds and discrepancy caches record the SHA-256 of the checkpoint they were made
    from (a CSV in its JSON beside it): they count while it matches, so the hours of an
    AutoAttack added to an eval file survive a git clone that checks the checkpoint out last."""
    import hashlib

    from ssmprobe.report.runs import stale

    ckpt, cache = tmp_path / "best.pt", tmp_path / name
    ckpt.write_bytes(b"weights")
    cache.write_text("cached")
    digest = hashlib.sha256(b"weights").hexdigest()
    cache.with_suffix(".json").write_text(json.dumps(payload(digest)))
    os.utime(cache, (1e9, 1e9))  # older than the checkpoint
    assert not stale(cache, ckpt)
    ckpt.write_bytes(b"retrained")
    os.utime(ckpt, (1e8, 1e8))  # and now older than the cache
    assert stale(cache, ckpt)
    assert stale(tmp_path / "missing.json", ckpt) and not stale(cache, None)


def test_a_cache_that_records_no_checkpoint_is_judged_by_time(tmp_path: Path) -> None:
    from ssmprobe.report.runs import stale

    ckpt, cache = tmp_path / "best.pt", tmp_path / "eval_best.json"
    ckpt.write_bytes(b"weights")
    cache.write_text(json.dumps({"n": 1, "results": {}}))  # written before the "file" field
    os.utime(ckpt, (1e9, 1e9))
    assert not stale(cache, ckpt)
    os.utime(ckpt, (4e9, 4e9))
    assert stale(cache, ckpt)
