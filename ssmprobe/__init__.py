"""ssmprobe: adversarial robustness of deep state space models.

    import ssmprobe

    ssmprobe.list_models()                        # the bundled zoo and its accuracies
    model = ssmprobe.load_model("dss_pgd")        # (B, L, C) in [0, 1] -> logits
    x_adv = ssmprobe.attack(model, x, y, "pgd10")  # at the checkpoint's training budget
    probe = ssmprobe.wrap(my_model, components={"ssm": "layers.*.mixer"}, eps=0.1)
    ssmprobe.discrepancy(probe, data=(x, y))       # your own model, components by pattern

The names below are imported when first used, so `import ssmprobe` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ssmprobe.version import __version__

_API = {  # public name -> (module, attribute)
    "load_model": ("ssmprobe.loading", "load"),
    "list_models": ("ssmprobe.zoo", "list_models"),
    "load_dataset": ("ssmprobe.data", "load_dataset"),
    "build_model": ("ssmprobe.models", "build_model"),
    "model_config": ("ssmprobe.models", "model_config"),
    "attack": ("ssmprobe.attacks", "attack"),
    "evaluate": ("ssmprobe.evaluation.evaluate", "evaluate_checkpoint"),
    "train": ("ssmprobe.training.run", "train"),
    "record": ("ssmprobe.probe.recorder", "record"),
    "wrap": ("ssmprobe.interop.wrap", "wrap"),
    "discrepancy": ("ssmprobe.probe.discrepancy", "discrepancy"),
    "check_bounds": ("ssmprobe.bounds.check", "check_model"),
    "load_reference": ("ssmprobe.interop.reference", "load_reference"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'ssmprobe' has no attribute {name!r}")
    module, attribute = _API[name]
    return getattr(import_module(module), attribute)


def __dir__() -> list[str]:
    return __all__
