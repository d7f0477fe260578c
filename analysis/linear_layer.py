"""Why the S4/DSS block's linear layer raises the plain discrepancy on digits (§4.2, Fig. 3).

Table 3's block is SSM -> [AdS] -> GELU -> Linear -> GELU -> LayerNorm, and the probe's `linear`
component measures from the Linear's input (after the first GELU) to its output. Per bundled
S4 / DSS checkpoint and layer, from the zoo's discrepancy rows (`figures/discrepancy/
discrepancy.csv`, test split) and the checkpoint's weights:

- `gelu_mse`: the first GELU's rate, SSM (or AdS) output -> Linear input (plain MSE, %);
- `linear_mse`, `linear_rel`, `linear_amp`: the Linear's plain and relative MSE rates (%) and
  its scale-free amplification (NSR after / before);
- `gelu_linear_mse`, `gelu_linear_amp`: the first GELU and the Linear together;
- `block_mse`, `block_amp`: the whole block, SSM input -> LayerNorm output;
- `w_spectral`, `w_rms`: the Linear's largest singular value and its RMS gain ||W||_F / sqrt(d),
  and `diff_gain`, `signal_gain`: what it did to the difference (sqrt of MSE after / before)
  and to the clean signal (diff_gain / amplification).

Writes figures/discrepancy/linear_layer.csv (every layer) and linear_layer.md (mean over layers).

    python analysis/linear_layer.py [--rows figures/discrepancy/discrepancy.csv]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
import torch

from ssmprobe.io import write_text
from ssmprobe.loading import load_model
from ssmprobe.models import FAMILY_TITLES
from ssmprobe.vocab import ADS_NAMES, METHOD_NAMES

COLUMNS = {
    "gelu_mse": "GELU MSE %",
    "linear_mse": "linear MSE %",
    "linear_rel": "linear MSE/‖f‖ %",
    "linear_amp": "linear amplification",
    "gelu_linear_mse": "GELU+linear MSE %",
    "gelu_linear_amp": "GELU+linear amplification",
    "block_mse": "block MSE %",
    "block_amp": "block amplification",
    "w_spectral": "‖W‖₂",
    "w_rms": "‖W‖_F/√d",
    "diff_gain": "gain on Δ",
    "signal_gain": "gain on f",
}


def _value(rows: pd.DataFrame, part: str, side: str, metric: str, norm: str = "none") -> float:
    sel = rows[(rows["part"] == part) & (rows["metric"] == metric) & (rows["norm"] == norm)]
    return float(sel[side].iloc[0])


def layer_row(rows: pd.DataFrame, weight: torch.Tensor) -> dict[str, float]:
    """The columns of one layer's test rows (`discrepancy.csv`) and its Linear weight."""
    source = "ads" if (rows["part"] == "ads").any() else "ssm"
    mse = {
        "in": _value(rows, "ssm", "before", "mse"),
        "pre_gelu": _value(rows, source, "after", "mse"),
        "lin_in": _value(rows, "linear", "before", "mse"),
        "lin_out": _value(rows, "linear", "after", "mse"),
        "out": _value(rows, "norm", "after", "mse"),
    }
    nsr = {
        "in": _value(rows, "ssm", "before", "nsr"),
        "pre_gelu": _value(rows, source, "after", "nsr"),
        "lin_in": _value(rows, "linear", "before", "nsr"),
        "lin_out": _value(rows, "linear", "after", "nsr"),
        "out": _value(rows, "norm", "after", "nsr"),
    }
    rel = {s: _value(rows, "linear", s, "mse", "relative") for s in ("before", "after")}
    diff_gain = math.sqrt(mse["lin_out"] / mse["lin_in"])
    amp = nsr["lin_out"] / nsr["lin_in"]
    w = weight.detach().double()
    return {
        "gelu_mse": 100 * (mse["lin_in"] / mse["pre_gelu"] - 1),
        "linear_mse": 100 * (mse["lin_out"] / mse["lin_in"] - 1),
        "linear_rel": 100 * (rel["after"] / rel["before"] - 1),
        "linear_amp": amp,
        "gelu_linear_mse": 100 * (mse["lin_out"] / mse["pre_gelu"] - 1),
        "gelu_linear_amp": nsr["lin_out"] / nsr["pre_gelu"],
        "block_mse": 100 * (mse["out"] / mse["in"] - 1),
        "block_amp": nsr["out"] / nsr["in"],
        "w_spectral": float(torch.linalg.matrix_norm(w, ord=2)),
        "w_rms": float(torch.linalg.matrix_norm(w) / math.sqrt(w.shape[1])),
        "diff_gain": diff_gain,
        "signal_gain": diff_gain / amp,
    }


def linear_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (S4/DSS run, layer) of the combined discrepancy rows, test split."""
    out = []
    test = frame[(frame["split"] == "test") & frame["model"].isin(["s4", "dss"])]
    for run, rows in test.groupby("run", sort=False):
        model = load_model(f"{run}.pt")
        first = rows.iloc[0]
        for layer, part in rows.groupby("layer"):
            weight = model.layers[int(layer)].linear.weight
            label = {k: first[k] for k in ("model", "method")}
            ads = first["ads"] if isinstance(first["ads"], str) and first["ads"] else "none"
            out.append({"run": run, **label, "ads": ads, "layer": int(layer)})
            out[-1] |= layer_row(part, weight)
    return pd.DataFrame(out)


def to_markdown(table: pd.DataFrame) -> str:
    """The mean over layers per run, one Markdown row each."""
    mean = table.groupby(["run", "model", "method", "ads"], sort=False)[list(COLUMNS)].mean()
    head = ["model", "method", "AdS", *COLUMNS.values()]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * len(COLUMNS)]
    for (_, model, method, ads), row in mean.iterrows():
        cells = [FAMILY_TITLES[model], METHOD_NAMES[method], ADS_NAMES[ads]]
        for column in COLUMNS:
            value = row[column]
            cells.append(f"{value:+.0f}" if column.endswith("mse") or column == "linear_rel"
                         else f"{value:.2f}")  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="figures/discrepancy/discrepancy.csv")
    parser.add_argument("--out", default="figures/discrepancy")
    args = parser.parse_args()
    table = linear_table(pd.read_csv(args.rows, keep_default_na=False))
    out = Path(args.out)
    write_text(out / "linear_layer.csv", table.to_csv(index=False, float_format="%.6g"))
    write_text(out / "linear_layer.md", to_markdown(table))
    print(to_markdown(table))


if __name__ == "__main__":
    main()
