"""The sequence classifier of the paper (§3, Appendix C Table 3) and its blocks.

    Linear(C_in, d) -> LayerNorm -> n_layers × block -> mean over time -> Linear(d, classes)

Blocks (Table 3; `[AdS]` is §4.2's optional adaptive scaling right after the SSM):

    S4, DSS:  SSM -> [AdS] -> GELU -> Linear(d, d) -> GELU -> LayerNorm(x + ·)
    S5:       SSM -> [AdS] -> LayerNorm(x + ·)
    Mega:     EMA -> [AdS] -> gated attention -> LayerNorm -> LayerNorm(· + FFN(d, d_ffn, SiLU))
    Mamba:    Mamba mixer up to its scan -> [AdS] -> out_proj (2d -> d) -> LayerNorm(x + ·)

By default the S4, DSS, S5 and Mamba blocks are Table 3's plain chain (`LayerNorm(x + ·)` above
reads `LayerNorm(·)`); `residual=True` adds the skip around each block, as in the reference S4
code. On digits the plain chain trains faster (75% vs 55% test accuracy after 8 epochs of a DSS
at lr 3e-3). Every block lists its components under stable names (`layers.0.ssm`) with a kind,
so one recorder serves every family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssmprobe.models.ads import AdS
from ssmprobe.models.base import Component
from ssmprobe.models.components import build_components
from ssmprobe.models.mamba import Mamba
from ssmprobe.models.mega import EMA, GatedAttention
from ssmprobe.vocab import COMPONENT_KINDS

INPUT_ORDERS = ("pixel", "view")


def _full_precision(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Runs an SSM in float32 with autocast off: FFTs, complex kernels and scans have no
    bfloat16 path, and their long sums would lose too much in it. The layers around it keep
    using autocast."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    with torch.autocast(x.device.type, enabled=False):
        return fn(x)


# Each block's components as a spec relative to the block (`models.components`), in the
# order they run; `SequenceClassifier.components` places it under every `layers.<i>`.
_SSM_HEAD = [("ssm", "ssm"), ("ads", "ads?")]


class SSMBlock(nn.Module):
    """S4, DSS (`linear=True`): SSM -> [AdS] -> GELU -> Linear -> GELU -> LayerNorm;
    S5 (`linear=False`): SSM -> [AdS] -> LayerNorm."""

    def __init__(
        self,
        ssm: nn.Module,
        d_model: int,
        ads: AdS | None,
        residual: bool,
        linear: bool,
        gelu: bool = True,
    ) -> None:
        super().__init__()
        self.ssm = ssm
        self.ads = ads
        self.linear = nn.Linear(d_model, d_model) if linear else None
        self.norm = nn.LayerNorm(d_model)
        self.residual = residual
        self.gelu = gelu  # False: the reference code's SSM -> [AdS] -> Linear, no activations

    def forward(self, x: Tensor) -> Tensor:
        y = _full_precision(self.ssm, x)
        if self.ads is not None:
            y = self.ads(y)
        if self.linear is not None:
            y = F.gelu(self.linear(F.gelu(y))) if self.gelu else self.linear(y)
        return self.norm(x + y if self.residual else y)

    def component_spec(self) -> list[tuple[str, Any]]:
        return [*_SSM_HEAD, ("linear", "linear?"), ("norm", "norm")]


class MegaBlock(nn.Module):
    """Mega: EMA -> [AdS] -> gated attention -> LayerNorm -> FFN -> LayerNorm.

    Both residuals are Mega's own and always on: the gated attention mixes its input back in
    (Y = φ⊙H + (1-φ)⊙X), and Mega's normalised FFN is LayerNorm(h + FFN(h)). Without the latter
    a 2-layer Mega does not leave chance level on digits in 8 epochs.
    """

    def __init__(self, d_model: int, d_state: int, d_qk: int, d_ffn: int, ads: AdS | None) -> None:
        super().__init__()
        self.ssm = EMA(d_model, d_state)
        self.ads = ads
        self.attention = GatedAttention(d_model, d_qk)
        self.norm = nn.LayerNorm(d_model)
        self.linear = nn.Sequential(nn.Linear(d_model, d_ffn), nn.SiLU(), nn.Linear(d_ffn, d_model))
        self.ffn_norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        y = _full_precision(self.ssm, x)
        if self.ads is not None:
            y = self.ads(y)
        h = self.norm(self.attention(y, x))
        return self.ffn_norm(h + self.linear(h))

    def component_spec(self) -> list[tuple[str, Any]]:
        return [
            *_SSM_HEAD,
            ("attention", "attention"),
            ("norm", "norm"),
            ("linear", "linear"),
            ("norm", "ffn_norm"),
        ]


class MambaBlock(nn.Module):
    """Mamba: mixer up to its scan -> [AdS] -> out_proj -> LayerNorm; with
    `ads_after_residual` (the reference code's layout) LayerNorm(AdS(x + out_proj(scan))).

    `mixer` keeps mamba_simple's parameter names; the block calls its two halves so AdS can sit
    between the selective SSM (d_inner wide) and out_proj.
    """

    def __init__(
        self, mixer: Mamba, ads: AdS | None, residual: bool, ads_after_residual: bool = False
    ) -> None:
        super().__init__()
        self.mixer = mixer
        self.ads = ads
        self.norm = nn.LayerNorm(mixer.d_model)
        self.residual = residual
        self.ads_after_residual = ads_after_residual

    def forward(self, x: Tensor) -> Tensor:
        y = _full_precision(self.mixer.mix, x)
        if self.ads is not None and not self.ads_after_residual:
            y = self.ads(y)
        y = self.mixer.out_proj(y)
        y = x + y if self.residual else y
        if self.ads is not None and self.ads_after_residual:
            y = self.ads(y)
        return self.norm(y)

    def component_spec(self) -> list[tuple[str, Any]]:
        """The SSM runs from the block's input to the input of what follows the scan (AdS,
        else out_proj); out_proj is the block's `linear`."""
        after = "mixer.out_proj" if self.ads is None or self.ads_after_residual else "ads"
        ssm = {"entry": "@input", "exit": f"{after}@input", "name": "layers.{layer}.ssm"}
        linear = {"module": "mixer.out_proj", "name": "layers.{layer}.linear"}
        if self.ads_after_residual:
            return [("ssm", ssm), ("linear", linear), ("ads", "ads?"), ("norm", "norm")]
        return [("ssm", ssm), ("ads", "ads?"), ("linear", linear), ("norm", "norm")]


def _under_layers(pattern: Any) -> Any:
    """A block-relative pattern (a glob, a place, or a dict of them) under `layers.*`."""
    if isinstance(pattern, dict):
        return {k: v if k == "name" else _under_layers(v) for k, v in pattern.items()}
    return "layers.*" + (pattern if pattern.startswith("@") else "." + pattern)


class SequenceClassifier(nn.Module):
    """(B, L, C_in) in [0, 1] -> logits (B, classes).

    Inputs always come in pixel order, u[b, k, c] = image[b, c, k]. `input_order="view"`
    reorders them as the paper's public code does, image.view(B, H·W, C) of a (B, C, H, W)
    batch: sequence element k holds the C consecutive values C·k ... C·k + C - 1 of the
    channel-major flattened image (the same as pixel order when C = 1). Doing it inside the
    model lets every attack, probe and command feed imported models the usual way.
    """

    def __init__(
        self,
        d_input: int,
        n_classes: int,
        d_model: int,
        layers: list[nn.Module],
        input_order: str = "pixel",
    ) -> None:
        super().__init__()
        if input_order not in INPUT_ORDERS:
            raise ValueError(f"input_order must be one of {INPUT_ORDERS}, got {input_order!r}")
        self.input_order = input_order
        self.d_input = d_input
        self.encoder = nn.Linear(d_input, d_model)
        self.encoder_norm = nn.LayerNorm(d_model)
        self.layers = nn.ModuleList(layers)
        self.decoder = nn.Linear(d_model, n_classes)

    def forward(self, u: Tensor) -> Tensor:
        if u.dim() != 3 or u.shape[-1] != self.d_input:
            raise ValueError(
                f"expected input of shape (batch, length, {self.d_input}), got {tuple(u.shape)}"
            )
        if self.input_order == "view":
            batch, length, channels = u.shape
            u = u.transpose(1, 2).reshape(batch, length, channels)
        x = self.encoder_norm(self.encoder(u))
        for layer in self.layers:
            x = layer(x)
        return self.decoder(x.mean(dim=1))

    def components(self) -> list[Component]:
        """Every recordable component, in forward order, named `layers.{i}.{part}`: the
        blocks' preset spec under `layers.*`, through the one mechanism a user's model uses."""
        entries = [(kind, _under_layers(p)) for kind, p in self.layers[0].component_spec()]
        return build_components(self, entries, layouts=dict.fromkeys(COMPONENT_KINDS, "bld"))

    def ssm_layers(self) -> dict[str, nn.Module]:
        """The SSM of every layer by component name, for parameter and bound analysis."""
        return {
            f"layers.{i}.ssm": layer.mixer if isinstance(layer, MambaBlock) else layer.ssm
            for i, layer in enumerate(self.layers)
        }
