"""The two AdS forms, named by their source, and configs saved under the form's old name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssmprobe.checkpoint import save_checkpoint
from ssmprobe.loading import load_model
from ssmprobe.models import build_model, model_config
from ssmprobe.models.ads import FORMS, AdS
from ssmprobe.models.registry import ARCHS, ModelConfig


def test_forms_are_named_by_their_source() -> None:
    assert FORMS == ("paper", "jac")
    paper = {name for name, _ in AdS(4, "relu", "paper").named_parameters()}
    jac = {name for name, _ in AdS(4, "relu", "jac").named_parameters()}
    assert paper == {"W.weight"}  # σ(W y) ⊙ y, bias-free, as the paper and its code
    assert jac == {"scale.weight", "scale.bias", "bias.weight", "bias.bias"}
    with pytest.raises(ValueError, match="jac"):
        AdS(4, "relu", "reference")


def test_arch_reference_trains_the_paper_form() -> None:
    """The paper's code is the reference architecture, and its AdS is the paper's."""
    assert ARCHS["reference"]["ads_form"] == "paper"
    model = build_model(model_config("s4", "digits", **ARCHS["reference"], ads="tanh"))
    assert model.layers[0].ads.form == "paper"


def test_a_config_saved_as_reference_loads_as_jac(tmp_path: Path) -> None:
    config = model_config("dss", d_model=8, n_layers=1, d_state=4, ads="tanh", ads_form="jac")
    legacy = {**config.to_dict(), "ads_form": "reference"}  # as 0.2.0 wrote it
    assert ModelConfig.from_dict(legacy) == config
    torch.manual_seed(0)
    model = build_model(config).eval()
    path = save_checkpoint(tmp_path / "old.pt", legacy, model.state_dict(), {"dataset": "digits"})
    loaded = load_model(path)
    assert loaded.layers[0].ads.form == "jac"
    x = torch.rand(2, 64, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
