"""The five SSM families, AdS, and the classifier that stacks them."""

from ssmprobe.models.base import LTISSM, Component, DiscreteSSM, Site
from ssmprobe.models.registry import MODELS, PRESETS, ModelConfig, build_model, model_config

__all__ = [
    "LTISSM",
    "MODELS",
    "PRESETS",
    "Component",
    "DiscreteSSM",
    "ModelConfig",
    "Site",
    "build_model",
    "model_config",
]
