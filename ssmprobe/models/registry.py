"""Model configuration, presets (Appendix C Table 3) and the registry of SSM families.

A family is one `Family`, registered with `register_family` (ours at the end of this module, a
user's from their own code): its block builder and what downstream reads of it, the name tables
show, whether it is time-varying (Theorem 4.1.1 per input, not per kernel), its relative
training cost (the grid trains cheap families first) and whether Table 2 trains it with AdS."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

from ssmprobe.models.ads import ACTIVATIONS, FORMS, LEGACY_FORMS, AdS
from ssmprobe.models.backbone import (
    INPUT_ORDERS,
    MambaBlock,
    MegaBlock,
    SequenceClassifier,
    SSMBlock,
)
from ssmprobe.models.dss import B_NORMS, DSS
from ssmprobe.models.mamba import Mamba
from ssmprobe.models.s4 import S4
from ssmprobe.models.s5 import S5

LAYOUTS = ("table3", "reference")

# The two architectures of the paper: Table 3 as written, and its reference code's (every block
# LayerNorm(x + block(x)), no GELU in the S4 block, the paper's AdS σ(W y) ⊙ y as that code's
# bias-free `AdSS`, images read with x.view(B, H·W, C)), which produced its Tables 1-2. The paper
# presets default to the reference architecture (`ARCH_DEFAULTS`), digits to Table 3.
ARCHS: dict[str, dict[str, Any]] = {
    "table3": {"layout": "table3", "input_order": "pixel", "ads_form": "paper"},
    "reference": {
        "layout": "reference",
        "input_order": "view",
        "ads_form": "paper",
        "residual": True,
        "shared_nplr": True,
    },
}
ARCH_DEFAULTS = {
    "mnist": "reference",
    "cifar10": "reference",
    "digits": "table3",
    "mnist10k": "reference",
}


# Sizes that must be >= 1 where set (None: the family's default). d_state 0 used to build a
# stateless model that trained to a constant prediction.
SIZES = ("d_input", "n_classes", "d_model", "n_layers", "d_state", "d_qk", "d_ffn", "d_conv")
SIZES += ("expand", "dt_rank")
MAX_LAYERS = 1024  # building a layer costs Python time before any memory: a bound of its own


_FIELD_TYPES: dict[str, tuple[type, ...]] = {  # ModelConfig's annotations (postponed: strings)
    "str": (str,), "int": (int,), "float": (float,), "bool": (bool,),
    "int | None": (int, type(None)), "str | None": (str, type(None)),
}  # fmt: skip


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in every checkpoint.

    `d_state` of None takes the family's default (S4/DSS/S5: 64, Mega/Mamba: 16). `d_ffn` is
    Mega's feed-forward width (Table 3: 32 on MNIST, 256 on CIFAR-10; None means 2·d_model).
    `residual` adds a skip around the S4, DSS, S5 and Mamba blocks (Mega has its own).
    `dt_rank` is Mamba's (None: ceil(d_model / 16)). `ads_form` picks AdS's formula (`ads.FORMS`;
    configs stored with an old name of a form, `ads.LEGACY_FORMS`, read as its new one).
    `layout="reference"` and `input_order="view"` reproduce models of the paper's public code
    (`interop.reference`): no GELUs around the S4/DSS block's linear map, Mamba's AdS after the
    residual sum, and the (B, C, H, W) -> (B, HW, C) `view` of the input instead of the pixel
    order (`backbone.SequenceClassifier`).
    """

    model: str
    d_input: int = 1
    n_classes: int = 10
    d_model: int = 128
    n_layers: int = 2
    d_state: int | None = None
    ads: str | None = None
    residual: bool = False
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    d_qk: int = 64
    d_ffn: int | None = None
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None
    ads_form: str = "paper"
    layout: str = "table3"
    input_order: str = "pixel"
    shared_nplr: bool = False  # S4: one Λ, P, B for all channels (the reference code's S4)
    b_norm: str = "exp"  # DSS: B̄ of DSS-exp (eq. 6) or DSS-softmax (eq. 7), `dss.DSS`

    def __post_init__(self) -> None:
        for f in fields(self):  # a stored config may hold anything: types first
            value, kinds = getattr(self, f.name), _FIELD_TYPES[str(f.type)]
            if type(value) not in kinds and not (float in kinds and type(value) is int):
                raise TypeError(f"{f.name} must be {f.type!s}, got {value!r}")
        if self.model not in FAMILIES:
            raise ValueError(
                f"unknown model {self.model!r}; choose one of {sorted(FAMILIES)} (or register "
                "yours: ssmprobe.register_family, and SSMPROBE_PLUGINS for the command line)"
            )
        if self.ads is not None and self.ads not in ACTIVATIONS:
            raise ValueError(f"ads must be None or one of {sorted(ACTIVATIONS)}, got {self.ads!r}")
        for name in SIZES:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.n_layers > MAX_LAYERS:
            raise ValueError(f"n_layers must be at most {MAX_LAYERS}, got {self.n_layers}")
        for name, allowed in (
            ("ads_form", FORMS),
            ("layout", LAYOUTS),
            ("input_order", INPUT_ORDERS),
            ("b_norm", B_NORMS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.b_norm != "exp" and self.model != "dss":
            raise ValueError(f"b_norm={self.b_norm!r} is a DSS option; {self.model} has none")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known: {sorted(known)}")
        form = values.get("ads_form")
        if isinstance(form, str) and form in LEGACY_FORMS:
            values = {**values, "ads_form": LEGACY_FORMS[form]}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Table 3: MNIST 2 layers (Mega FFN 32), CIFAR-10 4 layers (Mega FFN 256), d = 128. `digits` is
# the small embedded default that trains in seconds on a CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "mnist": {"d_input": 1, "n_classes": 10, "d_model": 128, "n_layers": 2, "d_ffn": 32},
    "cifar10": {"d_input": 3, "n_classes": 10, "d_model": 128, "n_layers": 4, "d_ffn": 256},
    "digits": {"d_input": 1, "n_classes": 10, "d_model": 64, "n_layers": 2, "d_state": 16},
}
PRESETS["mnist10k"] = PRESETS["mnist"]  # real MNIST images at L = 784: the paper's architecture


# A family's departures from its preset. S5's d_state is one MIMO state shared by all channels,
# the others' is per channel: at digits 16 shared states underfit (S5 ST 91.4% clean, train loss
# 0.16 after 30 epochs) where 64 reach 95% by epoch 15. Mamba's plain chain underfits at digits
# (ST 80.8%, train loss 0.20 after 30 epochs); with the skip around each block it fits (train
# loss 0.01) and reaches 95% by epoch 19.
FAMILY_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("digits", "s5"): {"d_state": 64},
    ("digits", "mamba"): {"residual": True},
}


def model_config(model: str, preset: str | None = None, **overrides: Any) -> ModelConfig:
    """A config for `model` from a preset (if any), the family's departures from it
    (`FAMILY_PRESETS`), and `overrides` on top."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    base = {**PRESETS[preset], **FAMILY_PRESETS.get((preset, model), {})} if preset else {}
    return ModelConfig.from_dict({"model": model, **base, **overrides})


def _state(config: ModelConfig, default: int) -> int:
    return default if config.d_state is None else config.d_state


def _ssm_block(ssm_cls: type[nn.Module], linear: bool) -> Callable[[ModelConfig], nn.Module]:
    def build(c: ModelConfig) -> nn.Module:
        # the family's own options: S4's shared NPLR, DSS's B̄
        own = {"shared": c.shared_nplr} if ssm_cls is S4 else {}
        own |= {"b_norm": c.b_norm} if ssm_cls is DSS else {}
        ssm = ssm_cls(c.d_model, _state(c, 64), dt_min=c.dt_min, dt_max=c.dt_max, **own)
        ads = _ads_module(c)
        return SSMBlock(ssm, c.d_model, ads, c.residual, linear, gelu=c.layout == "table3")

    return build


def _mega_block(c: ModelConfig) -> nn.Module:
    d_ffn = 2 * c.d_model if c.d_ffn is None else c.d_ffn
    return MegaBlock(c.d_model, _state(c, 16), c.d_qk, d_ffn, _ads_module(c))


def _mamba_block(c: ModelConfig) -> nn.Module:
    mixer = Mamba(
        c.d_model,
        d_state=_state(c, 16),
        d_conv=c.d_conv,
        expand=c.expand,
        dt_rank="auto" if c.dt_rank is None else c.dt_rank,
    )
    width = c.d_model if c.layout == "reference" else mixer.d_inner  # AdS after the residual
    ads = None if c.ads is None else AdS(width, c.ads, c.ads_form)  # type: ignore[arg-type]
    return MambaBlock(mixer, ads, c.residual, ads_after_residual=c.layout == "reference")


def _ads_module(c: ModelConfig) -> AdS | None:
    return None if c.ads is None else AdS(c.d_model, c.ads, c.ads_form)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Family:
    """One SSM family: `block(config)` builds one layer of the classifier's stack."""

    name: str
    title: str  # as the paper writes it: S4, DSS, Mega
    block: Callable[[ModelConfig], nn.Module]
    time_varying: bool = False  # its SSM depends on the input (Mamba): no fixed kernel
    cost: float = 10.0  # relative training time per epoch (benchmarks/train_speed.py)
    ads_rows: bool = False  # Table 2 trains it with each AdS activation
    # bytes a training step keeps per sample, position and layer at length L (`training_bytes`)
    activation_bytes: Callable[[ModelConfig, int], int] = lambda c, length: 96 * c.d_model


FAMILIES: dict[str, Family] = {}  # in registration order: the paper's for ours


def register_family(
    name: str,
    title: str | None = None,
    time_varying: bool = False,
    cost: float = 10.0,
    ads_rows: bool = False,
    activation_bytes: Callable[[ModelConfig, int], int] | None = None,
) -> Callable[[Callable[[ModelConfig], nn.Module]], Callable[[ModelConfig], nn.Module]]:
    """Registers the decorated block builder as the family `name` (then `--model name`,
    `ModelConfig(model=name)`, the grid, the probe and the bounds know it). An LTI family's
    SSM is an `LTISSM` (its `discrete()` form) for the bounds to read."""
    if not name.isidentifier() or not name.islower():
        raise ValueError(f"family name {name!r}: a lower-case identifier")

    def register(block: Callable[[ModelConfig], nn.Module]) -> Callable[[ModelConfig], nn.Module]:
        extra = {"activation_bytes": activation_bytes} if activation_bytes else {}
        FAMILIES[name] = Family(name, title or name, block, time_varying, cost, ads_rows, **extra)
        return block

    return register


class _Titles(Mapping[str, str]):
    """name -> title, live over `FAMILIES` (a family registered later is in it)."""

    def __getitem__(self, name: str) -> str:
        return FAMILIES[name].title

    def __iter__(self) -> Iterator[str]:
        return iter(FAMILIES)

    def __len__(self) -> int:
        return len(FAMILIES)


FAMILY_TITLES: Mapping[str, str] = _Titles()


register_family("s4", "S4", cost=1, ads_rows=True)(_ssm_block(S4, linear=True))
register_family("dss", "DSS", cost=2, ads_rows=True)(_ssm_block(DSS, linear=True))
register_family("s5", "S5", cost=0)(_ssm_block(S5, linear=False))
# Measured peaks of a forward and backward pass (B 64, L 784, d 64, 2 layers, float32): S4 42,
# DSS 30, S5 47 bytes per sample, position, layer and channel; Mega adds its (L, L) attention,
# Mamba its scan's (d_inner, N) state per position. The estimates stay above each.
register_family(
    "mega", "Mega", cost=3, activation_bytes=lambda c, length: 96 * c.d_model + 20 * length
)(_mega_block)
register_family(
    "mamba",
    "Mamba",
    time_varying=True,
    cost=4,
    activation_bytes=lambda c, length: 96 * c.d_model + 8 * c.expand * c.d_model * _state(c, 16),
)(_mamba_block)


def estimated_bytes(config: ModelConfig) -> int:
    """An upper bound of the model's parameters and buffers in bytes (float32, a complex number
    as two), S4's N x N HiPPO matrices of its initialisation included: checked before building,
    since the SSMs' initialisation reads values and cannot run on the meta device. Measured
    against the built models of every family: 1.2x to 130x the true count, never below."""
    d, state = config.d_model, config.d_state or 64
    ffn = config.d_ffn or 2 * d
    per_layer = 8 * d * d + 4 * d * state * config.expand + 2 * d * ffn
    ends = (config.d_input + config.n_classes + 1) * d
    return 4 * (config.n_layers * per_layer + ends + 2 * state * state)


def check_fits(config: ModelConfig, need: int | None = None, what: str = "its weights") -> None:
    """Refuses, before allocating, a model whose `need` in bytes (default `estimated_bytes`)
    exceeds the free memory (a mistyped --d-state 100000 would otherwise try tens of GB)."""
    need = estimated_bytes(config) if need is None else need
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > free:
        sizes = ", ".join(f"{k} {getattr(config, k)}" for k in SIZES if getattr(config, k))
        raise ValueError(
            f"a {config.model} model with {sizes} needs up to {need / 2**30:.1f} GiB for "
            f"{what}; {free / 2**30:.1f} GiB are free: choose smaller sizes"
        )


def training_bytes(config: ModelConfig, batch: int, length: int) -> int:
    """An estimate from above of a training step's memory: weights, gradients and Adam's two
    moments (`estimated_bytes` four times) and the activations kept for the backward pass."""
    per_position = FAMILIES[config.model].activation_bytes(config, length)
    return 4 * estimated_bytes(config) + batch * length * config.n_layers * per_position


def build_model(config: ModelConfig | Mapping[str, Any]) -> SequenceClassifier:
    """The classifier described by `config` (a ModelConfig or its dict form), once
    `check_fits` says its weights fit in the free memory."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(config)
    check_fits(config)
    layers = [FAMILIES[config.model].block(config) for _ in range(config.n_layers)]
    return SequenceClassifier(
        config.d_input, config.n_classes, config.d_model, layers, config.input_order
    )
