"""Feature discrepancy of every component between clean and adversarial inputs (§4.2, Figs. 3-4).

For a checkpoint, per split (train, test): the first N samples, their adversarial examples
(PGD-10 at the checkpoint's own training ε and α unless told otherwise, one seeded generator per
split, so every run sees the same samples and the same attack), and for every component
(`model.components()`) the mean over samples of MSE and KL (`metrics`), plain and relative to
||f||, and of the scale-free noise-to-signal ratio ||f' - f|| / ||f||, before (its input pair)
and after (its output pair), and the per-position squared error before and after. Float64
running sums are kept, and each sample's value of each measure (8 bytes per sample, component,
side and measure) for the spread of the rates (`probe.spread`).

    result = discrepancy("s4_pgd.pt", splits=("test",), n=200)
    result.rows        # one dict per (layer, component, kind, split, metric, norm)
    summarise(result.rows)   # per component kind, averaged over layers
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ssmprobe.attacks import AttackConfig, attack_config
from ssmprobe.attacks.run import Estimate
from ssmprobe.data import DATASETS, SPLITS, load_dataset, make_loader
from ssmprobe.inputs import as_names
from ssmprobe.interop.reference import Reference
from ssmprobe.interop.userdata import UserData, model_meta, user_batches
from ssmprobe.io import atomic_file, write_json
from ssmprobe.loading import load_model
from ssmprobe.probe.metrics import METRICS, per_step_sq_error, rate, relative
from ssmprobe.probe.recorder import Features, adversarial_features
from ssmprobe.probe.spread import bootstrap, kind_rates, layer_signs, resolved

NORMS = ("none", "relative")
SIDES = ("before", "after")


def measures() -> list[tuple[str, str]]:
    """Every (metric, norm) measured: a scaled metric (MSE, KL) plain and relative to ||f||,
    a scale-free one (NSR) once; every registered metric (`metrics.register_metric`)."""
    return [(m, n) for m, kind in METRICS.items() for n in (NORMS if kind.scaled else NORMS[:1])]


@dataclass
class DiscrepancyStats:
    """Float64 sums over samples for every (component, side, metric, norm), and the per-sample
    values themselves (n floats each: what the spread's bootstrap resamples)."""

    count: int = 0
    sums: dict[tuple[str, str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    steps: dict[tuple[str, str], Tensor] = field(default_factory=dict)
    values: dict[tuple[str, str, str, str], list[Tensor]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add(self, clean: Mapping[str, Features], adv: Mapping[str, Features]) -> None:
        """Adds one batch: the recorder's features of the clean and the adversarial forward.

        Per-sample values are computed in the features' precision (float32: KL to about 1e-4
        relative) and summed in float64; a pair two sites share (one module's output is the
        next one's input) is measured once.
        """
        measured: dict[tuple[int, int], tuple[dict[tuple[str, str], Tensor], Tensor]] = {}
        for name, f in clean.items():
            pairs = {"before": (f.entry, adv[name].entry), "after": (f.exit, adv[name].exit)}
            for side, (a, b) in pairs.items():
                key = (id(a), id(b))
                if key not in measured:
                    steps = per_step_sq_error(a, b)
                    values = {name: metric.fn(a, b) for name, metric in METRICS.items()}
                    per_sample = {
                        (metric, norm): (
                            relative(values[metric], a) if norm == "relative" else values[metric]
                        )
                        .detach()
                        .double()
                        .cpu()
                        for metric, norm in measures()
                    }
                    measured[key] = (per_sample, steps.double().sum(dim=0).cpu())
                per_sample, steps = measured[key]
                for (metric, norm), v in per_sample.items():
                    self.sums[name, side, metric, norm] += v.sum().item()
                    self.values[name, side, metric, norm].append(v)
                self.steps[name, side] = self.steps.get((name, side), 0) + steps
        self.count += next(iter(clean.values())).entry.shape[0]

    def mean(self, name: str, side: str, metric: str, norm: str) -> float:
        return self.sums[name, side, metric, norm] / self.count

    def mean_steps(self, name: str, side: str) -> list[float]:
        return (self.steps[name, side] / self.count).tolist()

    def samples(self) -> dict[tuple[str, str, str, str], Tensor]:
        """(component, side, metric, norm) -> the per-sample values (n,), in sample order."""
        return {key: torch.cat(parts) for key, parts in self.values.items()}


@dataclass
class DiscrepancyResult:
    """What `discrepancy` measured on one checkpoint.

    `meta`: checkpoint, model, method, ads, dataset, eps, attack, n per split (and a note when
    N was capped). `rows`: one per (layer, component, kind, split, metric, norm) with before,
    after, change and rate (%). `steps`: per (split, component) the mean per-position squared
    error before and after, lists of length L. `spread`: per (kind, split, metric, norm) the
    kind's rate, its bootstrap interval over samples, its rates under the other attack seeds,
    whether a direction can be read, and the layers' rates where they disagree in sign
    (`probe.spread`).
    """

    meta: dict[str, Any]
    rows: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    spread: list[dict[str, Any]] = field(default_factory=list)


def collect(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    attack: AttackConfig,
    seed: int = 0,
    progress: bool = True,
    total: int | None = None,
) -> DiscrepancyStats:
    """Streams `adversarial_features` of `batches` into the running sums."""
    stats = DiscrepancyStats()
    bar = tqdm(
        total=total,
        desc=f"discrepancy ({attack.label})",
        unit="sample",
        disable=not progress,
        leave=False,
    )
    with bar:
        for clean, adv, size in adversarial_features(model, batches, attack, seed=seed):
            stats.add(clean, adv)
            bar.update(size)
    if stats.count == 0:
        raise ValueError("no samples to probe")
    return stats


def component_rows(model: nn.Module, stats: DiscrepancyStats, split: str) -> list[dict[str, Any]]:
    """One row per (component, metric, norm) of a split's stats."""
    rows = []
    for component in model.components():
        for metric, norm in measures():
            before, after = (stats.mean(component.name, s, metric, norm) for s in SIDES)
            rows.append(
                {
                    "layer": component.layer,
                    "component": component.name,
                    "part": component.part or component.name,
                    "kind": component.kind,
                    "split": split,
                    "metric": metric,
                    "norm": norm,
                    "before": before,
                    "after": after,
                    "change": after - before,
                    "rate": rate(before, after),
                }
            )
    return rows


def discrepancy(
    ckpt: str | Path | nn.Module,
    splits: Sequence[str] = SPLITS,
    n: int = 1000,
    batch_size: int = 100,
    attack: str = "pgd10",
    eps: float | None = None,
    data_dir: str | Path | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = True,
    reference: Reference | None = None,
    data: UserData | Mapping[str, UserData] | None = None,
    spread_seeds: Sequence[int] = (),
) -> DiscrepancyResult:
    """Per-component feature discrepancy of a checkpoint (a path or a bundled name) on the
    first `n` samples of each split, adversarial inputs from `attack` (`parse_attack` specs).
    With `reference`, `ckpt` is a state dict of the paper's reference code (`Reference`).

    `ckpt` may also be a model (`ssmprobe.wrap`'s, or any module with `components()`): then
    `data` gives its samples, one source (the split "test") or a mapping split -> source, each
    (x, y) tensors, a Dataset, a DataLoader or a .pt/.npz file, and `eps` (or the wrap's) the
    budget. Each kind's rate gets its spread (`DiscrepancyResult.spread`): a bootstrap
    interval over the samples, and the rates under the attack seeds `spread_seeds` too (the
    same samples attacked again with other random starts; each seed costs one more probe)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    splits = as_names(splits, "splits", "['train', 'test']")
    if isinstance(ckpt, nn.Module):
        model, meta, sources = _model_sources(ckpt, data, device)
        splits = tuple(sources)
    else:
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise ValueError(f"unknown split {', '.join(unknown)}; choose from {SPLITS}")
        model = load_model(ckpt, device, reference)
        meta = model.meta
        sources = {}
    config = attack_config(attack, meta, eps)
    if config.eps <= 0:
        raise ValueError(f"the attack's eps must be in (0, 1], got {config.eps}")
    config_meta = meta.get("config", {})
    info: dict[str, Any] = {
        "checkpoint": str(ckpt) if not isinstance(ckpt, nn.Module) else meta["model"],
        "file": meta.get("file"),
        "model": config_meta.get("model", meta.get("model")),
        "method": meta.get("method"),
        "ads": config_meta.get("ads"),
        "dataset": meta["dataset"],
        "eps": config.eps,
        "attack": config.label,
        "n": {},
        "notes": [f"input: {meta['input']}"] if "input" in meta else [],
    }
    if seed in spread_seeds or len(set(spread_seeds)) < len(spread_seeds):
        raise ValueError(f"spread_seeds must be distinct and other than seed {seed}")
    sizes = {} if sources else {s: min(n, DATASETS[meta["dataset"]].sizes[s]) for s in splits}
    probes = f", {1 + len(spread_seeds)} probes each" if spread_seeds else ""
    estimate = Estimate(  # after the first batch of long work: its size and the time left
        f"discrepancy of {info['checkpoint']} ({config.label})",
        sum(sizes.values()) * (1 + len(spread_seeds)),
        " + ".join(f"{k} {s}" for s, k in sizes.items()) + f" samples{probes}",
        enabled=progress,
    )
    rows, steps, spread = [], [], []
    for split in splits:
        if sources:
            source = sources[split]
            batches = partial(user_batches, model, source, batch_size, n)  # one pass each
            total = None
        else:
            dataset = load_dataset(meta["dataset"], split, data_dir).head(n)
            if dataset.source != "official":
                info["notes"].append(f"{split}: {dataset.source}")
            if len(dataset) < n:
                info["notes"].append(f"{split}: n capped at the split's {len(dataset)} samples")
            batches, total = partial(make_loader, dataset, batch_size), len(dataset)
        stats = collect(
            model, estimate.track(batches()), config, seed=seed, progress=progress, total=total
        )
        info["n"][split] = stats.count
        split_rows = component_rows(model, stats, split)
        rows += split_rows
        others = {  # the same samples, attacked from other random starts
            other: collect(
                model, estimate.track(batches()), config, seed=other, progress=progress, total=total
            )
            for other in spread_seeds
        }
        spread += spread_rows(model, stats, others, split_rows, split)
        steps += [
            {
                "split": split,
                "component": c.name,
                "kind": c.kind,
                "layer": c.layer,
                "part": c.part or c.name,
                **{side: stats.mean_steps(c.name, side) for side in SIDES},
            }
            for c in model.components()
        ]
    labels = {k: info[k] for k in ("model", "method", "ads", "dataset", "eps", "attack")}
    rows = [{"checkpoint": info["checkpoint"], **labels, **row} for row in rows]
    spread = [{"checkpoint": info["checkpoint"], **labels, **row} for row in spread]
    return DiscrepancyResult(info, rows, steps, spread)


def spread_rows(
    model: nn.Module,
    stats: DiscrepancyStats,
    others: Mapping[int, DiscrepancyStats],
    rows: Sequence[Mapping[str, Any]],
    split: str,
) -> list[dict[str, Any]]:
    """One row per (kind, metric, norm) of a split: the kind's rate, its bootstrap interval,
    its rate under each other seed, whether it is resolved, the layers where they disagree."""
    kinds = {c.name: c.kind for c in model.components()}
    samples = stats.samples()  # concatenated once, for the rates and the resamples
    rates = kind_rates(samples, kinds)
    intervals = bootstrap(samples, kinds)
    seed_rates = {s: kind_rates(other.samples(), kinds) for s, other in others.items()}
    disagree = layer_signs(rows)
    out = []
    for (kind, metric, norm), rate_ in rates.items():
        low, high = intervals[kind, metric, norm]
        by_seed = {s: r[kind, metric, norm] for s, r in seed_rates.items()}
        out.append(
            {
                "kind": kind,
                "split": split,
                "metric": metric,
                "norm": norm,
                "rate": rate_,
                "low": low,
                "high": high,
                "seed_rates": by_seed,
                "resolved": resolved(low, high, list(by_seed.values())),
                "layers": disagree.get((kind, split, metric, norm), []),
            }
        )
    return out


def _model_sources(
    model: nn.Module,
    data: UserData | Mapping[str, UserData] | None,
    device: torch.device | str | None,
) -> tuple[nn.Module, dict[str, Any], dict[str, UserData]]:
    """A given model, its meta and its data by split (one source: the split "test")."""
    if data is None:
        raise ValueError("a model needs data=: (x, y) tensors, a Dataset, a DataLoader or a file")
    sources = dict(data) if isinstance(data, Mapping) else {"test": data}
    if not sources:
        raise ValueError("data= names no split")
    return (*model_meta(model, device), sources)


def summarise(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (checkpoint, kind, split, metric, norm): before, after and rate averaged over the
    layers (the paper's per-component bars: the mean of the layers' rates)."""
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        key = (row["checkpoint"], row["kind"], row["split"], row["metric"], row["norm"])
        groups[key].append(row)
    out = []
    for (checkpoint, kind, split, metric, norm), members in groups.items():
        mean = {k: sum(r[k] for r in members) / len(members) for k in ("before", "after", "rate")}
        out.append(
            {
                **{k: members[0][k] for k in ("model", "method", "ads", "dataset")},
                "checkpoint": checkpoint,
                "kind": kind,
                "split": split,
                "metric": metric,
                "norm": norm,
                "layers": len(members),
                **mean,
            }
        )
    return out


ROW_FIELDS = (
    *("checkpoint", "model", "method", "ads", "dataset", "eps", "attack"),
    *("layer", "component", "part", "kind", "split", "metric", "norm"),
    *("before", "after", "change", "rate"),
)


def save(results: Sequence[DiscrepancyResult], csv_path: str | Path) -> tuple[Path, Path]:
    """Writes the tidy rows of every result to `csv_path` and everything (meta, rows, per-step
    curves) to the JSON beside it (same stem); both atomically. Returns both paths."""
    csv_path = Path(csv_path)
    json_path = csv_path.with_suffix(".json")
    frame = pd.DataFrame([row for r in results for row in r.rows], columns=list(ROW_FIELDS))
    with atomic_file(csv_path) as f:
        frame.to_csv(f, index=False)
    write_json(
        json_path,
        {
            "results": [
                {"meta": r.meta, "rows": r.rows, "steps": r.steps, "spread": r.spread}
                for r in results
            ]
        },
    )
    return csv_path, json_path


def load_rows(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The rows of one or more CSV files written by `save`."""
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such results file: {path}")
        try:
            frame = pd.read_csv(path, keep_default_na=False, na_values={"rate": ["nan", "NaN"]})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a discrepancy CSV ({err})") from None
        missing = [c for c in ROW_FIELDS if c not in frame.columns]
        if missing:
            raise ValueError(f"{path} is not a discrepancy CSV (lacks {', '.join(missing)})")
        frame["ads"] = frame["ads"].astype(object).where(frame["ads"] != "", None)
        frames.append(frame)
    if not frames:
        raise ValueError("no results files given")
    return pd.concat(frames, ignore_index=True)


_FORMS = {"none": "plain", "relative": "relative"}


def format_summary(result: DiscrepancyResult, norm: str = "none") -> str:
    """A readable block for one checkpoint: kind x split x metric with before, after, rate %."""
    meta = result.meta
    ns = ", ".join(f"{s} {n}" for s, n in meta["n"].items())
    head = (
        f"{meta['checkpoint']}: {meta['model']}"
        f"{' ' + meta['method'] if meta['method'] else ''}"
        f"{' AdS-' + meta['ads'] if meta['ads'] else ''} on {meta['dataset']}, "
        f"{meta['attack']} at eps {meta['eps']:g} ({ns}; {_FORMS[norm]} form)"
    )
    lines = [
        head,
        f"  {'kind':<10}{'split':<7}{'metric':<7}{'before':>12}{'after':>12}{'rate %':>13}"
        + ("  95% interval" if result.spread else "")
        + (" " * 8 + "seeds" if any(r["seed_rates"] for r in result.spread) else ""),
    ]
    shown = (r for r in result.rows if r["norm"] == norm or not METRICS[r["metric"]].scaled)
    spread = {(s["kind"], s["split"], s["metric"], s["norm"]): s for s in result.spread}
    for row in summarise(shown):
        s = spread.get((row["kind"], row["split"], row["metric"], row["norm"]))
        where = "" if s is None else (
            f"  [{s['low']:+.1f}, {s['high']:+.1f}]".ljust(22)
            + " ".join(f"{v:+.1f}" for v in s["seed_rates"].values())
            + ("" if s["resolved"] else "  not resolved")
        )  # fmt: skip
        lines.append(
            f"  {row['kind']:<10}{row['split']:<7}{row['metric']:<7}"
            f"{row['before']:>12.4g}{row['after']:>12.4g}{row['rate']:>13.1f}{where}".rstrip()
        )
    lines += [f"  note: {note}" for note in meta["notes"]]
    return "\n".join(lines)
