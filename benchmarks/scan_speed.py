"""Mamba's selective scan (eq. 10) per backend: forward + backward time and agreement.

Backends: `chunked` (pure PyTorch, checkpointed: the CPU path), `full_state` (pure PyTorch with
the whole state stored: the GPU path without Triton), `triton` (`triton_scan`: the GPU path
without mamba-ssm; on the CPU in Triton's interpreter with TRITON_INTERPRET=1) and `mamba_ssm`
(its fused CUDA kernel, where installed). The inputs are those a fresh Mamba block at a preset's
shapes (batch, D = expand · d_model channels, N states, L steps) computes from random hidden
states. Each backend's output and the gradients of all eight inputs are compared with the
`chunked` scan in float64 on the same device; the error printed is the largest of
max|x - ref| / max|ref| over those nine tensors. Issue 13's goal: Triton within 2x of
mamba_ssm's time.

    python benchmarks/scan_speed.py [--preset mnist] [--device cuda] [--batch 256]
        [--backends chunked,full_state,triton,mamba_ssm] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from torch import Tensor

from ssmprobe.models import model_config
from ssmprobe.models.mamba import Mamba, _cuda_selective_scan
from ssmprobe.models.selective_scan import chunked_selective_scan, full_state_scan
from ssmprobe.training.fit import train_config

LENGTH = {"mnist": 784, "cifar10": 1024, "digits": 64}
BACKENDS = ("chunked", "full_state", "triton", "mamba_ssm")


def backend(name: str, device: torch.device) -> Callable[..., Tensor] | None:
    """The scan function of `name`, or None where it cannot run on `device`."""
    if name == "chunked":
        return chunked_selective_scan
    if name == "full_state":
        return full_state_scan
    if name == "triton":  # on the CPU only in Triton's interpreter (TRITON_INTERPRET=1)
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            return None
        try:
            from ssmprobe.models.triton_scan import triton_selective_scan
        except ImportError:
            return None
        return triton_selective_scan
    if name == "mamba_ssm":
        return _cuda_selective_scan() if device.type == "cuda" else None
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")


def scan_inputs(preset: str, batch: int | None, device: torch.device) -> list[Tensor]:
    """u, delta, A, B, C, D, z, delta_bias of a fresh Mamba block at `preset`, in float32
    (`run` makes its own leaves of them)."""
    config = model_config("mamba", preset)
    block = Mamba(config.d_model, config.d_state or 16, expand=config.expand).to(device)
    batch = batch or train_config(preset, "mamba").batch_size
    hidden = torch.randn(batch, LENGTH[preset], config.d_model, device=device)
    with torch.no_grad():
        x, z, dt, b, c = block._ssm_inputs(hidden)
        tensors = [x, dt, block.A, b, c, block.D, z, block.dt_proj.bias]
    return [t.detach().float().contiguous() for t in tensors]


def run(scan: Callable[..., Tensor], inputs: list[Tensor], weight: Tensor) -> list[Tensor]:
    """y and the gradients of every input of sum(weight ⊙ y)."""
    leaves = [t.detach().requires_grad_() for t in inputs]
    y = scan(*leaves[:7], delta_bias=leaves[7], delta_softplus=True)
    grads = torch.autograd.grad((y * weight).sum(), leaves)
    return [y.detach(), *grads]


def relative_error(got: list[Tensor], ref: list[Tensor]) -> float:
    """The largest max|got - ref| / max|ref| over the tensors."""
    return max(
        ((g.double() - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()
        for g, r in zip(got, ref, strict=True)
    )


def best_time(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    """The best wall time of `repeat` calls of `fn`, after one untimed call (Triton compiles
    its kernels, the allocator settles)."""
    best = float("inf")
    for i in range(repeat + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="mnist", choices=sorted(LENGTH))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, help="sequences (default: the preset's batch)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best is kept")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    inputs = scan_inputs(args.preset, args.batch, device)
    weight = torch.randn_like(inputs[0]).double()
    ref = run(chunked_selective_scan, [t.double() for t in inputs], weight)
    u, _, a = inputs[:3]
    print(
        f"preset {args.preset}, device {device}: batch {u.shape[0]}, D {u.shape[1]}, "
        f"N {a.shape[1]}, L {u.shape[2]}; fwd+bwd time (best of {args.repeat}) and the largest "
        "relative error of y and the 8 gradients against the chunked scan in float64"
    )
    times = {}
    for name in args.backends.split(","):
        scan = backend(name, device)
        if scan is None:
            print(f"{name:10s} not available on {device}")
            continue
        error = relative_error(run(scan, inputs, weight.float()), ref)
        times[name] = best_time(
            lambda scan=scan: run(scan, inputs, weight.float()), device, args.repeat
        )
        print(f"{name:10s} {times[name] * 1e3:10.2f} ms   error {error:.1e}", flush=True)
    if "triton" in times and "mamba_ssm" in times:
        print(f"triton / mamba_ssm: {times['triton'] / times['mamba_ssm']:.2f}x (goal <= 2)")


if __name__ == "__main__":
    main()
