"""Why can PGD-10 accuracy sit far above clean accuracy? Tests on finished MNIST-10k checkpoints.

The paper's MNIST PGD-AT rows print PGD-10 near 99.9% beside clean accuracy of 20-60% and AA
below 1%. For each finished run under --runs (an eval file beside the checkpoint) and each
--checkpoint, on the first --n test images of the run's dataset at the run's ε and α (its
checkpoint's training budget, else the dataset's: 0.3 and 0.04 on MNIST-10k):

- clean: accuracy, the histogram of predictions, the most frequent class's share and the std of
  each logit across inputs; "collapse" when one class takes >= 95% of the predictions (a
  near-constant output: no perturbation changes it, so robust = clean);
- label leaking: PGD-10 on the true label (the standard attack) and on the model's own clean
  prediction, both scored against the true label; "label leaking" when the first is more than 5
  points above the second (the perturbation built from the true label carries it to the model,
  Kurakin et al. 2017);
- PGD-100 with 5 random restarts: a point is robust only if every restart's example is still
  classified correctly (each restart attacks only the points still robust);
- input gradients of the cross-entropy at the clean points: the ℓ1 norm (ε·||∇||₁ is the loss
  increase one ℓ∞ step buys to first order), its mean and median, the share exactly 0 and below
  1e-12;
- Square alone (AutoAttack's gradient-free attack, --square-queries queries); "masking" when at
  least half the gradients are zero, or Square breaks more than 5% of the points that are
  correct clean and survive PGD-100 x 5;
- a verdict: PGD-10 above clean? and the explanations the numbers support.

Writes diagnosis.json (every number, n, ε, α and the seconds of each test) and diagnosis.md (a
table and one line of findings per checkpoint) into --out after each checkpoint; a checkpoint
already there with the same n, Square queries and file is skipped, so a rerun resumes.

    OMP_NUM_THREADS=1 python analysis/mnist10k_diagnosis.py --runs runs/mnist10k --only s5_pgd \\
        --n 100
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssmprobe.attacks import AutoAttackWarning, attack_config, attack_mode, autoattack, pgd_linf
from ssmprobe.data import load_dataset
from ssmprobe.io import check_output_dir, replacing, write_json, write_text
from ssmprobe.loading import load_model
from ssmprobe.report.runs import EVAL_FILES, RunDirError, find_runs, read_json, skipped_runs
from ssmprobe.report.tables import markdown_table

COLLAPSE_SHARE = 0.95  # one class taking this share of the predictions: a collapsed model
LEAK_MARGIN = 0.05  # true-label PGD-10 this far above own-prediction PGD-10: label leaking
ZERO_SHARE = 0.5  # this share of exactly-zero input gradients: masking
SQUARE_MARGIN = 0.05  # Square breaking this share of PGD-100 x 5's robust points: masking
TINY_GRADIENT = 1e-12
RESTARTS, LONG_STEPS = 5, 100


def _batches(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _share(mask: Tensor) -> float:
    """The share of True in `mask`, counted exactly (not a float32 mean)."""
    return mask.sum().item() / len(mask)


def clean_test(
    model: nn.Module, x: Tensor, y: Tensor, batch_size: int
) -> tuple[dict[str, Any], Tensor]:
    """Clean accuracy, prediction histogram, top class and share, logit std across inputs;
    and the predictions."""
    with attack_mode(model, True), torch.no_grad():
        logits = torch.cat([model(x[s]) for s in _batches(len(x), batch_size)])
    pred = logits.argmax(1)
    histogram = torch.bincount(pred, minlength=logits.shape[1])
    top = int(histogram.argmax())
    spread = logits.std(0) if len(x) > 1 else torch.zeros(logits.shape[1])  # per class
    share = histogram[top].item() / len(x)
    return {
        "acc": _share(pred == y),
        "histogram": histogram.tolist(),
        "top_class": top,
        "top_share": share,
        "logit_std_mean": spread.mean().item(),
        "logit_std_max": spread.max().item(),
        "collapsed": share >= COLLAPSE_SHARE,
    }, pred


def pgd_correct(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    y: Tensor,
    eps: float,
    alpha: float,
    steps: int,
    generator: torch.Generator,
    batch_size: int,
) -> Tensor:
    """Per point: is the model right about `y` on ℓ∞ PGD's example built against `target`?"""
    correct = []
    for s in _batches(len(x), batch_size):
        x_adv = pgd_linf(model, x[s], target[s], eps, alpha, steps, generator=generator)
        with attack_mode(model, True), torch.no_grad():
            correct.append(model(x_adv).argmax(1) == y[s])
    return torch.cat(correct) if correct else torch.zeros(0, dtype=torch.bool, device=x.device)


def label_leak_test(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    pred: Tensor,
    eps: float,
    alpha: float,
    seed: int,
    batch_size: int,
) -> dict[str, Any]:
    """PGD-10 against the true label and against the clean prediction, both scored on y."""
    out = {}
    for name, target in (("pgd10_true", y), ("pgd10_pred", pred)):
        generator = torch.Generator(x.device).manual_seed(seed)  # the same random starts
        correct = pgd_correct(model, x, target, y, eps, alpha, 10, generator, batch_size)
        out[name] = _share(correct)
    return out


def restarts_test(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    alpha: float,
    seed: int,
    batch_size: int,
) -> tuple[dict[str, Any], Tensor]:
    """PGD-100 x 5: robust = right on every restart; each restart runs on the points still
    robust. Returns the accuracy after each restart, and the robust points."""
    robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
    generator = torch.Generator(x.device).manual_seed(seed)
    after = []
    for _ in range(RESTARTS):
        index = robust.nonzero().squeeze(1)
        robust[index] = pgd_correct(
            model, x[index], y[index], y[index], eps, alpha, LONG_STEPS, generator, batch_size
        )
        after.append(_share(robust))
    return {"acc": after[-1], "acc_after_restart": after, "steps": LONG_STEPS}, robust


def gradient_test(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> dict[str, Any]:
    """ℓ1 norms of ∇x CE(f(x), y) at the clean points: mean, median, share 0 and < 1e-12."""
    norms = []
    with attack_mode(model, True):
        for s in _batches(len(x), batch_size):
            inputs = x[s].detach().requires_grad_(True)
            loss = F.cross_entropy(model(inputs), y[s], reduction="sum")  # per-sample gradients
            (grad,) = torch.autograd.grad(loss, inputs)
            norms.append(grad.flatten(1).abs().sum(1))
    l1 = torch.cat(norms).double()
    return {
        "l1_mean": l1.mean().item(),
        "l1_median": l1.median().item(),
        "zero_share": _share(l1 == 0),
        "tiny_share": _share(l1 < TINY_GRADIENT),
    }


def square_test(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, queries: int, seed: int, batch_size: int
) -> tuple[dict[str, Any], Tensor]:
    """Square alone (no gradients): its accuracy, AutoAttack's check warnings, and per point
    whether the model is still right (Square attacks only the points correct clean)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AutoAttackWarning)
        result = autoattack(
            model,
            x,
            y,
            eps,
            version="square",
            seed=seed,
            batch_size=batch_size,
            square_queries=queries,
        )
    checks = list(dict.fromkeys(str(w.message) for w in caught))
    survived = result.y_adv == y
    return {"acc": _share(survived), "queries": queries, "checks": checks}, survived


def verdict(record: dict[str, Any]) -> dict[str, Any]:
    """PGD-10 above clean? and the explanations the numbers support (collapse, label leaking,
    masking; "none"), with the finding in one line."""
    clean, leak = record["clean"], record["label_leak"]
    grads, square = record["gradients"], record["square"]
    above = leak["pgd10_true"] > clean["acc"]
    parts = [
        f"PGD-10 {100 * leak['pgd10_true']:.1f}% is {'' if above else 'not '}above clean "
        f"{100 * clean['acc']:.1f}%"
    ]
    found = []
    if clean["collapsed"]:
        found.append("collapse")
        parts.append(
            f"collapse: class {clean['top_class']} takes {100 * clean['top_share']:.0f}% of the "
            f"predictions (logit std across inputs {clean['logit_std_mean']:.2g}), so no "
            "perturbation changes the output"
        )
    if leak["pgd10_true"] - leak["pgd10_pred"] > LEAK_MARGIN:
        found.append("label leaking")
        parts.append(
            f"label leaking: PGD-10 on the model's own prediction gives "
            f"{100 * leak['pgd10_pred']:.1f}%, the true label's attack helps the model"
        )
    masked = []  # each sign of masking the numbers show, with the numbers
    if grads["zero_share"] >= ZERO_SHARE:
        masked.append(f"{100 * grads['zero_share']:.0f}% of the input gradients are exactly 0")
    if square["only_square"] > SQUARE_MARGIN:
        masked.append(
            f"Square, which uses no gradient, breaks {100 * square['only_square']:.1f}% of the "
            f"points PGD-100 x 5 leaves robust (PGD-100 x 5 {100 * record['pgd100x5']['acc']:.1f}%"
            f", Square alone {100 * square['acc']:.1f}%; median input-gradient ℓ1 "
            f"{grads['l1_median']:.3g}, {100 * grads['zero_share']:.0f}% exactly 0)"
        )
    if masked:
        found.append("masking")
        parts.append("masking: " + "; ".join(masked))
    if not found:
        parts.append(
            f"none of collapse, label leaking or masking: PGD-100 x 5 "
            f"{100 * record['pgd100x5']['acc']:.1f}%, Square {100 * square['acc']:.1f}%"
        )
    return {
        "pgd_above_clean": above,
        "explanations": found or ["none"],
        "finding": "; ".join(parts) + ".",
    }


def _timed(label: str, test: str, record: dict[str, Any], run: Callable[[], Any]) -> Any:
    """Runs one test with a progress line before and after; its seconds go into `record`."""
    print(f"{label}: {test} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    record.setdefault("seconds", {})[test] = round(seconds, 2)
    print(f"{label}: {test} done in {seconds:.1f} s", file=sys.stderr, flush=True)
    return result


def diagnose(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    alpha: float,
    square_queries: int,
    seed: int = 0,
    batch_size: int = 50,
    label: str = "model",
) -> dict[str, Any]:
    """Every test on (x, y) at ε and α, and the verdict (module docstring)."""
    record: dict[str, Any] = {
        "n": len(x),
        "eps": eps,
        "alpha": alpha,
        "square_queries": square_queries,
    }
    record["clean"], pred = _timed(
        label, "clean", record, lambda: clean_test(model, x, y, batch_size)
    )
    record["label_leak"] = _timed(
        label,
        "label_leak",
        record,
        lambda: label_leak_test(model, x, y, pred, eps, alpha, seed, batch_size),
    )
    record["pgd100x5"], robust = _timed(
        label, "pgd100x5", record, lambda: restarts_test(model, x, y, eps, alpha, seed, batch_size)
    )
    record["gradients"] = _timed(
        label, "gradients", record, lambda: gradient_test(model, x, y, batch_size)
    )
    record["square"], survived = _timed(
        label,
        "square",
        record,
        lambda: square_test(model, x, y, eps, square_queries, seed, batch_size),
    )
    # Square attacks only the points right on clean inputs, so compare it on those
    robust &= pred == y
    record["square"]["only_square"] = _share(robust & ~survived)
    record["verdict"] = verdict(record)
    return record


def _finished(runs_dir: Path, only: set[str] | None) -> list[tuple[str, Path]]:
    """(path under `runs_dir`, folder) of the runs whose training is done (an eval file), of
    those whose folder name is in `only` if given; the others are named with why they wait."""
    waiting = dict(skipped_runs(runs_dir))  # name -> why the report skips it
    try:
        found = find_runs(runs_dir)
    except RunDirError:
        raise
    except ValueError:  # no run has finished an epoch: all of them are in `waiting`
        found = []
    runs = []
    for run in found:
        name = run.path.relative_to(runs_dir).as_posix()
        if any((run.path / f).is_file() for f in EVAL_FILES.values()):
            runs.append((name, run.path))
        else:
            waiting[name] = "no eval file yet"
    unknown = (only or set()) - {Path(name).name for name in [*waiting, *dict(runs)]}
    if unknown:
        raise ValueError(f"no run folder named {', '.join(sorted(unknown))} under {runs_dir}")
    for name, why in waiting.items():
        if only is None or Path(name).name in only:
            print(f"skipping {name}: {why}", file=sys.stderr)
    return [(name, folder) for name, folder in runs if only is None or folder.name in only]


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def to_markdown(records: dict[str, dict[str, Any]]) -> str:
    """A table of the main numbers per checkpoint, then one line of findings per checkpoint."""
    headers = [
        "Checkpoint",
        "n",
        "ε / α",
        "Clean",
        "Top class (share)",
        "Logit std",
        "PGD-10 true y",
        "PGD-10 own pred",
        "PGD-100 x 5",
        "Square (queries)",
        "∇ ℓ1 median",
        "∇ = 0",
        "PGD > clean?",
        "Explanation",
    ]
    cells = [
        [
            key,
            str(r["n"]),
            f"{r['eps']:g} / {r['alpha']:g}",
            _percent(r["clean"]["acc"]),
            f"{r['clean']['top_class']} ({_percent(r['clean']['top_share'])})",
            f"{r['clean']['logit_std_mean']:.3g}",
            _percent(r["label_leak"]["pgd10_true"]),
            _percent(r["label_leak"]["pgd10_pred"]),
            _percent(r["pgd100x5"]["acc"]),
            f"{_percent(r['square']['acc'])} ({r['square']['queries']})",
            f"{r['gradients']['l1_median']:.3g}",
            _percent(r["gradients"]["zero_share"]),
            "yes" if r["verdict"]["pgd_above_clean"] else "no",
            ", ".join(r["verdict"]["explanations"]),
        ]
        for key, r in records.items()
    ]
    caption = (
        "Diagnosis of PGD-10 against clean accuracy (%) on the first n test images: PGD-10 on "
        "the true label and on the model's own clean prediction (both scored on the true "
        "label), PGD-100 with 5 restarts, Square alone, the ℓ1 norm of the input gradient of "
        "the cross-entropy at the clean points and the share (%) exactly 0."
    )
    findings = [f"- **{key}**: {r['verdict']['finding']}" for key, r in records.items()]
    return markdown_table(caption, headers, cells, 1, []) + "\n".join(findings) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="runs/mnist10k", help="folder of run folders")
    parser.add_argument("--only", help="comma-separated run names (default: every finished run)")
    parser.add_argument("--checkpoint", default="best,last", help="best, last or both")
    parser.add_argument("--n", type=int, default=200, help="first n test images")
    parser.add_argument("--square-queries", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="figures/mnist10k")
    parser.add_argument("--force", action="store_true", help="replace files ssmprobe did not write")
    args = parser.parse_args(argv)
    checkpoints = args.checkpoint.split(",")
    if not set(checkpoints) <= set(EVAL_FILES) or args.n < 1 or args.square_queries < 1:
        parser.error("--checkpoint takes best and/or last; --n and --square-queries are >= 1")
    try:
        out = check_output_dir(args.out)
        runs = _finished(Path(args.runs), set(args.only.split(",")) if args.only else None)
    except (OSError, ValueError) as err:
        parser.error(str(err))
    path = out / "diagnosis.json"
    records: dict[str, dict[str, Any]] = read_json(path) if path.is_file() else {}
    for name, folder in runs:
        for which in checkpoints:
            key = f"{name}/{which}"
            model = load_model(folder / f"{which}.pt", args.device)
            old = records.get(key, {})
            same = (old.get("n"), old.get("square_queries"), old.get("file", {}).get("sha256"))
            if same == (args.n, args.square_queries, model.meta["file"]["sha256"]):
                print(f"{key}: done before with n = {args.n}, skipped", file=sys.stderr)
                old["verdict"] = verdict(old)  # its numbers read by this version's rules
                continue
            config = attack_config("pgd10", model.meta)  # the run's ε and α, else the preset
            test = load_dataset(model.meta["dataset"], "test").head(args.n)
            x, y = test.inputs.to(args.device), test.labels.to(args.device)
            record = diagnose(
                model,
                x,
                y,
                config.eps,
                config.alpha,
                args.square_queries,
                args.seed,
                args.batch_size,
                key,
            )
            records[key] = {
                "run": name,
                "checkpoint": which,
                "file": model.meta["file"],
                "dataset": model.meta["dataset"],
                **record,
            }
            with replacing(args.force):
                write_json(path, records)
                write_text(out / "diagnosis.md", to_markdown(records))
            print(f"{key}: {records[key]['verdict']['finding']}", file=sys.stderr)
    with replacing(args.force):  # the verdicts of skipped checkpoints, as they read now
        write_json(path, records)
        write_text(out / "diagnosis.md", to_markdown(records))


if __name__ == "__main__":
    main()
