"""Compile the Triton selective-scan kernels (`models/triton_scan.py`) for NVIDIA GPUs, without one.

Triton's whole pipeline runs on the CPU: Python -> Triton IR -> LLVM -> PTX -> cubin, the last
step by the ptxas that Triton's wheel bundles. For each compute capability this prints each
kernel's registers, shared memory and local memory (register spills) as the bundled cuobjdump
reads them from the cubin. It shows the kernels compile for a GPU before one is at hand; their
values are checked in Triton's interpreter (tests/test_triton_scan.py) and their speed on a GPU
by scan_speed.py.

    python benchmarks/triton_compile.py [--capability 80,90] [--n-state 16]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # interpreted kernels cannot be compiled

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from ssmprobe.models import triton_scan

KERNELS = (triton_scan._scan_forward, triton_scan._scan_backward)
INT_ARGS = {"length", "dim", "n_state", "n_chunks", "n_blocks"}  # the rest are float32 pointers


def compile_kernel(fn: triton.JITFunction, capability: int, n_state: int) -> bytes:
    """The cubin of kernel `fn` for an NVIDIA GPU of `capability` (e.g. 90 for sm_90)."""
    constants = {
        "CHUNK": triton_scan.CHUNK,
        "BLOCK_D": triton_scan.BLOCK_D,
        "BLOCK_N": triton_scan._launch_shape(1, 1, 1, n_state)["BLOCK_N"],  # as launched
    }
    signature = {
        name: "constexpr" if name in constants else "i32" if name in INT_ARGS else "*fp32"
        for name in fn.arg_names
    }
    source = ASTSource(fn, signature, constants)
    return triton.compile(source, target=GPUTarget("cuda", capability, 32)).asm["cubin"]


def resource_usage(cubin: bytes) -> dict[str, int]:
    """REG, SHARED, LOCAL, ... of the cubin's one kernel, from `cuobjdump -res-usage`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "kernel.cubin")
        path.write_bytes(cubin)
        tool = triton.knobs.nvidia.cuobjdump.path
        out = subprocess.run([tool, "-res-usage", str(path)], capture_output=True, text=True)
    usage = re.search(r"REG:\d+.*", out.stdout)
    if out.returncode or usage is None:
        raise RuntimeError(f"cuobjdump -res-usage failed: {out.stderr or out.stdout}")
    return {key: int(value) for key, value in re.findall(r"(\w+):(\d+)", usage.group(0))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--capability",
        default="80,90",
        help="comma-separated compute capabilities (80 = A100, 90 = H100/H200)",
    )
    parser.add_argument("--n-state", type=int, default=16, help="Mamba's N (d_state)")
    args = parser.parse_args(argv)
    failed = False
    for capability in (int(c) for c in args.capability.split(",")):
        for fn in KERNELS:
            try:
                usage = resource_usage(compile_kernel(fn, capability, args.n_state))
            except Exception as error:  # report every kernel, then fail
                print(f"sm_{capability} {fn.__name__}: FAILED: {error}")
                failed = True
                continue
            print(
                f"sm_{capability} {fn.__name__}: {usage['REG']} registers, "
                f"{usage['SHARED']} B shared, {usage['LOCAL']} B local (spills)"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
