"""ssmprobe: adversarial robustness of deep state space models.

    import ssmprobe

    ssmprobe.list_models()                        # the bundled zoo and its accuracies
    model = ssmprobe.load_model("dss_pgd")        # (B, L, C) in [0, 1] -> logits
    x_adv = ssmprobe.attack(model, x, y, "pgd10")  # at the checkpoint's training budget
    probe = ssmprobe.wrap(my_model, components={"ssm": "layers.*.mixer"}, eps=0.1)
    ssmprobe.discrepancy(probe, data=(x, y))       # your own model, components by pattern

    @ssmprobe.register_attack("rfgsm", "FGSM from a random start")  # extended by adding
    def rfgsm(model, x, y, config, generator, seed): ...

The names below are imported when first used, so `import ssmprobe` stays light.
"""

from __future__ import annotations

from contextlib import suppress
from importlib import import_module
from typing import Any

from ssmprobe.version import __version__

_API = {  # public name -> (module, attribute)
    "load_model": ("ssmprobe.loading", "load_model"),
    "list_models": ("ssmprobe.zoo", "list_models"),
    "load_dataset": ("ssmprobe.data", "load_dataset"),
    "build_model": ("ssmprobe.models", "build_model"),
    "model_config": ("ssmprobe.models", "model_config"),
    "attack": ("ssmprobe.attacks", "attack"),
    "evaluate": ("ssmprobe.evaluation.evaluate", "evaluate"),
    "train": ("ssmprobe.training.run", "train"),
    "record": ("ssmprobe.probe.recorder", "record"),
    "wrap": ("ssmprobe.interop.wrap", "wrap"),
    "discrepancy": ("ssmprobe.probe.discrepancy", "discrepancy"),
    "check_bounds": ("ssmprobe.bounds.check", "check_model"),
    "load_reference": ("ssmprobe.interop.reference", "load_reference"),
    "register_attack": ("ssmprobe.attacks", "register_attack"),
    "register_family": ("ssmprobe.models", "register_family"),
    "register_metric": ("ssmprobe.probe.metrics", "register_metric"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    load_plugins()  # again where it failed at import: its error now, where a name is used
    if name not in _API:
        raise AttributeError(f"module 'ssmprobe' has no attribute {name!r}")
    module, attribute = _API[name]
    return getattr(import_module(module), attribute)


def __dir__() -> list[str]:
    return __all__


# Last: a plugin may use the names above (`ssmprobe.register_attack`). A plugin that fails is
# reported where ssmprobe is used (the command line's one line), not as an import traceback.
from ssmprobe.plugins import PluginError, load_plugins  # noqa: E402

with suppress(PluginError):
    load_plugins()
