"""Theorem 4.1.1 on Mamba's time-varying SSM (eq. 10, Appendix A) and the Δ → 0 analysis of §4.1.

For one input of a Mamba block, `Mamba.discrete` gives per step k and inner channel d the
diagonal Ā_k = exp(Δ_k A), B̄_k and C_k. With the SSM's input x (after in_proj, conv, SiLU),
eq. 10 without the feed-through D and the gate is y = H x, per channel, with the generalised

    H_kj = Σ_n C_k,n exp(A_n (S_k - S_j)) B̄_j,n  (k ≥ j),   S_k = Σ_{i≤k} Δ_i,

since Ā_k ⋯ Ā_{j+1} = exp(A Σ_{i=j+1}^{k} Δ_i). B̄ is what `forward` uses, Δ_k B_k. H depends
on the input, so every sample has its own; a perturbation ε of x with Δ, B, C held fixed (the
linearised pass) changes y by exactly Hε.

`selective_rows` streams real inputs through the model and, per SSM layer and inner channel,
averages over samples: |λ|max/min over steps and states, C̄_0 B̄_0, ||h1||² (H's first column),
the exact error, the kernel-form bounds on h1, the time-varying eigenvalue form
(`bounds.theorem.eigen_bounds_time_varying`; not a valid bound on either side, its proof's
eigenvalue steps being false) and the spectral bound M·L·λ_max(HᵀH). For an
i.i.d. law at the SSM input the exact error is σ²||H||_F² + μ²||H1||² per sample, and
`*_fail_rate` is the share of samples whose own bound fails. For `adversarial` (PGD on the
inputs) the error is the measured E||y' - y||² with everything (x, Δ, B, C) moved by the
attack, `linearised` the part E||Hε||² that the fixed-parameter theory describes, and μ, M are
measured per channel.

`DeltaStats` collects the Δ → 0 picture on the same inputs: ||B̄_k|| (exact ZOH, over the N
states) against Δ_k, |C̄_k B̄_k| for clean and adversarial inputs, and the relative error of the
naive ZOH (Ā - I)(ΔA)⁻¹ΔB in float32 and float64 against the stable form in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ssmprobe.attacks import AttackConfig
from ssmprobe.bounds.lti import BOUNDS, PerturbationLaw, bound_rows
from ssmprobe.bounds.theorem import (
    check,
    eigen_bounds_time_varying,
    exact_error_matrix,
    kernel_bounds,
    spectral_bound_matrix,
)
from ssmprobe.io import atomic_file
from ssmprobe.models import discretize
from ssmprobe.models.mamba import SelectiveSSM
from ssmprobe.probe.recorder import Features, adversarial_features, record

POINTS = 20_000  # Δ-analysis points kept per layer and input kind, for figures and quantiles


def transfer_matrix(ssm: SelectiveSSM, exact_zoh: bool = False) -> Tensor:
    """The generalised H of eq. 10, (batch, D, L, L) float64, lower triangular: y_k = Σ_j H_kj x_j
    is the SSM's output before D and the gate. `exact_zoh` uses B̄ = Δφ₁(ΔA)B instead of ΔB."""
    a = ssm.A.detach().double()
    b_bar = (ssm.B_bar if exact_zoh else ssm.B_bar_euler).detach().double()
    c = ssm.C.detach().double()
    s = ssm.dt.detach().double().cumsum(dim=1)  # (batch, L, D)
    batch, length, width = s.shape
    k, j = torch.tril_indices(length, length)  # only k ≥ j: H is lower triangular
    H = torch.zeros(batch, width, length, length, dtype=torch.float64)
    for i in range(batch):  # one sample at a time: the (pairs, D, N) tensor is the peak
        terms = torch.exp((s[i][k] - s[i][j]).unsqueeze(-1) * a)  # Ā_k⋯Ā_{j+1}: (pairs, D, N)
        terms.mul_(b_bar[i][j]).mul_(c[i][k][:, None, :])
        H[i, :, k, j] = terms.sum(dim=-1).T
    return H


def extreme_moduli(ssm: SelectiveSSM) -> tuple[Tensor, Tensor]:
    """Per sample, step and channel the smallest and largest |eigenvalue| of the diagonal Ā_k,
    each (batch, L, D)."""
    moduli = ssm.A_bar.detach().double().abs()
    return moduli.amin(dim=-1), moduli.amax(dim=-1)


def cb_products(ssm: SelectiveSSM, exact_zoh: bool = False) -> Tensor:
    """C̄_k B̄_k = Σ_n C_k,n B̄_k,d,n per sample, step and channel: (batch, L, D)."""
    b_bar = ssm.B_bar if exact_zoh else ssm.B_bar_euler
    return torch.einsum("bln,bldn->bld", ssm.C.detach().double(), b_bar.detach().double())


@dataclass
class DeltaStats:
    """The Δ → 0 analysis of one layer, streamed: running extremes and up to `POINTS` points per
    input kind (`clean`, `adversarial`) of (Δ_k, ||B̄_k||, |C̄_k B̄_k|, Δ_k A_n)."""

    points: dict[str, dict[str, list[Tensor]]] = field(default_factory=dict)
    dt_min: float = math.inf
    dt_max: float = 0.0
    kept: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, ssm: SelectiveSSM, generator: torch.Generator) -> None:
        dt = ssm.dt.detach().double()
        self.dt_min = min(self.dt_min, dt.min().item())
        self.dt_max = max(self.dt_max, dt.max().item())
        values = {
            "dt": dt,
            "b_norm": ssm.B_bar.detach().double().norm(dim=-1),
            "cb": cb_products(ssm).abs(),
        }
        flat = {key: v.flatten() for key, v in values.items()}
        room = POINTS - self.kept.get(kind, 0)
        if room <= 0:
            return
        take = torch.randperm(flat["dt"].numel(), generator=generator)[:room]
        store = self.points.setdefault(kind, {})
        for key, v in flat.items():
            store.setdefault(key, []).append(v[take])
        # one state per kept point, for the naive-versus-stable comparison on real Δ_k A_n
        a = ssm.A.detach().double()
        state = torch.randint(0, a.shape[1], (take.numel(),), generator=generator)
        channel = take % dt.shape[-1]
        store.setdefault("z", []).append(flat["dt"][take] * a[channel, state])
        self.kept[kind] = self.kept.get(kind, 0) + take.numel()

    def arrays(self, kind: str) -> dict[str, Tensor]:
        return {key: torch.cat(v) for key, v in self.points.get(kind, {}).items()}

    def _arrays_out(self) -> dict[str, np.ndarray]:
        out = {"dt_range": np.array([self.dt_min, self.dt_max])}
        for kind in self.points:
            out |= {f"{kind}.{key}": v.numpy() for key, v in self.arrays(kind).items()}
        return out

    @classmethod
    def _from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> DeltaStats:
        stats = cls(dt_min=float(arrays["dt_range"][0]), dt_max=float(arrays["dt_range"][1]))
        for name, values in arrays.items():
            if "." in name:
                kind, key = name.split(".", 1)
                stats.points.setdefault(kind, {})[key] = [torch.from_numpy(np.array(values))]
                stats.kept[kind] = len(values)
        return stats

    def summary(self) -> dict[str, Any]:
        """Extremes of Δ, the log-log slope of ||B̄|| against Δ, |C̄B̄| quantiles per kind, and
        the naive form's worst relative error on the kept real Δ_k A_n."""
        out: dict[str, Any] = {"dt_min": self.dt_min, "dt_max": self.dt_max}
        for kind in self.points:
            p = self.arrays(kind)
            x, y = p["dt"].log(), p["b_norm"].clamp_min(1e-300).log()
            slope = ((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum()
            q = torch.quantile(p["cb"], torch.tensor([0.5, 0.99], dtype=torch.float64))
            out[kind] = {
                "points": len(x),
                "b_norm_vs_dt_slope": slope.item(),
                "cb_median": q[0].item(),
                "cb_p99": q[1].item(),
                "cb_max": p["cb"].max().item(),
                "naive_rel_error_float32": naive_zoh_error(p["z"], torch.float32).max().item(),
                "naive_rel_error_float64": naive_zoh_error(p["z"], torch.float64).max().item(),
            }
        return out


def naive_zoh_error(z: Tensor, dtype: torch.dtype) -> Tensor:
    """|B̄_naive - B̄| / |B̄| with B̄/(ΔB) = (e^z - 1)/z evaluated as written in `dtype`, against the
    stable φ₁(z) in float64 (z = Δ·a). NaN (0/0 at z = 0) counts as an infinite error."""
    reference = discretize.phi1(z.double())
    zd = z.to(dtype)
    naive = ((torch.exp(zd) - 1) / zd).double()
    error = (naive - reference).abs() / reference.abs()
    return torch.nan_to_num(error, nan=math.inf)


@dataclass
class _LayerSums:
    """Running sums over samples of one layer's per-channel quantities."""

    values: dict[str, Tensor] = field(default_factory=dict)
    lam_min: Tensor | None = None
    lam_max: Tensor | None = None
    count: int = 0
    length: int = 0

    def add(self, name: str, per_sample: Tensor) -> None:
        total = per_sample.sum(dim=0)
        self.values[name] = self.values.get(name, 0) + total

    def mean(self, name: str) -> Tensor:
        return self.values[name] / self.count


def _samples(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    attack: AttackConfig | None,
    names: Sequence[str],
    seed: int,
) -> Iterable[tuple[dict[str, Tensor], dict[str, Tensor] | None, int]]:
    """Per batch the clean (and, with `attack`, adversarial) input of each named Mamba layer;
    attacked through `probe.recorder.adversarial_features`, the stream the LTI bounds use."""
    components = [c for c in model.components() if c.name in names]
    if attack is not None:
        for clean, adv, size in adversarial_features(model, batches, attack, components, seed):
            yield _entries(clean), _entries(adv), size
        return
    with record(model, components) as recording:
        for x, y in batches:
            yield _entries(recording.capture(x)), None, len(y)


def _entries(features: dict[str, Features]) -> dict[str, Tensor]:
    return {name: f.entry for name, f in features.items()}


def save_deltas(path: str | Path, deltas: Mapping[str, DeltaStats]) -> None:
    """Writes each layer's kept Δ points and extremes into one compressed .npz at `path`
    (arrays `layer/dt_range` and `layer/kind.key`), whole or not at all."""
    arrays = {
        f"{layer}/{name}": values
        for layer, stats in deltas.items()
        for name, values in stats._arrays_out().items()
    }
    with atomic_file(Path(path), "wb") as f:
        np.savez_compressed(f, **arrays)


def load_deltas(path: str | Path) -> dict[str, DeltaStats]:
    """The inverse of `save_deltas`: {layer: DeltaStats}."""
    by_layer: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as arrays:
        for name in arrays.files:
            layer, key = name.split("/", 1)
            by_layer.setdefault(layer, {})[key] = arrays[name]
    return {layer: DeltaStats._from_arrays(a) for layer, a in by_layer.items()}


def selective_rows(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    perturbation: PerturbationLaw | AttackConfig,
    layers: Sequence[int] | None = None,
    channels: Sequence[int] | None = None,
    seed: int = 0,
    total: int | None = None,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, DeltaStats]]:
    """Rows per (Mamba layer, inner channel) over the samples of `batches` (see the module
    docstring) and each layer's `DeltaStats`. `perturbation` is an i.i.d. law of the SSM input's
    perturbation, or an attack whose adversarial inputs give the measured one."""
    ssm_layers = list(model.ssm_layers().items())
    # Any layer with Mamba's selective interface: ours, or one read by `interop.readers`.
    if not all(hasattr(layer, "discrete") and hasattr(layer, "d_inner") for _, layer in ssm_layers):
        raise ValueError(
            "selective_rows needs selective layers (Mamba, or a layer read by mamba1/mamba2: "
            "discrete(hidden) and d_inner); LTI layers go to layer_bounds"
        )
    picked = list(range(len(ssm_layers))) if layers is None else list(layers)
    bad = [i for i in picked if not 0 <= i < len(ssm_layers)]
    if bad:
        raise ValueError(f"layers {bad} outside the model's 0..{len(ssm_layers) - 1}")
    width = ssm_layers[0][1].d_inner
    chans = list(range(width)) if channels is None else list(channels)
    if any(not 0 <= c < width for c in chans):
        raise ValueError(f"channels outside the layer's 0..{width - 1}")
    mixers = {ssm_layers[i][0]: ssm_layers[i][1] for i in picked}
    attack = perturbation if isinstance(perturbation, AttackConfig) else None
    sums = {name: _LayerSums() for name in mixers}
    deltas = {name: DeltaStats() for name in mixers}
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=total, desc="bounds (mamba)", unit="sample", leave=False, disable=not progress)
    with bar, torch.no_grad():
        for clean, adv, size in _samples(model, batches, attack, list(mixers), seed):
            for name, mixer in mixers.items():
                ssm = mixer.discrete(clean[name])
                deltas[name].add("clean", ssm, generator)
                adv_ssm = None
                if adv is not None:
                    adv_ssm = mixer.discrete(adv[name])
                    deltas[name].add("adversarial", adv_ssm, generator)
                _accumulate(sums[name], ssm, adv_ssm, perturbation, chans)
            bar.update(size)
    if not any(s.count for s in sums.values()):
        raise ValueError("no samples")
    rows = [
        {"layer": name, **row}
        for name, s in sums.items()
        for row in _finish(s, chans, perturbation)
    ]
    return rows, deltas


def _accumulate(
    sums: _LayerSums,
    ssm: SelectiveSSM,
    adv: SelectiveSSM | None,
    perturbation: PerturbationLaw | AttackConfig,
    chans: Sequence[int],
) -> None:
    """Adds one batch's per-sample quantities (channels `chans`) to `sums`."""
    H = transfer_matrix(ssm)[:, chans]  # (b, D', L, L)
    h1 = H[..., 0]  # response to an impulse at step 0: (b, D', L)
    lam_min, lam_max = (m[..., chans].transpose(1, 2) for m in extreme_moduli(ssm))  # (b, D', L)
    cb = cb_products(ssm)[..., chans].transpose(1, 2)
    sums.lam_min = _fold(sums.lam_min, lam_min.amin(dim=(0, 2)), torch.minimum)
    sums.lam_max = _fold(sums.lam_max, lam_max.amax(dim=(0, 2)), torch.maximum)
    sums.add("cb", cb[..., 0])
    sums.add("h_norm2", h1.square().sum(-1))
    sums.count += H.shape[0]
    sums.length = H.shape[-1]
    if adv is None:
        law = perturbation
        mu, big_m = law.mu, law.M
        exact = exact_error_matrix(H, law.mu, law.sigma2)
        sums.add("exact", exact)
    else:
        eps = (adv.x - ssm.x).detach().double()[..., chans].transpose(1, 2)  # (b, D', L)
        y_clean = H @ ssm.x.detach().double()[..., chans].transpose(1, 2).unsqueeze(-1)
        H_adv = transfer_matrix(adv)[:, chans]
        x_adv = adv.x.detach().double()[..., chans].transpose(1, 2).unsqueeze(-1)
        sums.add("exact", (H_adv @ x_adv - y_clean).squeeze(-1).square().sum(-1))
        sums.add("linearised", (H @ eps.unsqueeze(-1)).squeeze(-1).square().sum(-1))
        sums.add("eps", eps.mean(-1))
        sums.add("eps_sq", eps.square())  # (D', L): M = max_k E[ε_k²] at the end
        # per-sample bounds need μ, M, which are known only at the end: keep the parts
        mu = big_m = None
    parts = {
        "kernel": lambda mu_, m_: kernel_bounds(h1, mu_, m_),
        "eigen": lambda mu_, m_: eigen_bounds_time_varying(lam_min, lam_max, cb, mu_, m_),
        "spectral": lambda mu_, m_: (
            torch.zeros(H.shape[:2], dtype=torch.float64),
            spectral_bound_matrix(H, m_),
        ),
    }
    if mu is not None:
        for name, bound in parts.items():
            low, up = bound(mu, big_m)
            sums.add(f"{name}_lower", low)
            sums.add(f"{name}_upper", up)
            verdict = check(low, exact, up)
            sums.add(f"{name}_lower_fail", (~verdict["lower_holds"]).double())
            sums.add(f"{name}_upper_fail", (~verdict["upper_holds"]).double())
    else:
        # μ² and M enter every bound linearly: store each bound at μ = M = 1
        one = torch.tensor(1.0, dtype=torch.float64)
        for name, bound in parts.items():
            low, up = bound(one, one)
            sums.add(f"{name}_lower_unit", low)
            sums.add(f"{name}_upper_unit", up)


def _fold(old: Tensor | None, new: Tensor, op) -> Tensor:
    return new if old is None else op(old, new)


def _finish(
    sums: _LayerSums, chans: Sequence[int], perturbation: PerturbationLaw | AttackConfig
) -> list[dict[str, Any]]:
    """The per-channel rows of one layer from its sums."""
    columns: dict[str, Tensor] = {
        "lam_max_abs": sums.lam_max,
        "lam_min_abs": sums.lam_min,
        "cb": sums.mean("cb"),
        "h_norm2": sums.mean("h_norm2"),
    }
    bounds: dict[str, tuple[Tensor, Tensor]] = {}
    if isinstance(perturbation, PerturbationLaw):
        for key in ("mu", "sigma2", "M"):
            value = getattr(perturbation, key)
            columns[key] = torch.full((len(chans),), value, dtype=torch.float64)
        columns["exact"] = sums.mean("exact")
        for name in BOUNDS:
            bounds[name] = (sums.mean(f"{name}_lower"), sums.mean(f"{name}_upper"))
            columns[f"{name}_lower_fail_rate"] = sums.mean(f"{name}_lower_fail")
            columns[f"{name}_upper_fail_rate"] = sums.mean(f"{name}_upper_fail")
    else:
        mu = sums.mean("eps")
        big_m = sums.mean("eps_sq").amax(dim=-1)
        columns |= {"mu": mu, "M": big_m, "exact": sums.mean("exact")}
        columns["linearised"] = sums.mean("linearised")
        for name in BOUNDS:
            low = mu.square() * sums.mean(f"{name}_lower_unit")
            bounds[name] = (low, big_m * sums.mean(f"{name}_upper_unit"))
    return bound_rows(chans, "channel", sums.length, columns, bounds)
