"""`ssmprobe report` on a small runs folder: every file, caches, a rerun that rewrites nothing,
the page linking its PNGs (or embedding them), progress on stderr, and report.html in headless
Chromium with every image loaded and no console error."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from ssmprobe.cli import main
from ssmprobe.report.build import ReportOptions, build_report

OPTIONS = ReportOptions(attacks=("pgd10", "aa-fast"), n_eval=24, n_probe=16, progress=False)
TINY = "--d-model 16 --n-layers 1 --d-state 4 --batch-size 128 --steps 2 --epochs 2 --quiet"
TINY += " --train-eval-size 32 --test-eval-size 64"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A runs folder (S5 ST and PGD-AT, DSS + ReLU AdS PGD-AT, a poisoning result) and its
    report."""
    root = tmp_path_factory.mktemp("report")
    runs, out = root / "runs", root / "out"
    for extra in (
        "--model s5 --method st",
        "--model s5 --method pgd",
        "--model dss --ads relu --method pgd",
    ):
        assert main(f"train {extra} {TINY} --out {runs}".split()) == 0
    poison = f"poison --max-steps 200 --seeds 2 --quiet --out {runs / 'poison.csv'}"
    assert main(poison.split()) == 0
    build_report(runs, out, OPTIONS, log=lambda _: None)
    return runs, out


def files(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        p.relative_to(folder).as_posix(): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.mark.slow
def test_every_table_and_figure_is_written(built: tuple[Path, Path]) -> None:
    runs, out = built
    written = set(files(out))
    expected = {
        *(f"table.{ext}" for ext in ("md", "csv", "tex")),
        "curves_digits_st.png",
        "curves_digits_pgd.png",
        "discrepancy/figure3_discrepancy.png",
        "discrepancy/figure4_discrepancy_ads.png",
        "discrepancy/discrepancy.csv",
        "bounds/bounds_s5_pgd_digits.png",
        "bounds/bounds_vs_L_dss_pgd_ads-relu_digits.png",
        "bounds/eigenvalues_dss_pgd_ads-relu_digits.png",
        "poison/poison_dynamics_poison_linear.png",
        "report.md",
        "report.html",
    }
    assert expected <= written, sorted(written)
    for run in ("s5_st_digits", "s5_pgd_digits", "dss_pgd_ads-relu_digits"):
        cached = {p.name for p in (runs / run).iterdir()}
        assert {"eval_best.json", "eval_last.json", "discrepancy.csv"} <= cached
        record = json.loads((runs / run / "eval_best.json").read_text())
        assert record["n"] == 24 and set(record["results"]) == {"clean", "pgd10", "aa-fast"}
    md = (out / "report.md").read_text()
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert images and all((out / image).is_file() for image in images)
    assert "Figure 3" in md and "Figure 4" in md and "Theorem 4.1.1" in md and "poisoning" in md
    assert "| Digits" in md  # Table 1 itself, not a link
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," not in html
    assert re.findall(r'src="([^"]+)"', html) == images  # the PNGs beside the page, relative
    # The bounds against L, one job per length, are cached with the check as computed whole.
    from ssmprobe.bounds.check import load_check
    from ssmprobe.bounds.figures import length_medians

    run = runs / "dss_pgd_ads-relu_digits"
    check = load_check(run / "bounds.csv", run / "best.pt")
    assert check is not None and check.lengths == length_medians(check.model, check.law)


@pytest.mark.slow
def test_a_second_run_rewrites_nothing(built: tuple[Path, Path]) -> None:
    runs, out = built
    before_out, before_runs = files(out), files(runs)
    result = build_report(runs, out, OPTIONS, log=lambda _: None)
    assert result.up_to_date and result.written == []
    assert files(out) == before_out and files(runs) == before_runs


@pytest.mark.slow
def test_two_worker_processes_draw_the_same_figures_and_pdf_adds_vector_copies(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    """Figures drawn by spawned workers equal those drawn in this process byte for byte; the
    worker count is not part of the fingerprint; `formats` with .pdf adds a PDF per PNG."""
    runs, out = built
    theirs = tmp_path / "workers"
    build_report(runs, theirs, replace(OPTIONS, workers=2, formats=(".png", ".pdf")), log=print)
    mine = {k: v[1] for k, v in files(out).items() if k != ".report_state.json"}
    pngs = {k for k in mine if k.endswith(".png")}
    assert len(pngs) > 10 and not any(k.endswith(".pdf") for k in mine)
    drawn = {k: v[1] for k, v in files(theirs).items()}
    assert {k: drawn[k] for k in pngs} == {k: mine[k] for k in pngs}
    assert {k for k in drawn if k.endswith(".pdf")} == {k[:-4] + ".pdf" for k in pngs}
    again = build_report(runs, out, replace(OPTIONS, workers=2), log=print)
    assert again.up_to_date


@pytest.mark.slow
def test_self_contained_embeds_the_images_and_rewrites_only_the_page(
    built: tuple[Path, Path],
) -> None:
    """The option is part of the fingerprint: switching it rewrites report.html, nothing else."""
    runs, out = built
    page = out / "report.html"
    linked = page.read_text()
    images = re.findall(r'<img src="([^"]+)"', linked)
    result = build_report(runs, out, replace(OPTIONS, self_contained=True), log=lambda _: None)
    assert result.written == [page]
    html = page.read_text()
    assert html.count('<img src="data:image/png;base64,') == len(images) > 5
    assert 'src="' not in html.replace('src="data:', "")  # nothing outside the file
    first = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert first and base64.b64decode(first[1]) == (out / images[0]).read_bytes()
    result = build_report(runs, out, OPTIONS, log=lambda _: None)
    assert result.written == [page] and page.read_text() == linked


@pytest.mark.slow
def test_the_command_writes_to_runs_report_with_progress_on_stderr(
    built: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --out the report goes to RUNS/report (not the committed figures/); what it
    computes is announced on stderr, so stdout holds only the results; --quiet silences it."""
    runs = tmp_path / "runs"
    shutil.copytree(built[0] / "s5_pgd_digits", runs / "s5_pgd_digits")  # caches stay fresh
    for name in ("eval_best.json", "eval_last.json"):
        (runs / "s5_pgd_digits" / name).unlink()
    args = f"report --runs {runs} --attack pgd10 --n 8 --n-probe 16".split()
    assert main(args) == 0
    printed, page = capsys.readouterr(), runs / "report" / "report.html"
    assert "evaluating " in printed.err and "evaluating" not in printed.out
    assert printed.out.startswith("written (") and f"report: {page.resolve()}\n" in printed.out
    assert "data:image/png;base64," not in page.read_text()
    assert main([*args, "--self-contained", "--quiet"]) == 0
    printed = capsys.readouterr()  # the option's fingerprint differs; nothing to compute
    assert printed.out.startswith(f"written (1 changed): {page}\n") and printed.err == ""
    assert "data:image/png;base64," in page.read_text()


@pytest.mark.slow
def test_a_lost_output_is_rewritten_and_nothing_else(built: tuple[Path, Path]) -> None:
    runs, out = built
    (out / "table.md").unlink()
    before = files(out)
    result = build_report(runs, out, OPTIONS, log=lambda _: None)
    assert not result.up_to_date
    assert [p.relative_to(out).as_posix() for p in result.written] == ["table.md"]
    after = files(out)
    assert {k: v for k, v in after.items() if k not in ("table.md", ".report_state.json")} == {
        k: v for k, v in before.items() if k != ".report_state.json"
    }


@pytest.mark.slow
def test_a_lost_bounds_figure_is_drawn_from_the_cached_check(
    built: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssmprobe.bounds.check

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached check was computed again")

    monkeypatch.setattr(ssmprobe.bounds.check, "check_model", refuse)
    runs, out = built
    lost = [out / "bounds" / f"{stem}_s5_pgd_digits.png" for stem in ("bounds", "bounds_vs_L")]
    before, before_runs = {p: p.read_bytes() for p in lost}, files(runs)
    for path in lost:
        path.unlink()
    build_report(runs, out, OPTIONS, log=lambda _: None)
    assert {p: p.read_bytes() for p in lost} == before and files(runs) == before_runs

    # A check cached after the figure was drawn (a retrained run's): the figure follows it.
    cache = runs / "s5_pgd_digits" / "bounds.json"
    payload = json.loads(cache.read_text())
    payload["rows"] = [row | {"exact": 2 * row["exact"]} for row in payload["rows"]]
    cache.write_text(json.dumps(payload))
    csv = cache.with_suffix(".csv")
    csv.write_text(csv.read_text())  # saved together: the report compares with the CSV
    build_report(runs, out, OPTIONS, log=lambda _: None)
    assert lost[0].read_bytes() != before[lost[0]]


def test_bad_input_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no runs found under"):
        build_report(tmp_path, tmp_path / "out", OPTIONS)
    with pytest.raises(FileNotFoundError, match="runs folder not found"):
        build_report(tmp_path / "missing", tmp_path / "out", OPTIONS)
    with pytest.raises(ValueError, match="must be positive"):
        ReportOptions(n_eval=0)
    with pytest.raises(ValueError, match="unknown attack"):
        ReportOptions(attacks=("pgd10", "cw"))
    assert not (tmp_path / "out").exists()


# Runs before the page's own content: records script errors, console.error calls and failed
# resource loads, and on load writes what it found into the title, which --dump-dom prints.
_PROBE = """<script>
window.__errors = [];
window.addEventListener("error",
  e => __errors.push(String(e.message || (e.target && e.target.src))), true);
const __consoleError = console.error;
console.error = (...args) => { __errors.push(args.join(" ")); __consoleError(...args); };
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.title = "PROBE " + JSON.stringify({images: images.length, broken, errors: __errors});
});
</script>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when absent (as root); a skip saying why when
    it cannot be."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and there is no apt-get to install it")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode:
            pytest.skip(f"cannot install chromium ({' '.join(command)}): {done.stderr[-300:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get installed chromium but no chromium binary is on PATH")
    return found


@pytest.mark.slow
def test_report_html_opens_in_chromium(
    built: tuple[Path, Path], chromium: str, tmp_path: Path
) -> None:
    out = shutil.copytree(built[1], tmp_path / "out")  # the page loads the PNGs beside it
    probed = out / "report.html"
    page = probed.read_text()
    probed.write_text(page.replace("<head>", "<head>" + _PROBE, 1))
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    title = re.search(r"<title>PROBE (.*?)</title>", done.stdout)
    assert title, f"chromium did not load the page: {done.stderr[-2000:]}"
    probe = json.loads(title[1].replace("&quot;", '"'))
    assert probe["images"] == page.count("<img ") > 5
    assert probe["broken"] == 0 and probe["errors"] == []
    console_errors = [
        line for line in done.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line
    ]
    assert console_errors == []


def test_the_zoo_becomes_run_directories_with_the_manifests_numbers(tmp_path: Path) -> None:
    import pandas as pd

    from ssmprobe.checkpoint import bundled_dir
    from ssmprobe.report.runs import collect_runs
    from ssmprobe.report.zoo_runs import zoo_runs

    manifest = json.loads((bundled_dir() / "manifest.json").read_text())
    made = zoo_runs(tmp_path / "zoo")
    assert sorted(p.name for p in made) == sorted(Path(n).stem for n in manifest)
    table = collect_runs(tmp_path).set_index("run")
    for name, entry in manifest.items():
        stat = entry["checkpoint"]  # best after adversarial training, last after standard
        row = table.loc[f"zoo/{Path(name).stem}"]
        assert row[f"clean_{stat}"] == round(100 * entry["accuracy"]["clean"], 2)
        if "autoattack_checks" in entry:
            checks = entry["autoattack_checks"]
            assert row["aa_checks"] == "; ".join(f"{stat}: {check}" for check in checks)
        else:  # bundled before eval files kept them: not known
            assert pd.isna(row["aa_checks"])
    before = files(tmp_path)
    zoo_runs(tmp_path / "zoo")
    assert files(tmp_path) == before  # nothing rewritten


def test_figure3_tells_two_checkpoints_of_one_model_apart() -> None:
    """Your S5 ST run and the zoo's in one figure: two labelled bars, not an error."""
    import pandas as pd

    from ssmprobe.probe.plots import _labels, make_rate_figure

    rows = [
        {"model": "s5", "ads": None, "method": "st", "checkpoint": f"runs/{run}/last.pt",
         "kind": "ssm", "split": split, "metric": metric, "norm": "none", "rate": 10.0}
        for run in ("s5_st_digits", "zoo/s5_st")
        for split in ("train", "test")
        for metric in ("mse", "kl")
    ]  # fmt: skip
    summary = pd.DataFrame(rows)
    assert set(_labels(summary)) == {"S5 (s5_st_digits)", "S5 (s5_st)"}
    make_rate_figure(summary, "two S5")


def test_findings_prefer_your_plain_run_and_name_where_a_bound_fails() -> None:
    """The discrepancy sentence is of your run without AdS when there is one (not the first
    file's); the bounds sentence counts only channels where a bound was checked and names the
    family where it failed."""
    import pandas as pd

    from ssmprobe.report.findings import compute_findings

    frame = pd.DataFrame(
        [
            {"run": "zoo/s4_st", "dataset": "digits", "model": "s4", "method": "st",
             "ads": "none", "clean_last": 97.0, "pgd10_last": 11.0, "pgd10_best": None,
             "clean_best": None, "aa_best": None, "masking": "", "aa_checks": ""},
            {"run": "zoo/s4_pgd", "dataset": "digits", "model": "s4", "method": "pgd",
             "ads": "none", "clean_last": None, "pgd10_last": None, "pgd10_best": 91.0,
             "clean_best": 98.0, "aa_best": 90.0, "masking": "",
             "aa_checks": "best: AutoAttack: Square Attack has decreased the robust accuracy"},
        ]
    )  # fmt: skip
    rate = {"zoo/s4_pgd_ads-relu/best.pt": ("relu", 19.0), "zoo/s4_pgd/best.pt": (None, 47.0)}
    forms = {("kl", "none"): 1.0, ("kl", "relative"): -0.5, ("nsr", "none"): 0.25}
    discrepancy = pd.DataFrame(
        [
            {"checkpoint": ckpt, "model": "s4", "method": "pgd", "ads": ads, "split": "test",
             "metric": metric, "norm": norm, "kind": "ssm", "layers": 2, "rate": value * k}
            for ckpt, (ads, value) in rate.items()
            for (metric, norm), k in forms.items()
        ]
    )  # fmt: skip
    summary = [{"channels": 64, "kernel_upper_holds": 64, "spectral_upper_holds": 64}]
    bounds = [
        {"meta": {"model": "s4"}, "summary": summary},
        {
            "meta": {"model": "s5"},
            "summary": [*summary, {"channels": 32, "kernel_upper_holds": 30}],
        },
    ]
    findings = compute_findings(frame, discrepancy, bounds)
    assert findings[0].startswith("PGD-AT raised S4's PGD-10 accuracy on Digits from 11.0%")
    assert findings[1] == (
        "S4 PGD-AT, adversarial test inputs: the SSM raises KL by 47% (relative form: lowers KL "
        "by 24%; amplification 1.12)."
    )
    assert findings[3] == (
        "Theorem 4.1.1's kernel-form upper bound held on 158 of 160 channels (S4, S5), failing "
        "on 2 of S5's 96; the spectral bound on 128 of 128."
    )
    assert findings[-1].startswith("AutoAttack's own checks warned on 1 row(s) (S4 · PGD-AT · ")


def test_per_position_figures_of_namesake_checkpoints_are_all_kept(tmp_path: Path) -> None:
    """Your S5 PGD-AT run beside the zoo's: both have steps_s5_pgd_best, so each gets its run."""
    from ssmprobe.checkpoint import bundled_dir
    from ssmprobe.probe.plots import plot_steps

    payload = json.loads((bundled_dir() / "cache" / "s5_pgd" / "discrepancy.json").read_text())
    csvs = []
    runs = ("runs/demo/s5_pgd_digits", "runs/demo/zoo/s5_pgd", "elsewhere/s5_pgd")
    for i, run in enumerate(runs):
        payload["results"][0]["meta"]["checkpoint"] = f"{run}/best.pt"
        (tmp_path / f"{i}.json").write_text(json.dumps(payload))
        csvs.append(tmp_path / f"{i}.csv")
    only = [tmp_path / "0.csv"]
    assert [p.name for p in plot_steps(only, tmp_path / "one")] == [
        "steps_s5_pgd_best.png", "steps_s5_pgd_best.pdf",
    ]  # fmt: skip
    names = [p.stem for p in plot_steps(csvs, tmp_path / "out") if p.suffix == ".png"]
    assert names == [
        "steps_s5_pgd_best_s5_pgd_digits", "steps_s5_pgd_best_s5_pgd", "steps_s5_pgd_best_s5_pgd_2",
    ]  # fmt: skip


def test_the_zoos_discrepancy_counts_as_the_zoos(tmp_path: Path) -> None:
    """A zoo cache names the checkpoint it was computed on (runs/digits/s4_pgd/best.pt): the
    combined rows name the run directory's copy, so the findings put your run first."""
    import pandas as pd

    from ssmprobe.checkpoint import bundled_dir
    from ssmprobe.report.figures import _discrepancy_outputs
    from ssmprobe.report.findings import compute_findings
    from ssmprobe.report.workers import figure_pool

    csvs = []
    for name, run in (("s4_pgd", "zoo/s4_pgd"), ("s5_pgd", "s5_pgd_digits")):
        (tmp_path / run).mkdir(parents=True)
        for suffix in (".csv", ".json"):
            source = bundled_dir() / "cache" / name / f"discrepancy{suffix}"
            shutil.copy(source, tmp_path / run / f"discrepancy{suffix}")
        csvs.append(tmp_path / run / "discrepancy.csv")
    with figure_pool(1) as pool:
        _, summary = _discrepancy_outputs(csvs, tmp_path / "out", pool, (".png",))
    assert set(summary["checkpoint"]) == {
        str(tmp_path / "zoo/s4_pgd/best.pt"), str(tmp_path / "s5_pgd_digits/best.pt"),
    }  # fmt: skip
    no_runs = pd.DataFrame(
        columns=["run", "dataset", "model", "method", "ads", "masking", "aa_checks"]
    )
    findings = compute_findings(no_runs, summary, [])
    assert findings[0].startswith("S5 PGD-AT, adversarial test inputs: the SSM raises KL")


def test_each_datasets_discrepancy_goes_apart(tmp_path: Path) -> None:
    """The zoo's S4 ST on digits and on MNIST-10k: never two bars of one slot. Each dataset
    gets its own CSVs, verdicts, Figure 3 and findings sentence; the first (digits) keeps the
    top folder, so a one-dataset report is laid out as before."""
    import pandas as pd

    from ssmprobe.checkpoint import bundled_dir
    from ssmprobe.report.figures import _discrepancy_outputs
    from ssmprobe.report.findings import compute_findings
    from ssmprobe.report.sections import _sections, figure_caption
    from ssmprobe.report.workers import figure_pool

    csvs = []
    for name in ("s4_mnist10k_st", "s4_st"):  # not in table order: the report sorts them
        (tmp_path / name).mkdir()
        for suffix in (".csv", ".json"):
            source = bundled_dir() / "cache" / name / f"discrepancy{suffix}"
            shutil.copy(source, tmp_path / name / f"discrepancy{suffix}")
        csvs.append(tmp_path / name / "discrepancy.csv")
    out = tmp_path / "out"
    with figure_pool(1) as pool:
        made, summary = _discrepancy_outputs(csvs, out, pool, (".png",))
    for folder, dataset in ((out, "digits"), (out / "mnist10k", "mnist10k")):
        assert set(pd.read_csv(folder / "discrepancy.csv")["dataset"]) == {dataset}
        verdict_rows = pd.read_csv(folder / "verdicts.csv")
        assert len(verdict_rows) == 3 * 2 and set(verdict_rows["split"]) == {"train", "test"}
        assert folder / "figure3_discrepancy.png" in made
    # each dataset's per-position figures in its folder, by the same name, captioned apart
    steps = [p for p in made if p.name.startswith("steps_")]
    assert steps == [out / "steps_s4_st_last.png", out / "mnist10k" / "steps_s4_st_last.png"]
    captions = [figure_caption(p) for p in steps]
    assert captions[1] == captions[0] + ", MNIST-10k" and "Digits" not in captions[0]
    no_runs = pd.DataFrame(
        columns=["run", "dataset", "model", "method", "ads", "masking", "aa_checks"]
    )
    verdict = [f for f in compute_findings(no_runs, summary, []) if f.startswith("Figures 3-4")]
    assert [f.split(":")[0] for f in verdict] == [
        "Figures 3-4 on test inputs of Digits", "Figures 3-4 on test inputs of MNIST-10k",
    ]  # fmt: skip
    (tmp_path / "table.md").write_text("| a |\n|---|\n")
    sections = _sections(no_runs, {"md": tmp_path / "table.md"}, [], made, {}, [], [])
    (figure3,) = [s for s in sections if s.title.startswith("Figure 3:")]
    assert figure3.sentence.endswith("Each dataset is drawn apart.") and len(figure3.images) == 2
    titles = [s.title for s in sections if s.title.startswith("Figures 3-4: verdicts")]
    assert titles[1].endswith("(MNIST-10k)") and not titles[0].endswith(")")


def test_settings_with_several_seeds_get_the_seed_table(tmp_path: Path, capsys) -> None:
    from run_fixtures import write_run

    from ssmprobe.report.runs import collect_runs
    from ssmprobe.report.sections import _sections
    from ssmprobe.report.tables import write_tables

    runs = tmp_path / "runs"
    for seed, pgd in enumerate((0.8, 0.9)):
        write_run(runs, f"s4_pgd_{seed}", seed=seed, best={"clean": 0.99, "pgd10": pgd})
    frame = collect_runs(runs)
    sections = _sections(frame, write_tables(frame, tmp_path), [], [], {}, [], [])
    seeds = next(s for s in sections if s.title.startswith("Seeds"))
    assert "85.00 ± 7.07" in seeds.table
    assert main(["table", str(runs)]) == 0
    assert "85.00 ± 7.07" in capsys.readouterr().out  # `ssmprobe table` prints it too


def test_the_bounds_finding_names_each_familys_dataset_where_there_are_several() -> None:
    from ssmprobe.report.findings import bounds_finding

    def check(model: str, dataset: str, held: int) -> dict:
        summary = [{"channels": 4, "kernel_upper_holds": held, "spectral_upper_holds": 4}]
        return {"meta": {"model": model}, "summary": summary, "dataset": dataset}

    one = bounds_finding([check("s4", "digits", 4), check("dss", "digits", 3)])
    assert "upper bound held on 7 of 8 channels (S4, DSS), failing" in one
    assert "failing on 1 of DSS's 4" in one
    two = bounds_finding([check("s4", "digits", 4), check("s4", "mnist10k", 3)])
    assert "(S4 (Digits), S4 (MNIST-10k)), failing on 1 of S4 (MNIST-10k)'s 4" in two
