"""Mamba block: scan vs a step-by-step loop, gradients, mamba_simple layout, causality; the
checkpointed pure-PyTorch scan's chunk boundaries, large steps and memory."""

from __future__ import annotations

import itertools
import math
import sys
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scan_reference import scan_inputs, sequential_scan
from torch import nn
from torch.func import functional_call

from ssmprobe.models.mamba import Mamba, causal_depthwise_conv, selective_scan
from ssmprobe.models.selective_scan import chunked_selective_scan

FLAGS = list(itertools.product([False, True], repeat=4))


@pytest.mark.parametrize("length", [1, 7, 131])
@pytest.mark.parametrize(("use_d", "use_z", "use_bias", "softplus"), FLAGS)
def test_scan_matches_sequential_loop(length, use_d, use_z, use_bias, softplus):
    inputs = scan_inputs(2, 3, 4, length, softplus, seed=length)
    for name, used in [("D", use_d), ("z", use_z), ("delta_bias", use_bias)]:
        if not used:
            del inputs[name]
    expected = sequential_scan(**inputs, delta_softplus=softplus)
    got = selective_scan(**inputs, delta_softplus=softplus)
    assert got.shape == (2, 3, length)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("softplus", [False, True])
def test_scan_gradients_match_sequential_loop(softplus):
    inputs = scan_inputs(2, 3, 4, 37, softplus, seed=1)
    for t in inputs.values():
        t.requires_grad_(True)
    cotangent = torch.randn(2, 3, 37, dtype=torch.float64)
    names = list(inputs)
    expected = torch.autograd.grad(
        sequential_scan(**inputs, delta_softplus=softplus), list(inputs.values()), cotangent
    )
    got = torch.autograd.grad(
        selective_scan(**inputs, delta_softplus=softplus), list(inputs.values()), cotangent
    )
    for name, g_exp, g_got in zip(names, expected, got, strict=True):
        torch.testing.assert_close(g_got, g_exp, rtol=1e-9, atol=1e-9, msg=name)


def values_and_grads(scan, inputs, cotangent, **kwargs):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    y = scan(**leaves, **kwargs)
    return y, dict(
        zip(leaves, torch.autograd.grad(y, list(leaves.values()), cotangent), strict=True)
    )


def assert_matches_loop(inputs, softplus, rtol=1e-10, atol=1e-10, **kwargs):
    """Chunked scan against the float64 loop: values and the gradient of every input."""
    reference = {k: v.double() for k, v in inputs.items()}
    cotangent = torch.randn(inputs["u"].shape, dtype=torch.float64)
    y_exp, g_exp = values_and_grads(sequential_scan, reference, cotangent, delta_softplus=softplus)
    y, g = values_and_grads(
        chunked_selective_scan,
        inputs,
        cotangent.to(inputs["u"].dtype),
        delta_softplus=softplus,
        **kwargs,
    )
    assert y.dtype == inputs["u"].dtype and torch.isfinite(y).all()
    torch.testing.assert_close(y.double(), y_exp, rtol=rtol, atol=atol)
    for name in inputs:
        torch.testing.assert_close(g[name].double(), g_exp[name], rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize(
    ("length", "chunk"), [(1, 8), (8, 8), (9, 8), (37, 8), (37, 1), (131, 16), (50, 64)]
)
@pytest.mark.parametrize("softplus", [False, True])
def test_chunked_scan_matches_loop_across_chunk_boundaries(length, chunk, softplus):
    inputs = scan_inputs(2, 3, 4, length, softplus, seed=length)
    assert_matches_loop(inputs, softplus, chunk=chunk)


def test_chunked_scan_gradcheck():
    inputs = scan_inputs(2, 3, 4, 37, True, seed=3)
    names = list(inputs)

    def scan(*tensors):
        return chunked_selective_scan(
            **dict(zip(names, tensors, strict=True)), delta_softplus=True, chunk=8
        )

    leaves = tuple(t.requires_grad_(True) for t in inputs.values())
    assert torch.autograd.gradcheck(scan, leaves, fast_mode=True)
    small = scan_inputs(1, 2, 3, 11, True, seed=4)  # same names: full (slow-mode) gradcheck
    assert torch.autograd.gradcheck(scan, tuple(t.requires_grad_(True) for t in small.values()))


def large_step_inputs(dtype):
    """Δ|A| up to 200 per step in channel 0 (Ā_k underflows in float32: e^-200 < 1e-45),
    10-40 at every 5th step of channel 1, small in channel 2."""
    inputs = scan_inputs(2, 3, 4, 40, False, seed=7)
    worst = inputs["A"].abs().amax(-1)  # (D,)
    inputs["delta"][:, 0] = 200 / worst[0] * torch.rand(2, 40, dtype=torch.float64)
    inputs["delta"][:, 1, ::5] = (10 + 30 * torch.rand(2, 8, dtype=torch.float64)) / worst[1]
    inputs["delta_bias"] = inputs["delta_bias"].abs()
    return {k: v.to(dtype) for k, v in inputs.items()}


def test_large_steps_match_loop_in_float64():
    assert_matches_loop(large_step_inputs(torch.float64), False, chunk=16)


def test_large_steps_stay_finite_and_accurate_in_float32():
    inputs = large_step_inputs(torch.float32)
    assert torch.exp(inputs["delta"][:, 0] * inputs["A"][0, :, None].amin()).min() == 0
    assert_matches_loop(inputs, False, rtol=1e-4, atol=1e-3)


def test_partial_gradients_match_full_ones():
    inputs = scan_inputs(2, 3, 4, 21, True, seed=11)
    cotangent = torch.randn(2, 3, 21, dtype=torch.float64)
    _, full = values_and_grads(chunked_selective_scan, inputs, cotangent, delta_softplus=True)
    u = inputs["u"].clone().requires_grad_(True)
    y = chunked_selective_scan(**(inputs | {"u": u}), delta_softplus=True)
    (grad_u,) = torch.autograd.grad(y, u, cotangent)  # A, B, C, ... need no gradient here
    torch.testing.assert_close(grad_u, full["u"], rtol=1e-12, atol=1e-12)


def test_backward_keeps_no_full_state():
    inputs = scan_inputs(2, 16, 32, 128, True, seed=12)
    inputs["u"].requires_grad_(True)
    y = chunked_selective_scan(**inputs, delta_softplus=True, chunk=16)
    saved = sum(t.numel() for t in y.grad_fn.saved_tensors if t is not None)
    assert saved < 2 * 128 * 16 * 32 / 2  # (batch, L, D, N) would be 131072


def test_half_precision_is_computed_in_float32():
    inputs = scan_inputs(2, 3, 4, 30, True, seed=13)
    y32 = chunked_selective_scan(**{k: v.float() for k, v in inputs.items()}, delta_softplus=True)
    y16 = chunked_selective_scan(
        **{k: v.bfloat16() for k, v in inputs.items()}, delta_softplus=True
    )
    assert y16.dtype == torch.bfloat16
    y_ref = chunked_selective_scan(
        **{k: v.bfloat16().float() for k, v in inputs.items()}, delta_softplus=True
    )
    torch.testing.assert_close(y16.float(), y_ref, rtol=1e-2, atol=1e-2)
    assert (y_ref - y32).abs().max() < 0.5


def tiny_block(**kwargs) -> Mamba:
    torch.manual_seed(0)
    return Mamba(d_model=4, d_state=2, **kwargs).double()


def test_gradcheck_wrt_input_and_every_parameter():
    block = tiny_block()
    names = [name for name, _ in block.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in block.parameters())
    hidden = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)

    def run(u, *ps):
        return functional_call(block, dict(zip(names, ps, strict=True)), (u,))

    assert torch.autograd.gradcheck(run, (hidden, *params))
    grads = torch.autograd.grad(run(hidden, *params).square().sum(), params)
    assert all(g.abs().sum() > 0 for g in grads), "some parameter gets no gradient"


def mamba_simple_table(d_model, d_state, d_conv, expand, dt_rank, bias):
    """state_dict of mamba_ssm.modules.mamba_simple.Mamba (v1.x/2.x), from its source."""
    d_inner = expand * d_model
    table = {
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }
    if bias:
        table |= {"in_proj.bias": (2 * d_inner,), "out_proj.bias": (d_model,)}
    return table


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # Defaults at d_model=128: d_inner 256, dt_rank ceil(128/16) = 8, N 16, d_conv 4.
        (
            {"d_model": 128},
            {
                "A_log": (256, 16),
                "D": (256,),
                "in_proj.weight": (512, 128),
                "conv1d.weight": (256, 1, 4),
                "conv1d.bias": (256,),
                "x_proj.weight": (40, 256),
                "dt_proj.weight": (256, 8),
                "dt_proj.bias": (256,),
                "out_proj.weight": (128, 256),
            },
        ),
        ({"d_model": 20}, mamba_simple_table(20, 16, 4, 2, 2, bias=False)),  # ceil(20/16) = 2
        (
            {"d_model": 6, "d_state": 3, "d_conv": 2, "expand": 3, "dt_rank": 5, "bias": True},
            mamba_simple_table(6, 3, 2, 3, 5, bias=True),
        ),
    ],
)
def test_state_dict_is_mamba_simple(kwargs, expected):
    state = Mamba(**kwargs).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_state_dict_round_trip():
    block, other = tiny_block(), Mamba(d_model=4, d_state=2).double()
    other.load_state_dict(block.state_dict(), strict=True)
    hidden = torch.randn(2, 9, 4, dtype=torch.float64)
    torch.testing.assert_close(other(hidden), block(hidden), rtol=0, atol=0)


def test_initialisation_follows_mamba_simple():
    block = Mamba(d_model=64, d_state=8, dt_min=0.01, dt_max=0.05, dt_scale=2.0)
    n = torch.arange(1, 9, dtype=torch.float32)
    torch.testing.assert_close(block.A_log, torch.log(n).expand(128, 8))
    torch.testing.assert_close(block.D, torch.ones(128))
    dt = torch.nn.functional.softplus(block.dt_proj.bias.double())
    assert dt.min() >= 0.01 * (1 - 1e-5) and dt.max() <= 0.05 * (1 + 1e-5)
    assert block.dt_proj.weight.abs().max() <= 2.0 * 4**-0.5  # dt_rank = ceil(64/16) = 4
    floored = Mamba(d_model=4, dt_min=1e-6, dt_max=2e-6, dt_init_floor=1e-3)
    torch.testing.assert_close(
        torch.nn.functional.softplus(floored.dt_proj.bias), torch.full((8,), 1e-3)
    )


@settings(max_examples=15, deadline=None)
@given(length=st.integers(2, 12), data=st.data())
def test_block_is_causal(length, data):
    block = tiny_block()
    t = data.draw(st.integers(0, length - 1))
    hidden = torch.randn(2, length, 4, dtype=torch.float64)
    changed = hidden.clone()
    changed[:, t:] += torch.randn(2, length - t, 4, dtype=torch.float64)
    out, out_changed = block(hidden), block(changed)
    torch.testing.assert_close(out_changed[:, :t], out[:, :t], rtol=0, atol=1e-13)
    assert (out_changed[:, t] - out[:, t]).abs().max() > 1e-6


def test_discrete_reproduces_the_block():
    block = tiny_block()
    hidden = torch.randn(3, 11, 4, dtype=torch.float64)
    ssm = block.discrete(hidden)
    batch, length, d_inner, n = ssm.A_bar.shape
    assert (batch, length, d_inner, n) == (3, 11, 8, 2)
    h = torch.zeros(batch, d_inner, n, dtype=torch.float64)
    ys = []
    for k in range(length):
        h = ssm.A_bar[:, k] * h + ssm.B_bar_euler[:, k] * ssm.x[:, k, :, None]
        ys.append((h * ssm.C[:, k, None, :]).sum(-1) + ssm.D * ssm.x[:, k])
    y = torch.stack(ys, dim=1) * torch.nn.functional.silu(ssm.z)
    torch.testing.assert_close(y, block.mix(hidden), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(block.out_proj(y), block(hidden), rtol=1e-10, atol=1e-12)


def test_discrete_exact_zoh_b_bar():
    block = tiny_block()
    ssm = block.discrete(torch.randn(2, 6, 4, dtype=torch.float64))
    a = block.A.detach()
    # Exact ZOH as written in eq. 6 (fine in float64 at these Δ): (Ā - 1)/A · B = B̄_euler · φ₁.
    naive = (ssm.A_bar - 1) / a * (ssm.B_bar_euler / ssm.dt[..., None])
    torch.testing.assert_close(ssm.B_bar, naive, rtol=1e-9, atol=0)
    torch.testing.assert_close(ssm.A_bar, torch.exp(ssm.dt[..., None] * a))
    # Euler is the first-order ZOH: B̄ = Δ B (1 + ΔA/2 + O(Δ²)).
    ratio = ssm.B_bar / ssm.B_bar_euler
    torch.testing.assert_close(ratio, 1 + ssm.dt[..., None] * a / 2, rtol=0, atol=0.01)


def test_float32_and_float64_agree():
    block = tiny_block().float()
    hidden = torch.randn(2, 30, 4)
    out32 = block(hidden)
    out64 = block.double()(hidden.double())
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-5)


def test_cpu_never_calls_the_cuda_kernel(monkeypatch):
    def kernel(*args, **kwargs):
        raise AssertionError("the CUDA kernel was called on CPU")

    interface = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    interface.selective_scan_fn = kernel
    for name in ["mamba_ssm", "mamba_ssm.ops"]:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, interface.__name__, interface)
    assert tiny_block()(torch.randn(1, 3, 4, dtype=torch.float64)).shape == (1, 3, 4)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_pure_path_matches_cpu():
    block = tiny_block(use_cuda_kernel=False)
    hidden = torch.randn(2, 40, 4, dtype=torch.float64)
    expected = block(hidden)
    torch.testing.assert_close(block.cuda()(hidden.cuda()).cpu(), expected)


@cuda
def test_cuda_kernel_matches_pure_path():
    pytest.importorskip("mamba_ssm")
    inputs = {k: v.float().cuda() for k, v in scan_inputs(2, 8, 4, 50, True).items()}
    for t in inputs.values():
        t.requires_grad_(True)
    expected = selective_scan(**inputs, delta_softplus=True, use_cuda_kernel=False)
    got = selective_scan(**inputs, delta_softplus=True)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    grads = [torch.autograd.grad(y.sum(), list(inputs.values())) for y in (got, expected)]
    for g_got, g_exp in zip(*grads, strict=True):
        torch.testing.assert_close(g_got, g_exp, rtol=1e-3, atol=1e-3)
    assert math.isfinite(got.sum().item())


@pytest.mark.parametrize("length", [1, 9, 40])
def test_gpu_full_state_path_matches_the_chunked_scan(length: int) -> None:
    """The two pure paths (GPU: full state, CPU: chunked) agree in value and gradient."""
    from ssmprobe.models.selective_scan import chunked_selective_scan, full_state_scan

    g = torch.Generator().manual_seed(length)
    batch, dim, n = 2, 3, 4
    args = [
        torch.randn(batch, dim, length, generator=g, dtype=torch.float64),
        torch.randn(batch, dim, length, generator=g, dtype=torch.float64),
        -torch.rand(dim, n, generator=g, dtype=torch.float64) * 3,
        torch.randn(batch, n, length, generator=g, dtype=torch.float64),
        torch.randn(batch, n, length, generator=g, dtype=torch.float64),
        torch.randn(dim, generator=g, dtype=torch.float64),
        torch.randn(batch, dim, length, generator=g, dtype=torch.float64),
        torch.randn(dim, generator=g, dtype=torch.float64),
    ]
    outs, grads = [], []
    for scan in (full_state_scan, chunked_selective_scan):
        leaves = [a.clone().requires_grad_() for a in args]
        out = scan(*leaves, delta_softplus=True)
        outs.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), leaves))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-10)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("k", "length"), [(1, 5), (4, 1), (4, 9), (3, 2)])
@pytest.mark.parametrize("use_bias", [False, True])
def test_causal_conv_matches_conv1d_with_both_sides_padded(k, length, use_bias):
    """mamba_simple's Conv1d(padding=K-1)[..., :L], values and gradients, in (batch, L, D)."""
    torch.manual_seed(k + length)
    conv = nn.Conv1d(5, 5, k, groups=5, padding=k - 1, bias=use_bias).double()
    x = torch.randn(2, length, 5, dtype=torch.float64, requires_grad=True)
    expected = conv(x.transpose(1, 2))[..., :length].transpose(1, 2)
    got = causal_depthwise_conv(x, conv.weight, conv.bias)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    cotangent = torch.randn_like(got)
    params = [x, conv.weight, *([conv.bias] if use_bias else [])]
    for g_got, g_exp in zip(
        torch.autograd.grad(got, params, cotangent),
        torch.autograd.grad(expected, params, cotangent),
        strict=True,
    ):
        torch.testing.assert_close(g_got, g_exp, rtol=1e-12, atol=1e-12)


def test_the_scan_benchmark_compares_backends_with_the_float64_scan() -> None:
    import re
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "scan_speed.py"
    args = [sys.executable, str(script), "--preset", "digits", "--device", "cpu", "--batch", "2"]
    args += ["--repeat", "1", "--backends", "chunked,full_state,mamba_ssm"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert "batch 2, D 128, N 16, L 64" in out and "mamba_ssm  not available on cpu" in out
    errors = [float(e) for e in re.findall(r"   error (\S+)", out)]
    assert len(errors) == 2 and max(errors) < 1e-5  # float32 against float64
    bad = subprocess.run([*args[:-1], "chunked,cuda"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown backend 'cuda'" in bad.stderr
