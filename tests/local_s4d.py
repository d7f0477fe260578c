"""state-spaces' standalone S4D layer (`models/s4/s4d.py`), written here with its parameter
names, ZOH and Vandermonde kernel: S4D is on no package index. Used by the reader and the
model-report tests."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LocalS4DKernel(nn.Module):
    """state-spaces' S4DKernel (models/s4/s4d.py) with its parameter names: A = -exp(log_A_real)
    + i·A_imag, Δ = exp(log_dt), ZOH, K = 2 Re Σ_n C_n (e^{ΔA_n} - 1)/A_n · e^{kΔA_n}."""

    def __init__(self, d_model: int, d_state: int, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        low, high = math.log(dt_min), math.log(dt_max)
        self.log_dt = nn.Parameter(low + (high - low) * torch.rand(d_model))
        c = torch.randn(d_model, d_state // 2, dtype=torch.complex64)
        self.C = nn.Parameter(torch.view_as_real(c))
        # S4D-Lin with some spread, so no two channels share their poles
        self.log_A_real = nn.Parameter(math.log(0.5) + 0.3 * torch.randn(d_model, d_state // 2))
        self.A_imag = nn.Parameter(math.pi * torch.arange(d_state // 2.0).repeat(d_model, 1))

    def forward(self, length: int) -> Tensor:
        dt = torch.exp(self.log_dt)
        a = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dta = a * dt.unsqueeze(-1)
        weights = torch.view_as_complex(self.C) * (torch.exp(dta) - 1) / a
        powers = torch.exp(dta.unsqueeze(-1) * torch.arange(length, dtype=dt.dtype))
        return 2 * torch.einsum("hn,hnl->hl", weights, powers).real


class LocalS4D(nn.Module):
    """state-spaces' standalone S4D block: (B, H, L) -> FFT conv with the kernel + D u -> GELU
    -> 1x1 conv to 2H -> GLU."""

    def __init__(self, d_model: int, d_state: int) -> None:
        super().__init__()
        self.D = nn.Parameter(torch.randn(d_model))
        self.kernel = LocalS4DKernel(d_model, d_state)
        self.activation = nn.GELU()
        self.output_linear = nn.Sequential(nn.Conv1d(d_model, 2 * d_model, 1), nn.GLU(dim=-2))

    def forward(self, u: Tensor) -> Tensor:
        length = u.shape[-1]
        k = self.kernel(length)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * length) * torch.fft.rfft(k, n=2 * length))
        y = y[..., :length] + u * self.D.unsqueeze(-1)
        return self.output_linear(self.activation(y))
