"""The `ssmprobe` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssmprobe.checkpoint import CheckpointError
from ssmprobe.data import DATASETS, DatasetError, load_dataset
from ssmprobe.interop.reference import FAMILIES, Reference, import_reference
from ssmprobe.loading import load_model, resolve_device
from ssmprobe.models import MODELS, PRESETS, model_config
from ssmprobe.models.registry import ARCH_DEFAULTS, ARCHS
from ssmprobe.training.fit import METHODS, TrainingDiverged, fit, train_config
from ssmprobe.version import __version__


class _FORMAT(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except unset (None) ones: their help says what happens instead."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


# eval, table and report import their modules when run: matplotlib and AutoAttack are slow to
# import and `train` needs neither.


def _train(args: argparse.Namespace) -> int:
    train_set = load_dataset(args.dataset, "train", args.data_dir)
    test_set = load_dataset(args.dataset, "test", args.data_dir)
    preset = args.preset or args.dataset
    arch = dict(ARCHS[args.arch or ARCH_DEFAULTS.get(preset, "table3")])
    arch |= {
        k: getattr(args, k)
        for k in ("d_model", "n_layers", "d_state", "ads_form")
        if getattr(args, k) is not None
    }
    arch |= {} if args.residual is None else {"residual": args.residual}
    mconfig = model_config(
        args.model,
        preset,
        d_input=train_set.channels,
        n_classes=train_set.num_classes,
        ads=args.ads,
        **arch,
    )
    tconfig = train_config(
        preset,
        args.model,
        method=args.method,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        eps=args.eps,
        alpha=args.alpha,
        beta=args.beta,
        steps=args.steps,
        seed=args.seed,
        train_eval_size=args.train_eval_size,
        test_eval_size=args.test_eval_size,
        amp=args.amp,
        eps_warmup=args.eps_warmup,
        augment=args.augment,
    )
    name = args.name or "_".join(
        [args.model, *([args.ads] if args.ads else []), args.dataset, args.method]
    )
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file; it must name a directory of runs")
    run_dir = Path(args.out) / name
    if not args.resume and (run_dir / "last.pt").exists():
        raise ValueError(
            f"{run_dir} already holds a run; pass --resume to continue it "
            "or --name to start another"
        )
    if args.resume and not (run_dir / "last.pt").is_file():  # say, a mistyped --name
        raise ValueError(f"nothing to resume: {run_dir / 'last.pt'} not found; drop --resume")
    device = resolve_device(args.device)
    history = fit(
        mconfig,
        train_set,
        test_set,
        tconfig,
        run_dir,
        dataset=args.dataset,
        resume=args.resume,
        device=device,
        progress=not args.quiet,
    )
    if history:
        last = history[-1]
        print(
            f"{run_dir}: clean accuracy {100 * last['test_clean_acc']:.2f}%, "
            f"PGD-{tconfig.steps} accuracy {100 * last['test_pgd_acc']:.2f}% (last epoch)"
        )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ssmprobe.evaluation.evaluate import evaluate_checkpoint, format_results

    attacks = [a.strip() for a in args.attack.split(",") if a.strip()]
    results = evaluate_checkpoint(
        args.ckpt,
        attacks,
        n=args.n,
        batch_size=args.batch_size,
        eps=args.eps,
        data_dir=args.data_dir,
        device=args.device,
        progress=not args.quiet,
        reference=_reference(args),
        out=args.out,
    )
    print(format_results(results))
    if args.out:
        print(f"written: {args.out}")
    return 0


def _table(args: argparse.Namespace) -> int:
    from ssmprobe.report.tables import collect_runs, write_tables

    table = collect_runs(args.runs)
    paths = write_tables(table, Path(args.out or args.runs))
    for name in ("md", "seeds_md"):
        if name in paths:
            print(paths[name].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def _report(args: argparse.Namespace) -> int:
    from ssmprobe.report.build import ReportOptions, build_report

    options = ReportOptions(
        attacks=tuple(a.strip() for a in args.attack.split(",") if a.strip()),
        n_eval=args.n_eval,
        n_probe=args.n_probe,
        data_dir=args.data_dir,
        progress=not args.quiet,
    )
    if args.zoo:
        from ssmprobe.report.build import zoo_runs

        zoo_runs(Path(args.runs) / "zoo")
    result = build_report(args.runs, args.out, options)
    if result.up_to_date:
        print(f"nothing new under {args.runs}: {args.out} is up to date")
    else:
        print(f"written ({len(result.written)} changed): " + ", ".join(map(str, result.written)))
    print("\n".join(result.findings))
    print(f"report: {result.report_html.resolve()}")
    return 0


def _discrepancy(args: argparse.Namespace) -> int:
    from ssmprobe.probe.discrepancy import discrepancy, format_summary, save

    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    reference = _reference(args)
    for ckpt in args.ckpt:  # every file checked before hours of work on the first
        load_model(ckpt, "cpu", reference)
    results = []
    for ckpt in args.ckpt:
        result = discrepancy(
            ckpt,
            splits=splits,
            n=args.n,
            batch_size=args.batch_size,
            attack=args.attack,
            eps=args.eps,
            data_dir=args.data_dir,
            device=args.device,
            seed=args.seed,
            progress=not args.quiet,
            reference=reference,
        )
        print(format_summary(result, args.norm) + "\n")
        results.append(result)
    paths = save(results, args.out)
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ssmprobe.probe.plots import plot_discrepancy

    paths = plot_discrepancy(args.results, args.out, norm=args.norm)
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


def _attribute(args: argparse.Namespace) -> int:
    from ssmprobe.io import write_json
    from ssmprobe.probe.attribution import attribute_checkpoint, plot_input_attributions

    result = attribute_checkpoint(
        args.ckpt,
        n=args.n,
        method=args.method,
        split=args.split,
        attack=args.attack,
        eps=args.eps,
        data_dir=args.data_dir,
        device=args.device,
        seed=args.seed,
        n_steps=args.steps,
        reference=_reference(args),
    )
    meta, inputs = result["meta"], result["inputs"]
    stem = Path(args.out) / f"attributions_{Path(args.ckpt).stem}_{args.method}"
    paths = plot_input_attributions(inputs, result["image_shape"], stem.with_suffix(".png"))
    shares = [vars(c) for c in result["components"]]
    write_json(
        stem.with_suffix(".json"), {"meta": meta, "drop": result["drop"], "components": shares}
    )
    print(
        f"{args.ckpt}: {meta['n']} {meta['split']} samples, {meta['attack']} at eps "
        f"{meta['eps']:g}: clean acc {100 * meta['clean_acc']:.1f}%, adversarial "
        f"{100 * meta['adv_acc']:.1f}%, mean true-class logit drop {result['drop']:.3f}"
    )
    if inputs.delta is not None:
        print(f"IG completeness: max |delta| {inputs.delta.abs().max().item():.2e}")
    print(f"  {'component':<22}{'kind':<11}{'attribution':>12}{'share %':>10}{'|delta|':>10}")
    for c in shares:
        print(
            f"  {c['name']:<22}{c['kind']:<11}{c['attribution']:>12.4f}"
            f"{100 * c['share']:>10.1f}{c['delta']:>10.2e}"
        )
    print("written: " + ", ".join(str(p) for p in [*paths, stem.with_suffix(".json")]))
    return 0


def _add_attribute(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attribute",
        help="captum attributions: per-time-step inputs, and each component's share of the "
        "adversarial logit drop",
        formatter_class=_FORMAT,
        description=(
            "Integrated Gradients (black baseline) or Saliency of the true-class logit for the "
            "first N samples, clean and adversarial, drawn image-shaped beside the "
            "perturbation; and, per component, Layer Integrated Gradients from the clean to the "
            "adversarial activation at its exit: the part of the true-class logit drop that "
            "flows through it (100%% for a component every path crosses)."
        ),
    )
    p.add_argument("--ckpt", required=True, help="checkpoint file or bundled name")
    p.add_argument("--method", choices=["ig", "saliency"], default="ig")
    p.add_argument("--n", type=int, default=8, help="samples (rows of the figure)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--attack", default="pgd10", help="pgd<N>, fgsm, aa, aa-fast, pgdl2-<N>")
    p.add_argument("--eps", type=float, help="attack budget (default: the run's)")
    p.add_argument("--steps", type=int, default=32, help="integration steps of IG")
    p.add_argument("--seed", type=int, default=0, help="attack seed")
    p.add_argument("--out", default="figures", help="output directory")
    _add_data_and_device(p)
    _add_reference(p)
    p.set_defaults(func=_attribute)


def _bounds(args: argparse.Namespace) -> int:
    from ssmprobe.bounds.check import check_model

    result = check_model(
        args.model,
        args.ckpt,
        init=args.init,
        L=args.L,
        perturb=args.perturb,
        eps=args.eps,
        mu=args.mu,
        n=args.n,
        samples=args.samples,
        layers=_indices(args.layers),
        channels=_indices(args.channels),
        data_dir=args.data_dir,
        reference=_reference(args, own_model=True),
    )
    print(f"{result.name} from {result.source}; L = {result.L}, {result.perturbation}")
    head = f"  {'layer':<14}{'view':<8}{'rows':>5}" + "".join(
        f"{name + ' lo/up holds':>22}{'med/max ratio':>18}"
        for name in ("kernel", "eigen", "spectral")
    )
    print(head + f"{'eigen viol.':>12}")
    for s in result.summary:
        cells = "".join(
            f"{s[f'{n}_lower_holds']:>10}/{s[f'{n}_upper_holds']:<11}"
            f"{s[f'{n}_median_ratio']:>9.3g}/{s[f'{n}_max_ratio']:<8.3g}"
            if f"{n}_upper_holds" in s
            else f"{'-':>22}{'':>18}"
            for n in ("kernel", "eigen", "spectral")
        )
        print(f"  {s['layer']:<14}{s['view']:<8}{s['channels']:>5}{cells}{s['eigen_violated']:>10}")
    for layer, stats in result.deltas.items():
        d = stats.summary()
        dt = f"  {layer}: Delta_k in [{d['dt_min']:.3g}, {d['dt_max']:.3g}]"
        for kind in ("clean", "adversarial"):
            if kind in d:
                k = d[kind]
                dt += (
                    f"; {kind}: ||B_k|| ~ Delta^{k['b_norm_vs_dt_slope']:.2f}, "
                    f"|C_k B_k| median {k['cb_median']:.3g} max {k['cb_max']:.3g}"
                )
        naive = d["clean"]
        print(
            dt + f"; naive ZOH rel. error {naive['naive_rel_error_float32']:.2g} (float32), "
            f"{naive['naive_rel_error_float64']:.2g} (float64)"
        )
    written = result.save(args.out)
    if args.figures:
        written += result.figures(args.figures)
    print("written: " + ", ".join(map(str, written)))
    return 0


def _indices(text: str | None) -> list[int] | None:
    """ "0,2-4" -> [0, 2, 3, 4]; None stays None (all)."""
    if text is None:
        return None
    picked: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            picked += list(range(int(first), int(last or first) + 1))
        except ValueError:
            raise ValueError(f"cannot read {text!r} as indices like 0,2-4") from None
    return picked


def _add_bounds(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bounds",
        help="Theorem 4.1.1's output-error bounds checked on a model's trained SSM layers",
        formatter_class=_FORMAT,
        description=(
            "For every SSM layer and channel: eigenvalues of A-bar, C-bar B-bar, the impulse "
            "response h1, the kernel-form (eq. 14/15) and eigenvalue-form (eq. 11/16) bounds, "
            "the spectral bound M L lambda_max(H^T H), and the exact output error "
            "E||y'-y||^2 of an i.i.d. input perturbation, with which bounds hold. LTI SISO "
            "layers (S4, DSS, Mega's EMA) per channel; S5's MIMO layer per output channel and "
            "per state; Mamba (time-varying) per inner channel, averaged over the generalised H "
            "of --n real test inputs (--L is then the data's length), with the Delta -> 0 "
            "analysis of B-bar."
        ),
    )
    p.add_argument(
        "--model",
        choices=["s4", "dss", "s5", "mega", "mamba"],
        help="the family (default: the --ckpt's; needed with --init, without --ckpt and "
        "with --from reference)",
    )
    p.add_argument("--ckpt", help="checkpoint (default: the bundled MODEL_pgd.pt)")
    p.add_argument("--init", action="store_true", help="a freshly initialised digits model")
    p.add_argument("--L", type=int, default=64, help="sequence length")
    p.add_argument(
        "--eps",
        type=float,
        help="noise scale of the perturbation (default 0.1); with adversarial, the attack's "
        "budget (default: the run's)",
    )
    p.add_argument("--mu", type=float, default=0.0, help="mean of the perturbation")
    p.add_argument(
        "--perturb",
        choices=["uniform", "sign", "gaussian", "adversarial"],
        default="uniform",
        help="i.i.d. noise around --mu, or what PGD-10 changes at each SSM layer's input",
    )
    p.add_argument("--n", type=int, default=360, help="test samples (adversarial; Mamba: always)")
    p.add_argument("--data-dir", help="dataset files (adversarial, Mamba)")
    p.add_argument("--samples", type=int, default=0, help="Monte Carlo draws as a cross-check")
    p.add_argument("--layers", help="layer indices, e.g. 0,1 (default all)")
    p.add_argument("--channels", help="channel indices, e.g. 0-7 (default all)")
    p.add_argument("--out", default="bounds.csv", help="CSV path; the JSON goes beside it")
    p.add_argument(
        "--figures",
        metavar="DIR",
        help="also draw the bounds across channels, against L (16-1024) and the eigenvalues",
    )
    _add_reference(p, own_model=True)
    p.set_defaults(func=_bounds)


def _add_discrepancy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "discrepancy",
        help="per-component feature discrepancy between clean and adversarial inputs (Figs. 3-4)",
        formatter_class=_FORMAT,
        description=(
            "For each checkpoint and split: attack the first N samples, record the input and "
            "output features of every component (SSM, linear, attention, AdS, norm) on the "
            "clean and the adversarial forward, and report MSE and sequence-softmax KL before "
            "and after each component, their change and rate (change / before, %%), averaged "
            "over layers per component kind. Writes a tidy CSV (one row per checkpoint, layer, "
            "component, split, metric, norm) and a JSON beside it with the per-position curves."
        ),
    )
    p.add_argument(
        "--ckpt",
        required=True,
        action="append",
        help="checkpoint file, or the name of a bundled one (s4_pgd.pt); repeat for several",
    )
    p.add_argument("--split", default="train,test", help="comma-separated splits")
    p.add_argument(
        "--n", type=int, default=1000, help="samples per split (capped at the split's size)"
    )
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument(
        "--attack",
        default="pgd10",
        help="pgd<N>, fgsm, aa, aa-fast, pgdl2-<N>; at the checkpoint's training eps and alpha",
    )
    p.add_argument("--eps", type=float, help="attack budget in (0, 1] (default: the run's)")
    p.add_argument(
        "--norm",
        choices=["none", "relative"],
        default="none",
        help="printed table: plain discrepancy, or divided by ||f|| (the paper's relative "
        "form); the files hold both",
    )
    p.add_argument("--seed", type=int, default=0, help="attack seed")
    p.add_argument("--out", default="discrepancy.csv", help="CSV path; the JSON goes beside it")
    _add_data_and_device(p)
    _add_reference(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_discrepancy)


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="figures from saved results (discrepancy: Figs. 3-4 and per-position curves)",
        formatter_class=_FORMAT,
    )
    p.add_argument("what", choices=["discrepancy"], help="which results")
    p.add_argument("results", nargs="+", help="CSV files written by `ssmprobe discrepancy`")
    p.add_argument("--out", default="figures", help="output directory")
    p.add_argument("--norm", choices=["none", "relative"], default="none")
    p.set_defaults(func=_plot)


def _add_data_and_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", help="dataset files (default $SSMPROBE_DATA or ~/.cache/ssmprobe/data)"
    )
    p.add_argument("--device", help="torch device (default: CUDA when present, else CPU)")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a classifier (ST, PGD-AT or TRADES)",
        formatter_class=_FORMAT,
        description=(
            "Train an SSM classifier into OUT/NAME: metrics.jsonl after every "
            "epoch, best.pt (highest test PGD accuracy) and last.pt. Unset "
            "options take the preset's value (Table 4 for mnist and cifar10). "
            "Run under torchrun for data-parallel training."
        ),
    )
    p.add_argument("--model", choices=sorted(MODELS), default="s4")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="st",
        help="st: standard, pgd: PGD-AT (Madry), trades: TRADES",
    )
    p.add_argument("--ads", choices=["relu", "tanh", "sigmoid"], help="AdS after each SSM")
    p.add_argument(
        "--ads-form",
        choices=["paper", "reference"],
        help="AdS as the paper writes it, σ(W y) ⊙ y (default), or as its reference code "
        "computes it, σ(W_s y + b_s) ⊙ y + σ(W_b y + b_b)",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="architecture and training preset (default: the dataset's)",
    )
    p.add_argument("--d-model", type=int, help="hidden width d")
    p.add_argument("--n-layers", type=int, help="number of blocks")
    p.add_argument("--d-state", type=int, help="state size N (family default if unset)")
    p.add_argument(
        "--arch",
        choices=sorted(ARCHS),
        help="table3: the paper's Table 3 as written; reference: its reference code's blocks "
        "(LayerNorm(x + block(x)), no GELU in the S4 block, reference AdS, x.view(B, HW, C)), "
        "which produced Tables 1-2 (default: reference for mnist and cifar10, table3 for digits)",
    )
    p.add_argument(
        "--augment",
        choices=["none", "crop-flip"],
        help="random 4-pixel crop and horizontal flip of each training image (the reference "
        "code's for CIFAR-10; preset's if unset: crop-flip for cifar10, else none)",
    )
    p.add_argument(
        "--residual",
        action=argparse.BooleanOptionalAction,
        help="skip connection around each block (preset's if unset: on for Mamba at digits)",
    )
    p.add_argument(
        "--epochs", type=int, help="training epochs (preset's, or the family's departure from it)"
    )
    p.add_argument("--batch-size", type=int, help="global batch size (preset's if unset)")
    p.add_argument(
        "--lr", type=float, help="AdamW learning rate, cosine-annealed (preset's or the family's)"
    )
    p.add_argument("--eps", type=float, help="ℓ∞ budget of PGD (training and per-epoch test)")
    p.add_argument("--alpha", type=float, help="PGD step size")
    p.add_argument(
        "--eps-warmup",
        type=int,
        metavar="EPOCHS",
        help="ramp the training attack's ε (and α) linearly from 0 over the first EPOCHS "
        "epochs (preset's if unset; per-epoch evaluation always uses the full ε)",
    )
    p.add_argument("--steps", type=int, help="PGD steps (10 in the paper)")
    p.add_argument("--beta", type=float, help="TRADES KL weight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--train-eval-size",
        type=int,
        help="size of the fixed train subset evaluated after every epoch (preset's: 360 on "
        "digits, 1000 on MNIST and CIFAR-10)",
    )
    p.add_argument(
        "--test-eval-size", type=int, help="test samples evaluated after every epoch (default all)"
    )
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    _add_data_and_device(p)
    p.add_argument("--out", default="runs", help="directory that holds run directories")
    p.add_argument("--name", help="run directory name (default MODEL[_ADS]_DATASET_METHOD)")
    p.add_argument("--resume", action="store_true", help="continue from NAME/last.pt (must exist)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    p.set_defaults(func=_train)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="clean, PGD and AutoAttack accuracy of a checkpoint",
        formatter_class=_FORMAT,
        description=(
            "Evaluate a checkpoint on the first N test samples of its dataset "
            "and save eval_<checkpoint>.json next to it (or --out)."
        ),
    )
    p.add_argument("--ckpt", required=True, help="checkpoint file (best.pt, last.pt)")
    p.add_argument(
        "--attack",
        default="pgd10,aa",
        help="comma-separated: pgd10, pgd20, fgsm, pgdl2-10, aa (standard "
        "AutoAttack), aa-fast (APGD-CE + APGD-T)",
    )
    p.add_argument("--n", type=int, default=1000, help="number of test samples")
    p.add_argument("--eps", type=float, help="ℓ∞ budget (default: the run's training eps)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--out", help="where the JSON record goes (default: eval_<checkpoint>.json next to it)"
    )
    _add_data_and_device(p)
    _add_reference(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_eval)


def _add_reference(p: argparse.ArgumentParser, own_model: bool = False) -> None:
    g = p.add_argument_group(
        "checkpoints of the paper's reference code",
        "a plain state dict saved by that code, converted in memory (see `ssmprobe import`)",
    )
    g.add_argument(
        "--from",
        dest="source",
        choices=["native", "reference"],
        default="native",
        help="native: an ssmprobe checkpoint; reference: that code's state dict (needs "
        + ("--dataset" if own_model else "--model and --dataset")
        + ")",
    )
    if not own_model:
        g.add_argument("--model", choices=list(FAMILIES), help="the reference model's family")
    g.add_argument("--dataset", choices=sorted(DATASETS), help="the data it was trained on")
    _add_reference_ads(g)


def _add_reference_ads(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--ads",
        choices=["relu", "tanh", "sigmoid"],
        help="its AdS activation (required when the file has AdS weights)",
    )


def _reference(args: argparse.Namespace, own_model: bool = False) -> Reference | None:
    """The `Reference` that --from reference and its flags describe; None for native files,
    whose config already says what --model/--dataset/--ads would."""
    flags = ["dataset", "ads"] if own_model else ["model", "dataset", "ads"]
    if args.source == "native":
        given = [f"--{f}" for f in flags if getattr(args, f) is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)}: only for a reference state dict (add --from reference)"
            )
        return None
    missing = [f"--{f}" for f in ("model", "dataset") if getattr(args, f) is None]
    if missing:
        raise ValueError(f"--from reference needs {' and '.join(missing)}")
    return Reference(args.model, args.dataset, args.ads)


def _import(args: argparse.Namespace) -> int:
    out = import_reference(args.state_dict, args.out, args.model, args.dataset, args.ads)
    print(f"written: {out} ({args.model} trained on {args.dataset}, from {args.state_dict})")
    return 0


def _export(args: argparse.Namespace) -> int:
    import torch

    from ssmprobe.checkpoint import load_checkpoint
    from ssmprobe.interop.reference import export_reference
    from ssmprobe.io import atomic_file

    ckpt = load_checkpoint(args.ckpt)
    dataset = DATASETS.get(ckpt.meta.get("dataset"))
    state = export_reference(ckpt.config, ckpt.state_dict, dataset and dataset.seq_len)
    with atomic_file(args.out, "wb") as f:
        torch.save(state, f)
    print(f"written: {args.out} ({len(state)} tensors in the reference layout)")
    return 0


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="convert a state dict of the paper's reference code into an ssmprobe checkpoint",
        formatter_class=_FORMAT,
        description=(
            "Reads a plain torch.save(model.state_dict()) of the reference S4 or Mamba "
            "classifier (loaded with weights_only=True: nothing in it runs), checks every key "
            "and shape, and writes a native checkpoint whose model reproduces that code's "
            "forward (its view input order, reference-form AdS, no GELUs), with the source "
            "file, its SHA-256 and the converter in meta['source']."
        ),
    )
    p.add_argument("state_dict", help="the reference code's .pt file")
    p.add_argument("--model", required=True, choices=list(FAMILIES), help="its family")
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="its training data")
    _add_reference_ads(p)
    p.add_argument("--out", required=True, help="native checkpoint to write")
    p.set_defaults(func=_import)
    p = sub.add_parser(
        "export",
        help="write a --arch reference checkpoint under the reference code's key names",
        formatter_class=_FORMAT,
        description=(
            "The inverse of `import`: the weights of an S4 or Mamba checkpoint trained with "
            "--arch reference as a plain state dict in the reference code's layout "
            "(mapping_layers.i, norms.i, input, post_norm, output; S4's kernel with C̃ for "
            "the length of the checkpoint's dataset)."
        ),
    )
    p.add_argument("--ckpt", required=True, help="the ssmprobe checkpoint")
    p.add_argument("--out", required=True, help="the state dict to write")
    p.set_defaults(func=_export)


def _poison(args: argparse.Namespace) -> int:
    import pandas as pd

    from ssmprobe.io import atomic_file, write_json
    from ssmprobe.poison.experiment import (
        SEEDS,
        PoisonConfig,
        config_dict,
        result_rows,
        run_seeds_in_parallel,
    )
    from ssmprobe.poison.figures import dynamics_title, write_dynamics_figure

    if args.seeds < 1:
        raise ValueError(f"--seeds must be positive, got {args.seeds}")
    seeds = (*SEEDS, *range(SEEDS[-1] + 1, SEEDS[-1] + args.seeds))[: args.seeds]
    given = {
        k: getattr(args, k)
        for k in ("student_dim", "length", "ext_length", "n_baseline", "n_special", "max_steps")
        if getattr(args, k) is not None
    }
    given |= {"seeds": seeds, "mlp_width": 15 if args.mlp else 0}
    config = PoisonConfig.second(**given) if args.second else PoisonConfig(**given)
    trajectories = run_seeds_in_parallel(config, args.model, args.workers, not args.quiet)
    rows = result_rows(trajectories)
    print(f"{'setting':<10}{'seed':>6}{'train loss':>13}{'ext. loss':>13}{'steps':>9}")
    for r in rows:
        flag = "" if r["fitted"] else "  (not fitted)"
        print(
            f"{r['setting']:<10}{r['seed']:>6}{r['train_loss']:>13.3g}{r['ext_loss']:>13.3g}"
            f"{r['steps']:>9}{flag}"
        )
    frame = pd.DataFrame(rows)
    for setting, group in frame.groupby("setting", sort=False):
        print(
            f"{setting:<10}{'mean':>6}{group.train_loss.mean():>13.3g}"
            f"{group.ext_loss.mean():>13.3g}   (ext. loss sd {group.ext_loss.std(ddof=0):.3g})"
        )
    out = Path(args.out)
    with atomic_file(out) as f:
        frame.to_csv(f, index=False)
    write_json(
        out.with_suffix(".json"),
        {
            "config": config_dict(config),
            "student": args.model,
            "runs": [vars(t) for t in trajectories],
        },
    )
    written = [out, out.with_suffix(".json")]
    if args.figures:
        student = args.model + ("_mlp" if args.mlp else "")
        title = dynamics_title(student, config_dict(config))
        written += write_dynamics_figure(trajectories, title, args.figures, student)
    print("written: " + ", ".join(map(str, written)))
    return 0


def _add_poison(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "poison",
        help="clean-label poisoning of an SSM's implicit bias (Slutzky et al.)",
        formatter_class=_FORMAT,
        description=(
            "A student SSM fits sequences labelled by a teacher (state dimension 1, A = B = C = 1) "
            "by full-batch gradient descent in float64, once on baseline sequences and once with "
            "special sequences (non-zero only at position L-2, labelled by the teacher) added. "
            "Prints and writes the training and extension loss (outputs on the one-hot "
            "sequences of --ext-length against the teacher's) per seed and setting, a JSON of "
            "the training dynamics, and with --figures their figure."
        ),
    )
    p.add_argument(
        "--model",
        choices=["linear", "dss", "s4"],
        default="linear",
        help="the student: the paper's diagonal linear SSM, or one of the library's own layers "
        "(a DSS or S4 channel, eigenvalues read with discrete())",
    )
    p.add_argument("--student-dim", type=int, help="student state dimension (default 10)")
    p.add_argument("--length", type=int, help="training sequence length (default 6)")
    p.add_argument("--ext-length", type=int, help="extension length (default 40)")
    p.add_argument("--n-baseline", type=int, help="baseline sequences (default 8)")
    p.add_argument("--n-special", type=int, help="special sequences (default 10)")
    p.add_argument("--seeds", type=int, default=4, help="seeds: 200, 201, 204, 205, then 206, ...")
    p.add_argument("--mlp", action="store_true", help="a ReLU network (15 hidden) after the SSM")
    p.add_argument(
        "--second",
        action="store_true",
        help="the paper's second configuration: L 10, N 20, sd_A 0.01, step 0.001, 7 non-zero",
    )
    p.add_argument("--max-steps", type=int, help="gradient steps at most (default 10^6)")
    p.add_argument(
        "--workers",
        type=int,
        help="processes the seeds are split over (default: 1 for the linear student, whose "
        "runs are batched in one program; one per free core for dss and s4)",
    )
    p.add_argument("--out", default="poison.csv", help="CSV path; the JSON goes beside it")
    p.add_argument("--figures", metavar="DIR", help="also draw the training dynamics")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_poison)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssmprobe", description="Adversarial robustness of deep state space models."
    )
    parser.add_argument("--version", action="version", version=f"ssmprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_eval(sub)
    _add_discrepancy(sub)
    _add_plot(sub)
    _add_attribute(sub)
    _add_bounds(sub)
    _add_import(sub)
    _add_poison(sub)
    table = sub.add_parser(
        "table",
        help="Tables 1-2: Best / Last / Diff of Clean, PGD-10, AA",
        description="Tables 1-2 of every run under RUNS (table.md, .csv, .tex): Best / Last / "
        "Diff of Clean, PGD-10 and AutoAttack accuracy; ‡ marks suspected gradient masking, § a "
        "warning of AutoAttack's own checks. Settings trained with several seeds also get "
        "table_seeds.md / .csv / .tex: mean ± sample standard deviation over the seeds.",
        formatter_class=_FORMAT,
    )
    table.add_argument("runs", help="directory of run directories")
    table.add_argument("--out", help="where the tables go (default: RUNS)")
    table.set_defaults(func=_table)
    report = sub.add_parser(
        "report",
        help="every table and figure of all runs, and report.md / report.html",
        formatter_class=_FORMAT,
        description=(
            "Reads every run directory under --runs, computes what is missing and caches it "
            "next to the run (eval_best/last.json with --attack on --n-eval test samples; the "
            "feature discrepancy of the probed checkpoint on --n-probe samples per split; "
            "Theorem 4.1.1 on one run per family), then writes Tables 1-2, the training curves, "
            "Figures 3-4, the bounds figures, the poisoning figure of any `ssmprobe poison` "
            "results under --runs, report.md and a self-contained report.html into --out. A "
            "second run with nothing new rewrites no file."
        ),
    )
    report.add_argument("--runs", default="runs", help="directory of run directories")
    report.add_argument("--out", default="figures", help="output directory")
    report.add_argument("--attack", default="pgd10,aa", help="attacks of a missing evaluation")
    report.add_argument("--n-eval", type=int, default=360, help="test samples per evaluation")
    report.add_argument(
        "--n-probe", type=int, default=360, help="samples per split for the discrepancy"
    )
    report.add_argument("--data-dir", help="dataset files (default: the package's)")
    report.add_argument(
        "--zoo",
        action="store_true",
        help="also report the bundled checkpoints (written as run directories to RUNS/zoo)",
    )
    report.add_argument("--quiet", action="store_true", help="no progress bars")
    report.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DatasetError, CheckpointError, TrainingDiverged, ValueError, FileNotFoundError) as err:
        print(f"ssmprobe: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
