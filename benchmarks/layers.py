"""Speed of every SSM layer against its step-by-step recurrence (issue 2's benchmark).

For each layer at batch B, length L, width d: forward + backward time of the layer as `forward`
computes it (convolution kernel or parallel scan) and of the plain recurrence with autograd,
and their ratio. Also S4's kernel generation (Cauchy + Woodbury + iFFT) against a dense Ā^k
power loop at L = 1024. Numbers are for the machine it runs on; run it on a quiet machine.

    python benchmarks/layers.py [--batch 32] [--length 784] [--width 128] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from ssmprobe.models.dss import DSS
from ssmprobe.models.mamba import Mamba, selective_scan
from ssmprobe.models.mega import EMA
from ssmprobe.models.recurrence import run_recurrence
from ssmprobe.models.s4 import S4
from ssmprobe.models.s5 import S5


def timed(fn: Callable[[], torch.Tensor], device: torch.device, repeat: int) -> float:
    """Best wall time of `fn()` followed by a backward pass over its sum."""
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def sequential_selective_scan(u, delta, A, B, C, D, z, delta_bias):
    """mamba_ssm's reference semantics, one Python step per time index."""
    dt = torch.nn.functional.softplus(delta + delta_bias[:, None])  # (b, d, l)
    x = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for k in range(u.shape[-1]):
        x = (
            torch.exp(dt[..., k, None] * A) * x
            + (dt[..., k] * u[..., k])[..., None] * B[:, None, :, k]
        )
        ys.append((x * C[:, None, :, k]).sum(-1))
    y = torch.stack(ys, -1) + D[:, None] * u
    return y * torch.nn.functional.silu(z)


def s4_kernel_vs_power_loop(width: int, length: int, device: torch.device, repeat: int) -> None:
    layer = S4(width).to(device)
    fast = timed(lambda: layer.impulse_response(length), device, repeat)

    def power_loop() -> torch.Tensor:
        ssm = layer.discrete()
        x, out = ssm.B_bar, []
        for _ in range(length):
            out.append(2 * (ssm.C_bar * x).sum(-1).real)
            x = torch.einsum("hnm,hm->hn", ssm.A_bar, x)
        return torch.stack(out, -1)

    slow = timed(power_loop, device, repeat)
    print(
        f"S4 kernel L={length}: Cauchy {fast * 1e3:8.1f} ms   dense power loop "
        f"{slow * 1e3:8.1f} ms   ratio {slow / fast:6.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=784)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs (fast path)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    b, l, h = args.batch, args.length, args.width
    print(f"batch {b}, length {l}, width {h}, device {device}, threads {torch.get_num_threads()}")
    u = torch.randn(b, l, h, device=device, requires_grad=True)
    for name, layer in [("S4", S4(h)), ("DSS", DSS(h)), ("S5", S5(h)), ("Mega EMA", EMA(h))]:
        layer = layer.to(device)
        fast = timed(lambda layer=layer: layer(u), device, args.repeat)
        slow = timed(lambda layer=layer: run_recurrence(layer.discrete(), u), device, 1)
        print(
            f"{name:9s} forward+backward {fast:8.3f} s   recurrence {slow:8.3f} s   "
            f"ratio {slow / fast:6.1f}x"
        )

    mamba = Mamba(h, use_cuda_kernel=False).to(device)
    with torch.no_grad():  # leaves, so every repeat builds its own graph
        x, z, dt, bb, cc = (t.requires_grad_() for t in mamba._ssm_inputs(u))
    a = mamba.A.detach().requires_grad_()  # A = -exp(A_log) is computed: make it a leaf too
    args_scan = (x, dt, a, bb, cc, mamba.D, z, mamba.dt_proj.bias)
    fast = timed(
        lambda: selective_scan(
            *args_scan[:7], delta_bias=args_scan[7], delta_softplus=True, use_cuda_kernel=False
        ),
        device,
        args.repeat,
    )
    slow = timed(lambda: sequential_selective_scan(*args_scan), device, 1)
    print(
        f"{'Mamba':9s} scan fwd+bwd     {fast:8.3f} s   sequential {slow:8.3f} s   "
        f"ratio {slow / fast:6.1f}x"
    )
    block = timed(lambda: mamba(u), device, args.repeat)
    print(f"{'Mamba':9s} whole block fwd+bwd {block:8.3f} s")
    s4_kernel_vs_power_loop(h, 1024, device, args.repeat)


if __name__ == "__main__":
    main()
