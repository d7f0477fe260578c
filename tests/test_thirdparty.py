"""Third-party sequence models, analysed as they are through `ssmprobe.wrap` (random weights
from the packages' own classes, tiny configs, no download): transformers' MambaModel and
Mamba2Model, mambapy's Mamba, the s5-pytorch port and a test-local S4D with state-spaces'
names. For each: `describe` finds its SSM reader, the discrepancy equals a hand-written
`register_forward_hook` recomputation, attribution runs, and the bounds run on the parameters
the reader rebuilds (`tests/test_readers.py` checks each reader against its layer's forward)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ssmprobe
from ssmprobe.attacks import pgd_linf
from ssmprobe.probe.attribution import attribute_checkpoint
from ssmprobe.probe.discrepancy import discrepancy

EPS = 0.05


class Head(nn.Module):
    """A backbone on (B, L, d) embeddings under a linear classification head."""

    def __init__(self, backbone: nn.Module, d: int, keyword: bool) -> None:
        super().__init__()
        self.encoder, self.backbone, self.head = nn.Linear(1, d), backbone, nn.Linear(d, 3)
        self.keyword = keyword

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        out = self.backbone(inputs_embeds=h) if self.keyword else self.backbone(h)
        return self.head(getattr(out, "last_hidden_state", out)[:, -1])


def hf(kind: str) -> nn.Module:
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    torch.manual_seed(0)
    if kind == "mamba":
        config = transformers.MambaConfig(
            vocab_size=16, hidden_size=8, state_size=4, num_hidden_layers=2, intermediate_size=16
        )
        return Head(transformers.MambaModel(config), 8, keyword=True).eval()
    config = transformers.Mamba2Config(
        vocab_size=16, hidden_size=8, state_size=4, num_hidden_layers=2, num_heads=4,
        head_dim=4, n_groups=1, expand=2, chunk_size=8,
    )  # fmt: skip
    return Head(transformers.Mamba2Model(config), 8, keyword=True).eval()


def data(n: int = 6, length: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, length, 1, generator=g), torch.randint(0, 3, (n,), generator=g)


def hand_written_mse(
    probe: nn.Module, module: nn.Module, x, y, channels_first: bool = False
) -> tuple[float, float]:
    """MSE before and after `module` between clean and PGD inputs, from hooks written here:
    per position the squared distance over channels, averaged over positions and samples."""
    x_adv = pgd_linf(
        probe, x, y, EPS, 2.5 * EPS / 10, 10, generator=torch.Generator().manual_seed(0)
    )
    seen = []
    handle = module.register_forward_hook(lambda m, a, o: seen.append((a[0], o)))
    with torch.no_grad():
        probe(x), probe(x_adv)
    handle.remove()
    (a_in, a_out), (b_in, b_out) = seen
    a_out, b_out = (o[0] if isinstance(o, tuple) else o for o in (a_out, b_out))
    if channels_first:  # (B, d, L) as the module sees it
        a_in, a_out, b_in, b_out = (t.transpose(1, 2) for t in (a_in, a_out, b_in, b_out))
    mse = lambda a, b: ((b - a) ** 2).sum(-1).mean(-1).mean().item()  # noqa: E731
    return mse(a_in, b_in), mse(a_out, b_out)


@pytest.mark.parametrize(("kind", "reader"), [("mamba", "mamba1"), ("mamba2", "mamba2")])
def test_hugging_face_mamba_end_to_end(kind: str, reader: str) -> None:
    model = hf(kind)
    spec = {"ssm": "backbone.layers.*.mixer", "norm": "backbone.layers.*.norm"}
    probe = ssmprobe.wrap(model, spec, eps=EPS, layout="bld")
    text = probe.describe()
    assert text.count(f"reader: {reader}") == 2
    x, y = data()
    result = discrepancy(probe, data=(x, y), progress=False)
    row = next(
        r for r in result.rows
        if r["component"] == "backbone.layers.1.mixer" and r["metric"] == "mse"
        and r["norm"] == "none"
    )  # fmt: skip
    before, after = hand_written_mse(probe, model.backbone.layers[1].mixer, x, y)
    assert row["before"] == pytest.approx(before, rel=1e-4)
    assert row["after"] == pytest.approx(after, rel=1e-4)
    shares = attribute_checkpoint(probe, data=(x, y), n=3, n_steps=4)["components"]
    assert [s.name for s in shares] == [c.name for c in probe.components()]
    check = ssmprobe.check_bounds(probe, (x, y), n=6)
    assert {r["layer"] for r in check.rows} == {
        "backbone.layers.0.mixer",
        "backbone.layers.1.mixer",
    }


def test_mambapy_end_to_end() -> None:
    mamba = pytest.importorskip("mambapy.mamba", reason="mambapy not installed")
    torch.manual_seed(0)
    backbone = mamba.Mamba(mamba.MambaConfig(d_model=8, n_layers=2, d_state=4))
    probe = ssmprobe.wrap(Head(backbone, 8, keyword=False), {"ssm": "backbone.layers.*.mixer"},
                          eps=EPS, layout="bld")  # fmt: skip
    assert probe.describe().count("reader: mamba1") == 2
    x, y = data()
    result = discrepancy(probe, data=(x, y), progress=False)
    row = next(r for r in result.rows if r["metric"] == "mse" and r["norm"] == "none")
    before, after = hand_written_mse(probe, backbone.layers[0].mixer, x, y)
    assert (row["before"], row["after"]) == pytest.approx((before, after), rel=1e-4)
    assert ssmprobe.check_bounds(probe, (x, y), n=6).rows


class S5Stack(nn.Module):
    def __init__(self, s5: object) -> None:
        super().__init__()
        self.layers = nn.ModuleList(s5.S5(8, 6) for _ in range(2))
        self.norms = nn.ModuleList(nn.LayerNorm(8) for _ in range(2))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for layer, norm in zip(self.layers, self.norms, strict=True):
            h = norm(h + layer(h))
        return h


def test_s5_port_end_to_end() -> None:
    s5 = pytest.importorskip("s5", reason="s5-pytorch not installed")
    torch.manual_seed(0)
    probe = ssmprobe.wrap(Head(S5Stack(s5), 8, keyword=False),
                          {"ssm": "backbone.layers.*", "norm": "backbone.norms.*"},
                          eps=EPS, layout="bld")  # fmt: skip
    assert probe.describe().count("reader: s5") == 2
    x, y = data()
    result = discrepancy(probe, data=(x, y), progress=False)
    row = next(r for r in result.rows if r["metric"] == "mse" and r["norm"] == "none")
    before, after = hand_written_mse(probe, probe.model.backbone.layers[0], x, y)
    assert (row["before"], row["after"]) == pytest.approx((before, after), rel=1e-4)
    check = ssmprobe.check_bounds(probe, L=16, mu=0.05)  # an i.i.d. law on the read kernels
    assert {r["layer"] for r in check.rows} == {"backbone.layers.0", "backbone.layers.1"}


def test_local_s4d_end_to_end() -> None:
    from local_s4d import LocalS4D

    class S4DModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.block, self.head = nn.Linear(1, 6), LocalS4D(6, 8), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.block(self.encoder(x).transpose(1, 2)).mean(-1))

    torch.manual_seed(0)
    probe = ssmprobe.wrap(S4DModel(), {"ssm": "block"}, eps=EPS, layout="bdl")
    assert "reader: s4d" in probe.describe()
    x, y = data()
    result = discrepancy(probe, data=(x, y), progress=False)
    row = next(r for r in result.rows if r["metric"] == "mse" and r["norm"] == "none")
    before, _ = hand_written_mse(probe, probe.model.block, x, y, channels_first=True)
    assert row["before"] == pytest.approx(before, rel=1e-4)
    assert ssmprobe.check_bounds(probe, L=16, mu=0.05).rows


def test_report_on_hugging_face_mamba(tmp_path) -> None:
    from ssmprobe.report.build import ReportOptions
    from ssmprobe.report.model import model_report

    probe = ssmprobe.wrap(hf("mamba"), {"ssm": "backbone.layers.*.mixer"}, eps=EPS, layout="bld")
    options = ReportOptions(attacks=("pgd10",), n_eval=6, n_probe=6, progress=False)
    result = model_report(probe, data(), tmp_path, options, log=lambda _: None)
    assert "kernel-form upper bound held on" in result.findings[-1]
    assert {p.name for p in (tmp_path / "bounds").glob("*.png")} == {
        "bounds_Head.png",
        "delta_Head.png",
    }
    assert "## Theorem 4.1.1 on Head's SSM layers" in result.report_md.read_text()
