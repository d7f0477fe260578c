"""`training_bytes` estimates a training step's memory from above: measured peaks of a forward
and backward pass stay below it for every family (so a refusal is never a false alarm by much,
and an allocation it lets through fits)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ssmprobe.models import FAMILIES, model_config
from ssmprobe.models.registry import training_bytes

# The step's peak above the memory in use before it: the high-water mark reset first
# (/proc/self/clear_refs), as imports may have peaked higher than the step does.
MEASURE = """
import re, sys, torch
from pathlib import Path
from ssmprobe.models import build_model, model_config
torch.set_num_threads(1)
model = build_model(model_config(sys.argv[1], None, d_model=32, n_layers=2, d_state=16))
x = torch.rand(32, 256, 1)
def kib(field):
    return int(re.search(field + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1])
Path("/proc/self/clear_refs").write_text("5")
base = kib("VmRSS")
model(x).sum().backward()
print((kib("VmHWM") - base) * 1024)
"""


@pytest.mark.parametrize("family", ["s4", "dss", "s5", "mega", "mamba"])
def test_a_training_step_stays_below_the_estimate(family: str) -> None:
    done = subprocess.run([sys.executable, "-c", MEASURE, family], capture_output=True,
                          text=True, timeout=300, check=True)  # fmt: skip
    peak = int(done.stdout.strip())
    config = model_config(family, None, d_model=32, n_layers=2, d_state=16)
    estimate = training_bytes(config, batch=32, length=256)
    assert peak <= estimate <= 12 * max(peak, 2**20), (peak, estimate)


def test_every_family_has_an_estimate() -> None:
    config = model_config("s4", None)
    assert all(f.activation_bytes(config, 784) > 0 for f in FAMILIES.values())
