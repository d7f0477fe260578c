"""Theorem 4.1.1 on one model, end to end: the API behind `ssmprobe bounds` and the report.

`check_model` loads a checkpoint (or a fresh digits model), chooses the perturbation (an i.i.d.
law, or what PGD-10 changes at each SSM layer's input on `n` test samples), and returns the
per-layer, per-channel rows of `bounds.lti.model_rows` (LTI layers) or
`bounds.selective.selective_rows` (Mamba, over the generalised H of real test inputs, with the
Δ → 0 statistics). `BoundsCheck.save` writes the rows as CSV and everything as JSON beside it;
`BoundsCheck.figures` draws them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from ssmprobe.attacks import attack_config
from ssmprobe.bounds.lti import (
    PerturbationLaw,
    measure_adversarial,
    model_rows,
    perturbation_law,
    summarise_rows,
)
from ssmprobe.bounds.selective import DeltaStats, load_deltas, save_deltas
from ssmprobe.checkpoint import bundled_dir
from ssmprobe.data import load_dataset, make_loader
from ssmprobe.interop.reference import Reference
from ssmprobe.interop.userdata import UserData, model_meta, user_batches
from ssmprobe.io import FIGURE_FORMATS, atomic_file, write_json
from ssmprobe.loading import load_model
from ssmprobe.models import FAMILIES, build_model, model_config
from ssmprobe.models.base import LTISSM

PERTURB_CHOICES = ("uniform", "sign", "gaussian", "adversarial")
_FORMS = ("kernel", "eigen", "spectral")  # the bounds the summary compares


@dataclass
class BoundsCheck:
    """The rows of one model's check and what they were measured on."""

    model: nn.Module
    name: str  # the family: s4, dss, s5, mega, mamba
    source: str  # the checkpoint's path, or "a fresh initialisation"
    L: int
    perturbation: str  # one line saying what perturbed the input
    rows: list[dict[str, Any]]
    law: PerturbationLaw | None = None  # None for the adversarial perturbation
    deltas: dict[str, DeltaStats] = field(default_factory=dict)  # Mamba only
    file: dict[str, str] | None = None  # the checkpoint's path and SHA-256
    # `figures.length_medians`: the bounds against L, kept once computed (LTI under a law)
    lengths: dict[str, dict[str, list[float]]] | None = None

    @property
    def summary(self) -> list[dict[str, Any]]:
        return summarise_rows(self.rows)

    def save(self, out: str | Path) -> list[Path]:
        """The rows as CSV at `out`, {meta, summary, rows[, delta]} as JSON beside it and, for
        Mamba, the Δ points in `<stem>_delta.npz`: everything `load_check` needs to draw the
        figures again without redoing the check."""
        out = Path(out)
        with atomic_file(out) as f:
            pd.DataFrame(self.rows).to_csv(f, index=False)
        meta = {"model": self.name, "source": self.source, "file": self.file, "L": self.L}
        meta |= {"perturbation": self.perturbation, "law": asdict(self.law) if self.law else None}
        payload: dict[str, Any] = {"meta": meta, "summary": self.summary, "rows": self.rows}
        if self.lengths is not None:
            payload["vs_L"] = self.lengths
        written = [out, out.with_suffix(".json")]
        if self.deltas:
            payload["delta"] = {name: d.summary() for name, d in self.deltas.items()}
            save_deltas(_delta_file(out), self.deltas)
            written.append(_delta_file(out))
        write_json(out.with_suffix(".json"), payload)
        return written

    def format(self) -> str:
        """The summary as a table: per layer and view, how many rows each bound holds on and
        its median / max ratio to the measured error; for Mamba, the Δ analysis per layer."""
        lines = [f"{self.name} from {self.source}; L = {self.L}, {self.perturbation}"]
        head = f"  {'layer':<14}{'view':<8}{'rows':>5}" + "".join(
            f"{form + ' lo/up holds':>22}{'med/max ratio':>18}" for form in _FORMS
        )
        lines.append(head + f"{'eigen viol.':>12}")
        for s in self.summary:
            cells = "".join(
                f"{s[f'{n}_lower_holds']:>10}/{s[f'{n}_upper_holds']:<11}"
                f"{s[f'{n}_median_ratio']:>9.3g}/{s[f'{n}_max_ratio']:<8.3g}"
                if f"{n}_upper_holds" in s
                else f"{'-':>22}{'':>18}"
                for n in _FORMS
            )
            lines.append(
                f"  {s['layer']:<14}{s['view']:<8}{s['channels']:>5}{cells}"
                f"{s['eigen_violated']:>10}"
            )
        lines.append(
            "  (eigen: eq. 11/16 as printed, not valid bounds: both eigenvalue steps of the "
            "proof are false; 'holds' counts the rows where each side happens to hold)"
        )
        for layer, stats in self.deltas.items():
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
            lines.append(
                dt + f"; naive ZOH rel. error {naive['naive_rel_error_float32']:.2g} (float32), "
                f"{naive['naive_rel_error_float64']:.2g} (float64)"
            )
        return "\n".join(lines)

    @property
    def needs_lengths(self) -> bool:
        """True where the figures draw the bounds against L (an LTI model under a law) and
        `lengths` does not hold them yet."""
        return self.law is not None and not self.deltas and self.lengths is None

    def figures(
        self,
        out_dir: str | Path,
        name: str | None = None,
        formats: Sequence[str] = FIGURE_FORMATS,
    ) -> list[Path]:
        """Mamba: the bounds across channels and the Δ figure; an LTI model under an i.i.d.
        law: the bounds across channels, against L and the eigenvalues; else none (the
        length sweep needs a law). `name` (default the family) goes into the file names;
        one file per suffix in `formats`."""
        from ssmprobe.bounds.figures import write_bounds_figures, write_mamba_figures

        name = name or self.name
        if self.deltas:
            return write_mamba_figures(
                name, self.rows, self.deltas, self.perturbation, out_dir, formats
            )
        if self.law is not None:
            return write_bounds_figures(
                self.model, name, self.rows, self.law, out_dir, formats, self.lengths
            )
        return []


def _delta_file(out: Path) -> Path:
    return out.with_name(f"{out.stem}_delta.npz")


def load_check(cache: str | Path, ckpt: str | Path) -> BoundsCheck | None:
    """The check `BoundsCheck.save` wrote at `cache` for the checkpoint `ckpt`, to draw its
    figures again; None when the cache lacks what they need (the law, or Mamba's Δ points),
    as caches written before they were saved do."""
    cache = Path(cache)
    if not cache.with_suffix(".json").is_file():
        return None
    payload = json.loads(cache.with_suffix(".json").read_text())
    meta = payload["meta"]
    deltas: dict[str, DeltaStats] = {}
    if FAMILIES[meta["model"]].time_varying:
        if not _delta_file(cache).is_file():
            return None
        deltas = load_deltas(_delta_file(cache))
    elif not meta.get("law"):
        return None
    model = load_model(ckpt, "cpu")
    law = PerturbationLaw(**meta["law"]) if meta.get("law") else None
    return BoundsCheck(
        model, meta["model"], meta["source"], meta["L"], meta["perturbation"],
        payload["rows"], law, deltas, meta.get("file"), payload.get("vs_L"),
    )  # fmt: skip


# Peak bytes per kernel entry and time step of `model_rows` (float64 kernels, their FFTs over 2L
# and the Lanczos vectors), measured: 240 for DSS, 550 for S5's (out, in) kernels; with margin.
BYTES_PER_KERNEL_STEP = 600


def check_memory(model: nn.Module, length: int) -> None:
    """Refuses, before allocating, a length whose kernels will not fit in the free memory."""
    with torch.no_grad():
        width = max(layer.impulse_response(1).numel() for layer in model.ssm_layers().values())
    need = BYTES_PER_KERNEL_STEP * width * length
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > free:
        raise ValueError(
            f"L = {length} needs about {need / 2**30:.1f} GiB ({width} kernels of length L), "
            f"{free / 2**30:.1f} GiB are free: choose a smaller --L"
        )


def check_wrapped(
    model: nn.Module,
    data: UserData | None = None,
    *,
    L: int = 64,
    perturb: str = "uniform",
    eps: float | None = None,
    mu: float = 0.0,
    n: int = 360,
    samples: int = 0,
    layers: list[int] | None = None,
    channels: list[int] | None = None,
    progress: bool = False,
) -> BoundsCheck:
    """Theorem 4.1.1 on a wrapped model's SSM components (`ssmprobe.wrap`), through the layers
    that the SSM readers rebuild from their own parameters (`interop.readers`): LTI layers (s4d,
    s5, a callable's) like a bundled family's, at length `L` under `perturb`, or on `data`
    under PGD-10; selective ones (mamba1, mamba2) on the first `n` samples of `data`."""
    if perturb not in PERTURB_CHOICES:
        raise ValueError(f"unknown perturbation {perturb!r}; choose one of {PERTURB_CHOICES}")
    model, meta = model_meta(model)
    read = model.ssm_layers()
    if not read:
        raise ValueError(
            f"{meta['model']}: no `ssm` component whose parameters a reader knows (mamba1, "
            "mamba2, s4d, s5): name the SSM layers in components, or give readers="
        )
    selective = [name for name, layer in read.items() if not isinstance(layer, LTISSM)]
    if selective and len(selective) < len(read):
        raise ValueError(f"{meta['model']} mixes time-varying ({', '.join(selective)}) and LTI "
                         "SSM layers: check them with two wraps")  # fmt: skip
    adversarial = perturb == "adversarial"
    attack = attack_config("pgd10", meta, eps) if adversarial else None
    law = None if adversarial else perturbation_law(perturb, 0.1 if eps is None else eps, mu)
    if (selective or adversarial) and data is None:
        raise ValueError("this check runs on real inputs: give data=")

    def batches(size: int) -> Iterable[tuple[Tensor, Tensor]]:
        return user_batches(model, data, size, n)

    on = f"the first {n} samples of the given data"
    if selective:
        from ssmprobe.bounds.selective import selective_rows

        rows, deltas = selective_rows(
            model, batches(50), attack or law, layers, channels, total=n, progress=progress
        )
        length = next(iter(batches(1)))[0].shape[1]
        what = f"{'PGD-10' if attack else law.kind} perturbation, H of {on}"
        return BoundsCheck(model, meta["model"], meta["model"], length, what, rows, law, deltas)
    check_memory(model, L)
    perturbation: Any = law
    if attack is not None:
        perturbation = measure_adversarial(model, batches(100), attack)
        L = next(iter(batches(1)))[0].shape[1]
        what = f"PGD-10 (eps {attack.eps:g}) on {on}"
    else:
        what = f"{law.kind} perturbation: mu = {law.mu:g}, sigma^2 = {law.sigma2:.4g}"
    rows = model_rows(model, L, perturbation, layers, channels, samples, progress=progress)
    return BoundsCheck(model, meta["model"], meta["model"], L, what, rows, law)


def check_model(
    model_name: str | nn.Module | None,
    ckpt: str | Path | UserData | None = None,
    *,
    init: bool = False,
    L: int = 64,
    perturb: str = "uniform",
    eps: float | None = None,
    mu: float = 0.0,
    n: int = 360,
    samples: int = 0,
    layers: list[int] | None = None,
    channels: list[int] | None = None,
    data_dir: str | Path | None = None,
    reference: Reference | None = None,
    progress: bool = False,
) -> BoundsCheck:
    """Theorem 4.1.1 on the `model_name` at `ckpt` (default the bundled `<model>_pgd.pt`; with
    `init`, a fresh digits model) under `perturb` (module docstring); `eps` is the noise scale
    (default 0.1) or, adversarially, the attack's budget (default: the run's). `model_name`
    None takes the family from the checkpoint. A wrapped model (`ssmprobe.wrap`) in place of
    `model_name` goes to `check_wrapped`, with its data as `ckpt`."""
    if isinstance(model_name, nn.Module):  # `ssmprobe.wrap`'s model: `ckpt` is its data
        return check_wrapped(
            model_name, ckpt, L=L, perturb=perturb, eps=eps, mu=mu, n=n, samples=samples,
            layers=layers, channels=channels, progress=progress,
        )  # fmt: skip
    if model_name is None and (init or ckpt is None):
        raise ValueError("name the model family (--model) for --init or the bundled checkpoint")
    if L < 1:
        raise ValueError(f"L must be a positive sequence length, got {L}")
    if perturb not in PERTURB_CHOICES:
        raise ValueError(f"unknown perturbation {perturb!r}; choose one of {PERTURB_CHOICES}")
    adversarial = perturb == "adversarial"
    if adversarial and init:
        raise ValueError("the adversarial perturbation attacks a trained checkpoint; drop --init")
    if reference is not None and (init or ckpt is None):
        raise ValueError("--from reference analyses the state dict given with --ckpt")
    law = None if adversarial else perturbation_law(perturb, 0.1 if eps is None else eps, mu)
    if init:
        model, source = build_model(model_config(model_name, "digits")), "a fresh initialisation"
        meta: dict[str, Any] = {"dataset": "digits"}
    else:
        ckpt = ckpt or bundled_dir() / f"{model_name}_pgd.pt"
        model = load_model(ckpt, "cpu", reference)
        meta = model.meta
        model_name = model_name or meta["config"]["model"]
        if meta["config"]["model"] != model_name:
            raise ValueError(f"{ckpt} holds a {meta['config']['model']}, not a {model_name}")
        source = str(ckpt)
    attack = attack_config("pgd10", meta, eps) if adversarial else None

    def test_loader(batch_size: int) -> tuple[Any, int, str]:
        data = load_dataset(meta["dataset"], "test", data_dir).head(n)
        loader = make_loader(data, batch_size)
        return loader, data.seq_len, f"{len(data)} {meta['dataset']} test samples"

    if FAMILIES[model_name].time_varying:  # H depends on real inputs, whatever the law
        from ssmprobe.bounds.selective import selective_rows

        loader, L, on = test_loader(50)
        rows, deltas = selective_rows(
            model,
            loader,
            attack if adversarial else law,
            layers,
            channels,
            total=len(loader.dataset),
            progress=progress,
        )
        what = (
            f"PGD-10 (eps {attack.eps:g}) on H of {on}"
            if attack is not None
            else f"{law.kind} perturbation at the SSM input (mu = {law.mu:g}, "
            f"sigma^2 = {law.sigma2:.4g}, M = {law.M:.4g}), H of {on}"
        )
        return BoundsCheck(model, model_name, source, L, what, rows, law, deltas, meta.get("file"))
    check_memory(model, L)
    if attack is not None:
        loader, L, on = test_loader(100)  # measured on the data's own length
        perturbation: Any = measure_adversarial(model, loader, attack)
        what = f"PGD-10 (eps {attack.eps:g}) on {on}"
    else:
        perturbation = law
        what = (
            f"{law.kind} perturbation: mu = {law.mu:g}, sigma^2 = {law.sigma2:.4g}, M = {law.M:.4g}"
        )
    rows = model_rows(model, L, perturbation, layers, channels, samples, progress=progress)
    return BoundsCheck(model, model_name, source, L, what, rows, law, file=meta.get("file"))
