"""The report of one model in memory (`ssmprobe report --model`): your own model, analysed whole.

`model_report(model, data, out)` runs on a wrapped model (`ssmprobe.wrap`) and the user's data
what `build_report` runs on a folder of runs, and writes the same kind of page into `out`:

- `eval.json` and its table: clean accuracy and each attack's on the first `n_eval` samples of
  `data`, with the gradient-masking flags (`evaluation.evaluate.evaluate_model`);
- `discrepancy.csv` / `.json`: the feature discrepancy of every component (§4.2) on the first
  `n_probe` samples, and in `discrepancy/` Figure 3's rates, the verdicts in the plain, relative
  and amplification forms, and the per-position curves;
- `bounds.csv` / `.json` and `bounds/`: Theorem 4.1.1 on the SSM components a reader rebuilds
  from their parameters (`interop.readers`), under uniform noise at the attack's budget for LTI
  layers, on the data's inputs for selective ones; skipped, with a finding saying so, where no
  component has a reader;
- `report.md`, `report.html`.

A model in memory has no file that dates a cache, so every call computes everything again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssmprobe.evaluation.sanity import FOOTNOTE
from ssmprobe.io import write_text
from ssmprobe.report.build import ReportOptions, ReportResult, _to_stderr
from ssmprobe.report.figures import _discrepancy_outputs
from ssmprobe.report.findings import bounds_finding, component_finding, verdict_finding
from ssmprobe.report.html import render_html
from ssmprobe.report.sections import Section, _pngs, render_markdown
from ssmprobe.report.state import _changed, _snapshot

if TYPE_CHECKING:
    from torch import nn

    from ssmprobe.bounds.check import BoundsCheck
    from ssmprobe.interop.userdata import UserData


def model_report(
    model: nn.Module,
    data: UserData,
    out_dir: str | Path,
    options: ReportOptions = ReportOptions(),
    log: Callable[[str], None] = _to_stderr,
) -> ReportResult:
    """Evaluates, probes and (where a reader knows its SSM layers) bounds the wrapped `model`
    on `data`, then writes the tables, figures and report into `out_dir` (module docstring)."""
    from ssmprobe.evaluation.evaluate import evaluate_model
    from ssmprobe.interop.userdata import model_meta
    from ssmprobe.probe.discrepancy import discrepancy, save
    from ssmprobe.probe.verdicts import verdicts
    from ssmprobe.report.workers import figure_pool

    model, meta = model_meta(model)  # a bare module is refused here, before any work
    out = Path(out_dir)
    before = _snapshot(out)
    name = meta["model"]
    log(f"evaluating {name} ({', '.join(options.attacks)}) on {options.n_eval} samples")
    evaluation = evaluate_model(
        model, data, list(options.attacks), n=options.n_eval, progress=options.progress,
        out=out / "eval.json",
    )  # fmt: skip
    log(f"feature discrepancy of {name} on {options.n_probe} samples")
    probe = discrepancy(model, data=data, n=options.n_probe, progress=options.progress)
    csv, _ = save([probe], out / "discrepancy.csv")
    check = _bounds(model, data, evaluation["eps"], options, log)
    if check is not None:
        check.save(out / "bounds.csv")
    with figure_pool(options.workers) as pool:
        figures, summary = _discrepancy_outputs([csv], out / "discrepancy", pool, options.formats)
        bounds = [] if check is None else check.figures(out / "bounds", name, options.formats)
    table = verdicts(summary)
    findings = [_accuracy_finding(name, evaluation)]
    findings.append(component_finding(name, table))
    findings.append(verdict_finding(table))
    if check is None:
        findings.append(f"{name} has no SSM component a reader knows: Theorem 4.1.1 not checked.")
    else:
        findings.append(bounds_finding([{"meta": {"model": name}, "summary": check.summary}]))
    sections = _sections(name, evaluation, figures, bounds, check)
    md_path, html_path = out / "report.md", out / "report.html"
    write_text(md_path, render_markdown(findings, sections, out))
    write_text(html_path, render_html(findings, sections, out, options.self_contained))
    return ReportResult(md_path, html_path, findings, _changed(out, before), False)


def _bounds(
    model: nn.Module,
    data: UserData,
    eps: float,
    options: ReportOptions,
    log: Callable[[str], None],
) -> BoundsCheck | None:
    """Theorem 4.1.1 on the model's readable SSM layers at the data's length and the attack's
    budget; None where no component has a reader."""
    from ssmprobe.bounds.check import check_wrapped
    from ssmprobe.interop.userdata import first_samples

    if not model.ssm_layers():  # type: ignore[operator]
        return None
    log(f"Theorem 4.1.1 on {len(model.ssm_layers())} SSM layer(s)")  # type: ignore[operator]
    length = first_samples(model, data, 1)[0].shape[1]  # type: ignore[arg-type]
    return check_wrapped(
        model, data, L=length, eps=eps, n=options.n_probe, progress=options.progress
    )


def _accuracy_finding(name: str, evaluation: dict[str, Any]) -> str:
    results = evaluation["results"]
    attacks = [f"{k} {100 * acc:.1f}%" for k, acc in results.items() if k != "clean"]
    flags = evaluation.get("masking") or []
    return (
        f"{name} on {evaluation['n']} samples (ε = {evaluation['eps']:g}): clean "
        f"{100 * results['clean']:.1f}%, "
        + ", ".join(attacks)
        + "; "
        + ("gradient masking suspected: " + "; ".join(flags) if flags else "no masking flag")
        + "."
    )


def _accuracy_table(evaluation: dict[str, Any]) -> str:
    results = evaluation["results"]
    head = "| " + " | ".join(["n", "ε", *results, "masking"]) + " |"
    rule = "|" + "---:|" * (len(results) + 2) + "---|"
    cells = [str(evaluation["n"]), f"{evaluation['eps']:g}"]
    cells += [f"{100 * acc:.2f}" for acc in results.values()]
    cells.append("‡" if evaluation.get("masking") else "")
    return "\n".join([head, rule, "| " + " | ".join(cells) + " |"])


def _sections(
    name: str,
    evaluation: dict[str, Any],
    discrepancy: list[Path],
    bounds: list[Path],
    check: BoundsCheck | None,
) -> list[Section]:
    figure = {p.stem: p for p in _pngs(discrepancy)}
    verdict_md = next(p for p in discrepancy if p.name == "verdicts.md")
    sections = [
        Section(
            f"Accuracy of {name} under attack",
            "Clean and adversarial accuracy (%) on the first samples of the given data; ‡ marks "
            f"suspected gradient masking. {FOOTNOTE if evaluation.get('masking') else ''}".strip(),
            table=_accuracy_table(evaluation),
        ),
        Section(
            "Figure 3: feature discrepancy per component",
            "How much each component changes the MSE and KL between clean and adversarial "
            "features (after / before - 1, averaged over layers).",
            [p for s, p in figure.items() if s.startswith("figure3")],
        ),
        Section(
            "Verdicts in the plain and the relative form",
            "Rates (%) in the plain form d(f', f) and in the paper's relative form "
            "d(f', f)/||f||, bold where the two disagree on raise or lower, and the scale-free "
            "amplification (||Δ_out||/||Δ_in||) / (||f_out||/||f_in||).",
            table=verdict_md.read_text(encoding="utf-8"),
        ),
        Section(
            "Per-position discrepancy",
            "Squared error between clean and adversarial features at each sequence position, "
            "before and after each component.",
            [p for s, p in figure.items() if s.startswith("steps_")],
        ),
    ]
    if check is not None:
        sections.append(
            Section(
                f"Theorem 4.1.1 on {name}'s SSM layers",
                f"Measured output error of each channel ({check.perturbation}) against the "
                "kernel-form, eigenvalue-form and spectral upper bounds, from the parameters "
                "the readers rebuilt.",
                _pngs(bounds),
            )
        )
    return [s for s in sections if s.images or s.table]
