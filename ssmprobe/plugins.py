"""A user's extensions, loaded where ssmprobe starts: every module named in $SSMPROBE_PLUGINS
(comma-separated) and every `ssmprobe.plugins` entry point of an installed package is imported
once, so the attacks, metrics and families it registers (`register_attack`, `register_metric`,
`register_family`) exist in the command line and in the worker processes of `eval --processes`
and `report --jobs` (which import ssmprobe anew)."""

from __future__ import annotations

import os
from importlib import import_module
from importlib.metadata import entry_points

ENV = "SSMPROBE_PLUGINS"
_loaded: set[str] = set()


class PluginError(ImportError):
    """A plugin that cannot be imported, named with why."""


def load_plugins() -> None:
    """Imports each plugin not yet imported; an error names the plugin and where it was named."""
    named = [(m.strip(), f"${ENV}") for m in os.environ.get(ENV, "").split(",") if m.strip()]
    installed = entry_points(group="ssmprobe.plugins")
    points = [(p.value, f"the entry point {p.name!r}") for p in installed]
    for module, where in named + points:
        if module in _loaded:
            continue
        try:
            import_module(module.partition(":")[0])
        except Exception as error:  # its own error, whatever it is, with the plugin's name
            raise PluginError(
                f"cannot import the plugin {module!r} named in {where}: "
                f"{type(error).__name__}: {error}"
            ) from error
        _loaded.add(module)
