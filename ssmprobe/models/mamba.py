"""Mamba (S6): an SSM whose Δ, B and C are functions of the input (paper §2, eq. 6 and 10).

Per inner channel d (D = expand · d_model of them) and step k, with A = -exp(A_log) (D, N):

    Δ_k = softplus(W_Δ s_k + b_Δ),   B_k = W_B s_k,   C_k = W_C s_k,   s_k = x_proj's input
    Ā_k = exp(Δ_k A)                                                   (ZOH, eq. 6)
    B̄_k = Δ_k B_k                                                      (Mamba's simplified ZOH)
    h_k = Ā_k ⊙ h_{k-1} + B̄_k x_k,   y_k = C_k · h_k + D x_k,   y_k ← y_k ⊙ SiLU(z_k)   (eq. 10)

Exact ZOH would give B̄_k = (Ā_k - I)(Δ_k A)^{-1} Δ_k B_k = Δ_k φ₁(Δ_k A) B_k, which differs
from Δ_k B_k at O(Δ²); Mamba and mamba_ssm's kernel use Δ_k B_k, and so does `forward`.
`Mamba.discrete` returns both, the exact one through the stable φ₁ (§4.1).

Around the SSM: (x, z) = in_proj(u), x = SiLU(causal depthwise conv(x)), out = out_proj(y).
Parameter names, shapes and initialisation are those of `mamba_ssm.modules.mamba_simple.Mamba`,
so state dicts load in both directions. On CUDA, with `mamba_ssm` installed, the scan runs in its
fused kernel, without it in the Triton kernels of `triton_scan`; on the CPU in
`selective_scan.chunked_selective_scan`, a sequential PyTorch scan checkpointed in chunks with
its own backward. Neither of the last two holds the (batch, L, D, N) state.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssmprobe.models import discretize, hippo
from ssmprobe.models.selective_scan import chunked_selective_scan, full_state_scan, step_size


@dataclass(frozen=True)
class SelectiveSSM:
    """The per-step parameters of a Mamba block's SSM (eq. 10) for one input of the block.

    Running h_k = A_bar_k ⊙ h_{k-1} + B_bar_euler_k x_k, y_k = C_k · h_k + D x_k, and
    y_k ⊙ SiLU(z_k) gives `Mamba.mix(hidden)`, the input of out_proj. `B_bar` is the exact ZOH input
    matrix Δ_k φ₁(Δ_k A) B_k, which `forward` does not use. Shapes: A_bar, B_bar, B_bar_euler
    (batch, L, D, N); C (batch, L, N); dt, x, z (batch, L, D); D (D,); A (D, N), the continuous
    A that every Ā_k = exp(Δ_k A) shares.
    """

    A: Tensor
    A_bar: Tensor
    B_bar: Tensor
    B_bar_euler: Tensor
    C: Tensor
    D: Tensor
    dt: Tensor
    x: Tensor
    z: Tensor


@functools.cache
def _cuda_selective_scan() -> Callable[..., Tensor] | None:
    """mamba_ssm's fused CUDA scan, or None where the package or its CUDA extension is missing."""
    try:  # mamba_ssm imports its CUDA extension at import time, so it fails on CPU-only hosts
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError):  # OSError: extension built against another CUDA
        return None
    return selective_scan_fn


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    use_cuda_kernel: bool = True,
) -> Tensor:
    """The selective scan of eq. 10 in mamba_ssm's layout: returns y (batch, D, L).

    u, delta, z: (batch, D, L); A: (D, N) real; B, C: (batch, N, L); D, delta_bias: (D,).
    Δ = softplus(delta + delta_bias) (each part optional), Ā_k = exp(Δ_k A), B̄_k = Δ_k B_k
    (simplified ZOH: exact ZOH is Δ_k φ₁(Δ_k A) B_k), h_k = Ā_k h_{k-1} + B̄_k u_k,
    y_k = C_k · h_k + D u_k, y ← y ⊙ SiLU(z). Uses mamba_ssm's `selective_scan_fn` for CUDA
    inputs in float32 or lower when it is installed and `use_cuda_kernel`; on other GPU inputs
    the Triton kernels of `triton_scan` (`full_state_scan` where Triton is missing: a few large
    kernels, since a chunked loop of small ones took 16 s vs 0.2 s per PGD-AT step at the MNIST
    preset on an H100); on the CPU the checkpointed sequential scan (its chunks stay in cache
    and the full state is never stored).
    """
    if use_cuda_kernel and u.is_cuda and u.dtype != torch.float64:
        kernel = _cuda_selective_scan()
        if kernel is not None:  # the kernel takes A, D and delta_bias in float32
            return kernel(
                u,
                delta,
                A.float(),
                B,
                C,
                None if D is None else D.float(),
                z,
                None if delta_bias is None else delta_bias.float(),
                delta_softplus,
            )
    scan = chunked_selective_scan if u.device.type == "cpu" else _gpu_scan()
    return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _gpu_scan() -> Callable[..., Tensor]:
    """The Triton kernels (`triton_scan`; Triton ships with CUDA builds of PyTorch), else
    `full_state_scan`."""
    try:
        from ssmprobe.models.triton_scan import triton_selective_scan
    except ImportError:
        return full_state_scan
    return triton_selective_scan


def causal_depthwise_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """mamba_simple's conv1d (padding K-1 on both sides, first L outputs kept) on x (batch, L, D)
    with weight (D, 1, K): y_t = bias + Σ_j weight_j x_{t+j-K+1}, x before step 0 being zero.

    K shifted multiply-adds in (batch, L, D): on a CPU oneDNN's depthwise conv1d backward took
    longer than Mamba's linear layers together.
    """
    k, length = weight.shape[-1], x.shape[1]
    padded = F.pad(x, (0, 0, k - 1, 0))
    taps = weight[:, 0].T  # (K, D)
    y = padded[:, k - 1 :] * taps[k - 1]
    for j in range(k - 1):
        y = y.addcmul(padded[:, j : j + length], taps[j])
    return y if bias is None else y + bias


class Mamba(nn.Module):
    """The Mamba block of mamba_ssm (`mamba_simple.Mamba`): (batch, L, d_model) -> same.

    `use_cuda_kernel=False` keeps the pure-PyTorch scan even where mamba_ssm's kernel exists.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        conv_bias: bool = True,
        bias: bool = False,
        use_cuda_kernel: bool = True,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.use_cuda_kernel = use_cuda_kernel
        # Registration order follows mamba_simple, so state_dict keys come in the same order.
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        # S4D-real: A = -(1, 2, ..., N) in every channel.
        n = torch.arange(1, d_state + 1, dtype=torch.get_default_dtype())
        self.A_log = nn.Parameter(torch.log(n).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self._init_dt(dt_min, dt_max, dt_init_floor, dt_scale)

    def _init_dt(self, dt_min: float, dt_max: float, floor: float, scale: float) -> None:
        """dt_proj so that Δ = softplus(dt_proj(·)) starts log-uniform in [dt_min, dt_max]."""
        bound = self.dt_rank**-0.5 * scale  # keeps the variance of W_Δ s independent of dt_rank
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = hippo.log_uniform((self.d_inner,), dt_min, dt_max).clamp(min=floor)
        with torch.no_grad():  # softplus⁻¹(Δ) = log(e^Δ - 1), written without cancellation
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    @property
    def A(self) -> Tensor:
        """The continuous diagonal A = -exp(A_log) (D, N), negative for every parameter."""
        return -torch.exp(self.A_log)

    def _ssm_inputs(self, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """x, z and Δ before bias and softplus, all (batch, D, L); B and C (batch, N, L)."""
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (batch, L, D) each
        x = F.silu(causal_depthwise_conv(x, self.conv1d.weight, self.conv1d.bias))
        dt, b, c = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # the scan adds dt_proj.bias before softplus
        return tuple(t.transpose(1, 2) for t in (x, z, dt, b, c))  # type: ignore[return-value]

    def forward(self, hidden: Tensor) -> Tensor:
        return self.out_proj(self.mix(hidden))

    def mix(self, hidden: Tensor) -> Tensor:
        """Everything before out_proj: the gated SSM output y (batch, L, D) for hidden (B, L, H)."""
        x, z, dt, b, c = self._ssm_inputs(hidden)
        y = selective_scan(
            x,
            dt,
            self.A,
            b,
            c,
            self.D,
            z,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
            use_cuda_kernel=self.use_cuda_kernel,
        )
        return y.transpose(1, 2)

    def discrete(self, hidden: Tensor) -> SelectiveSSM:
        """The per-step Ā_k, B̄_k, C_k, Δ_k, SSM input and gate for the input hidden (B, L, H)."""
        x, z, dt, b, c = self._ssm_inputs(hidden)
        dt = step_size(dt, self.dt_proj.bias, True).transpose(1, 2)  # (batch, L, D)
        a_bar, b_scale = discretize.zoh(self.A, dt.unsqueeze(-1))  # Δ φ₁(ΔA): (batch, L, D, N)
        b = b.transpose(1, 2).unsqueeze(2)  # (batch, L, 1, N)
        return SelectiveSSM(
            A=self.A,
            A_bar=a_bar,
            B_bar=b_scale * b,
            B_bar_euler=dt.unsqueeze(-1) * b,
            C=c.transpose(1, 2),
            D=self.D,
            dt=dt,
            x=x.transpose(1, 2),
            z=z.transpose(1, 2),
        )
