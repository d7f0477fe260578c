"""The digits training preset trains: short runs on the real digits data learn.

Both tests fail with the previous preset (15 epochs, batch 64, lr 3e-3, no ε warm-up): DSS ST
reached 44% after 5 epochs there, and S4 PGD-AT stayed at chance.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ssmprobe.data import load_dataset
from ssmprobe.models import model_config
from ssmprobe.training.fit import fit, train_config


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.mark.slow
def test_standard_training_at_the_preset_learns_in_five_epochs(digits, tmp_path: Path) -> None:
    config = train_config("digits", method="st", epochs=5)
    history = fit(model_config("dss", "digits"), *digits, config, tmp_path, progress=False)
    assert history[-1]["test_clean_acc"] >= 0.6  # measured 68.6%; the old preset gives 44.4%


@pytest.mark.slow
def test_s4_pgd_at_leaves_chance_with_the_eps_warmup(digits, tmp_path: Path) -> None:
    """S4 under PGD-AT at full ε from the first step stays at the constant prediction; the
    preset's warm-up lets it learn. PGD-5 with twice the step keeps the test short."""
    config = train_config("digits", method="pgd", epochs=6, steps=5, alpha=0.05)
    assert config.eps_warmup == 2  # the preset's third of the run
    history = fit(model_config("s4", "digits"), *digits, config, tmp_path, progress=False)
    # Measured: 25.3% test clean after 6 epochs (29.2% after 10); with eps_warmup=0, 9.7-10.3%
    # at every epoch.
    assert history[-1]["test_clean_acc"] >= 0.2
