"""Theorem 4.1.1 checked on a model's trained SSM layers (`ssmprobe bounds`).

For every LTI SISO layer (S4, DSS, Mega's EMA) and each channel, and for S5's MIMO layer as a
whole per output channel (`_mimo_bounds`; its eigenvalues are the shared states'): the
eigenvalues of Ā (S4: of the dense discretised NPLR matrix), |λ|max and |λ|min, C̄B̄ (= h_0,
the first kernel entry as the layer computes it: scale·Re Σ_n C̄_n B̄_n), h1 = the layer's own
kernel of length L and ||h1||², c1 and c2 (closed form), the perturbation's μ, σ² and M, the
kernel-form bounds, the spectral bound M·L·λ_max(HᵀH), eq. 11/16's eigenvalue form as printed
(neither side a valid bound: both eigenvalue steps of the proof are false, `bounds.theorem`;
its columns show where it fails), the exact error E||Hε||² (closed form), optionally a Monte
Carlo estimate, and whether each inequality holds with its ratio. The feed-through D·u is not
part of the theorem's system (eq. 10 has none) and is left out. Parameters are read at the
check's L (`discrete_at`): DSS-softmax's B̄ depends on it.

Perturbation laws, with budget ε and an optional common mean μ (ε_k = μ + noise, i.i.d.):
`uniform` noise U(-ε, ε) (σ² = ε²/3), `sign` noise ±ε (σ² = ε²), `gaussian` noise N(0, ε²);
M = μ² + σ². With μ = 0 both lower bounds are 0. `adversarial`: the perturbation PGD's
adversarial inputs cause at each SSM layer's input, measured with the feature recorder
(`measure_adversarial`): per channel μ, M = max_k E[ε_k²] and the measured output error; the
lower bounds assume one mean at every position, which an adversarial ε need not have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ssmprobe.attacks import AttackConfig
from ssmprobe.bounds.theorem import (
    c1_c2,
    check,
    eigen_bounds,
    exact_error,
    exact_error_cov,
    kernel_bounds,
    monte_carlo_error,
    spectral_bound,
    spectral_norm_sq,
)
from ssmprobe.models.base import LTISSM, DiscreteSSM
from ssmprobe.models.scan import linear_scan
from ssmprobe.probe.recorder import adversarial_features

PERTURBATIONS = ("uniform", "sign", "gaussian")
BOUNDS = ("kernel", "eigen", "spectral")


@dataclass(frozen=True)
class PerturbationLaw:
    """i.i.d. ε_k = mu + noise: its mean, variance, M = E[ε_k²] and a sampler (n, L)."""

    kind: str
    eps: float
    mu: float
    sigma2: float

    @property
    def M(self) -> float:
        return self.mu**2 + self.sigma2

    def sampler(self, length: int, seed: int = 0) -> Callable[[int], Tensor]:
        generator = torch.Generator().manual_seed(seed)

        def draw(n: int) -> Tensor:
            shape = (n, length)
            if self.kind == "uniform":
                noise = 2 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1
            elif self.kind == "sign":
                noise = 2 * torch.randint(0, 2, shape, generator=generator).double() - 1
            else:
                noise = torch.randn(shape, generator=generator, dtype=torch.float64)
            return self.mu + self.eps * noise

        return draw


def perturbation_law(kind: str, eps: float, mu: float = 0.0) -> PerturbationLaw:
    """The law `kind` (`PERTURBATIONS`) with noise scale `eps` > 0 and mean `mu`."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; choose one of {PERTURBATIONS}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be positive and finite, got {eps}")
    if not math.isfinite(mu):
        raise ValueError(f"mu must be finite, got {mu}")
    if max(abs(mu), eps) > 1e150:  # its second moment (and every bound) would overflow
        raise ValueError(f"mu and eps must be at most 1e150 in size, got {mu:g} and {eps:g}")
    sigma2 = eps**2 / 3 if kind == "uniform" else eps**2
    return PerturbationLaw(kind, eps, mu, sigma2)


@dataclass(frozen=True)
class Measured:
    """A perturbation measured at a layer's input (`measure_adversarial`). Per input channel: μ
    (pooled over samples and positions) and M = max_k E[ε_k²]; per output channel the measured
    E||y' - y - D ε||²; for SISO layers the second moment S = E[εεᵀ] (H, L, L); for MIMO
    layers each state's share of the error, E||H⁽ⁿ⁾ε||² (`state_kernel`)."""

    mu: Tensor
    M: Tensor
    error: Tensor
    second_moment: Tensor | None
    n: int
    state_error: Tensor | None = None


def modal_form(ssm: DiscreteSSM) -> tuple[Tensor, Tensor]:
    """Eigenvalues λ (H, N) of Ā and the residues r (H, N) of each mode, complex128, such that
    the kernel is h_k = scale·Re Σ_n r_n λ_n^k; Ā is diagonalised when dense (S4)."""
    lam = ssm.eigvals.to(torch.complex128)
    b, c = ssm.B_bar.to(torch.complex128), ssm.C_bar.to(torch.complex128)
    if ssm.diagonal:
        return lam, c * b
    lam, vectors = torch.linalg.eig(ssm.A_bar.to(torch.complex128))
    b_modal = torch.linalg.solve(vectors, b.unsqueeze(-1)).squeeze(-1)
    c_modal = (c.unsqueeze(-2) @ vectors).squeeze(-2)
    return lam, c_modal * b_modal


def layer_rows(
    layer: nn.Module,
    length: int,
    perturbation: PerturbationLaw | Measured,
    channels: Sequence[int] | None = None,
    samples: int = 0,
) -> list[dict[str, Any]]:
    """One row per channel of an LTI layer (per output channel of a MIMO one): parameters,
    bounds, exact error, checks. For a `PerturbationLaw` the exact error is the closed form
    (and `samples` Monte Carlo draws cross-check it on SISO layers); for a `Measured`
    perturbation it is the measured output error, with bounds from the measured μ and M."""
    if not isinstance(layer, LTISSM):
        raise ValueError(
            f"{type(layer).__name__} is not time-invariant: its bounds need per-step parameters"
        )
    with torch.no_grad():
        ssm = layer.discrete_at(length)  # DSS-softmax's B̄ depends on L
        h = layer.impulse_response(length).double()
        lam = ssm.eigvals.to(torch.complex128)  # S4: of its dense Ā
    picked = check_channels(channels, h.shape[0])
    h = h[picked]
    count = len(picked)
    moduli = lam.abs() if ssm.mimo else lam[picked].abs()
    lam_max = moduli.max(dim=-1).values.expand(count)
    lam_min = moduli.min(dim=-1).values.expand(count)
    extra: dict[str, Tensor] = {}
    if isinstance(perturbation, Measured):
        # A MIMO layer mixes every input channel: pooled μ, the largest M.
        mu = perturbation.mu.mean().expand(count) if ssm.mimo else perturbation.mu[picked]
        big_m = perturbation.M.max().expand(count) if ssm.mimo else perturbation.M[picked]
        sigma2 = torch.full((count,), float("nan"), dtype=torch.float64)
        exact = perturbation.error[picked]
        if perturbation.second_moment is not None:
            extra["exact_from_second_moment"] = exact_error_cov(
                h, perturbation.second_moment[picked]
            )
    else:
        law = perturbation
        mu, big_m, sigma2 = (torch.full((count,), v) for v in (law.mu, law.M, law.sigma2))
        if ssm.mimo:
            exact = exact_error(h, 0.0, law.sigma2).sum(dim=1)
            exact = exact + exact_error(h.sum(dim=1), law.mu, 0.0)
        else:
            exact = exact_error(h, law.mu, law.sigma2)
        if samples and not ssm.mimo:
            extra["monte_carlo"], extra["monte_carlo_se"] = monte_carlo_error(
                h, law.sampler(length), samples
            )
    if ssm.mimo:
        bounds, h = _mimo_bounds(h, mu, big_m)  # h: Σ_i h_ji, the kernel a mean shift sees
    else:
        bounds = {
            "kernel": kernel_bounds(h, mu, big_m),
            "spectral": (torch.zeros_like(exact), spectral_bound(h, big_m)),
        }
    bounds["eigen"] = eigen_bounds(lam_min, lam_max, h[:, 0], length, mu, big_m)
    columns = {
        "lam_max_abs": lam_max,
        "lam_min_abs": lam_min,
        "cb": h[:, 0],
        "h_norm2": h.square().sum(dim=-1),
        "mu": mu,
        "sigma2": sigma2,
        "M": big_m,
        "exact": exact,
        **extra,
    }
    view = "output" if ssm.mimo else "channel"
    return bound_rows(picked, view, length, columns, bounds)


def bound_rows(
    indices: Sequence[int],
    view: str,
    length: int,
    columns: Mapping[str, Tensor],
    bounds: Mapping[str, tuple[Tensor, Tensor]],
) -> list[dict[str, Any]]:
    """One row per index: the columns, c1, c2, L, and per bound its sides, whether each holds
    against `columns["exact"]` and the measured/upper ratio."""
    c1, c2 = c1_c2(length)
    checks = {name: check(low, columns["exact"], up) for name, (low, up) in bounds.items()}
    rows = []
    for i, index in enumerate(indices):
        row: dict[str, Any] = {"view": view, "channel": index, "c1": c1, "c2": c2, "L": length}
        row |= {key: value[i].item() for key, value in columns.items()}
        for name, (low, up) in bounds.items():
            row |= {
                f"{name}_lower": low[i].item(),
                f"{name}_upper": up[i].item(),
                f"{name}_lower_holds": bool(checks[name]["lower_holds"][i]),
                f"{name}_upper_holds": bool(checks[name]["upper_holds"][i]),
                f"{name}_upper_ratio": checks[name]["upper_ratio"][i].item(),
            }
        if "spectral" in bounds:
            row["tighter_upper"] = (
                "kernel" if row["kernel_upper"] <= row["spectral_upper"] else "spectral"
            )
        rows.append(row)
    return rows


def state_kernel(ssm: DiscreteSSM, state: int, length: int) -> Tensor:
    """State n of a diagonal MIMO layer (S5) as a system of its own: the kernel
    h⁽ⁿ⁾_ji,k = scale·Re(C̄_jn λ_n^k B̄_ni), (out, in, L) float64. Summed over n it is the
    layer's kernel. §4.1 treats each state of the diagonalised system as an independent SISO
    system; exactly, state n reads the input through the row B̄_n and writes through the
    column C̄_n, so its kernel has rank ≤ 2 across (out, in) and one eigenvalue λ_n."""
    lam = ssm.eigvals[state].to(torch.complex128)
    powers = torch.cat([lam.new_ones(1), torch.cumprod(lam.expand(length - 1), dim=0)])
    weights = torch.outer(ssm.C_bar[:, state], ssm.B_bar[state]).to(torch.complex128)
    return ssm.scale * (weights[..., None] * powers).real


def state_rows(
    layer: nn.Module,
    length: int,
    perturbation: PerturbationLaw | Measured,
    states: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """One row per state of a diagonal MIMO layer (`state_kernel`): its |λ|, the kernel and
    eigenvalue forms summed over output channels (each a valid bound per output channel, so the
    sums bound the state's whole output error Σ_j E||H⁽ⁿ⁾_j ε||²) and that error: exact for an
    i.i.d. law, measured for an adversarial one (`Measured.state_error`). The spectral bound,
    which needs one Lanczos run per (output, input) pair and state, is given for the layer as
    a whole only (`layer_rows`)."""
    with torch.no_grad():
        ssm = layer.discrete_at(length)
    if not ssm.mimo:
        raise ValueError(f"{type(layer).__name__} is SISO: its channels already are the states")
    count = ssm.eigvals.shape[0]
    picked = list(range(count)) if states is None else list(states)
    if any(not 0 <= n < count for n in picked):
        raise ValueError(f"states outside the layer's 0..{count - 1}")
    if isinstance(perturbation, Measured):
        if perturbation.state_error is None:
            raise ValueError("the measured perturbation has no per-state errors")
        mu, big_m = perturbation.mu.mean(), perturbation.M.max()
    else:
        mu, big_m = (
            torch.tensor(v, dtype=torch.float64) for v in (perturbation.mu, perturbation.M)
        )
    columns: dict[str, list[Tensor]] = {}
    sides: dict[str, list[tuple[Tensor, Tensor]]] = {"kernel": [], "eigen": []}
    for n in picked:
        h = state_kernel(ssm, n, length)
        if isinstance(perturbation, Measured):
            exact = perturbation.state_error[n]
        else:
            exact = exact_error(h, 0.0, perturbation.sigma2).sum()
            exact = exact + exact_error(h.sum(dim=1), perturbation.mu, 0.0).sum()
        bounds, h_mean = _mimo_bounds(h, mu, big_m, spectral=False)
        lam_abs = ssm.eigvals[n].abs().double()
        bounds["eigen"] = eigen_bounds(lam_abs, lam_abs, h_mean[:, 0], length, mu, big_m)
        for name in sides:
            low, up = bounds[name]
            sides[name].append((low.sum(), up.sum()))
        for key, value in {
            "lam_max_abs": lam_abs,
            "lam_min_abs": lam_abs,
            "cb": h_mean[:, 0].square().sum().sqrt(),
            "h_norm2": h.square().sum(),
            "mu": mu,
            "sigma2": torch.tensor(getattr(perturbation, "sigma2", float("nan"))),
            "M": big_m,
            "exact": exact,
        }.items():
            columns.setdefault(key, []).append(value.double())
    stacked = {key: torch.stack(values) for key, values in columns.items()}
    bounds = {
        name: (torch.stack([s[0] for s in pairs]), torch.stack([s[1] for s in pairs]))
        for name, pairs in sides.items()
    }
    return bound_rows(picked, "state", length, stacked, bounds)


def _mimo_bounds(
    h: Tensor, mu: Tensor, big_m: Tensor, spectral: bool = True
) -> tuple[dict, Tensor]:
    """Bounds per output channel j of a MIMO layer, h (out, in, L), for an input perturbation
    with mean μ and E[ε²] ≤ M at every position and input channel: y'_j - y_j = Σ_i H_ji ε_i.

    The exact error for i.i.d. entries is σ² Σ_i ||H_ji||_F² + μ² ||H(Σ_i h_ji) 1||². Kernel
    form, by the argument of `bounds` applied to the stacked system (|E[ε_a ε_b]| ≤ M for any
    two entries): μ² c1 ||Σ_i h_ji||² ≤ E||·||² ≤ c2 M ||Σ_i |h_ji| ||². Spectral: ≤ λ_max(G_jᵀG_j)
    tr(S) ≤ M·L·n_in·Σ_i λ_max(H_jiᵀH_ji) for G_j = [H_j1 ... H_jn]. Returns the bounds and
    h_j = Σ_i h_ji.
    """
    h_mean = h.sum(dim=1)
    c1, c2 = c1_c2(h.shape[-1])
    lower = mu.square() * c1 * h_mean.square().sum(dim=-1)
    upper = c2 * big_m * h.abs().sum(dim=1).square().sum(dim=-1)
    bounds = {"kernel": (lower, upper)}
    if spectral:
        top = big_m * h.shape[-1] * h.shape[1] * spectral_norm_sq(h).sum(dim=1)
        bounds["spectral"] = (torch.zeros_like(lower), top)
    return bounds, h_mean


def check_channels(channels: Sequence[int] | None, count: int) -> list[int]:
    """The channel indices asked for (all of a layer's `count` when None), each in range."""
    picked = list(range(count)) if channels is None else list(channels)
    bad = [c for c in picked if not 0 <= c < count]
    if bad:
        raise ValueError(f"channels {bad} outside the layer's 0..{count - 1}")
    return picked


def model_rows(
    model: nn.Module,
    length: int,
    perturbation: PerturbationLaw | Mapping[str, Measured],
    layers: Sequence[int] | None = None,
    channels: Sequence[int] | None = None,
    samples: int = 0,
    states: bool = True,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """`layer_rows` for every SSM layer of `model` (or the listed layer indices) and, with
    `states`, `state_rows` for every MIMO layer; a measured perturbation is given per layer
    name (`measure_adversarial`)."""
    ssm_layers = list(model.ssm_layers().items())
    picked = range(len(ssm_layers)) if layers is None else layers
    bad = [i for i in picked if not 0 <= i < len(ssm_layers)]
    if bad:
        raise ValueError(f"layers {bad} outside the model's 0..{len(ssm_layers) - 1}")
    lti = [layer for i in picked if isinstance(layer := ssm_layers[i][1], LTISSM)]
    with torch.no_grad():  # every channel asked for is checked before the first layer's work
        for layer in lti if channels is not None else []:
            check_channels(channels, layer.impulse_response(1).shape[0])
    rows = []
    for i in tqdm(picked, desc="SSM layers", disable=not progress):
        name, layer = ssm_layers[i]
        at_layer = perturbation if isinstance(perturbation, PerturbationLaw) else perturbation[name]
        found = layer_rows(layer, length, at_layer, channels, samples)
        if states and found[0]["view"] == "output":
            found += state_rows(layer, length, at_layer)
        rows += [{"layer": name, **row} for row in found]
    return rows


def measure_adversarial(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], attack: AttackConfig, seed: int = 0
) -> dict[str, Measured]:
    """The perturbation that an attack's adversarial inputs cause at each SSM layer's input
    (the feature recorder's `ssm` components: f'_in - f_in), streamed over `batches` into
    float64 sums: per channel μ, M = max_k E[ε_k²], E[εεᵀ] (SISO layers) and the measured
    output error E||(f'_out - f_out) - D ε||² (the SSM's own part, without the feed-through)."""
    layers = model.ssm_layers()
    # The SSM components with readable parameters (a wrapped model's may lack some).
    components = [c for c in model.components() if c.kind == "ssm" and c.name in layers]
    for name, layer in layers.items():
        if not isinstance(layer, LTISSM):
            raise ValueError(f"{name} is not time-invariant: no per-channel LTI bounds")
    discrete: dict[str, DiscreteSSM] = {}  # at the data's length, known at the first batch
    sums: dict[str, dict[str, Tensor]] = {}
    count = 0
    for clean, adv, size in adversarial_features(model, batches, attack, components, seed):
        for name, f in clean.items():
            eps = (adv[name].entry - f.entry).double()  # (B, L, H)
            if name not in discrete:
                with torch.no_grad():
                    discrete[name] = layers[name].discrete_at(eps.shape[1])
            ssm = discrete[name]
            out = (adv[name].exit - f.exit).double() - ssm.D.double() * eps
            batch = {
                "eps": eps.sum(dim=(0, 1)),
                "sq": eps.square().sum(dim=0),  # (L, H)
                "error": out.square().sum(dim=(0, 1)),
            }
            if ssm.mimo:
                batch["state_error"] = _state_errors(ssm, eps)
            else:
                batch["second"] = torch.einsum("blh,bmh->hlm", eps, eps)
            acc = sums.setdefault(name, {k: torch.zeros_like(v) for k, v in batch.items()})
            for k, v in batch.items():
                acc[k] += v
        count += size
    if count == 0:
        raise ValueError("no samples to attack")
    length = next(iter(sums.values()))["sq"].shape[0]
    return {
        name: Measured(
            mu=s["eps"] / (count * length),
            M=(s["sq"] / count).amax(dim=0),
            error=s["error"] / count,
            second_moment=s["second"] / count if "second" in s else None,
            n=count,
            state_error=s["state_error"] / count if "state_error" in s else None,
        )
        for name, s in sums.items()
    }


def _state_errors(ssm: DiscreteSSM, eps: Tensor) -> Tensor:
    """Σ over the batch of ||H⁽ⁿ⁾ε||² per state n of a diagonal MIMO layer, eps (B, L, H): the
    state x_n = scan(λ_n, B̄_n ε) writes scale·Re(C̄_jn x_n) to output j, and
    Σ_j (s Re(c_j x))² = s²/2 (|x|² Σ_j |c_j|² + Re(x² Σ_j c_j²))."""
    b_bar = ssm.B_bar.to(torch.complex128)
    x = linear_scan(ssm.A_bar.to(torch.complex128), eps.to(torch.complex128) @ b_bar.T)
    c = ssm.C_bar.to(torch.complex128)
    sq = x.abs().square() * c.abs().square().sum(dim=0) + (x.square() * c.square().sum(dim=0)).real
    return ssm.scale**2 / 2 * sq.sum(dim=(0, 1))


def summarise_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per layer and view (channel, output channel, state): the count of rows; per bound in
    the rows the counts where its lower and upper side hold, the median and largest
    measured/upper ratio; the rows where either side of the eigenvalue form fails; where the
    rows have a spectral bound, those where the kernel upper bound is the tighter one."""
    out = []
    for layer, view in dict.fromkeys((r["layer"], r["view"]) for r in rows):
        members = [r for r in rows if (r["layer"], r["view"]) == (layer, view)]
        summary: dict[str, Any] = {"layer": layer, "view": view, "channels": len(members)}
        for name in (b for b in BOUNDS if f"{b}_upper" in members[0]):
            ratios = torch.tensor([r[f"{name}_upper_ratio"] for r in members])
            summary |= {
                f"{name}_lower_holds": sum(r[f"{name}_lower_holds"] for r in members),
                f"{name}_upper_holds": sum(r[f"{name}_upper_holds"] for r in members),
                f"{name}_median_ratio": ratios.median().item(),
                f"{name}_max_ratio": ratios.max().item(),
            }
        summary["eigen_violated"] = sum(
            not (r["eigen_lower_holds"] and r["eigen_upper_holds"]) for r in members
        )
        if "tighter_upper" in members[0]:
            summary["kernel_tighter"] = sum(r["tighter_upper"] == "kernel" for r in members)
        out.append(summary)
    return out
