"""The numbers of the README and docs/, generated from the committed results files.

Every block between `<!-- generated: NAME -->` and `<!-- /generated: NAME -->` in README.md and
docs/*.md is rewritten from the file the report (or an analysis script) wrote, never typed:

- `zoo`: the bundled checkpoints' accuracies, checkpoints/manifest.json;
- `tables-1-2`: figures/table.md (Tables 1-2 of the zoo, `ssmprobe report --zoo --out figures`);
- `findings`: the findings bullets of figures/report.md, which the report computes;
- `gap`: figures/table_gap.md, the robust generalisation gap;
- `verdicts`: figures/discrepancy/verdicts.md, Figures 3-4 in the plain and the relative form;
- `rates`: the plain rates of figures/discrepancy/discrepancy.csv, train / test;
- `linear-layer`: figures/discrepancy/linear_layer.md (`analysis/linear_layer.py`);
- `bounds-vs-L`: figures/bounds/vs_L/*.csv (`ssmprobe bounds --L 16|64|1024 --mu 0.05`);
- `mamba-bounds`: checkpoints/cache/mamba_{pgd,trades}/bounds.json.

    python analysis/findings.py           # rewrite the blocks
    python analysis/findings.py --check   # exit 1 naming every block that differs (CI, tests)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ssmprobe.models import FAMILY_TITLES
from ssmprobe.vocab import COMPONENT_KINDS, DATASET_NAMES, METHOD_NAMES, samples_text

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "figures"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(  # a block inside a list item is indented like its markers
    r"^(?P<indent>[ ]*)(?P<open><!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)"
    r"^(?P=indent)(?P<close><!-- /generated: (?P=name) -->)",
    re.S | re.M,
)


def _after_caption(path: Path) -> str:
    """A table file the report wrote, without its caption paragraph."""
    return path.read_text(encoding="utf-8").split("\n\n", 1)[1].rstrip("\n") + "\n"


def findings() -> str:
    head = (FIGURES / "report.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    return "\n".join(line for line in head.splitlines() if line.startswith("- ")) + "\n"


def _signed(value: float) -> str:
    if pd.isna(value):
        return "–"
    text = f"{value:+.0f}" if abs(value) < 1e5 else f"{value:+.1e}"
    return text.replace("-", "−")


def rates() -> str:
    """Plain rates (%) per run and component kind, train / test, mean over layers."""
    frame = pd.read_csv(FIGURES / "discrepancy" / "discrepancy.csv", keep_default_na=False)
    frame = frame[frame["norm"] == "none"]
    mean = frame.groupby(["run", "kind", "split", "metric"])["rate"].mean()
    order = frame.drop_duplicates("run")[["run", "model", "method", "ads"]]
    order = order.assign(
        _f=order["model"].map(list(FAMILY_TITLES).index),
        _m=order["method"].map(list(METHOD_NAMES).index),
        _a=order["ads"].map(lambda a: ["", "relu", "sigmoid", "tanh"].index(a)),
    ).sort_values(["_f", "_m", "_a"])
    head = "| model | method | AdS | " + " | ".join(
        f"{k if k != 'ssm' else 'SSM'} {m.upper()}" for k in COMPONENT_KINDS for m in ("mse", "kl")
    )
    lines = [head + " |", "|---|---|---|" + "---:|" * (2 * len(COMPONENT_KINDS))]
    for _, r in order.iterrows():
        cells = [FAMILY_TITLES[r["model"]], METHOD_NAMES[r["method"]], r["ads"].capitalize() or "–"]
        for kind in COMPONENT_KINDS:
            for metric in ("mse", "kl"):
                pair = [mean.get((r["run"], kind, s, metric)) for s in ("train", "test")]
                cells.append("–" if pair[0] is None else f"{_signed(pair[0])} / {_signed(pair[1])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bounds_vs_l() -> str:
    """Per model and L: medians of the exact error and the bounds, and where eq. 16 fails."""
    lines = [
        "| model | L | exact error (median) | kernel lower | kernel upper | spectral upper "
        "| eigenvalue-form upper violated | largest measured / kernel upper |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst = {"violated": (0, ""), "ratio": (0.0, "")}
    growth = {}
    for model in ("s4", "dss"):
        for length in (16, 64, 1024):
            rows = pd.read_csv(FIGURES / "bounds" / "vs_L" / f"bounds_{model}_pgd_L{length}.csv")
            rows = rows[rows["view"] == "channel"]
            where = f"{FAMILY_TITLES[model]}, L = {length}"
            violated = int((~rows["eigen_upper_holds"]).sum())
            worst["violated"] = max(worst["violated"], (violated, where))
            worst["ratio"] = max(worst["ratio"], (rows["eigen_upper_ratio"].max(), where))
            growth[model, length] = (rows["kernel_lower"].median(), rows["exact"].median())
            cells = [FAMILY_TITLES[model], str(length)]
            cells += [f"{rows[c].median():.2g}" for c in ("exact", "kernel_lower")]
            cells += [f"{rows[c].median():.3g}" for c in ("kernel_upper", "spectral_upper")]
            cells.append(f"{int((~rows['eigen_upper_holds']).sum())} of {len(rows)} channels")
            cells.append(f"{rows['kernel_upper_ratio'].max():.2g}")
            lines.append("| " + " | ".join(cells) + " |")
    (low16, exact16), (low1k, exact1k) = growth["s4", 16], growth["s4", 1024]
    lines += [
        "",
        f"The eigenvalue-form upper bound (eq. 16) fails on up to {worst['violated'][0]} of 128 "
        f"channels ({worst['violated'][1]}), with measured error up to "
        f'{worst["ratio"][0]:.3g} times the "bound" ({worst["ratio"][1]}). Between L = 16 and '
        f"1024 the median kernel lower bound of S4 goes from {low16:.2g} to {low1k:.2g}, while "
        f"the median exact error grows {exact1k / exact16:.0f}-fold.",
    ]
    return "\n".join(lines) + "\n"


def mamba_bounds() -> str:
    """How often the kernel-form upper bound on h1 fails on the bundled Mamba checkpoints, at the
    perturbation mean μ each cached check records."""
    parts = []
    for method in ("pgd", "trades"):
        cached = json.loads(
            (ROOT / "checkpoints" / "cache" / f"mamba_{method}" / "bounds.json").read_text()
        )
        summary, mu = cached["summary"], cached["meta"]["law"]["mu"]
        failed = sum(s["channels"] - s["kernel_upper_holds"] for s in summary)
        total = sum(s["channels"] for s in summary)
        spectral = sum(s["channels"] - s["spectral_upper_holds"] for s in summary)
        under = f"{METHOD_NAMES[method]} at μ = {mu:g}"
        parts.append(f"{failed} of {total} channels under {under} (spectral: {spectral})")
    return (
        "On the bundled Mamba checkpoints (360 test digits, uniform ε = 0.1) the kernel-form "
        f"upper bound on h1 fails on {parts[0]} and {parts[1]}.\n"
    )


def zoo() -> str:
    """The bundled checkpoints and their accuracies, from checkpoints/manifest.json."""
    manifest = json.loads((ROOT / "checkpoints" / "manifest.json").read_text())
    lines = [
        "| name | model | method | AdS | data | ε | n | clean | PGD-10 | AA |",
        "|---|---|---|---|---|---:|---|---:|---:|---:|",
    ]
    for file, e in manifest.items():
        acc = e["accuracy"]
        ads = (e["model"].get("ads") or "").capitalize().replace("Relu", "ReLU") or "–"
        family, method = FAMILY_TITLES[e["model"]["model"]], METHOD_NAMES[e["method"]]
        cells = [f"`{file.removesuffix('.pt')}`", family, method, ads, DATASET_NAMES[e["dataset"]]]
        cells += [f"{e['eps']:g}", samples_text(e["n_test"], e.get("n_by_attack", {}))]
        cells += [f"{100 * acc[k]:.2f}" for k in ("clean", "pgd10", "aa")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


BLOCKS: dict[str, Callable[[], str]] = {
    "zoo": zoo,
    "tables-1-2": lambda: _after_caption(FIGURES / "table.md"),
    "findings": findings,
    "gap": lambda: _after_caption(FIGURES / "table_gap.md"),
    "verdicts": lambda: (FIGURES / "discrepancy" / "verdicts.md").read_text(encoding="utf-8"),
    "rates": rates,
    "linear-layer": lambda: (FIGURES / "discrepancy" / "linear_layer.md").read_text("utf-8"),
    "bounds-vs-L": bounds_vs_l,
    "mamba-bounds": mamba_bounds,
}


def regenerate(text: str, cache: dict[str, str]) -> str:
    def body(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise KeyError(f"unknown generated block {name!r}; known: {', '.join(BLOCKS)}")
        if name not in cache:
            cache[name] = BLOCKS[name]()
        indent = match["indent"]
        body = "".join(
            indent + line if line.strip() else line for line in cache[name].splitlines(True)
        )
        return indent + match["open"] + body + indent + match["close"]

    return BLOCK.sub(body, text)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on a diff")
    args = parser.parse_args()
    cache: dict[str, str] = {}
    stale = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        new = regenerate(text, cache)
        if new != text:
            stale.append(path.relative_to(ROOT).as_posix())
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(f"out of date with the results files: {', '.join(stale)}", file=sys.stderr)
        print("run: python analysis/findings.py", file=sys.stderr)
        return 1
    print(("rewrote: " + ", ".join(stale)) if stale else "every generated block is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
