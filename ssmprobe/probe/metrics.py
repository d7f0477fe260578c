"""Feature discrepancy between clean features f and adversarial features f' (paper §4.2).

All functions take batches of feature sequences (B, L, d) and return one value per sample:

    MSE(f, f') = (1/T) ||f' - f||²                 T = L, the squared Frobenius norm over (L, d)
    KL(f, f')  = mean_j Σ_k S(f)[k, j] (log S(f)[k, j] - log S(f')[k, j])
                 S = softmax over the sequence dimension k, per channel j
    NSR(f, f') = ||f' - f|| / ||f||              the noise-to-signal ratio (Frobenius norms)
    per_step_sq_error(f, f')[k] = ||f'_k - f_k||²  (summed over channels)

The paper's relative form divides a discrepancy by ||f|| (`relative`). For a component with
input pair (f_in, f'_in) and output pair (f_out, f'_out): before = d(f'_in, f_in),
after = d(f'_out, f_out), change = after - before, rate = change / before (`rate`, in %).

Neither MSE nor MSE/||f|| is scale-free: a component that doubles its input quadruples the MSE
and doubles MSE/||f||. NSR is: its after / before, the amplification
(||Δ_out|| / ||Δ_in||) / (||f_out|| / ||f_in||), is 1 for any map that scales the difference as
much as the signal, above 1 where the component amplifies the attack more than the signal.
"""

from __future__ import annotations

import torch
from torch import Tensor

METRICS = ("mse", "kl", "nsr")
SCALED = ("mse", "kl")  # the metrics with a plain and a relative form; NSR is already scale-free


def _check_pair(f: Tensor, f_adv: Tensor) -> None:
    if f.shape != f_adv.shape or f.dim() != 3:
        raise ValueError(
            f"expected two feature batches of one shape (B, L, d), got {tuple(f.shape)} and "
            f"{tuple(f_adv.shape)}"
        )


def per_step_sq_error(f: Tensor, f_adv: Tensor) -> Tensor:
    """||f'_k - f_k||² per sample and position: (B, L, d) x 2 -> (B, L)."""
    _check_pair(f, f_adv)
    return (f_adv - f).square().sum(dim=2)


def mse(f: Tensor, f_adv: Tensor) -> Tensor:
    """(1/L) ||f' - f||² per sample: (B, L, d) x 2 -> (B,)."""
    return mse_from_steps(per_step_sq_error(f, f_adv))


def mse_from_steps(steps: Tensor) -> Tensor:
    """MSE from `per_step_sq_error`'s (B, L): the sum over positions over T = L."""
    return steps.sum(dim=1) / steps.shape[1]


def kl(f: Tensor, f_adv: Tensor) -> Tensor:
    """KL(S(f) || S(f')) over the sequence axis, summed over positions, mean over channels.

    In the log domain: log S(f) - log S(f') = (f - f') - (logsumexp f - logsumexp f') over the
    sequence, weighted by S(f); no exponentials are summed, and the difference is formed once.
    """
    _check_pair(f, f_adv)
    log_ratio = (f - f_adv) - (torch.logsumexp(f, dim=1) - torch.logsumexp(f_adv, dim=1))[:, None]
    return (torch.softmax(f, dim=1) * log_ratio).sum(dim=1).mean(dim=1)


def nsr(f: Tensor, f_adv: Tensor) -> Tensor:
    """||f' - f|| / ||f|| per sample (Frobenius norms over (L, d)): (B, L, d) x 2 -> (B,)."""
    return nsr_from_steps(per_step_sq_error(f, f_adv), f)


def nsr_from_steps(steps: Tensor, f: Tensor) -> Tensor:
    """NSR from `per_step_sq_error`'s (B, L) and the clean features f."""
    return steps.sum(dim=1).sqrt() / torch.linalg.vector_norm(f, dim=(1, 2))


def amplification(nsr_before: float, nsr_after: float) -> float:
    """(||Δ_out|| / ||f_out||) / (||Δ_in|| / ||f_in||): above 1, the component amplifies the
    clean-adversarial difference more than the clean signal; NaN without a difference before."""
    return nsr_after / nsr_before if nsr_before else float("nan")


def relative(value: Tensor, f: Tensor) -> Tensor:
    """A per-sample discrepancy divided by ||f|| (Frobenius norm of the clean (L, d) features)."""
    return value / torch.linalg.vector_norm(f, dim=(1, 2))


def rate(before: float, after: float) -> float:
    """(after - before) / before in %; NaN when there was no discrepancy before."""
    return 100.0 * (after - before) / before if before else float("nan")
