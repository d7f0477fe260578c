"""Reading run directories: what each run is (config.json), its evaluations (eval_*.json)
and its per-epoch metrics (metrics.jsonl), gathered into one row per run.

A run directory is a folder holding `config.json` (see the run-directory contract: the trainer
writes `config.json` and `metrics.jsonl`, `ssmprobe eval` writes `eval_best.json` and
`eval_last.json`). `collect_runs` finds every run under a folder, at any depth, and gives one
row per run:

- `dataset`, `model`, `method`, `ads` ("none" without AdS), `seed`: from `config.json`;
- `clean_best`, `clean_last`, `clean_diff`, and the same for `pgd10` and `aa`: test accuracy in
  % rounded to 2 decimals, as in the paper; `diff = best - last` of the rounded values, so a
  printed row always adds up. An eval file or an attack that is absent gives NaN (printed "–");
- `epochs` (finished epochs), `best_epoch` and `best_rule` from `metrics.jsonl` by
  `training.selection.best_epoch`, the trainer's rule for best.pt (highest test PGD-10 accuracy
  among epochs that have learned, the earliest on a tie; `best_rule` says whether that pool or, when
  no epoch learned, all epochs were searched), NA without it; `run`: the run's path relative
  to the runs folder;
- `zoo`: whether the run is a bundled checkpoint (`ssmprobe report --zoo`: its config.json's
  `source` says "bundled"); `recipe`: what the run was trained and evaluated with, its epochs,
  train-eval size and test samples `n` ("30 epochs · train-eval 360 · n 360"). Seeds are only
  runs of one setting, one recipe and one origin (`RECIPE_COLUMNS`): a 15-epoch run of yours
  evaluated on 100 digits is not a second seed of the zoo's 30-epoch run on 360;
- `train_pgd_best`, `test_pgd_best`, `gap_best` and the same for `last`: PGD-10 accuracy (%) on
  the trainer's fixed train subset and on the test set at the best and the last epoch
  (`metrics.jsonl`), and their difference, the robust generalisation gap (train - test, in
  points; the paper's second sign of robust overfitting, beside Best - Last), NaN without it;
- `masking`: the reasons to suspect gradient masking (`evaluation.sanity.masking_flags`), and
  `aa_checks`: the warnings of AutoAttack's own checks kept in the eval files (say, Square
  still lowering accuracy after the gradient attacks), each prefixed by its checkpoint; NA
  when AutoAttack ran before eval files kept them and nothing else says it warned;
  `collapse`: the checkpoints that predict one class for (almost) every clean test sample
  (`evaluation.sanity.collapse_flag`), whose accuracies measure no robustness.

Rows are sorted by dataset (digits, mnist, cifar10), model (S4, DSS, S5, Mega, Mamba), method
(ST, PGD-AT, TRADES), AdS (none, ReLU, Tanh, Sigmoid), seed; names outside these lists follow
the known ones alphabetically. `report.tables` renders the frame as Tables 1-2.

A run folder that holds nothing yet but its config.json (no finished epoch, no checkpoint, no
eval file: an interrupted or running train) is no row: `find_runs` leaves it out and
`skipped_runs` lists it with the reason.

A file that is there but unreadable (invalid JSON, wrong fields, an accuracy outside [0, 1])
raises `RunDirError` naming it: silently dropping a run would make a table look complete when
it is not.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ssmprobe.attacks import attack_title
from ssmprobe.evaluation.sanity import collapse_flag, grouped_masking_flags
from ssmprobe.io import LOCK, lock_holder, sha256_file
from ssmprobe.models import FAMILY_TITLES
from ssmprobe.training.selection import BestChoice, best_epoch
from ssmprobe.vocab import ADS_NAMES, DATASET_NAMES, METHOD_NAMES, samples_text

TABLE_ATTACKS = {a: attack_title(a) for a in ("clean", "pgd10", "aa")}  # the paper's columns
STATS = ("best", "last", "diff")

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILES = {"best": "eval_best.json", "last": "eval_last.json"}

ACCURACY_COLUMNS = [f"{attack}_{stat}" for attack in TABLE_ATTACKS for stat in STATS]
GAP_COLUMNS = [f"{c}_{at}" for at in ("best", "last") for c in ("train_pgd", "test_pgd", "gap")]
KEY_COLUMNS = ["dataset", "model", "method", "ads"]
# A setting's runs that may be averaged as seeds: the same recipe, and all yours or all the zoo's.
RECIPE_COLUMNS = [*KEY_COLUMNS, "zoo", "recipe"]
COLUMNS = [
    *KEY_COLUMNS,
    "seed",
    *ACCURACY_COLUMNS,
    *GAP_COLUMNS,
    "epochs",
    "best_epoch",
    "best_rule",
    "masking",
    "aa_checks",
    "collapse",
    "zoo",
    "recipe",
    "run",
]
_DISPLAY = {
    "dataset": DATASET_NAMES,
    "model": FAMILY_TITLES,
    "method": METHOD_NAMES,
    "ads": ADS_NAMES,
}


class RunDirError(ValueError):
    """A file of a run directory is present but unusable (corrupt JSON, wrong fields)."""


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run, read from its `config.json`."""

    path: Path
    dataset: str
    model: str
    method: str
    ads: str
    seed: int | None
    pgd_steps: int = 10  # steps of the PGD run after every epoch (train.steps; 10 in the paper)
    n_classes: int = 10  # chance level for the best-epoch rule (model.n_classes)
    zoo: bool = False  # a bundled checkpoint written as a run folder (`report.zoo_runs`)
    train_epochs: int | None = None  # train.epochs of config.json: the epochs asked for
    train_eval_size: int | None = None  # train.train_eval_size: the trainer's train subset

    @property
    def name(self) -> str:
        """The run folder's name (the zoo's entry name for a bundled checkpoint)."""
        return self.path.name

    @property
    def title(self) -> str:
        """E.g. "S4 · PGD-AT · MNIST", or "DSS + ReLU AdS · TRADES · Digits"."""
        return setting_title(self.dataset, self.model, self.method, self.ads)


def setting_title(dataset: str, model: str, method: str, ads: str) -> str:
    """A setting in the paper's names: "DSS + ReLU AdS · TRADES · Digits" ("none": no AdS)."""
    name = display("model", model) + ("" if ads == "none" else f" + {display('ads', ads)} AdS")
    return f"{name} · {display('method', method)} · {display('dataset', dataset)}"


def display(column: str, key: str) -> str:
    """The paper's name for a dataset / model / method / AdS key; unknown keys as they are."""
    return _DISPLAY[column].get(key, key)


def sort_key(run: RunInfo) -> tuple:
    """Table order: the paper's order of datasets, models, methods and AdS, then the seed."""
    return (
        *(rank(column, getattr(run, column)) for column in KEY_COLUMNS),
        -1 if run.seed is None else run.seed,
        str(run.path),
    )


def find_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Every run directory under `runs_dir` (itself included), in table order, but those with
    nothing to report yet (`skipped_runs`).

    Folders whose name starts with a dot (editor and notebook caches) are not searched.
    """
    runs = [run for run in _all_runs(runs_dir) if incomplete(run.path) is None]
    if not runs:
        skipped = "; ".join(f"{p}: {why}" for p, why in skipped_runs(runs_dir))
        raise ValueError(f"no finished runs under {runs_dir}, only run folders skipped: {skipped}")
    return runs


def skipped_runs(runs_dir: str | Path) -> list[tuple[str, str]]:
    """(run path relative to `runs_dir`, reason) of each run folder left out of the report
    because it holds nothing to report yet (`incomplete`)."""
    runs_dir = Path(runs_dir)
    return [
        (run.path.relative_to(runs_dir).as_posix() or ".", why)
        for run in _all_runs(runs_dir)
        if (why := incomplete(run.path)) is not None
    ]


def incomplete(run_dir: Path) -> str | None:
    """Why the run folder has nothing to report yet (only config.json: no finished epoch in
    metrics.jsonl, no checkpoint, no eval file; a live process writing it, whose checkpoints
    change under the report; or a train killed before its last epoch and never evaluated, whose
    checkpoints the report would otherwise evaluate as if finished), or None when it has
    something. An eval file is the user's word that the checkpoints are the run's."""
    holder = lock_holder(run_dir / LOCK)
    if holder is not None:
        return f"being written by {holder} (a running train): reported once it ends"
    if any((run_dir / name).is_file() for name in EVAL_FILES.values()):
        return None
    if (short := _epochs_short(run_dir)) is not None:
        done, planned = short
        return (
            f"interrupted after {done} of {planned} epochs, never evaluated: resume it "
            "(`ssmprobe train ... --resume`, or the grid's command again) and it is reported "
            "once it finishes"
        )
    if any(run_dir.glob("*.pt")):
        return None
    metrics = run_dir / METRICS_FILE
    if metrics.is_file() and metrics.read_text(encoding="utf-8").strip():
        return None
    return "no finished epoch, checkpoint or eval file (an interrupted or running train)"


def _epochs_short(run_dir: Path) -> tuple[int, int] | None:
    """(epochs finished, epochs planned) of a run whose metrics.jsonl stops before the epochs
    of its config.json, else None (finished, or nothing to tell)."""
    metrics = run_dir / METRICS_FILE
    try:
        planned = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))["train"]["epochs"]
        rows = metrics.read_text(encoding="utf-8").splitlines() if metrics.is_file() else []
        done = max((json.loads(row)["epoch"] for row in rows if row.strip()), default=0)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable files get their own, clearer error where they are read
    if not isinstance(planned, int) or not isinstance(done, int) or not 0 < done < planned:
        return None
    return done, planned


def _all_runs(runs_dir: str | Path) -> list[RunInfo]:
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        raise FileNotFoundError(f"runs folder not found: {runs_dir}")
    if not runs_dir.is_dir():
        raise NotADirectoryError(f"runs folder is a file, not a folder: {runs_dir}")
    configs = [
        path
        for path in runs_dir.rglob(CONFIG_FILE)
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(runs_dir).parts[:-1])
    ]
    if not configs:
        raise ValueError(
            f"no runs found under {runs_dir}: a run directory is a folder holding {CONFIG_FILE} "
            f"(written by `ssmprobe train`), with {METRICS_FILE} and the "
            f"{' / '.join(EVAL_FILES.values())} files of `ssmprobe eval` next to it"
        )
    return sorted((read_run_info(path.parent) for path in configs), key=sort_key)


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Dataset, model, method, AdS and seed of the run in `run_dir`, from its config.json."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    config = read_json(path)
    if not isinstance(config, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(config).__name__}")
    model = config.get("model")
    model_dict = model if isinstance(model, dict) else {}
    values = {
        "dataset": config.get("dataset"),
        "model": model_dict.get("model") if isinstance(model, dict) else model,
        "method": config.get("method"),
    }
    bad = [f"{key} ({value!r})" for key, value in values.items() if not isinstance(value, str)]
    if bad:
        raise RunDirError(
            f"{path}: needs the strings dataset, method and model (or model.model); "
            f"missing or not a string: {', '.join(bad)}"
        )
    ads = config["ads"] if "ads" in config else model_dict.get("ads")
    if ads is not None and not isinstance(ads, str):
        raise RunDirError(f"{path}: ads must be null or a string, got {ads!r}")
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    seed = config.get("seed", train.get("seed"))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RunDirError(f"{path}: seed must be an integer, got {seed!r}")
    steps = train.get("steps", 10)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise RunDirError(f"{path}: train.steps must be a positive integer, got {steps!r}")
    n_classes = model_dict.get("n_classes", 10)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise RunDirError(f"{path}: model.n_classes must be an integer >= 2, got {n_classes!r}")
    source = config.get("source")
    return RunInfo(
        run_dir, **values, ads=ads or "none", seed=seed, pgd_steps=steps, n_classes=n_classes,
        zoo=isinstance(source, str) and source.startswith("bundled"),
        train_epochs=_count(train.get("epochs")),
        train_eval_size=_count(train.get("train_eval_size")),
    )  # fmt: skip


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def recipe(run: RunInfo, n_test: int | str) -> str:
    """What the run was trained and evaluated with, e.g. "30 epochs · train-eval 360 · n 360"
    or "... · n 2000 (aa 100)"; the parts not recorded left out."""
    parts = [
        f"{run.train_epochs} epochs" if run.train_epochs is not None else "",
        f"train-eval {run.train_eval_size}" if run.train_eval_size is not None else "",
        f"n {n_test}" if n_test else "",
    ]
    return " · ".join(p for p in parts if p) or "unknown"


def read_json(path: Path) -> Any:
    """The parsed contents of a JSON file; RunDirError naming the file if it is not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RunDirError(f"{path}: not a text file ({err.reason} at byte {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RunDirError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
            "the file is corrupt or was cut short: re-run the step that writes it"
        ) from None


def source_digests(path: Path) -> set[str]:
    """The SHA-256 digests of the checkpoint files the results file `path` says it was made
    from (an eval file's "file", a bounds file's "meta", each discrepancy result's "meta"; a
    CSV's JSON beside it); empty where none is recorded or the file cannot be read."""
    path = path.with_suffix(".json")
    try:
        payload = read_json(path) if path.is_file() else None
    except RunDirError:
        return set()
    if not isinstance(payload, dict):
        return set()
    results = payload.get("results")
    metas = [payload, payload.get("meta")]
    if isinstance(results, list):
        metas += [r.get("meta") for r in results if isinstance(r, dict)]
    files = [m.get("file") for m in metas if isinstance(m, dict)]
    return {f["sha256"] for f in files if isinstance(f, dict) and isinstance(f.get("sha256"), str)}


def stale(cache: Path, source: Path | None) -> bool:
    """Whether the results file `cache` must be made again from the checkpoint `source`: it is
    missing, or was made from other bytes. Compared by the SHA-256 the results record (eval,
    discrepancy and bounds files do), so a clone or a copy that gives the files new
    modification times keeps them; by modification time where none is recorded (files
    written before the digest field)."""
    if source is None:
        return False
    if not cache.is_file():
        return True
    recorded = source_digests(cache)
    if recorded:
        return recorded != {sha256_file(source)}
    return cache.stat().st_mtime_ns < source.stat().st_mtime_ns


def read_eval(path: Path) -> dict[str, float]:
    """Accuracies (fractions) by attack name from an eval_*.json; {} if the file is absent."""
    return read_eval_record(path).accuracies


@dataclass(frozen=True)
class EvalRecord:
    """What an eval_*.json says: accuracies (fractions) by attack name, attacks that were not
    run left out; the test samples `n` (0 if absent) and `eps` (None if absent); `checks`, the
    warnings of AutoAttack's own checks (`autoattack_checks`): [] if it ran no AutoAttack, None
    if it ran AutoAttack but predates the field (not known); `n_by_attack`, the n of each
    attack run on other samples than `n` (`evaluate`'s add), and `subsets`, the accuracies
    measured on those first n samples; `prediction`, the class predicted most often on the
    clean samples and its share."""

    accuracies: dict[str, float]
    n: int = 0
    eps: float | None = None
    checks: list[str] | None = None
    n_by_attack: dict[str, int] = field(default_factory=dict)
    subsets: dict[int, dict[str, float]] = field(default_factory=dict)
    prediction: dict[str, Any] | None = None  # the clean top class and its share, if recorded

    def collapse(self) -> str | None:
        """`sanity.collapse_flag` of the clean predictions; None if they vary or predate it."""
        if self.prediction is None:
            return None
        return collapse_flag(self.prediction["top_class"], self.prediction["top_share"], self.n)

    def n_of(self, attack: str) -> int:
        """The test samples `attack`'s accuracy was measured on."""
        return self.n_by_attack.get(attack, self.n)

    def masking(self) -> list[str]:
        """The masking flags, each comparing accuracies on the same images."""
        return grouped_masking_flags(self.accuracies, self.n, self.n_by_attack, self.subsets)

    def n_text(self) -> str:
        """The samples as text: 2000, or 2000 (aa 100) where attacks ran on other samples;
        empty if not recorded."""
        others = {a: k for a, k in self.n_by_attack.items() if a in self.accuracies}
        return samples_text(self.n, others) if self.n else ""


def read_eval_record(path: Path) -> EvalRecord:
    """The EvalRecord of an eval_*.json, empty (no accuracies, checks []) if the file is
    absent; RunDirError naming the file and field if it is there but malformed."""
    if not path.is_file():
        return EvalRecord({}, checks=[])
    payload = read_json(path)
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, dict):
        raise RunDirError(f'{path}: expected an object with a "results" object of accuracies')
    accuracies = {}
    for attack, value in results.items():
        if value is None:  # an attack that was not run, written as null
            continue
        if not _is_fraction(value):  # also rejects NaN
            raise RunDirError(
                f"{path}: results[{attack!r}] = {value!r} is not an accuracy in [0, 1] "
                "(accuracies are fractions, not percentages)"
            )
        accuracies[attack] = float(value)
    n, eps = payload.get("n", 0), payload.get("eps")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise RunDirError(f'{path}: "n" must be a number of test samples, got {n!r}')
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, int | float)):
        raise RunDirError(f'{path}: "eps" must be a number, got {eps!r}')
    n_by, subsets = _sample_counts(path, payload)
    prediction = payload.get("prediction")
    if prediction is not None and not (
        isinstance(prediction, dict)
        and _count(prediction.get("top_class")) is not None
        and _is_fraction(prediction.get("top_share"))
    ):
        raise RunDirError(f'{path}: "prediction" must hold a top_class and its top_share in [0, 1]')
    if "autoattack_checks" not in payload:
        known = None if any(k.startswith("aa") for k in accuracies) else []
        return EvalRecord(accuracies, n, eps, known, n_by, subsets, prediction)
    checks = payload["autoattack_checks"]
    if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
        raise RunDirError(f'{path}: "autoattack_checks" must be a list of strings')
    return EvalRecord(accuracies, n, eps, checks, n_by, subsets, prediction)


def _sample_counts(
    path: Path, payload: dict[str, Any]
) -> tuple[dict[str, int], dict[int, dict[str, float]]]:
    """An eval file's "n_by_attack" and "subsets" ({} where absent); RunDirError if malformed."""
    n_by, subsets = payload.get("n_by_attack", {}), payload.get("subsets", {})
    if not isinstance(n_by, dict) or not all(_count(k) for k in n_by.values()):
        raise RunDirError(f'{path}: "n_by_attack" must map attacks to numbers of test samples')
    if not isinstance(subsets, dict) or not all(
        k.isdigit() and isinstance(v, dict) and all(_is_fraction(a) for a in v.values())
        for k, v in subsets.items()
    ):
        raise RunDirError(f'{path}: "subsets" must map sample counts to accuracies in [0, 1]')
    return n_by, {int(k): {a: float(x) for a, x in v.items()} for k, v in subsets.items()}


def _is_fraction(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0.0 <= value <= 1.0


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The per-epoch metrics of a run (metrics.jsonl), one row per epoch, sorted by epoch.

    A last line that does not parse is what an interrupted run leaves: it is skipped with a
    warning. A bad line anywhere else means the file is corrupt, and raises RunDirError naming
    the file and line. If an epoch appears twice (a resumed run), its last row wins.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} in {run_dir} (has the run finished an epoch?)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise RunDirError(f"{path}: not a text file ({err.reason} at byte {err.start})") from None
    numbered = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    rows = []
    for i, line in numbered:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if i == numbered[-1][0]:
                warnings.warn(
                    f"{path}: skipping line {i}, cut short ({err.msg}); "
                    "the run was probably interrupted while writing it",
                    stacklevel=2,
                )
                continue
            raise RunDirError(f"{path}: line {i} is not valid JSON ({err.msg})") from None
        if (
            not isinstance(row, dict)
            or isinstance(row.get("epoch"), bool)
            or not isinstance(row.get("epoch"), int)
        ):
            raise RunDirError(f'{path}: line {i} is not an object with an integer "epoch"')
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else ["epoch"])
    frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch", kind="stable")
    return frame.reset_index(drop=True)


def best_choice(metrics: pd.DataFrame, n_classes: int) -> BestChoice | None:
    """The epoch the trainer keeps as best.pt (`training.selection.best_epoch`); None without the
    test accuracy columns or any complete row."""
    needed = ["epoch", "test_clean_acc", "test_pgd_acc"]
    if not set(needed) <= set(metrics):
        return None
    return best_epoch(metrics[needed].dropna().to_dict("records"), n_classes)


def robust_gap(metrics: pd.DataFrame, best: int | None) -> dict[str, float]:
    """PGD-10 accuracy (%) on train and test and their gap at the `best` epoch and the last
    one (`GAP_COLUMNS`); an epoch or a column that is missing gives NaN."""
    out = dict.fromkeys(GAP_COLUMNS, math.nan)
    if not {"train_pgd_acc", "test_pgd_acc"} <= set(metrics) or metrics.empty:
        return out
    rows = {"last": metrics.iloc[-1]}
    if best is not None and (metrics["epoch"] == best).any():
        rows["best"] = metrics[metrics["epoch"] == best].iloc[-1]
    for at, row in rows.items():
        train, test = (round(100 * float(row[f"{s}_pgd_acc"]), 2) for s in ("train", "test"))
        out |= {f"train_pgd_{at}": train, f"test_pgd_{at}": test}
        out[f"gap_{at}"] = round(train - test, 2)
    return out


def collect_runs(runs_dir: str | Path) -> pd.DataFrame:
    """One row per run under `runs_dir`, with the columns of `COLUMNS` (module docstring)."""
    runs_dir = Path(runs_dir)
    rows = []
    for run in find_runs(runs_dir):
        row: dict[str, Any] = {key: getattr(run, key) for key in (*KEY_COLUMNS, "seed")}
        records = {c: read_eval_record(run.path / name) for c, name in EVAL_FILES.items()}
        fractions = {c: record.accuracies for c, record in records.items()}
        checks = {c: record.checks for c, record in records.items()}
        percent = {c: {k: round(100 * v, 2) for k, v in r.items()} for c, r in fractions.items()}
        row["masking"] = "; ".join(
            f"{c}: {flag}" for c, record in records.items() for flag in record.masking()
        )
        row["collapse"] = "; ".join(
            f"{c}: {flag}" for c, record in records.items() if (flag := record.collapse())
        )
        warned = "; ".join(f"{c}: {check}" for c, found in checks.items() for check in found or [])
        row["aa_checks"] = pd.NA if not warned and None in checks.values() else warned
        for attack in TABLE_ATTACKS:
            best = percent["best"].get(attack, math.nan)
            last = percent["last"].get(attack, math.nan)
            row |= {f"{attack}_best": best, f"{attack}_last": last}
            row[f"{attack}_diff"] = round(best - last, 2)  # NaN if either is missing
        if (run.path / METRICS_FILE).is_file():
            metrics = read_metrics(run.path)
            row["epochs"] = len(metrics)
            best = best_choice(metrics, run.n_classes)
            if best is not None:
                row["best_epoch"], row["best_rule"] = best.epoch, best.rule
            row |= robust_gap(metrics, None if best is None else best.epoch)
        row["zoo"] = run.zoo
        row["recipe"] = recipe(run, max(records.values(), key=lambda r: r.n).n_text())
        row["run"] = run.path.relative_to(runs_dir).as_posix()
        rows.append(row)
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    frame[[*ACCURACY_COLUMNS, *GAP_COLUMNS]] = frame[[*ACCURACY_COLUMNS, *GAP_COLUMNS]].astype(
        float
    )
    for column in ("seed", "epochs", "best_epoch"):
        frame[column] = frame[column].astype("Int64")
    return frame


def rank(column: str, key: str) -> tuple[int, str]:
    """A key's place in the paper's order of its column (`sort_key`); unknown keys last."""
    order = list(_DISPLAY[column])
    return (order.index(key), "") if key in order else (len(order), key)
