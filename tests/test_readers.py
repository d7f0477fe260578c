"""The SSM readers (`interop.readers`) on real third-party layers with random weights, offline.

Each reader rebuilds a layer's Ā, B̄, C from its parameters; the plain recurrence on those must
give the layer's own output (or the matching intermediate, caught by a forward pre-hook).

- mamba1: transformers' `MambaMixer` (its slow PyTorch path on CPU), mambapy's `MambaBlock`
  (mambapy 1.2: the same names as mamba_simple, `in_proj`, `conv1d`, `x_proj`, `dt_proj`,
  `A_log`, `D`, `out_proj`, so no name map is needed) and ssmprobe's own `Mamba`.
- mamba2: transformers' `Mamba2Mixer` (ngroups = 1; its chunked SSD path, in float32 inside).
  mambapy's `Mamba2Block` is not used: mambapy.mamba2 imports mamba_ssm's Triton kernels at
  import time, so it does not import on a CPU-only host.
- s4d: state-spaces publishes S4D on no package index, so `local_s4d.LocalS4DKernel`/`LocalS4D`
  rebuild its standalone `models/s4/s4d.py` layer with the same parameter names, ZOH and
  Vandermonde kernel, written here.
- s5: `s5-pytorch` (import `s5`), the PyTorch S5 port on PyPI: it imports with torch 2.13 and
  runs on CPU (`S5` wrapper, its `S5SSM` in `seq`), so no test-local S5 is needed. It keeps
  Λ and C̃ complex64 whatever `.double()` does, so its outputs are compared at float32
  tolerance.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from local_s4d import LocalS4D
from torch import Tensor, nn

from ssmprobe.bounds.lti import layer_rows, perturbation_law, state_rows
from ssmprobe.bounds.selective import selective_rows, transfer_matrix
from ssmprobe.bounds.theorem import exact_error, kernel_bounds
from ssmprobe.interop.readers import (
    READERS,
    ReaderError,
    ReadMamba1,
    ReadMamba2,
    ReadS4D,
    ReadS5,
    detect_reader,
    read_ssm,
)
from ssmprobe.models.base import LTISSM, module_component
from ssmprobe.models.mamba import Mamba

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # transformers must not look for hub kernels
LENGTH = 14


def relative_error(got: Tensor, want: Tensor) -> float:
    return ((got - want).abs().max() / want.abs().max()).item()


def assert_close(label: str, got: Tensor, want: Tensor, rtol: float) -> None:
    err = relative_error(got.detach(), want.detach().to(got.dtype))
    print(f"{label}: max relative error {err:.1e}")  # shown with -s, for the record
    assert err < rtol, f"{label}: {err:.2e} >= {rtol}"


@contextmanager
def inputs_of(*modules: nn.Module) -> Iterator[dict[nn.Module, tuple]]:
    """The positional inputs of each module's last call, by forward pre-hooks."""
    seen: dict[nn.Module, tuple] = {}
    handles = [
        m.register_forward_pre_hook(lambda mod, args: seen.__setitem__(mod, args)) for m in modules
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def jitter(module: nn.Module, scale: float = 0.1) -> nn.Module:
    """Moves every parameter off its initial value (D = 1, norm weights 1, ... hide mistakes)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


# --------------------------------------------------------------------------- mamba1


@pytest.fixture(scope="module")
def hf_mamba() -> nn.Module:
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    torch.manual_seed(0)
    config = transformers.MambaConfig(
        vocab_size=16,
        hidden_size=8,
        state_size=4,
        num_hidden_layers=2,
        intermediate_size=16,
        conv_kernel=4,
        time_step_rank=2,
    )
    return jitter(transformers.MambaModel(config)).double().eval()


def check_mamba1_mixer(label: str, mixer: nn.Module, run, hidden: Tensor) -> None:
    """mix (rebuilt) against the input of the mixer's out_proj during the layer's own forward."""
    with inputs_of(mixer, mixer.out_proj) as seen, torch.no_grad():
        run()
    read = read_ssm(mixer)
    assert isinstance(read, ReadMamba1) and (read.d_model, read.d_inner) == (8, 16)
    with torch.no_grad():
        mixed = read.mix(seen[mixer][0])
    assert_close(label, mixed, seen[mixer.out_proj][0], 1e-5)


def test_mamba1_reads_transformers_mamba_mixer(hf_mamba: nn.Module) -> None:
    x = torch.randn(2, LENGTH, 8, dtype=torch.float64)
    for i, layer in enumerate(hf_mamba.layers):
        assert detect_reader(layer.mixer) == "mamba1"
        check_mamba1_mixer(
            f"mamba1 transformers layer {i}", layer.mixer, lambda: hf_mamba(inputs_embeds=x), x
        )


def test_mamba1_reads_mambapy_block() -> None:
    mamba = pytest.importorskip("mambapy.mamba", reason="mambapy not installed")
    torch.manual_seed(1)
    block = jitter(mamba.MambaBlock(mamba.MambaConfig(d_model=8, n_layers=1, d_state=4)))
    block = block.double().eval()
    x = torch.randn(2, LENGTH, 8, dtype=torch.float64)  # L = 14: pscan pads to 16
    assert detect_reader(block) == "mamba1"
    check_mamba1_mixer("mamba1 mambapy", block, lambda: block(x), x)


def test_mamba1_reads_ssmprobe_mamba_exactly() -> None:
    torch.manual_seed(2)
    ours = jitter(Mamba(d_model=8, d_state=4, dt_rank=2, use_cuda_kernel=False)).double()
    hidden = torch.randn(2, LENGTH, 8, dtype=torch.float64)
    read = read_ssm(ours, "mamba1")
    with torch.no_grad():
        got, want = read.discrete(hidden), ours.discrete(hidden)
        for field in ("A", "A_bar", "B_bar", "B_bar_euler", "C", "D", "dt", "x", "z"):
            assert_close(f"mamba1 ours {field}", getattr(got, field), getattr(want, field), 1e-12)
        assert_close("mamba1 ours mix", read.mix(hidden), ours.mix(hidden), 1e-12)


def test_mamba1_refuses_inner_norms() -> None:
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    config = transformers.FalconMambaConfig(
        vocab_size=16, hidden_size=8, state_size=4, num_hidden_layers=1, intermediate_size=16
    )
    mixer = transformers.FalconMambaModel(config).layers[0].mixer
    assert detect_reader(mixer) == "mamba1"  # its names are mamba_simple's ...
    with pytest.raises(ReaderError, match="dt_layernorm, b_layernorm, c_layernorm"):
        read_ssm(mixer)  # ... but it normalises Δ, B, C, which eq. 10 does not


# --------------------------------------------------------------------------- mamba2


def hf_mamba2(groups: int = 1) -> nn.Module:
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    torch.manual_seed(3)
    config = transformers.Mamba2Config(
        vocab_size=16,
        hidden_size=8,
        state_size=6,
        num_hidden_layers=2,
        num_heads=4,
        head_dim=4,
        expand=2,
        n_groups=groups,
        chunk_size=8,  # L = 14: two chunks, so the inter-chunk recurrence is used too
        conv_kernel=4,
    )
    return jitter(transformers.Mamba2Model(config)).double().eval()


def test_mamba2_reads_transformers_mamba2_mixer() -> None:
    model = hf_mamba2()
    x = torch.randn(2, LENGTH, 8, dtype=torch.float64)
    mixers = [layer.mixer for layer in model.layers]
    watched = [m for mixer in mixers for m in (mixer, mixer.norm, mixer.out_proj)]
    with inputs_of(*watched) as seen, torch.no_grad():
        model(inputs_embeds=x)
    for i, mixer in enumerate(mixers):
        assert detect_reader(mixer) == "mamba2"
        read = read_ssm(mixer)
        assert isinstance(read, ReadMamba2) and (read.d_model, read.d_inner) == (8, 16)
        hidden = seen[mixer][0]
        with torch.no_grad():
            ssm = read.discrete(hidden)
            scan, gate = seen[mixer.norm]  # transformers: norm(scan output y + D x, gate z)
            assert_close(f"mamba2 layer {i} ssm_output", read.ssm_output(hidden), scan, 1e-4)
            assert_close(f"mamba2 layer {i} gate", ssm.z, gate, 1e-12)
            assert_close(f"mamba2 layer {i} mix", read.mix(hidden), seen[mixer.out_proj][0], 1e-4)
        # one Δ and one A per head, repeated over its 4 channels
        assert ssm.dt.shape == (2, LENGTH, 16) and torch.equal(ssm.dt[..., 0], ssm.dt[..., 3])
        assert ssm.A.shape == (16, 6) and ssm.C.shape == (2, LENGTH, 6)


def test_mamba2_refuses_several_groups() -> None:
    mixer = hf_mamba2(groups=2).layers[0].mixer
    assert detect_reader(mixer) == "mamba2"
    with pytest.raises(ReaderError, match=r"2 groups.*ngroups = 1"):
        read_ssm(mixer)


# --------------------------------------------------------------------------- s4d


@pytest.fixture(scope="module")
def s4d() -> LocalS4D:
    torch.manual_seed(4)
    return LocalS4D(d_model=6, d_state=8).double()


def test_s4d_reads_the_block_and_its_kernel(s4d: LocalS4D) -> None:
    u = torch.randn(3, LENGTH, 6, dtype=torch.float64)
    with inputs_of(s4d.activation) as seen, torch.no_grad():
        s4d(u.transpose(1, 2))  # S4D is channels-first
    assert detect_reader(s4d) == detect_reader(s4d.kernel) == "s4d"
    read = read_ssm(s4d)
    assert isinstance(read, ReadS4D) and isinstance(read, LTISSM) and read.d_model == 6
    with torch.no_grad():
        ssm = read.discrete()
        assert ssm.A_bar.shape == ssm.B_bar.shape == ssm.C_bar.shape == (6, 4)
        assert ssm.scale == 2.0 and not ssm.mimo and ssm.diagonal
        assert_close("s4d kernel", read.impulse_response(LENGTH), s4d.kernel(LENGTH), 1e-12)
        want = seen[s4d.activation][0].transpose(1, 2)  # conv + D u, before GELU
        assert_close("s4d forward (recurrence)", read(u), want, 1e-12)
        # a bare S4DKernel has no feed-through: D = 0
        bare = read_ssm(s4d.kernel)
        assert torch.equal(bare.discrete().D, torch.zeros(6, dtype=torch.float64))
        assert_close("s4d bare kernel", bare(u), want - s4d.D * u, 1e-12)


def test_read_layers_follow_the_current_weights(s4d: LocalS4D) -> None:
    read = read_ssm(s4d)
    assert list(read.parameters()) == []  # nothing copied, nothing registered
    read.float()  # casting the read layer leaves the user's layer as it is
    assert s4d.kernel.log_dt.dtype == torch.float64
    before = read.impulse_response(LENGTH).detach()
    with torch.no_grad():
        s4d.kernel.log_dt.add_(0.5)
    try:
        after = read.impulse_response(LENGTH).detach()
        assert not torch.allclose(before, after)
        assert_close("s4d after an update", after, s4d.kernel(LENGTH).detach(), 1e-12)
    finally:
        with torch.no_grad():
            s4d.kernel.log_dt.sub_(0.5)


# --------------------------------------------------------------------------- s5


@pytest.fixture(scope="module")
def s5_layer() -> nn.Module:
    s5 = pytest.importorskip("s5", reason="s5-pytorch not installed")
    torch.manual_seed(5)
    layer = s5.S5(8, 6)  # H = 8 channels, P = 6 states, ZOH
    with torch.no_grad():
        layer.seq.log_step.add_(1.5)  # steps of 0.005-0.45 make the kernel decay within L
    return layer


@pytest.mark.parametrize("rule", ["zoh", "bilinear"])
def test_s5_reads_s5_pytorch(s5_layer: nn.Module, rule: str) -> None:
    s5 = pytest.importorskip("s5", reason="s5-pytorch not installed")
    before = s5_layer.seq.discretize
    s5_layer.seq.discretize = getattr(s5, f"discretize_{rule}")  # S5SSM(discretization=rule)
    try:
        u = torch.randn(2, LENGTH, 8)
        with torch.no_grad():
            want = s5_layer(u)
        assert detect_reader(s5_layer) == detect_reader(s5_layer.seq) == "s5"
        read = read_ssm(s5_layer)
        assert isinstance(read, ReadS5) and read.rule == rule and read.d_model == 8
        with torch.no_grad():
            ssm = read.discrete()
            assert ssm.mimo and ssm.scale == 1.0
            assert (
                ssm.A_bar.shape == (6,) and ssm.B_bar.shape == (6, 8) and ssm.C_bar.shape == (8, 6)
            )
            assert_close(f"s5 {rule} forward (recurrence)", read(u), want, 1e-4)
            # the kernel: the response to an impulse in channel j, less D
            impulse = torch.zeros(8, LENGTH, 8)
            impulse[torch.arange(8), 0, torch.arange(8)] = 1
            h = (s5_layer(impulse) - ssm.D * impulse).permute(2, 0, 1)  # (out, in, L)
            assert_close(f"s5 {rule} kernel", read.impulse_response(LENGTH), h, 1e-4)
    finally:
        s5_layer.seq.discretize = before


def test_s5_refuses_what_it_does_not_model(s5_layer: nn.Module) -> None:
    s5_layer.seq.liquid = True
    try:
        with pytest.raises(ReaderError, match="liquid"):
            read_ssm(s5_layer)
    finally:
        s5_layer.seq.liquid = False


# --------------------------------------------------------------------------- bounds


def test_layer_rows_run_on_read_lti_layers(s4d: LocalS4D, s5_layer: nn.Module) -> None:
    law = perturbation_law("uniform", 0.1, mu=0.05)
    rows = layer_rows(read_ssm(s4d), LENGTH, law)
    assert [r["channel"] for r in rows] == list(range(6)) and rows[0]["view"] == "channel"
    h = s4d.kernel(LENGTH).detach()
    low, up = kernel_bounds(h, law.mu, law.M)
    for r, norm2, lo, hi in zip(rows, h.square().sum(-1), low, up, strict=True):
        assert r["h_norm2"] == pytest.approx(norm2.item(), rel=1e-10)
        # layer_rows holds the law's μ and M in the default dtype (float32): 1e-6, not 1e-10
        assert r["kernel_lower"] == pytest.approx(lo.item(), rel=1e-6)
        assert r["kernel_upper"] == pytest.approx(hi.item(), rel=1e-6)
        assert r["kernel_lower_holds"] and r["kernel_upper_holds"] and r["spectral_upper_holds"]
    exact = exact_error(h, law.mu, law.sigma2)
    assert [r["exact"] for r in rows] == pytest.approx(exact.tolist(), rel=1e-10)
    read = read_ssm(s5_layer)
    rows = layer_rows(read, LENGTH, law)
    assert len(rows) == 8 and rows[0]["view"] == "output"
    assert all(r["kernel_upper_holds"] and r["spectral_upper_holds"] for r in rows)
    assert len(state_rows(read, LENGTH, law)) == 6


class ProbeModel(nn.Module):
    """The least a model needs for `selective_rows`: components and SSM layers by name."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(inputs_embeds=x).last_hidden_state.mean(dim=1)

    def components(self) -> list:
        return [
            module_component(f"layers.{i}.mixer", "ssm", layer.mixer)
            for i, layer in enumerate(self.backbone.layers)
        ]

    def ssm_layers(self) -> dict:
        return {c.name: read_ssm(c.entry.module) for c in self.components()}


def test_selective_bounds_on_read_mamba_layers(hf_mamba: nn.Module) -> None:
    mixer = hf_mamba.layers[1].mixer
    read = read_ssm(mixer)
    hidden = torch.randn(2, LENGTH, 8, dtype=torch.float64)
    with torch.no_grad():
        ssm = read.discrete(hidden)
        # eq. 10's generalised H applied to the SSM input, plus D x, is the rebuilt scan
        H = transfer_matrix(ssm)
        y = (H @ ssm.x.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
        assert_close("mamba1 H x + D x", y + ssm.D * ssm.x, read.ssm_output(hidden), 1e-12)
        gated = (y + ssm.D * ssm.x) * F.silu(ssm.z)
        assert_close("mamba1 gated", gated, read.mix(hidden), 1e-12)
    law = perturbation_law("gaussian", 0.05, mu=0.01)
    batches = [(torch.randn(3, LENGTH, 8, dtype=torch.float64), torch.zeros(3, dtype=torch.long))]
    rows, deltas = selective_rows(
        ProbeModel(hf_mamba), batches, law, channels=[0, 9], progress=False
    )
    assert [(r["layer"], r["channel"]) for r in rows] == [
        (f"layers.{i}.mixer", c) for i in (0, 1) for c in (0, 9)
    ]
    for r in rows:
        assert r["L"] == LENGTH and r["exact"] > 0 and r["spectral_upper_holds"]
        assert 0 < r["lam_min_abs"] <= r["lam_max_abs"] < 1
    assert set(deltas) == {"layers.0.mixer", "layers.1.mixer"}


# --------------------------------------------------------------------------- detection, errors


def test_detection_and_clear_errors(hf_mamba: nn.Module, s4d: LocalS4D) -> None:
    linear = nn.Linear(4, 4)
    assert detect_reader(linear) is None
    with pytest.raises(ValueError, match=r"no SSM reader fits Linear.*bias, weight"):
        read_ssm(linear)
    mixer = hf_mamba.layers[0].mixer
    with pytest.raises(
        ValueError, match="MambaMixer does not fit the 's4d' reader: missing log_dt"
    ):
        read_ssm(mixer, "s4d")
    mamba2_mixer = hf_mamba2().layers[0].mixer
    with pytest.raises(ValueError, match="missing x_proj, dt_proj"):
        read_ssm(mamba2_mixer, "mamba1")
    with pytest.raises(ValueError, match="has x_proj"):
        read_ssm(mixer, "mamba2")
    with pytest.raises(ValueError, match="unknown SSM reader 'mamba3'"):
        read_ssm(mixer, "mamba3")
    assert set(READERS) == {"mamba1", "mamba2", "s4d", "s5"}
    # a callable is the user's own reader, used as is
    read = read_ssm(s4d.kernel, lambda m: ReadS4D(m, m))
    assert isinstance(read, ReadS4D)
    with pytest.raises(TypeError, match="must return an LTISSM"):
        read_ssm(linear, lambda m: m.weight)
