"""The SSM families (five of ours, and any registered), AdS, and the classifier that stacks them."""

from ssmprobe.models.base import LTISSM, Component, DiscreteSSM, Site
from ssmprobe.models.registry import (
    FAMILIES,
    FAMILY_TITLES,
    PRESETS,
    Family,
    ModelConfig,
    build_model,
    model_config,
    register_family,
)

__all__ = [
    "FAMILIES",
    "FAMILY_TITLES",
    "LTISSM",
    "PRESETS",
    "Component",
    "DiscreteSSM",
    "Family",
    "ModelConfig",
    "Site",
    "build_model",
    "model_config",
    "register_family",
]
