"""ssmprobe: adversarial robustness of deep state space models."""

from __future__ import annotations

from typing import Any

from ssmprobe.version import __version__

__all__ = ["__version__", "load_reference"]


def load_reference(path: Any, model: str, dataset: str, ads: str | None = None) -> Any:
    """A checkpoint of the paper's reference code as an ssmprobe model and its metadata
    (`ssmprobe.interop.reference.load_reference`; imported lazily to keep `import ssmprobe`
    light)."""
    from ssmprobe.interop.reference import load_reference as load

    return load(path, model, dataset, ads)
