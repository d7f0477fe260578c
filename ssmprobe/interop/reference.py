"""State dicts of the paper's public training code as ssmprobe models (`load_reference`).

Those files hold `torch.save(model.state_dict())` of a classifier

    x = image.view(B, H·W, C);  x = post_norm(input(x));  x = norms[i](x + layer_i(x));
    logits = output(x.mean(dim=1))

which is `SequenceClassifier` with `input_order="view"` and residual blocks. Per layer
`mapping_layers.{i}`:

- S4: y = output_linear([AdS](K * u + D ⊙ u)), no activation in between (`layout="reference"`).
  The kernel's NPLR parameters are shared across channels except C and Δ: Λ = -exp(log_w_real)
  + i·w_imag (1, N/2), P and B (1, 1, N/2, 2), C (1, d, N/2, 2) stored as
  C̃ = C̄(I - Ā^{L_s}) of the full conjugate-completed system (A = diag(Λ, Λ̄) - pp*, p = (P, P̄))
  with L_s the stored `L`. `models.s4.S4(shared=True)` computes the same system with one Λ, P, B
  for all channels, so the import copies them and recovers C̄ = C̃ (I - Ā^{L_s})^{-1}, whose
  first half is S4's C; the export computes C̃ back for the data's length.
- Mamba: `mamba_simple.Mamba`'s names, which `models.mamba.Mamba` shares; AdS
  (`adss_layers.{i}`) sits after the residual sum.
- AdS (`adss`, Mamba's `adss_layers.{i}`) comes in two forms, told apart by the keys
  (`ads_form`): the paper's code stores `scale.weight` alone, a bias-free Linear(d, d), the
  paper's σ(W y) ⊙ y (`paper`); the Jacobian follow-up's code stores `scale` and `bias`, two
  Linear(d, d) with biases, σ(W_s y + b_s) ⊙ y + σ(W_b y + b_b) (`jac`). The files do not say
  which σ, so the caller must.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ssmprobe.checkpoint import (
    CheckpointError,
    load_bytes,
    load_checkpoint,
    read_bytes,
    resolve_checkpoint,
    save_checkpoint,
)
from ssmprobe.data import DATASETS
from ssmprobe.io import atomic_file
from ssmprobe.models.backbone import SequenceClassifier
from ssmprobe.models.registry import ARCHS, ModelConfig, _state, build_model, model_config
from ssmprobe.models.s4 import S4, _deficit_power
from ssmprobe.version import __version__

REFERENCE_FAMILIES = ("s4", "mamba")
# Each AdS form's keys under a layer's AdS prefix, and how `ssmprobe import` describes them.
ADS_FORM_KEYS = {
    "paper": ("scale.weight",),
    "jac": ("scale.weight", "scale.bias", "bias.weight", "bias.bias"),
}
ADS_FORM_NAMES = {
    "paper": "scale.weight, no bias",
    "jac": "scale.{weight,bias} and bias.{weight,bias}",
}


@dataclass(frozen=True)
class Reference:
    """How to read a reference-code state dict: its family (s4, mamba), the dataset it was
    trained on (input shape, classes, default ε) and the AdS activation when it has AdS."""

    model: str
    dataset: str
    ads: str | None = None

    def load(self, path: str | Path) -> tuple[SequenceClassifier, dict[str, Any]]:
        return load_reference(path, self.model, self.dataset, self.ads)


def load_reference(
    path: str | Path, model: str, dataset: str, ads: str | None = None
) -> tuple[SequenceClassifier, dict[str, Any]]:
    """The model in a reference-code state dict and its metadata (config, dataset, provenance).

    `dataset` is the data it was trained on (its ε and input shape); `ads` the AdS activation
    (relu, tanh, sigmoid) when the file has AdS weights, whose form the keys tell
    (meta["source"]["ads_form"], `ads_form`). Loading executes nothing from the file.
    """
    if model not in REFERENCE_FAMILIES:
        raise ValueError(f"reference checkpoints exist for {REFERENCE_FAMILIES}, not {model!r}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    data = read_bytes(Path(path), "reference state dict")  # read once: content and hash
    state = load_bytes(data, Path(path), what="reference state dict")
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict (a mapping of names to tensors)")
    config, native = convert(state, model, ads)
    info = DATASETS[dataset]
    if (config.d_input, config.n_classes) != (info.channels, info.num_classes):
        raise CheckpointError(
            f"{path}: the model takes {config.d_input} input channels and has "
            f"{config.n_classes} classes, {dataset} has {info.channels} and {info.num_classes}"
        )
    classifier = build_model(config)
    classifier.load_state_dict(native)
    meta = {
        "config": config.to_dict(),
        "dataset": dataset,
        "method": "reference",
        "source": {
            "format": "reference",
            "path": str(Path(path).resolve()),
            "sha256": hashlib.sha256(data).hexdigest(),
            "model": model,
            "ads": ads,
            "ads_form": config.ads_form if ads else None,
            "converted_by": f"ssmprobe {__version__}",
        },
    }
    return classifier, meta


def _expect(state: Mapping[str, Tensor], key: str, shape: tuple[int, ...]) -> Tensor:
    if key not in state:
        raise CheckpointError(f"missing key {key!r} (expected shape {shape})")
    found = tuple(state[key].shape)
    if found != shape:
        raise CheckpointError(f"key {key!r}: expected shape {shape}, found {found}")
    return state[key]


def _ads_prefix(model: str, i: int | str) -> str:
    return f"mapping_layers.{i}.adss" if model == "s4" else f"adss_layers.{i}"


def ads_form(state: Mapping[str, Tensor], model: str, layers: list[int]) -> str | None:
    """The AdS form (`ADS_FORM_KEYS`) whose keys the state dict holds for every layer, None
    when it has no AdS keys; any other set of AdS keys is a CheckpointError naming them."""
    found = sorted(k for k in state if ".adss." in k or k.startswith("adss_layers."))
    if not found:
        return None
    for form, suffixes in ADS_FORM_KEYS.items():
        if set(found) == {f"{_ads_prefix(model, i)}.{s}" for i in layers for s in suffixes}:
            return form
    where = _ads_prefix(model, "{i}")
    raise CheckpointError(
        f"AdS keys {found} are neither form: per layer, the paper's code has {where}.scale.weight "
        f"alone, the Jacobian follow-up's {where}.scale.{{weight,bias}} and "
        f"{where}.bias.{{weight,bias}}"
    )


def convert(
    state: Mapping[str, Tensor], model: str, ads: str | None = None
) -> tuple[Any, dict[str, Tensor]]:
    """(ModelConfig, native state dict) for a reference state dict; shapes come from the
    tensors, the AdS form from its keys (`ads_form`), and every key is checked."""
    if "input.weight" not in state:
        raise CheckpointError("missing key 'input.weight' (expected shape (d, C_in))")
    d, c_in = state["input.weight"].shape
    if "output.weight" not in state:
        raise CheckpointError("missing key 'output.weight' (expected shape (classes, d))")
    n_classes = state["output.weight"].shape[0]
    layers = sorted(
        {int(m.group(1)) for k in state if (m := re.match(r"mapping_layers\.(\d+)\.", k))}
    )
    if not layers or layers != list(range(len(layers))):
        raise CheckpointError(f"no mapping_layers.0 ... in the file (found layers {layers})")
    form = ads_form(state, model, layers)
    if form and ads is None:
        raise CheckpointError(
            f"the file has AdS weights ({form} form): say which activation (relu, tanh, sigmoid)"
        )
    if ads is not None and not form:
        raise CheckpointError(f"AdS ({ads}) asked for, but the file has no AdS weights: drop it")
    native: dict[str, Tensor] = {
        "encoder.weight": _expect(state, "input.weight", (d, c_in)),
        "encoder.bias": _expect(state, "input.bias", (d,)),
        "encoder_norm.weight": _expect(state, "post_norm.weight", (d,)),
        "encoder_norm.bias": _expect(state, "post_norm.bias", (d,)),
        "decoder.weight": _expect(state, "output.weight", (n_classes, d)),
        "decoder.bias": _expect(state, "output.bias", (n_classes,)),
    }
    extra: dict[str, Any] = {}
    for i in layers:
        for part in ("weight", "bias"):
            native[f"layers.{i}.norm.{part}"] = _expect(state, f"norms.{i}.{part}", (d,))
        for suffix in ADS_FORM_KEYS[form] if form else ():
            # the paper form's one map is AdS.W natively; the jac form keeps its names
            name = "W.weight" if form == "paper" else suffix
            shape = (d, d) if suffix.endswith("weight") else (d,)
            key = f"{_ads_prefix(model, i)}.{suffix}"
            native[f"layers.{i}.ads.{name}"] = _expect(state, key, shape)
        if model == "s4":
            extra |= _s4_layer(state, i, d, native)
        else:
            extra |= _mamba_layer(state, i, d, native)
    config = model_config(
        model,
        d_input=c_in,
        n_classes=n_classes,
        d_model=d,
        n_layers=len(layers),
        ads=ads,
        **{**ARCHS["reference"], "ads_form": form or "paper"},
        **extra,
    )
    return config, native


def _s4_layer(
    state: Mapping[str, Tensor], i: int, d: int, native: dict[str, Tensor]
) -> dict[str, Any]:
    pre = f"mapping_layers.{i}."
    kern = pre + "kernel.kernel."
    half = state.get(kern + "log_w_real", torch.empty(1, 0)).shape[-1]
    if half == 0:
        raise CheckpointError(f"missing key {kern + 'log_w_real'!r} (expected shape (1, N/2))")
    log_w_real = _expect(state, kern + "log_w_real", (1, half)).double()
    w_imag = _expect(state, kern + "w_imag", (1, half)).double()
    p = torch.view_as_complex(_expect(state, kern + "P", (1, 1, half, 2)).double())[0, 0]
    b = torch.view_as_complex(_expect(state, kern + "B", (1, 1, half, 2)).double())[0, 0]
    c_tilde = torch.view_as_complex(_expect(state, kern + "C", (1, d, half, 2)).double())[0]
    log_dt = _expect(state, kern + "log_dt", (d,)).double()
    stored_length = int(_expect(state, kern + "L", ()).item())
    layer = S4(d, 2 * half, shared=True).double()
    with torch.no_grad():
        layer.log_neg_re_lam.copy_(log_w_real)
        layer.im_lam.copy_(w_imag)
        layer.P.copy_(torch.view_as_real(p[None]))
        layer.B.copy_(torch.view_as_real(b[None]))
        layer.log_dt.copy_(log_dt)
        lam, p_full, b_full, _ = layer.continuous()
        deficit, _ = layer._bilinear(lam, p_full, b_full)
        # C̄ = C̃ (I - Ā^{L_s})^{-1}, for the conjugate-completed C̃
        m = _deficit_power(deficit, stored_length)
        c_full = torch.cat([c_tilde, c_tilde.conj()], dim=-1)
        c_bar = torch.linalg.solve(m.transpose(-1, -2), c_full.unsqueeze(-1)).squeeze(-1)
    if not math.isfinite(c_bar.abs().max().item()):
        raise CheckpointError(f"{kern}C: I - Ā^L is singular; cannot recover C̄")
    ssm = f"layers.{i}.ssm."
    native |= {ssm + k: v.float() for k, v in layer.state_dict().items() if k != "C"}
    native[ssm + "C"] = torch.view_as_real(c_bar[:, :half]).float().contiguous()
    native[ssm + "D"] = _expect(state, pre + "D", (1, d))[0]
    native[f"layers.{i}.linear.weight"] = _expect(state, pre + "output_linear.weight", (d, d))
    native[f"layers.{i}.linear.bias"] = _expect(state, pre + "output_linear.bias", (d,))
    return {"d_state": 2 * half}


def _mamba_layer(
    state: Mapping[str, Tensor], i: int, d: int, native: dict[str, Tensor]
) -> dict[str, Any]:
    pre = f"mapping_layers.{i}."
    if pre + "A_log" not in state or state[pre + "A_log"].dim() != 2:
        raise CheckpointError(
            f"missing or malformed key {pre + 'A_log'!r} (expected (expand·d, N))"
        )
    inner, n = state[pre + "A_log"].shape
    rank = state.get(pre + "dt_proj.weight", torch.empty(inner, 0)).shape[-1]
    kernel = state.get(pre + "conv1d.weight", torch.empty(inner, 1, 4)).shape[-1]
    shapes = {
        "A_log": (inner, n),
        "D": (inner,),
        "in_proj.weight": (2 * inner, d),
        "conv1d.weight": (inner, 1, kernel),
        "conv1d.bias": (inner,),
        "x_proj.weight": (rank + 2 * n, inner),
        "dt_proj.weight": (inner, rank),
        "dt_proj.bias": (inner,),
        "out_proj.weight": (d, inner),
    }
    for key in shapes:
        native[f"layers.{i}.mixer.{key}"] = _expect(state, pre + key, shapes[key])
    if inner % d:
        raise CheckpointError(f"{pre}A_log: inner width {inner} is not a multiple of d = {d}")
    return {"d_state": n, "dt_rank": rank, "d_conv": kernel, "expand": inner // d}


def export_reference(
    config: Mapping[str, Any], state_dict: Mapping[str, Tensor], length: int | None = None
) -> dict[str, Tensor]:
    """The weights of a classifier of the reference architecture (`--arch reference`; `config`
    is its ModelConfig dict) under the reference code's key names, which `load_reference` reads
    back into the same model. AdS keeps its form: `scale.weight` alone for the paper form, `scale`
    and `bias` with biases for the jac form. S4 stores C̃ = C̄ (I - Ā^L) for the sequence `length`
    L of its data (required for S4); its Λ, P, B must be shared across channels (`shared_nplr`)."""
    config = ModelConfig.from_dict(config)
    if config.model not in REFERENCE_FAMILIES:
        raise ValueError(f"the reference code has {REFERENCE_FAMILIES}, not {config.model}")
    wanted = {k: ARCHS["reference"][k] for k in ("layout", "input_order", "residual")}
    found = {k: getattr(config, k) for k in wanted}
    if found != wanted:
        raise ValueError(
            f"not the reference architecture ({found}); train it with --arch reference"
        )
    if config.model == "s4" and not config.shared_nplr:
        raise ValueError(
            "this S4 trains Λ, P and B per channel; the reference code shares them across "
            "channels: train it with --arch reference (shared_nplr)"
        )
    if config.model == "s4" and length is None:
        raise ValueError("exporting S4 needs the data's sequence length (its stored L)")
    ads = r"mapping_layers.\1.adss." if config.model == "s4" else r"adss_layers.\1."
    renames = [
        (r"^encoder_norm\.", "post_norm."),
        (r"^encoder\.", "input."),
        (r"^decoder\.", "output."),
        (r"^layers\.(\d+)\.norm\.", r"norms.\1."),
        (r"^layers\.(\d+)\.ads\.W\.", ads + "scale."),  # the paper form's one map
        (r"^layers\.(\d+)\.ads\.", ads),
        (r"^layers\.(\d+)\.mixer\.", r"mapping_layers.\1."),
        (r"^layers\.(\d+)\.linear\.", r"mapping_layers.\1.output_linear."),
    ]
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if ".ssm." in key:
            continue  # S4's kernel, below
        new = next((re.sub(p, r, key) for p, r in renames if re.match(p, key)), None)
        if new is None:
            raise ValueError(f"no reference name for {key!r}")
        out[new] = value.detach().clone()
    for i in range(config.n_layers) if config.model == "s4" else ():
        out |= _s4_export(state_dict, i, config, length)
    return out


def _s4_export(
    state_dict: Mapping[str, Tensor], i: int, config: ModelConfig, length: int
) -> dict[str, Tensor]:
    """One S4 layer's kernel parameters in the reference layout (the inverse of `_s4_layer`)."""
    ssm = f"layers.{i}.ssm."
    layer = S4(config.d_model, _state(config, 64), shared=True).double()
    layer.load_state_dict(
        {k[len(ssm) :]: v.double() for k, v in state_dict.items() if k.startswith(ssm)}
    )
    half = layer.d_state // 2
    with torch.no_grad():
        lam, p, b, c = layer.continuous()
        deficit, _ = layer._bilinear(lam, p, b)
        c_tilde = (c[:, None, :] @ _deficit_power(deficit, length))[:, 0, :half]
    kern = f"mapping_layers.{i}.kernel.kernel."
    return {
        kern + "log_w_real": layer.log_neg_re_lam.detach().float(),
        kern + "w_imag": layer.im_lam.detach().float(),
        kern + "P": layer.P.detach().float()[None],
        kern + "B": layer.B.detach().float()[None],
        kern + "C": torch.view_as_real(c_tilde).float()[None].contiguous(),
        kern + "log_dt": layer.log_dt.detach().float(),
        kern + "L": torch.tensor(length),
        f"mapping_layers.{i}.D": layer.D.detach().float()[None],
    }


def import_reference(
    path: str | Path, out: str | Path, model: str, dataset: str, ads: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """Converts a reference-code state dict into a native ssmprobe checkpoint at `out`, with
    the provenance (source path, its SHA-256, family, AdS σ and form, converter) under
    meta["source"]; returns the checkpoint's path and that provenance."""
    if Path(out).resolve() == Path(path).resolve():
        raise ValueError(f"--out {out} is the reference file itself; choose another path")
    classifier, meta = load_reference(path, model, dataset, ads)
    config = meta.pop("config")
    return save_checkpoint(out, config, classifier.state_dict(), meta), meta["source"]


def export_checkpoint(ckpt: str | Path, out: str | Path) -> int:
    """Writes the weights of a native `--arch reference` checkpoint as a plain state dict in
    the reference code's layout at `out` (atomically); returns how many tensors it holds."""
    native = load_checkpoint(resolve_checkpoint(ckpt))
    dataset = DATASETS.get(native.meta.get("dataset"))
    state = export_reference(native.config, native.state_dict, dataset and dataset.seq_len)
    with atomic_file(out, "wb") as f:
        torch.save(state, f)
    return len(state)
