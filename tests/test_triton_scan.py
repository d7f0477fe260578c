"""The Triton selective scan, run in Triton's interpreter on the CPU, against the sequential
scan: values and the gradients of every input; and compiled for NVIDIA GPUs by Triton on the CPU."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernels are defined
pytest.importorskip("triton", reason="Triton is not installed (pip install triton, dev extra)")

from scan_reference import scan_inputs, sequential_scan

from ssmprobe.models.triton_scan import CHUNK, triton_selective_scan


@pytest.mark.parametrize(
    ("batch", "dim", "n", "length"),
    [(2, 3, 4, 1), (1, 5, 3, CHUNK), (2, 20, 4, 2 * CHUNK + 3)],  # chunk and block boundaries
)
@pytest.mark.parametrize("softplus", [False, True])
def test_values_and_gradients_match_the_sequential_scan(batch, dim, n, length, softplus):
    inputs = {
        k: v.float().requires_grad_(True)
        for k, v in scan_inputs(batch, dim, n, length, softplus, seed=length).items()
    }
    cotangent = torch.randn(batch, dim, length)
    expected = sequential_scan(**inputs, delta_softplus=softplus)
    got = triton_selective_scan(**inputs, delta_softplus=softplus)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    want = torch.autograd.grad(expected, list(inputs.values()), cotangent)
    have = torch.autograd.grad(got, list(inputs.values()), cotangent)
    for name, g_want, g_have in zip(inputs, want, have, strict=True):
        torch.testing.assert_close(g_have, g_want, rtol=1e-3, atol=1e-3, msg=name)


def test_gpu_inputs_without_mamba_ssm_use_the_triton_scan(monkeypatch) -> None:
    import sys

    from ssmprobe.models import mamba
    from ssmprobe.models.selective_scan import full_state_scan

    assert mamba._gpu_scan() is triton_selective_scan
    monkeypatch.setitem(sys.modules, "ssmprobe.models.triton_scan", None)  # import fails
    assert mamba._gpu_scan() is full_state_scan


def test_the_kernels_compile_for_nvidia_gpus_without_spills(tmp_path) -> None:
    """Triton's compiler and bundled ptxas, on the CPU: PTX and cubin for sm_80 and sm_90."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "triton_compile.py"
    env = {**os.environ, "TRITON_CACHE_DIR": str(tmp_path)}  # compile, not a cached cubin
    args = [sys.executable, str(script), "--capability", "80,90"]
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    usage = re.findall(r"sm_(\d+) (\w+): (\d+) registers, \d+ B shared, (\d+) B local", out.stdout)
    assert [(sm, kernel) for sm, kernel, _, _ in usage] == [
        (sm, kernel) for sm in ("80", "90") for kernel in ("_scan_forward", "_scan_backward")
    ]
    assert all(int(local) == 0 for *_, local in usage)  # the state stays in registers
