"""SSM readers: Ā, B̄, C (and D) of a foreign SSM layer, rebuilt from its own parameters.

A reader looks a layer's parameters up by name and computes the discrete system from them on
every call; it copies nothing and changes nothing (no parameter, mode, device or hook of the
layer), so Theorem 4.1.1's checks (`ssmprobe.bounds`) can run on a user's model as it is.
`read_ssm(layer)` picks the reader from the parameter names (`detect_reader`), or takes one of
`READERS` by name, or a callable (the user's own reader). Where the paper's equations apply,
their numbers are given (ZOH eq. 6, bilinear eq. 3-4, S5 eq. 8, Mamba eq. 10);
φ₁(z) = (e^z - 1)/z, computed stably (`models.discretize.phi1`).

LTI readers return an `LTISSM` (the `bounds.lti` functions take it) that holds the layer by
reference, not as a registered submodule, so `.to()`, `.double()` or `.eval()` on the read
layer never touch the user's model. Its `forward(u)` (B, L, H) runs the plain recurrence
x_k = Ā x_{k-1} + B̄ u_k, y_k = scale·Re(C̄ x_k) + D u_k, and `impulse_response` the
Vandermonde kernel h_k = scale·Re(C̄ Ā^k B̄) of `models.base`.

- ``s4d``: state-spaces' S4D (`S4DKernel`: `log_dt` (H,), `log_A_real`, `A_imag` (H, N/2),
  `C` (H, N/2, 2), the real view of a complex C; `S4D` holds them in `kernel`, with `D` (H,)
  itself). A = -exp(log_A_real) + i·A_imag, Δ = exp(log_dt), B = 1, ZOH (eq. 6):
  Ā = exp(ΔA), B̄ = (Ā - 1)/A = Δ φ₁(ΔA), C̄ = C, and y = 2 Re(C̄ x) + D u: one state of each
  conjugate pair is kept, hence scale 2. S4DKernel's kernel 2 Re Σ_n C_n (e^{ΔA_n} - 1)/A_n
  e^{kΔA_n} is this h_k. SISO: Ā, B̄, C̄ are (H, N/2) diagonal. D is the holder's `D` when it
  has one, else 0 (a bare `S4DKernel` has no feed-through).
- ``s5``: the S5 port `s5-pytorch` (`s5.S5SSM`: `Lambda` (P,) complex, `B` (P, H, 2) the real
  view of B̃ = V⁻¹B, `C` (H, P) complex C̃ = CV, `D` (H,), `log_step` (P,); its `S5` wrapper
  holds them in `seq`). S5 eq. 8 with Δ = exp(log_step) per state (the port's step_scale 1)
  and ZOH (eq. 6): Λ̄ = exp(ΛΔ), B̄ = Δ φ₁(ΛΔ) B̃, or bilinear (eq. 3-4): Λ̄ = (1 + ΛΔ/2)/(1 -
  ΛΔ/2), B̄ = Δ B̃/(1 - ΛΔ/2) when the port's `discretize` is its bilinear one. The port keeps
  all P eigenvalues (no conjugate symmetry) and outputs Re(C̃ x) + D u: scale 1. MIMO
  (`mimo=True`): Λ̄ (P,), B̄ (P, H), C̄ (H, P). Not read (a clear error): liquid S5 (Λ̄ depends on
  the input), bidirectional S5 (not causal), degree ≠ 1 and the factorised B, C.

Selective readers return a `SelectiveReading`: `d_model`, `d_inner`, `discrete(hidden)`, the
per-step parameters as `models.mamba.SelectiveSSM` for the layer's input hidden (B, L, d_model),
`ssm_output(hidden)`, the plain recurrence h_k = Ā_k ⊙ h_{k-1} + Δ_k B_k x_k,
y_k = C_k · h_k + D x_k on those parameters (B, L, d_inner), and `mix(hidden)`, the layer's
output before `out_proj` computed from y. Both use Δ_k B_k as B̄ (what Mamba's kernels run);
SelectiveSSM's `B_bar` is the exact ZOH Δ_k φ₁(Δ_k A) B_k.

- ``mamba1``: `mamba_ssm.modules.mamba_simple.Mamba`'s names, which transformers'
  `MambaMixer`, mambapy's `MambaBlock` and `models.mamba.Mamba` share: `in_proj`, `conv1d`,
  `x_proj`, `dt_proj` (with its bias), `A_log` (D, N), `D` (D,), `out_proj`. Eq. 10:
  (x, z) = in_proj(u), x = SiLU(causal depthwise conv1d(x)), (δ, B, C) = x_proj(x),
  Δ = softplus(dt_proj(δ)) (its bias inside the softplus), A = -exp(A_log), Ā_k = exp(Δ_k A)
  (ZOH, eq. 6), B̄_k = Δ_k B_k; `mix` = y ⊙ SiLU(z). Layers that normalise Δ, B, C inside the
  block (FalconMamba, Jamba, mambapy's `inner_layernorms`: `dt_layernorm`, `b_layernorm`, ...)
  are refused, as is a conv activation other than SiLU.
- ``mamba2``: transformers' `Mamba2Mixer` and mamba_ssm's `Mamba2` (SSD): `in_proj` giving
  (z, xBC, δ) with one δ per head, `conv1d` over xBC, `dt_bias`, `A_log` (one scalar per head),
  `D` (per head, or per channel), `norm` (gated RMSNorm, optional) and `out_proj`; no `x_proj`.
  Per head h of P channels: (x, B, C) = SiLU(conv(xBC)), Δ_{k,h} = softplus(δ_{k,h} + dt_bias_h)
  clamped to the layer's `time_step_limit`/`dt_limit`, a_h = -exp(A_log_h), and eq. 10 with
  Ā_k = exp(Δ_{k,h} a_h) for every state of every channel of head h. As a SelectiveSSM each
  channel gets its head's Δ and A row a_h·1_N, and all share B_k, C_k (batch, L, N): that holds
  for ngroups = 1 only, so ngroups > 1 (each group of heads with its own B, C) is refused, as is
  mamba_ssm's extra MLP part (d_ssm < d_inner). `ssm_output` is y + D x, the scan's output
  before the gate (transformers' `norm` receives it with z); `mix` is the input of `out_proj`:
  RMSNorm over groups of `group_size` channels of y ⊙ SiLU(z), times the norm's weight
  (`norm_before_gate`: RMSNorm(y) ⊙ SiLU(z)), or y ⊙ SiLU(z) without a norm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssmprobe.models import discretize
from ssmprobe.models.base import LTISSM, DiscreteSSM, vandermonde_kernel
from ssmprobe.models.mamba import SelectiveSSM


def _selective(
    a: Tensor, dt: Tensor, b: Tensor, c: Tensor, skip: Tensor, x: Tensor, z: Tensor
) -> SelectiveSSM:
    """The SelectiveSSM of eq. 10 from A (D, N), Δ (B, L, D), one B_k and C_k (B, L, N) shared
    by every channel, D, and the scan's input x and gate z: Ā_k = exp(Δ_k A) and the exact ZOH
    B̄_k (eq. 6), and Δ_k B_k, what the layers' kernels run."""
    a_bar, b_scale = discretize.zoh(a, dt.unsqueeze(-1))  # (B, L, D, N)
    b = b.unsqueeze(2)  # (B, L, 1, N): one B_k for every channel
    return SelectiveSSM(
        A=a, A_bar=a_bar, B_bar=b_scale * b, B_bar_euler=dt.unsqueeze(-1) * b, C=c, D=skip,
        dt=dt, x=x, z=z,
    )  # fmt: skip


@runtime_checkable
class SelectiveReading(Protocol):
    """What a selective reader returns, and what `bounds.selective.selective_rows` takes."""

    d_model: int
    d_inner: int

    def discrete(self, hidden: Tensor) -> SelectiveSSM: ...

    def mix(self, hidden: Tensor) -> Tensor: ...


def _names(module: nn.Module) -> set[str]:
    """The module's own parameters, buffers and submodules that are set (not None)."""
    # The registries themselves: named_parameters() and named_children() skip a second name
    # for the same object (tied weights), and a reader asks for names.
    tables = (module._parameters, module._buffers, module._modules)
    return {name for table in tables for name, value in table.items() if value is not None}


@dataclass(frozen=True)
class Reader:
    """A reader: the names a layer must hold (`needs`) and must not (`excludes`), the children
    that may hold them instead of the layer itself (`holders`: S4D's `kernel`, S5's `seq`), and
    `read(layer)` for a layer that fits (`read_ssm` checks), which returns the read layer or
    raises `ReaderError` for a variant it does not model."""

    name: str
    kind: Literal["lti", "selective"]
    needs: tuple[str, ...]
    read: Callable[[nn.Module], Any]
    excludes: tuple[str, ...] = ()
    holders: tuple[str, ...] = ()

    def holder(self, module: nn.Module) -> nn.Module | None:
        """The module itself, or one of its `holders` children, holding the names; else None."""
        candidates = [module]
        children = dict(module.named_children())
        candidates += [children[h] for h in self.holders if h in children]
        for candidate in candidates:
            names = _names(candidate)
            if all(n in names for n in self.needs) and not any(n in names for n in self.excludes):
                return candidate
        return None

    def fits(self, module: nn.Module) -> bool:
        return self.holder(module) is not None

    def misfit(self, module: nn.Module) -> str:
        """Why `module` does not fit, in words: the names missing (or present but excluded)."""
        names = _names(module)
        missing = [n for n in self.needs if n not in names]
        extra = [n for n in self.excludes if n in names]
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"has {', '.join(extra)}, which the {self.name!r} layout does not")
        where = f" (itself or in its child {' or '.join(self.holders)})" if self.holders else ""
        return f"{'; '.join(parts)}{where}"


class ReaderError(ValueError):
    """A layer does not fit a reader, or holds a variant the reader does not model."""


# --------------------------------------------------------------------------- shared pieces


def _scan(a: Tensor, drive: Tensor, per_step: bool) -> Tensor:
    """x_k = a_k ⊙ x_{k-1} + drive_k along dim 1 of drive (B, L, ...), x_{-1} = 0, step by
    step: the plain recurrence, to compare a layer's own (parallel, chunked, FFT) computation
    against. `a` is one value per step ((B, L, ...), `per_step`) or the same at every step."""
    state = torch.zeros_like(drive[:, 0])
    states = []
    for k in range(drive.shape[1]):
        state = (a[:, k] if per_step else a) * state + drive[:, k]
        states.append(state)
    return torch.stack(states, dim=1)


def _complex(*tensors: Tensor) -> torch.dtype:
    """The complex dtype holding every tensor at its precision (a float64 B with a complex64 Λ,
    as `Module.double()` leaves an S5 port, gives complex128)."""
    dtype = torch.complex64
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.promote_types(dtype, torch.complex64)


def _pair_as_complex(t: Tensor) -> Tensor:
    """A complex tensor stored as its real view (..., 2); any strides, any float dtype."""
    return torch.complex(t[..., 0], t[..., 1])


def _silu_conv(module: nn.Module) -> None:
    """Raises unless the layer's conv activation (transformers' `activation`) is SiLU."""
    act = getattr(module, "activation", "silu")
    silu = isinstance(act, nn.SiLU) if isinstance(act, nn.Module) else act in ("silu", "swish")
    if not silu:
        raise ReaderError(
            f"{type(module).__name__} applies {act!r} after its conv; the readers model SiLU only"
        )


def _causal_depthwise_conv(x: Tensor, conv: nn.Module) -> Tensor:
    """The causal depthwise conv of mamba_simple on x (B, L, C) with conv1d's weight (C, 1, K)
    and bias: padded by K-1, the first L outputs kept. Done with the weights, not by calling
    the submodule, so no hook of the user's conv1d fires."""
    k, length = conv.weight.shape[-1], x.shape[1]
    y = F.conv1d(
        x.transpose(1, 2), conv.weight, conv.bias, padding=k - 1, groups=conv.weight.shape[0]
    )
    return y[..., :length].transpose(1, 2)


def _linear(layer: nn.Module, x: Tensor) -> Tensor:
    """A Linear submodule applied from its weights (no hook of the user's layer fires)."""
    return F.linear(x, layer.weight, getattr(layer, "bias", None))


# --------------------------------------------------------------------------- LTI layers


class _ReadLTI(LTISSM):
    """An LTI layer read from a foreign one: `discrete()` from its current parameters."""

    def __init__(self, source: nn.Module, holder: nn.Module) -> None:
        super().__init__()
        # Plain attributes, not submodules: the read layer must not move, cast or switch the
        # mode of the user's layer, nor list its parameters as its own.
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "holder", holder)

    def extra_repr(self) -> str:
        return f"{type(self.source).__name__}, d_model={self.d_model}"

    def _exponent(self, ssm: DiscreteSSM) -> Tensor:
        """z with Ā = exp(z), for the Vandermonde kernel exp(zk) = Ā^k."""
        return torch.log(ssm.A_bar)

    def impulse_response(self, length: int) -> Tensor:
        ssm = self.discrete()
        # vandermonde_kernel takes 2 Re(·); scale/2 on C̄ gives scale·Re(C̄ Ā^k B̄)
        return vandermonde_kernel(
            self._exponent(ssm), ssm.C_bar * (ssm.scale / 2), ssm.B_bar, length
        )

    def forward(self, u: Tensor) -> Tensor:
        """The plain recurrence on u (B, L, H): x_k = Ā x_{k-1} + B̄ u_k,
        y_k = scale·Re(C̄ x_k) + D u_k."""
        ssm = self.discrete()
        cu = u.to(ssm.B_bar.dtype)
        if ssm.mimo:
            x = _scan(ssm.A_bar, cu @ ssm.B_bar.T, per_step=False)  # (B, L, P)
            y = (x @ ssm.C_bar.T).real
        else:
            x = _scan(ssm.A_bar, cu.unsqueeze(-1) * ssm.B_bar, per_step=False)  # (B, L, H, N)
            y = (x * ssm.C_bar).sum(dim=-1).real
        return ssm.scale * y + ssm.D * u


class ReadS4D(_ReadLTI):
    """state-spaces' S4D read as a SISO diagonal LTI layer (module docstring, ``s4d``)."""

    def __init__(self, source: nn.Module, holder: nn.Module) -> None:
        super().__init__(source, holder)
        self.d_model = int(holder.log_dt.shape[0])
        c = holder.C
        if c.dim() != 3 or c.shape[-1] != 2 or c.shape[:2] != holder.log_A_real.shape:
            raise ReaderError(
                f"{type(holder).__name__}.C is {tuple(c.shape)}; the s4d reader needs "
                f"(H, N/2, 2) = {(*holder.log_A_real.shape, 2)}, the real view of a complex C"
            )

    def _continuous(self) -> tuple[Tensor, Tensor]:
        """A (H, N/2) complex and Δ (H, 1), at the precision of the finest parameter."""
        k = self.holder
        real = _complex(k.log_A_real, k.A_imag, k.C, k.log_dt).to_real()
        a = torch.complex(-torch.exp(k.log_A_real.to(real)), k.A_imag.to(real))
        return a, torch.exp(k.log_dt.to(real)).unsqueeze(-1)

    def _feedthrough(self, like: Tensor) -> Tensor:
        for owner in (self.source, self.holder):
            if "D" in _names(owner):
                return owner.D
        return torch.zeros(self.d_model, dtype=like.dtype, device=like.device)

    def discrete(self) -> DiscreteSSM:
        a, dt = self._continuous()
        a_bar, b_bar = discretize.zoh(a, dt)  # B = 1: B̄ = Δ φ₁(ΔA) = (Ā - 1)/A
        return DiscreteSSM(
            A_bar=a_bar,
            B_bar=b_bar,
            C_bar=_pair_as_complex(self.holder.C).to(a.dtype),
            D=self._feedthrough(dt),
            dt=dt.squeeze(-1),
            eigvals=a_bar,
            scale=2.0,
        )

    def _exponent(self, ssm: DiscreteSSM) -> Tensor:
        a, dt = self._continuous()
        return a * dt  # ZOH: exactly ΔA, no log of Ā


class ReadS5(_ReadLTI):
    """The s5-pytorch S5 read as a MIMO diagonal LTI layer (module docstring, ``s5``)."""

    def __init__(self, source: nn.Module, holder: nn.Module) -> None:
        super().__init__(source, holder)
        name = type(holder).__name__
        for flag in ("liquid", "bidir"):
            if getattr(holder, flag, False):
                raise ReaderError(f"{name} has {flag}=True, which the s5 reader does not model")
        if getattr(holder, "degree", 1) != 1:
            raise ReaderError(f"{name} has degree={holder.degree}; the s5 reader needs degree 1")
        self.rule  # noqa: B018 (refuses an unknown rule now, not at the first use)
        p, h = holder.Lambda.shape[0], holder.C.shape[0]
        if holder.B.shape != (p, h, 2) or holder.C.shape != (h, p):
            raise ReaderError(
                f"{name}: B {tuple(holder.B.shape)} and C {tuple(holder.C.shape)} do not fit "
                f"P = {p} states, H = {h} channels: the s5 reader needs B (P, H, 2), C (H, P)"
            )
        self.d_model = int(h)

    @property
    def rule(self) -> Literal["zoh", "bilinear"]:
        """The port's discretisation, from its `discretize` function (ZOH where it has none)."""
        rule = getattr(getattr(self.holder, "discretize", None), "__name__", "discretize_zoh")
        if rule not in ("discretize_zoh", "discretize_bilinear"):
            raise ReaderError(
                f"{type(self.holder).__name__} discretises with {rule!r}; "
                "the s5 reader knows ZOH and bilinear"
            )
        return "zoh" if rule == "discretize_zoh" else "bilinear"

    def discrete(self) -> DiscreteSSM:
        s = self.holder
        dtype = _complex(s.Lambda, s.B, s.C, s.log_step)
        lam = s.Lambda.to(dtype)
        dt = torch.exp(s.log_step)
        rule = discretize.zoh if self.rule == "zoh" else discretize.bilinear
        a_bar, b_scale = rule(lam, dt)
        return DiscreteSSM(
            A_bar=a_bar,
            B_bar=b_scale.unsqueeze(-1) * _pair_as_complex(s.B).to(dtype),
            C_bar=s.C.to(dtype),
            D=s.D,
            dt=dt,
            eigvals=a_bar,
            scale=1.0,  # the port keeps every eigenvalue and outputs Re(C̃ x)
            mimo=True,
        )

    def _exponent(self, ssm: DiscreteSSM) -> Tensor:
        if self.rule == "zoh":
            return self.holder.Lambda.to(ssm.A_bar.dtype) * ssm.dt
        return torch.log(ssm.A_bar)


# --------------------------------------------------------------------------- selective layers


class _ReadSelective:
    """A selective layer read from a foreign one; subclasses give `discrete` and the gate."""

    d_model: int
    d_inner: int

    def __init__(self, source: nn.Module) -> None:
        self.source = source
        _silu_conv(source)

    def discrete(self, hidden: Tensor) -> SelectiveSSM:
        raise NotImplementedError

    def _gate(self, y: Tensor, z: Tensor) -> Tensor:
        raise NotImplementedError

    def ssm_output(self, hidden: Tensor) -> Tensor:
        """y + D x before the gate (B, L, d_inner): the plain recurrence of eq. 10."""
        return selective_recurrence(self.discrete(hidden))

    def mix(self, hidden: Tensor) -> Tensor:
        """The layer's output before out_proj (B, L, d_inner) for its input hidden (B, L, d)."""
        ssm = self.discrete(hidden)
        return self._gate(selective_recurrence(ssm), ssm.z)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.source).__name__}, d_inner={self.d_inner})"


def selective_recurrence(ssm: SelectiveSSM) -> Tensor:
    """h_k = Ā_k ⊙ h_{k-1} + B̄_k x_k (B̄ = Δ_k B_k), y_k = C_k · h_k + D x_k: (B, L, D)."""
    h = _scan(ssm.A_bar, ssm.B_bar_euler * ssm.x.unsqueeze(-1), per_step=True)
    return torch.einsum("bldn,bln->bld", h, ssm.C) + ssm.D * ssm.x


# Submodules that normalise Δ, B or C inside a Mamba-1 block (FalconMamba, Jamba, mambapy).
_INNER_NORMS = ("dt_layernorm", "b_layernorm", "c_layernorm", "B_layernorm", "C_layernorm")


class ReadMamba1(_ReadSelective):
    """A mamba_simple-style block read as eq. 10 (module docstring, ``mamba1``)."""

    def __init__(self, source: nn.Module) -> None:
        super().__init__(source)
        name = type(source).__name__
        norms = [n for n in _INNER_NORMS if getattr(source, n, None) is not None]
        if norms:
            raise ReaderError(
                f"{name} normalises Δ, B, C inside the block ({', '.join(norms)}), which the "
                "mamba1 reader does not model: pass your own reader"
            )
        if source.A_log.dim() != 2:
            raise ReaderError(f"{name}.A_log is {tuple(source.A_log.shape)}, not (D, N)")
        self.d_inner, self.d_state = (int(s) for s in source.A_log.shape)
        self.dt_rank = int(source.dt_proj.weight.shape[1])
        self.d_model = int(source.in_proj.weight.shape[1])
        shapes = {
            "in_proj": (source.in_proj.weight.shape[0], 2 * self.d_inner),
            "x_proj": (source.x_proj.weight.shape[0], self.dt_rank + 2 * self.d_state),
            "conv1d": (source.conv1d.weight.shape[0], self.d_inner),
            "dt_proj": (source.dt_proj.weight.shape[0], self.d_inner),
        }
        bad = {k: v for k, v in shapes.items() if v[0] != v[1]}
        if bad:
            sizes = ", ".join(f"{k} {got} (expected {want})" for k, (got, want) in bad.items())
            raise ReaderError(
                f"{name}: output sizes {sizes} do not fit A_log "
                f"(D = {self.d_inner}, N = {self.d_state})"
            )

    def discrete(self, hidden: Tensor) -> SelectiveSSM:
        m = self.source
        x, z = _linear(m.in_proj, hidden).chunk(2, dim=-1)  # (B, L, D) each
        x = F.silu(_causal_depthwise_conv(x, m.conv1d))
        delta, b, c = _linear(m.x_proj, x).split([self.dt_rank, self.d_state, self.d_state], -1)
        dt = F.softplus(_linear(m.dt_proj, delta))  # dt_proj's bias inside the softplus
        a = -torch.exp(m.A_log)
        return _selective(a, dt, b, c, m.D, x, z)

    def _gate(self, y: Tensor, z: Tensor) -> Tensor:
        return y * F.silu(z)


class ReadMamba2(_ReadSelective):
    """A Mamba-2 (SSD) mixer read as eq. 10 per head (module docstring, ``mamba2``)."""

    def __init__(self, source: nn.Module) -> None:
        super().__init__(source)
        name = type(source).__name__
        if source.A_log.dim() != 1:
            raise ReaderError(
                f"{name}.A_log is {tuple(source.A_log.shape)}: mamba2 has one per head"
            )
        self.n_heads = int(source.A_log.shape[0])
        self.d_inner = int(source.out_proj.weight.shape[1])
        self.d_model = int(source.in_proj.weight.shape[1])
        groups = getattr(source, "n_groups", getattr(source, "ngroups", 1))
        conv_dim = int(source.conv1d.weight.shape[0])
        if groups != 1:
            raise ReaderError(
                f"{name} has {groups} groups: each group of heads has its own B_k, C_k, which "
                "SelectiveSSM (one B_k, C_k per step for all channels) cannot hold; the mamba2 "
                "reader needs ngroups = 1"
            )
        if self.d_inner % self.n_heads or (conv_dim - self.d_inner) % 2:
            raise ReaderError(
                f"{name}: d_inner {self.d_inner}, conv channels {conv_dim} and {self.n_heads} "
                "heads do not fit (x, B, C) with equal heads"
            )
        self.head_dim = self.d_inner // self.n_heads
        self.d_state = (conv_dim - self.d_inner) // 2
        projected = int(source.in_proj.weight.shape[0])
        if projected != self.d_inner + conv_dim + self.n_heads:
            raise ReaderError(
                f"{name}.in_proj gives {projected} features, not z + xBC + δ = "
                f"{self.d_inner + conv_dim + self.n_heads}: an extra MLP part (d_ssm < d_inner) "
                "is not modelled"
            )
        if source.D.shape[0] not in (self.n_heads, self.d_inner):
            raise ReaderError(f"{name}.D is {tuple(source.D.shape)}: one per head or per channel")
        limit = getattr(source, "time_step_limit", getattr(source, "dt_limit", None))
        self.dt_limit = (0.0, float("inf")) if limit is None else tuple(limit)

    def _per_channel(self, per_head: Tensor) -> Tensor:
        """A per-head value along the last dim, repeated for each of the head's channels."""
        return per_head.repeat_interleave(self.head_dim, dim=-1)

    def discrete(self, hidden: Tensor) -> SelectiveSSM:
        m = self.source
        n, d = self.d_state, self.d_inner
        z, xbc, delta = _linear(m.in_proj, hidden).split([d, d + 2 * n, self.n_heads], dim=-1)
        x, b, c = F.silu(_causal_depthwise_conv(xbc, m.conv1d)).split([d, n, n], dim=-1)
        dt = F.softplus(delta + m.dt_bias).clamp(*self.dt_limit)  # (B, L, heads)
        dt = self._per_channel(dt)  # (B, L, D)
        a = self._per_channel(-torch.exp(m.A_log)).unsqueeze(-1).expand(d, n)  # (D, N)
        skip = m.D if m.D.shape[0] == d else self._per_channel(m.D)
        return _selective(a, dt, b, c, skip, x, z)

    def _gate(self, y: Tensor, z: Tensor) -> Tensor:
        norm = getattr(self.source, "norm", None)
        if norm is None:  # mamba_ssm's Mamba2(rmsnorm=False)
            return y * F.silu(z)
        eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6))
        size = getattr(norm, "group_size", None) or self.d_inner
        before = getattr(norm, "norm_before_gate", False)
        g = y if before else y * F.silu(z)
        groups = g.unflatten(-1, (-1, size))
        g = (groups * torch.rsqrt(groups.square().mean(-1, keepdim=True) + eps)).flatten(-2)
        g = g * norm.weight
        if getattr(norm, "bias", None) is not None:
            g = g + norm.bias
        return g * F.silu(z) if before else g


# --------------------------------------------------------------------------- the registry


def _holder(name: str, module: nn.Module) -> nn.Module:
    """Where `module` keeps the parameters of reader `name` (itself or a holder child)."""
    holder = READERS[name].holder(module)
    if holder is None:
        raise ReaderError(
            f"{type(module).__name__} does not fit the {name!r} reader: "
            f"{READERS[name].misfit(module)}"
        )
    return holder


def _read_s4d(module: nn.Module) -> ReadS4D:
    return ReadS4D(module, _holder("s4d", module))


def _read_s5(module: nn.Module) -> ReadS5:
    return ReadS5(module, _holder("s5", module))


READERS: dict[str, Reader] = {
    "mamba1": Reader(
        "mamba1",
        "selective",
        ("in_proj", "conv1d", "x_proj", "dt_proj", "A_log", "D", "out_proj"),
        ReadMamba1,
    ),
    "mamba2": Reader(
        "mamba2",
        "selective",
        ("in_proj", "conv1d", "dt_bias", "A_log", "D", "out_proj"),
        ReadMamba2,
        excludes=("x_proj",),
    ),
    "s4d": Reader(
        "s4d", "lti", ("log_dt", "log_A_real", "A_imag", "C"), _read_s4d, holders=("kernel",)
    ),
    "s5": Reader("s5", "lti", ("Lambda", "B", "C", "D", "log_step"), _read_s5, holders=("seq",)),
}


def detect_reader(module: nn.Module) -> str | None:
    """The name of the reader whose names `module` (or its holder child) has, else None."""
    for name, reader in READERS.items():
        if reader.fits(module):
            return name
    return None


def read_ssm(
    module: nn.Module, reader: str | Callable[[nn.Module], object] | None = None
) -> LTISSM | SelectiveReading:
    """The SSM of `module` rebuilt from its parameters: an `LTISSM` (s4d, s5) or a
    `SelectiveReading` (mamba1, mamba2). `reader`: None detects it from the parameter names,
    a name picks one of `READERS`, a callable is the user's own reader and must return one of
    the two kinds. ValueError (`ReaderError`) where the layer does not fit."""
    cls = type(module).__name__
    if callable(reader) and not isinstance(reader, str):
        result = reader(module)
        if isinstance(result, LTISSM | SelectiveReading):
            return result
        raise TypeError(
            f"the reader {getattr(reader, '__name__', reader)!r} returned a "
            f"{type(result).__name__} for {cls}: it must return an LTISSM or an object with "
            "d_model, d_inner, discrete(hidden) -> SelectiveSSM and mix(hidden)"
        )
    if reader is None:
        found = detect_reader(module)
        if found is None:
            needs = "; ".join(f"{r.name}: {', '.join(r.needs)}" for r in READERS.values())
            raise ReaderError(
                f"no SSM reader fits {cls}, whose parameters and submodules are "
                f"{', '.join(sorted(_names(module))) or 'none'} (readers need {needs}); "
                "name one with reader=... or pass a callable"
            )
        reader = found
    if reader not in READERS:
        raise ReaderError(f"unknown SSM reader {reader!r}; choose one of {', '.join(READERS)}")
    chosen = READERS[reader]
    if not chosen.fits(module):
        raise ReaderError(f"{cls} does not fit the {reader!r} reader: {chosen.misfit(module)}")
    return chosen.read(module)
