"""Attacks: threat-model invariants, strength on a trained model, TRADES by hand, AutoAttack."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ssmprobe.attacks import (
    AttackConfig,
    AutoAttackWarning,
    autoattack,
    evaluate_attack,
    fgsm,
    parse_attack,
    pgd_l2,
    pgd_linf,
    trades_adversary,
    trades_loss,
)
from ssmprobe.attacks.autoattack import _SequenceAsImage
from ssmprobe.data import load_dataset, make_loader
from ssmprobe.models import build_model, model_config

N_EVAL = 128  # test samples the strength checks attack


def tiny_model(d_input: int = 1, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(model_config("s4", d_input=d_input, d_model=16, n_layers=1, d_state=4))


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """A standard-trained tiny S4 (~74% clean on digits test; ~4 s on one CPU thread)."""
    torch.manual_seed(0)
    model = build_model(model_config("s4", d_model=32, n_layers=1, d_state=8))
    loader = make_loader(load_dataset("digits", "train"), 32, shuffle=True, seed=0)
    epochs = 8
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(loader))
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@pytest.fixture(scope="module")
def test_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return load_dataset("digits", "test")[list(range(N_EVAL))]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- threat model

_MODEL = tiny_model()


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = seeded(seed)
    x = torch.rand(3, 16, 1, generator=g)
    x[x < 0.2], x[x > 0.8] = 0.0, 1.0  # pixels on the box's faces, where clipping bites
    return x, torch.randint(0, 10, (3,), generator=g)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["pgd", "fgsm", "trades"]),
    eps=st.floats(0.0, 1.0),
    alpha=st.floats(1e-3, 1.0),
    steps=st.integers(1, 4),
    random_start=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_linf_attacks_stay_in_the_ball_and_the_box(kind, eps, alpha, steps, random_start, seed):
    x, y = _inputs(seed)
    if kind == "pgd":
        x_adv = pgd_linf(_MODEL, x, y, eps, alpha, steps, random_start, generator=seeded(seed))
    elif kind == "fgsm":
        x_adv = fgsm(_MODEL, x, y, eps)
    else:
        x_adv = trades_adversary(_MODEL, x, eps, alpha, steps, generator=seeded(seed))
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@settings(max_examples=30, deadline=None)
@given(
    eps=st.floats(0.0, 5.0),
    alpha=st.floats(1e-3, 3.0),
    steps=st.integers(1, 4),
    random_start=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_l2_pgd_stays_in_the_ball_and_the_box(eps, alpha, steps, random_start, seed):
    x, y = _inputs(seed)
    x_adv = pgd_l2(_MODEL, x, y, eps, alpha, steps, random_start, generator=seeded(seed))
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).flatten(1).norm(dim=1).max() <= eps * (1 + 1e-5) + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_zero_budget_returns_the_input() -> None:
    x, y = _inputs(0)
    assert torch.equal(pgd_linf(_MODEL, x, y, 0.0, 0.1, 3), x)
    assert torch.equal(fgsm(_MODEL, x, y, 0.0), x)
    assert torch.equal(pgd_l2(_MODEL, x, y, 0.0, 0.1, 3), x)


def test_same_generator_seed_same_attack() -> None:
    x, y = _inputs(1)
    first = pgd_linf(_MODEL, x, y, 0.3, 0.05, 3, generator=seeded(5))
    assert torch.equal(first, pgd_linf(_MODEL, x, y, 0.3, 0.05, 3, generator=seeded(5)))
    assert not torch.equal(first, pgd_linf(_MODEL, x, y, 0.3, 0.05, 3, generator=seeded(6)))


# ------------------------------------------------------------------ side effects on model


ATTACKS = {
    "pgd_linf": lambda m, x, y, **kw: pgd_linf(m, x, y, 0.3, 0.05, 2, **kw),
    "fgsm": lambda m, x, y, **kw: fgsm(m, x, y, 0.3, **kw),
    "pgd_l2": lambda m, x, y, **kw: pgd_l2(m, x, y, 1.0, 0.3, 2, **kw),
    "trades": lambda m, x, y, **kw: trades_adversary(m, x, 0.3, 0.05, 2, **kw),
}


class ModeSpy(nn.Module):
    """Wraps a model and records `training` at every forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.modes: list[bool] = []

        self.param_grads: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        self.param_grads.append(any(p.requires_grad for p in self.parameters()))
        return self.model(x)


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("eval_mode", [True, False])
def test_mode_restored_and_no_parameter_grads(name: str, eval_mode: bool) -> None:
    spy = ModeSpy(tiny_model())
    spy.train()
    spy.model.decoder.eval()  # a mixed state must come back exactly as it was
    spy.model.encoder.weight.requires_grad_(False)  # so must a frozen parameter
    before = {n: m.training for n, m in spy.named_modules()}
    frozen = {n: p.requires_grad for n, p in spy.named_parameters()}
    x, y = _inputs(2)
    ATTACKS[name](spy, x.requires_grad_(True), y, eval_mode=eval_mode)
    assert spy.modes and all(mode is (not eval_mode) for mode in spy.modes)
    assert not any(spy.param_grads)  # parameters are out of autograd during the attack
    assert {n: m.training for n, m in spy.named_modules()} == before
    assert {n: p.requires_grad for n, p in spy.named_parameters()} == frozen
    assert all(p.grad is None for p in spy.parameters())
    assert x.grad is None


def test_existing_parameter_grads_are_left_untouched() -> None:
    """An attack in the middle of a training step does not disturb accumulated gradients."""
    model = tiny_model()
    x, y = _inputs(3)
    F.cross_entropy(model(x), y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    for attack in ATTACKS.values():
        attack(model, x, y)
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())


# ---------------------------------------------------------------- strength, trained model


def test_pgd10_breaks_a_standard_model(trained, test_batch) -> None:
    """At ε = 0.2 and at MNIST's ε = 0.3, PGD-10 takes the standard model
    from 74% to 0% (measured at both); random ±ε sign noise only to 35% / 24%, so the drop is
    the gradient's doing, not merely the budget's."""
    x, y = test_batch
    clean = accuracy(trained, x, y)
    assert clean > 0.5
    for eps, alpha in [(0.2, 0.025), (0.3, 0.04)]:
        robust = accuracy(trained, pgd_linf(trained, x, y, eps, alpha, 10, generator=seeded()), y)
        sign_noise = torch.rand(x.shape, generator=seeded()).round() * 2 - 1
        noisy = accuracy(trained, (x + eps * sign_noise).clamp(0, 1), y)
        assert robust <= 0.1 * clean
        assert noisy >= robust + 0.15


def test_more_steps_never_score_higher_than_pgd1(trained, test_batch) -> None:
    """Same samples, same random start (same generator seed), ε = 0.05 where no attack reaches
    0%: measured PGD-1 0.59, PGD-10 0.30, PGD-20 0.30. No slack."""
    x, y = test_batch
    eps, alpha = 0.05, 0.0125
    acc = {
        steps: accuracy(trained, pgd_linf(trained, x, y, eps, alpha, steps, generator=seeded()), y)
        for steps in (1, 10, 20)
    }
    assert acc[20] > 0 and acc[1] < accuracy(trained, x, y)
    assert acc[10] <= acc[1] and acc[20] <= acc[1]


def test_fgsm_and_l2_pgd_lower_accuracy(trained, test_batch) -> None:
    x, y = test_batch
    clean = accuracy(trained, x, y)
    assert accuracy(trained, fgsm(trained, x, y, 0.2), y) < 0.25 * clean
    assert accuracy(trained, pgd_l2(trained, x, y, 0.5, 0.125, 10, generator=seeded()), y) < (
        0.25 * clean
    )


def test_trades_adversary_increases_the_kl(trained, test_batch) -> None:
    x, _ = test_batch
    x_adv = trades_adversary(trained, x, 0.1, 0.0125, 10, generator=seeded())
    with torch.no_grad():
        p = F.softmax(trained(x), -1)
        kl = (p * (p.log() - F.log_softmax(trained(x_adv), -1))).sum(-1).mean()
    assert kl > 0.1


# ------------------------------------------------------------------------- TRADES by hand


def test_trades_loss_matches_the_definition() -> None:
    model = tiny_model(seed=4).double().eval()
    g = seeded(4)
    x = torch.rand(5, 12, 1, generator=g, dtype=torch.float64)
    adv = (x + 0.3 * torch.rand(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    y = torch.tensor([0, 3, 3, 7, 9])
    beta = 2.5
    with torch.no_grad():
        clean_logits, adv_logits = model(x).tolist(), model(adv).tolist()
    ce, kl = 0.0, 0.0
    for row_c, row_a, label in zip(clean_logits, adv_logits, y.tolist(), strict=True):
        z_c = sum(math.exp(v) for v in row_c)
        z_a = sum(math.exp(v) for v in row_a)
        p = [math.exp(v) / z_c for v in row_c]
        q = [math.exp(v) / z_a for v in row_a]
        ce -= math.log(p[label])
        kl += sum(pk * math.log(pk / qk) for pk, qk in zip(p, q, strict=True))
    expected = ce / 5 + beta * kl / 5
    loss = trades_loss(model, x, y, beta, adv)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()  # gradients reach the model through both the clean and the adversarial term
    assert all(p.grad is not None for p in model.parameters())


# ------------------------------------------------------------------------ configs, errors


def test_parse_attack_presets() -> None:
    assert parse_attack("pgd10") == AttackConfig("pgd", 0.1, 0.025, 10)
    assert parse_attack(" PGD20 ", dataset="mnist") == AttackConfig("pgd", 0.3, 0.04, 20)
    assert parse_attack("pgd10", dataset="cifar10", eps=0.1) == AttackConfig("pgd", 0.1, 0.007, 10)
    l2 = parse_attack("pgdl2-10")
    assert (l2.name, l2.norm, l2.eps, l2.steps) == ("pgdl2", "L2", 0.5, 10)
    assert l2.alpha == pytest.approx(2.5 * 0.5 / 10)
    assert parse_attack("fgsm") == AttackConfig("fgsm", 0.1)
    assert parse_attack("aa-fast", dataset="mnist") == AttackConfig("aa-fast", 0.3)
    for spec in ("pgd10", "pgdl2-5", "fgsm", "aa", "aa-fast"):
        assert parse_attack(spec).label == spec
    for bad in ("pgd", "pgd0", "pgdl2-0", "cw10", "aa-slow"):
        with pytest.raises(ValueError):
            parse_attack(bad)
    with pytest.raises(ValueError, match="no attack budget"):
        parse_attack("pgd10", dataset="imagenet")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, x, y: pgd_linf(m, x, y, -0.1, 0.01, 5), "eps"),
        (lambda m, x, y: pgd_linf(m, x, y, 1.5, 0.01, 5), "eps above 1"),
        (lambda m, x, y: pgd_linf(m, x, y, float("nan"), 0.01, 5), "eps"),
        (lambda m, x, y: pgd_linf(m, x, y, 0.3, 0.01, 0), "steps"),
        (lambda m, x, y: pgd_linf(m, x, y, 0.3, 0.01, 2.5), "steps"),
        (lambda m, x, y: pgd_linf(m, x, y, 0.3, 0.0, 5), "alpha"),
        (lambda m, x, y: pgd_linf(m, x, y, 0.3, 0.01, 5, loss="mse"), "loss"),
        (lambda m, x, y: fgsm(m, x, y, 2.0), "eps above 1"),
        (lambda m, x, y: pgd_l2(m, x, y, -1.0, 0.1, 5), "eps"),
        (lambda m, x, y: pgd_l2(m, x, y, 1.0, 0.1, -3), "steps"),
        (lambda m, x, y: trades_adversary(m, x, 0.3, 0.01, 0), "steps"),
        (lambda m, x, y: pgd_linf(m, x + 1.0, y, 0.3, 0.01, 5), r"\[0, 1\]"),
        (lambda m, x, y: pgd_linf(m, x[0], y, 0.3, 0.01, 5), "batch, length"),
        (lambda m, x, y: autoattack(m, x, y, -0.1), "eps"),
        (lambda m, x, y: autoattack(m, x, y, 0.3, version="plus"), "version"),
        (lambda m, x, y: autoattack(m, x, y, 0.3, "square", square_queries=0), "square_queries"),
        (lambda m, x, y: AttackConfig("pgd", 0.3), "alpha and steps"),
        (lambda m, x, y: AttackConfig("fgsm", 0.3, 0.1, 1), "own steps"),
        (lambda m, x, y: AttackConfig("pgd", 0.3, 0.04, 0), "steps"),
        (lambda m, x, y: AttackConfig("pgdl2", -1.0, 0.1, 10), "eps"),
    ],
)
def test_bad_arguments_raise(call, message: str) -> None:
    x, y = _inputs(0)
    with pytest.raises(ValueError, match=message):
        call(_MODEL, x, y)


# ---------------------------------------------------------------------------- evaluation


def test_evaluate_attack_streams_and_matches_direct_attacks(trained, capsys) -> None:
    test_set = load_dataset("digits", "test")
    attack = parse_attack("pgd10")
    result = evaluate_attack(trained, make_loader(test_set, 50), attack, max_samples=120, seed=3)
    assert result["n"] == 120
    generator = seeded(3)
    correct, loss = 0, 0.0
    for start, stop in [(0, 50), (50, 100), (100, 120)]:  # the loader's batches, cut at 120
        x, y = test_set[list(range(start, stop))]
        x_adv = pgd_linf(trained, x, y, attack.eps, attack.alpha, attack.steps, generator=generator)
        with torch.no_grad():
            logits = trained(x_adv)
        correct += (logits.argmax(-1) == y).sum().item()
        loss += F.cross_entropy(logits, y, reduction="sum").item()
    assert result["acc"] == correct / 120
    assert result["loss"] == pytest.approx(loss / 120, rel=1e-6)
    assert "pgd10" in capsys.readouterr().err  # the progress bar

    # an endless stream of batches: only max_samples are attacked
    x, y = test_set[list(range(16))]
    endless = itertools.repeat((x, y))
    fast = parse_attack("fgsm")
    result = evaluate_attack(trained, endless, fast, max_samples=40, progress=False)
    assert result["n"] == 40
    assert result["acc"] == accuracy(trained, fgsm(trained, x, y, fast.eps), y)


# ---------------------------------------------------------------------------- AutoAttack


def test_sequences_are_shown_to_autoattack_as_row_major_images() -> None:
    seen = []

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, u: torch.Tensor) -> torch.Tensor:
            seen.append(u)
            return u.sum(1)

    x = torch.rand(2, 6, 3)
    images = torch.zeros(2, 3, 2, 3)
    for k in range(6):
        images[:, :, k // 3, k % 3] = x[:, k, :]  # pixel k = (row k // W, column k % W)
    _SequenceAsImage(Recorder(), torch.float64)(images)
    assert seen[0].dtype == torch.float64 and torch.equal(seen[0], x.double())


def test_autoattack_fast_is_at_least_as_strong_as_pgd10(trained, test_batch) -> None:
    """ε = 0.05 on 32 samples (~2 s): measured clean 0.59, PGD-10 0.28, APGD-CE + APGD-T 0.25."""
    x, y = (t[:32] for t in test_batch)
    eps = 0.05
    rng = torch.get_rng_state()
    result = autoattack(trained, x, y, eps, version="fast", seed=0)
    assert torch.equal(torch.get_rng_state(), rng)  # the package reseeds; we restore
    pgd = accuracy(trained, pgd_linf(trained, x, y, eps, eps / 4, 10, generator=seeded()), y)
    assert result.clean_acc == accuracy(trained, x, y)
    assert 0 < result.robust_acc <= pgd < result.clean_acc
    assert result.x_adv.shape == x.shape
    assert (result.x_adv - x).abs().max() <= eps + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert torch.equal(result.y_adv, trained(result.x_adv).argmax(-1))
    assert result.robust_acc == (result.y_adv == y).float().mean().item()
    assert any("after APGD-T" in line for line in result.log)
    assert not any("FAB" in line or "SQUARE" in line for line in result.log)


def test_autoattack_standard_wiring_and_determinism(trained, test_batch) -> None:
    """The standard version's attack list, on a budget where APGD-CE already fools every
    sample (the remaining attacks then skip; FAB-T and Square on survivors take ~10 s)."""
    x, y = test_batch
    first = autoattack(trained, x, y, 0.3, version="standard", n=6, seed=1)
    assert first.x_adv.shape == (6, *x.shape[1:])
    assert any("apgd-ce, apgd-t, fab-t, square" in line for line in first.log)
    assert first.robust_acc == 0.0
    again = autoattack(trained, x, y, 0.3, version="standard", n=6, seed=1)
    assert torch.equal(first.x_adv, again.x_adv)


def test_autoattack_check_warnings_reach_the_user(trained, test_batch) -> None:
    class Noisy(nn.Module):
        """A randomised defence: AutoAttack's randomness check must flag it."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, u: torch.Tensor) -> torch.Tensor:
            logits = self.model(u)
            return logits + 0.1 * torch.randn_like(logits)

    x, y = test_batch
    with pytest.warns(AutoAttackWarning, match="randomized defense"):
        autoattack(Noisy(trained), x, y, 0.3, version="fast", n=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoAttackWarning)  # a plain model raises none
        autoattack(trained, x, y, 0.3, version="fast", n=4)


def test_autoattack_through_evaluate_attack(trained) -> None:
    loader = make_loader(load_dataset("digits", "test"), 4)
    result = evaluate_attack(
        trained, loader, parse_attack("aa-fast", eps=0.3), max_samples=8, progress=False
    )
    # The loss of AutoAttack's own examples, batch by batch as evaluate_attack runs them.
    total = 0.0
    for x, y in list(loader)[:2]:
        x_adv = autoattack(trained, x, y, 0.3, version="fast", seed=0).x_adv
        with torch.no_grad():
            total += F.cross_entropy(trained(x_adv), y, reduction="sum").item()
    scored = {k: result[k] for k in ("acc", "loss", "n")}
    assert scored == {"acc": 0.0, "loss": pytest.approx(total / 8, rel=1e-5), "n": 8}
    assert result["loss"] > 1.0
