"""The paper's CIFAR-10 setting on published checkpoints: S4 Nat vs Jacobian-regularised S4 (GP).

Reads the Jacobian follow-up's two S4 state dicts (`--nat`, `--gp`; 4 layers, d = 128, inputs in
[0, 1]) and CIFAR-10 test images from `--images` (the official files, or a folder / .tar.gz of
class folders: then every result says "image folder <path>"), and writes into `--out`
(default figures/cifar10_jac; the converted checkpoints go to `--work`, never committed):

- accuracy.csv / .json: clean accuracy on `--n-clean`, PGD-10 (ε = 0.031, α = 0.007, the
  paper's CIFAR-10 budget) on `--n-pgd`, standard AutoAttack on `--n-aa`, the masking flags, n
  and wall time of each;
- discrepancy_<model>.csv / .json and Figures 3-4 (figure3_discrepancy.png, steps_*.png, the
  verdicts in the plain, relative and amplification forms) under PGD-10 on `--n-probe` images;
- bounds_<model>.csv / .json: Theorem 4.1.1 per channel at L = 1024 under uniform noise at ε;
- spectrum.csv: per layer, max |λ(Ā)| and the median / max kernel norm ||h||_2 at L = 1024;
- findings.md: the sentences, generated from those files, and `--docs` (default
  docs/cifar10-jac.md): the documentation page, the same findings with the tables.

    python analysis/cifar10_jac.py --images ../shared/data/cifar10-jpeg \\
        --nat ../shared/data/reference-jac/s4_nat.pt --gp ../shared/data/reference-jac/s4_gp.pt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from ssmprobe.attacks import score
from ssmprobe.bounds.check import check_model, load_check
from ssmprobe.data import load_dataset, make_loader
from ssmprobe.evaluation.evaluate import evaluate
from ssmprobe.interop.reference import import_reference
from ssmprobe.io import write_json, write_text
from ssmprobe.loading import load_model
from ssmprobe.probe.discrepancy import discrepancy, save, summarise
from ssmprobe.probe.plots import plot_rates, save_steps_figure, steps_figures
from ssmprobe.probe.verdicts import to_markdown, verdicts

EPS = 0.031
L = 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="CIFAR-10 files or image folders")
    parser.add_argument("--nat", required=True, help="the reference code's s4_nat.pt")
    parser.add_argument("--gp", required=True, help="the reference code's s4_gp.pt")
    parser.add_argument("--out", default="figures/cifar10_jac", help="results and figures")
    parser.add_argument("--work", default="runs/cifar10_jac", help="converted checkpoints")
    parser.add_argument("--n-clean", type=int, default=10_000)
    parser.add_argument("--n-pgd", type=int, default=1000)
    parser.add_argument("--n-aa", type=int, default=200, help="0 skips AutoAttack")
    parser.add_argument("--n-probe", type=int, default=200)
    parser.add_argument("--docs", default="docs/cifar10-jac.md", help="the page to write")
    args = parser.parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    test = load_dataset("cifar10", "test", args.images, download=False)
    # What an earlier run of at least these sizes left in --out is kept: the script resumes.
    cached = {n: _read(out / f"accuracy_{n}.json") for n in ("nat", "gp")}
    done = {n for n, row in cached.items() if _same_sizes(row, args)}
    rows, csvs, checks = [], [], {}
    for name, source in (("nat", args.nat), ("gp", args.gp)):
        ckpt = work / f"s4_{name}.pt"
        if not ckpt.is_file():
            import_reference(source, ckpt, "s4", "cifar10")
        if name not in done:
            write_json(out / f"accuracy_{name}.json", accuracy(name, ckpt, test, args))
        rows.append(_read(out / f"accuracy_{name}.json"))
        csv = out / f"discrepancy_{name}.csv"
        if name not in done or not csv.is_file():
            started = time.perf_counter()
            result = discrepancy(ckpt, splits=["test"], n=args.n_probe, data_dir=args.images,
                                 progress=False)  # fmt: skip
            result.meta["method"] = name  # Nat / GP in the tables and figures
            for row in result.rows:
                row["method"] = name
            save([result], csv)
            rows[-1]["probe_seconds"] = time.perf_counter() - started
            write_json(out / f"accuracy_{name}.json", rows[-1])
        csvs.append(csv)
        check = load_check(out / f"bounds_{name}.csv", ckpt) if name in done else None
        if check is None:
            check = check_model("s4", ckpt, L=L, eps=EPS)
            check.save(out / f"bounds_{name}.csv")
        checks[name] = check
        print(json.dumps(rows[-1]), flush=True)
    frame = pd.DataFrame(rows)
    write_text(out / "accuracy.csv", frame.to_csv(index=False, float_format="%.6g"))
    write_json(out / "accuracy.json", rows)
    probe = pd.concat([pd.read_csv(c).assign(checkpoint=c.stem) for c in csvs])
    summary = pd.DataFrame(summarise(probe.to_dict("records")))
    write_text(out / "verdicts.md", to_markdown(verdicts(summary)))
    plot_rates(summary, out, "none", (".png",))
    for job in steps_figures(csvs, out):
        save_steps_figure(*job, (".png",))
    spectrum = spectrum_rows(work)
    write_text(out / "spectrum.csv", spectrum.to_csv(index=False, float_format="%.6g"))
    text = findings(frame, summary, spectrum, checks, test.source)
    write_text(out / "findings.md", text)
    write_text(Path(args.docs), docs_page(text, frame, (out / "verdicts.md").read_text(), spectrum))
    print(text)
    return 0


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _same_sizes(row: dict, args: argparse.Namespace) -> bool:
    sizes = {"n_clean": args.n_clean, "n_pgd10": args.n_pgd, "n_aa": args.n_aa}
    return bool(row) and all(row.get(k, 0) >= min(v, 10_000) for k, v in sizes.items() if v > 0)


def _markdown(frame: pd.DataFrame) -> str:
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
             for row in frame.itertuples(index=False)]  # fmt: skip
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def accuracy(name: str, ckpt: Path, test, args: argparse.Namespace) -> dict:
    """Clean on n_clean, PGD-10 on n_pgd, AutoAttack on n_aa, with n and seconds of each."""
    model = load_model(ckpt)
    started = time.perf_counter()
    clean = score(model, make_loader(test.head(args.n_clean), 100))["acc"]
    row = {"model": name, "data": test.source, "clean": clean, "n_clean": args.n_clean,
           "clean_seconds": time.perf_counter() - started}  # fmt: skip
    for attack, n in (("pgd10", args.n_pgd), ("aa", args.n_aa)):
        if n < 1:
            continue
        started = time.perf_counter()
        record = evaluate(ckpt, [attack], n=n, data_dir=args.images, progress=False,
                                     out=Path(args.out) / f"eval_{name}_{attack}.json",
                                     force=True)  # fmt: skip
        row |= {attack: record["results"][attack], f"n_{attack}": record["n"],
                f"{attack}_clean": record["results"]["clean"],
                f"{attack}_seconds": time.perf_counter() - started,
                f"{attack}_masking": "; ".join(record["masking"])}  # fmt: skip
    return row


def spectrum_rows(work: Path) -> pd.DataFrame:
    """Per model and layer: max |λ(Ā)| and the median / max ||h||_2 of its channels at L."""
    rows = []
    for name in ("nat", "gp"):
        model = load_model(work / f"s4_{name}.pt")
        with torch.no_grad():
            for layer, ssm in model.ssm_layers().items():
                norms = ssm.impulse_response(L).norm(dim=-1)
                rows.append({"model": name, "layer": layer,
                             "max_abs_eig": ssm.discrete().eigvals.abs().max().item(),
                             "kernel_norm_median": norms.median().item(),
                             "kernel_norm_max": norms.max().item()})  # fmt: skip
    return pd.DataFrame(rows)


def findings(frame: pd.DataFrame, summary: pd.DataFrame, spectrum: pd.DataFrame, checks: dict,
             source: str) -> str:  # fmt: skip
    """The findings in sentences, from the files this script wrote."""
    lines = [f"# CIFAR-10: S4 Nat vs S4 GP (Jacobian-regularised), {source}", ""]
    for _, r in frame.iterrows():
        parts = [f"clean {100 * r['clean']:.1f}% (n = {r['n_clean']})"]
        for attack in ("pgd10", "aa"):
            if attack in r and pd.notna(r.get(attack)):
                parts.append(f"{attack} {100 * r[attack]:.1f}% (n = {int(r[f'n_{attack}'])})")
        lines.append(f"- S4 {r['model'].upper()}: " + ", ".join(parts) + ".")
    table = verdicts(summary)
    test = table[table["split"] == "test"]
    for kind in sorted(set(test["kind"])):
        by = {r["method"]: r for _, r in test[test["kind"] == kind].iterrows()}
        if {"nat", "gp"} <= set(by):
            lines.append(
                f"- {kind}: KL rate {by['nat']['kl_plain']:+.0f}% (Nat) vs "
                f"{by['gp']['kl_plain']:+.0f}% (GP); relative form {by['nat']['kl_relative']:+.0f}%"
                f" vs {by['gp']['kl_relative']:+.0f}%; amplification "
                f"{by['nat']['amplification']:.2f} vs {by['gp']['amplification']:.2f}."
            )
    for name in ("nat", "gp"):
        spec = spectrum[spectrum["model"] == name]
        held = sum(s.get("kernel_upper_holds", 0) for s in checks[name].summary)
        total = sum(s["channels"] for s in checks[name].summary if "kernel_upper_holds" in s)
        lines.append(
            f"- S4 {name.upper()} spectrum: max |λ(Ā)| {spec['max_abs_eig'].max():.6f}, kernel "
            f"norm median {spec['kernel_norm_median'].median():.3g} (max "
            f"{spec['kernel_norm_max'].max():.3g}); Theorem 4.1.1's kernel-form bound held on "
            f"{held} of {total} channel checks."
        )
    return "\n".join(lines) + "\n"


def docs_page(text: str, frame: pd.DataFrame, verdict_md: str, spectrum: pd.DataFrame) -> str:
    """The documentation page: how the results were made, the findings and their tables."""
    accuracy = frame[[c for c in frame.columns if not c.endswith("_masking")]]
    return "\n".join(
        [
            "# CIFAR-10: published S4 checkpoints, Nat vs Jacobian-regularised",
            "",
            "Generated by `analysis/cifar10_jac.py` from the files it writes to "
            "`figures/cifar10_jac/` (do not edit by hand). The two S4 classifiers (4 layers, d = "
            "128, 180 epochs) come from the Jacobian follow-up's code, trained on CIFAR-10 inputs "
            "in [0, 1] without (Nat) and with (GP) Jacobian regularisation; `ssmprobe import` "
            "converts them. The images are the **JPEG copy** of the CIFAR-10 test set: its pixels "
            "differ slightly from the official files, so these are not CIFAR-10 test accuracies. "
            "Attacks at the paper's CIFAR-10 budget, ε = 0.031, α = 0.007; n is given per column.",
            "",
            text.split("\n", 2)[2],
            "## Accuracy",
            "",
            _markdown(accuracy),
            "",
            "## Feature discrepancy under PGD-10 (Figs. 3-4), test images",
            "",
            verdict_md,
            "",
            "## Spectrum of each SSM layer (L = 1024)",
            "",
            _markdown(spectrum),
            "",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
