"""The measured sweep the `digits` training preset was chosen from.

Trains every (model, method, setting) on digits and tabulates the last epoch's test clean and
PGD-10 accuracy, the best epoch's (by `training.selection.best_epoch`), the epoch at which
test clean accuracy first reached 3x chance, and the seconds of training. Settings vary epochs,
batch size, learning rate and the ε warm-up; `preset` is the one `ssmprobe train` uses by default.
Finished runs are skipped, killed ones resume, and the table is rewritten after every run, so
the sweep can be stopped and started again and shows what has been measured so far.

    python analysis/calibrate_digits.py [--runs runs/calibrate] [--out figures]
        [--models s4,dss,s5,mega,mamba] [--methods st,pgd,trades] [--settings preset,old,...]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ssmprobe.cli import main as ssmprobe
from ssmprobe.io import write_text
from ssmprobe.report.runs import METRICS_FILE, read_metrics
from ssmprobe.training.selection import best_epoch, learned


@dataclass(frozen=True)
class Setting:
    epochs: int
    batch_size: int
    lr: float
    eps_warmup: int
    note: str


SETTINGS = {
    "preset": Setting(30, 32, 1e-2, 10, "the chosen preset"),
    "nowarmup": Setting(30, 32, 1e-2, 0, "preset without the ε warm-up"),
    "warmup5": Setting(30, 32, 1e-2, 5, "shorter ε warm-up"),
    "lr3e-3": Setting(30, 32, 3e-3, 10, "smaller learning rate"),
    "old": Setting(15, 64, 3e-3, 0, "the previous preset (345 steps)"),
    "lr3e-3_e60": Setting(60, 32, 3e-3, 20, "smaller learning rate, twice the epochs (Mega)"),
}


def run_name(model: str, method: str, setting: str) -> str:
    return f"{model}_{method}_{setting}"


def st_twin(setting: str, settings: list[str]) -> str | None:
    """An earlier setting that differs only in its ε warm-up, which standard training ignores:
    its ST run stands for this one's."""
    s = SETTINGS[setting]
    for other in settings[: settings.index(setting)]:
        o = SETTINGS[other]
        if (o.epochs, o.batch_size, o.lr) == (s.epochs, s.batch_size, s.lr):
            return other
    return None


def train(runs: Path, model: str, method: str, setting: str) -> None:
    """Trains one run unless finished; resumes a killed one."""
    s = SETTINGS[setting]
    run_dir = runs / run_name(model, method, setting)
    if len(metrics(run_dir)) >= s.epochs:
        return
    args = [
        "train",
        *("--model", model, "--method", method, "--out", str(runs)),
        *("--name", run_dir.name, "--epochs", str(s.epochs)),
        *("--batch-size", str(s.batch_size), "--lr", str(s.lr)),
        *("--eps-warmup", str(s.eps_warmup), "--quiet"),
        *(["--resume"] if (run_dir / "last.pt").exists() else []),
    ]
    if code := ssmprobe(args):
        raise SystemExit(f"ssmprobe {' '.join(args)} failed with {code}")


def metrics(run_dir: Path) -> list[dict]:
    """The run's per-epoch rows (`report.runs.read_metrics`); [] before its first epoch."""
    if not (run_dir / METRICS_FILE).is_file():
        return []
    return read_metrics(run_dir).to_dict("records")


def measured_rows(path: Path) -> dict[tuple[str, str, str], str]:
    """The measured rows of a table this script wrote, by (model, method, setting)."""
    if not path.is_file():
        return {}
    rows = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 15 and "not run" not in cells:
            rows[tuple(cells[:3])] = line
    return rows


def table(
    runs: Path,
    models: list[str],
    methods: list[str],
    settings: list[str],
    previous: dict[tuple[str, str, str], str],
) -> str:
    """The sweep as Markdown: one row per (model, method, setting), measured (now, or in the
    `previous` table when the run's folder is gone) or not yet."""
    head = (
        "| model | method | setting | epochs | batch | lr | ε warm-up | learned at epoch | "
        "last clean | last PGD-10 | best epoch | best clean | best PGD-10 | train s | s/epoch |"
    )
    lines = [
        "Digits test set (360), PGD-10 at ε = 0.1; `learned at` = first epoch with test clean "
        ">= 3x chance; best = `training.selection.best_epoch`; seconds are training only, one "
        "thread on a "
        "2-core CPU that may have been shared. Written by analysis/calibrate_digits.py.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for model in models:
        for method in methods:
            for setting in settings:
                s = SETTINGS[setting]
                twin = st_twin(setting, settings) if method == "st" else None
                rows = metrics(runs / run_name(model, method, twin or setting))
                cells = [model, method, setting, s.epochs, s.batch_size, s.lr, s.eps_warmup]
                if twin:
                    cells[-1] = f"(ST: same run as {twin})"
                if not rows and (model, method, setting) in previous:
                    lines.append(previous[model, method, setting])
                    continue
                if not rows:
                    lines.append("| " + " | ".join(map(str, cells)) + " |" + " not run |" * 8)
                    continue
                first = next((r["epoch"] for r in rows if learned(r["test_clean_acc"], 10)), "–")
                last = rows[-1]
                best = best_epoch(rows, 10)
                top = rows[best.epoch - 1]
                seconds = sum(r["seconds"] for r in rows)
                done = "" if len(rows) >= s.epochs else f" ({len(rows)} done)"
                cells += [
                    first,
                    f"{100 * last['test_clean_acc']:.1f}{done}",
                    f"{100 * last['test_pgd_acc']:.1f}",
                    f"{best.epoch}{'' if best.rule == 'learned' else ' †'}",
                    f"{100 * top['test_clean_acc']:.1f}",
                    f"{100 * top['test_pgd_acc']:.1f}",
                    f"{seconds:.0f}",
                    f"{seconds / len(rows):.1f}",
                ]
                lines.append("| " + " | ".join(map(str, cells)) + " |")
    notes = [f"- `{k}`: {v.note}" for k, v in SETTINGS.items() if k in settings]
    return "\n".join([*lines, "", *notes, "- †: no epoch learned; best over all epochs", ""])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="runs/calibrate", help="where the runs go")
    parser.add_argument("--out", default="figures", help="where calibration_digits.md goes")
    parser.add_argument("--models", default="s4,dss,s5,mega,mamba")
    parser.add_argument("--methods", default="st,pgd,trades")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=", ".join(SETTINGS))
    parser.add_argument("--table-only", action="store_true", help="tabulate, train nothing")
    args = parser.parse_args()
    runs, out = Path(args.runs), Path(args.out) / "calibration_digits.md"
    models, methods = args.models.split(","), args.methods.split(",")
    settings = args.settings.split(",")
    previous = measured_rows(out)
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown settings {sorted(unknown)}; known: {', '.join(SETTINGS)}")
    for setting in [] if args.table_only else settings:
        for model in models:
            for method in methods:
                if method == "st" and st_twin(setting, settings):
                    continue
                train(runs, model, method, setting)
                write_text(out, table(runs, models, methods, settings, previous))
    write_text(out, table(runs, models, methods, settings, previous))
    print(out.read_text())


if __name__ == "__main__":
    main()
