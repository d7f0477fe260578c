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
and doubles MSE/||f||. NSR is, and so is the amplification, the ratio of the sample means of NSR
after and before (`amplification`):

    amplification = mean_n NSR(f_out, f'_out)_n / mean_n NSR(f_in, f'_in)_n

1 for any map that scales the difference as much as the signal, above 1 where the component
amplifies the attack more than the signal. It is what the probe reports (`discrepancy` keeps only
running sums); the mean over samples of each sample's ratio, (||Δ_out|| / ||Δ_in||) /
(||f_out|| / ||f_in||), is `sample_amplification`, and the two can fall on either side of 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

# (f, f') batches (B, L, d) x 2 -> one value per sample (B,)
MetricFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Metric:
    """One registered discrepancy: its function, the title figures give it, and whether it is
    scale-dependent (then measured plain and relative to ||f||, and given a verdict in both)."""

    name: str
    fn: MetricFn
    title: str
    scaled: bool = False


METRICS: dict[str, Metric] = {}  # in registration order: the columns of tables and figures
AMPLIFICATION = "nsr"  # the metric whose after / before is the amplification, not a rate bar


def register_metric(
    name: str, title: str, scaled: bool = False
) -> Callable[[MetricFn], MetricFn]:
    """Registers the decorated `fn(f, f') -> (B,)` as the discrepancy `name`: the probe measures
    it on every component before and after, and its rate gets a CSV row, a verdict column and a
    Figure 3 panel (a user's metric too)."""
    if not name.isidentifier() or not name.islower():
        raise ValueError(f"metric name {name!r}: a lower-case identifier")

    def register(fn: MetricFn) -> MetricFn:
        METRICS[name] = Metric(name, fn, title, scaled)
        return fn

    return register


def rate_metrics() -> list[Metric]:
    """The metrics given a rate (every one but the amplification's)."""
    return [m for m in METRICS.values() if m.name != AMPLIFICATION]


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


@register_metric("mse", "MSE", scaled=True)
def mse(f: Tensor, f_adv: Tensor) -> Tensor:
    """(1/L) ||f' - f||² per sample: (B, L, d) x 2 -> (B,)."""
    return mse_from_steps(per_step_sq_error(f, f_adv))


def mse_from_steps(steps: Tensor) -> Tensor:
    """MSE from `per_step_sq_error`'s (B, L): the sum over positions over T = L."""
    return steps.sum(dim=1) / steps.shape[1]


@register_metric("kl", "KL divergence", scaled=True)
def kl(f: Tensor, f_adv: Tensor) -> Tensor:
    """KL(S(f) || S(f')) over the sequence axis, summed over positions, mean over channels.

    In the log domain: log S(f) - log S(f') = (f - f') - (logsumexp f - logsumexp f') over the
    sequence, weighted by S(f); no exponentials are summed, and the difference is formed once.
    """
    _check_pair(f, f_adv)
    log_ratio = (f - f_adv) - (torch.logsumexp(f, dim=1) - torch.logsumexp(f_adv, dim=1))[:, None]
    return (torch.softmax(f, dim=1) * log_ratio).sum(dim=1).mean(dim=1)


@register_metric(AMPLIFICATION, "noise-to-signal ratio")
def nsr(f: Tensor, f_adv: Tensor) -> Tensor:
    """||f' - f|| / ||f|| per sample (Frobenius norms over (L, d)): (B, L, d) x 2 -> (B,)."""
    return nsr_from_steps(per_step_sq_error(f, f_adv), f)


def nsr_from_steps(steps: Tensor, f: Tensor) -> Tensor:
    """NSR from `per_step_sq_error`'s (B, L) and the clean features f."""
    return steps.sum(dim=1).sqrt() / torch.linalg.vector_norm(f, dim=(1, 2))


def amplification(nsr_before: float, nsr_after: float) -> float:
    """The amplification the probe reports, from the sample means of NSR before and after:
    mean NSR_out / mean NSR_in. Above 1, the component amplifies the clean-adversarial difference
    more than the clean signal; NaN without a difference before."""
    return nsr_after / nsr_before if nsr_before else float("nan")


def sample_amplification(nsr_before: Tensor, nsr_after: Tensor) -> float:
    """The per-sample reading: the mean over samples of NSR_out / NSR_in, each sample's
    (||Δ_out|| / ||Δ_in||) / (||f_out|| / ||f_in||), from per-sample NSR (B,) before and after.
    Samples without a difference before have no ratio and are left out (NaN if none has one)."""
    has = nsr_before > 0
    return (nsr_after[has] / nsr_before[has]).mean().item() if has.any() else float("nan")


def relative(value: Tensor, f: Tensor) -> Tensor:
    """A per-sample discrepancy divided by ||f|| (Frobenius norm of the clean (L, d) features)."""
    return value / torch.linalg.vector_norm(f, dim=(1, 2))


def rate(before: float, after: float) -> float:
    """(after - before) / before in %; NaN when there was no discrepancy before."""
    return 100.0 * (after - before) / before if before else float("nan")
