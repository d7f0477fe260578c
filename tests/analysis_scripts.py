"""The scripts under analysis/ loaded as modules, for tests that call their functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ANALYSIS = Path(__file__).resolve().parent.parent / "analysis"


def load_analysis(name: str) -> ModuleType:
    """analysis/`name`.py, executed as a fresh module (its `main` guarded, so nothing runs)."""
    spec = importlib.util.spec_from_file_location(name, ANALYSIS / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
