"""Gradient attacks (§3), and the attack kinds pgd<N>, pgdl2-<N> and fgsm they register.

- `pgd_linf` (Madry et al.): x' <- Π(x' + α·sign ∇ℓ(f(x'), y)) from a uniform random start in
  the ε-ball; `fgsm` is its single step of size ε from x itself.
- `pgd_l2`: the same with the step α·∇/||∇||₂ and the projection onto the ℓ2 ball.
- `trades_adversary` (Zhang et al., TRADES): maximises KL(p(x) || p(x')) by ℓ∞ PGD, starting
  from x + 0.001·N(0, 1) as their reference code does; `trades_loss` is their training loss
  CE(f(x), y) + β·KL(p(x) || p(x')), KL summed over classes and averaged over the batch.

Π clips to the ε-ball around x and then to [0, 1]; because x lies in [0, 1] the second clip only
moves a coordinate towards x, so the result stays in both sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssmprobe.attacks.spec import AttackConfig, AttackRun, check_budget, register_attack
from ssmprobe.inputs import as_inputs

TRADES_INIT_STD = 0.001


@contextmanager
def attack_mode(model: nn.Module, eval_mode: bool) -> Iterator[None]:
    """Puts the model in eval mode if asked and its parameters out of autograd; restores every
    module's own flag and every parameter's `requires_grad` afterwards.

    An attack needs ∇x only. Built-in backward passes skip parameter gradients nobody asks for,
    but a custom `autograd.Function` (Mamba's scan) computes every gradient its inputs require,
    and the forward pass records the parameters' own graph (S4's kernel) for nothing.
    """
    modes = [(m, m.training) for m in model.modules()]
    trainable = [p for p in model.parameters() if p.requires_grad]
    if eval_mode:
        model.eval()
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        for p in trainable:
            p.requires_grad_(True)


def _noise(x: Tensor, generator: torch.Generator | None, gaussian: bool) -> Tensor:
    """Uniform [0, 1) or standard normal noise shaped like x, drawn on the generator's device."""
    device = generator.device if generator is not None else x.device
    draw = torch.randn if gaussian else torch.rand
    return draw(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Carlini-Wagner margin: best wrong logit minus true logit (ascending it fools the model)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    wrong = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return (wrong - true).sum()


_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "ce": lambda logits, y: F.cross_entropy(logits, y, reduction="sum"),
    "cw": _margin_loss,
}


def _input_grad(objective: Callable[[Tensor], Tensor], x_adv: Tensor) -> Tensor:
    """∇ of `objective` w.r.t. x_adv only; parameter gradients are neither kept nor stored."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(objective(x_adv), x_adv)
    return grad


def _project_linf(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0.0, 1.0)


def _l2_norms(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _project_l2(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    delta = x_adv - x
    delta = delta * (eps / _l2_norms(delta).clamp_min(1e-12)).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------- attacks


def _ascend(
    x_adv: Tensor,
    objective: Callable[[Tensor], Tensor],
    step: Callable[[Tensor], Tensor],
    project: Callable[[Tensor], Tensor],
    steps: int,
) -> Tensor:
    """`steps` projected gradient-ascent steps x' <- project(x' + step(∇ objective(x')))."""
    for _ in range(steps):
        x_adv = project(x_adv + step(_input_grad(objective, x_adv)))
    return x_adv.detach()


def _loss_fn(loss: str) -> Callable[[Tensor, Tensor], Tensor]:
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)}, got {loss!r}")
    return _LOSSES[loss]


def pgd_linf(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    loss: str = "ce",
    eval_mode: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ℓ∞ PGD: `steps` signed-gradient ascent steps of size `alpha` on `loss` ("ce" or "cw"),
    each projected onto the `eps` ℓ∞ ball around x and onto [0, 1]; the random start is
    uniform in the ball."""
    check_budget(eps, "Linf", alpha, steps)
    objective = _loss_fn(loss)
    x = as_inputs(x)
    x_adv = x
    if random_start:
        x_adv = _project_linf(x + eps * (2 * _noise(x, generator, gaussian=False) - 1), x, eps)
    with attack_mode(model, eval_mode):
        return _ascend(
            x_adv,
            lambda z: objective(model(z), y),
            lambda grad: alpha * grad.sign(),
            lambda z: _project_linf(z, x, eps),
            steps,
        )


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    loss: str = "ce",
    eval_mode: bool = True,
) -> Tensor:
    """Fast gradient sign method: x + eps·sign ∇ℓ(f(x), y), clipped to [0, 1]."""
    check_budget(eps, "Linf")
    objective = _loss_fn(loss)
    x = as_inputs(x)
    with attack_mode(model, eval_mode):
        grad = _input_grad(lambda z: objective(model(z), y), x)
    return _project_linf(x + eps * grad.sign(), x, eps).detach()


def pgd_l2(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    loss: str = "ce",
    eval_mode: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ℓ2 PGD: steps of length `alpha` along ∇/||∇||₂ (per sample), projected onto the ℓ2 ball
    of radius `eps` and onto [0, 1]; the random start is uniform in the ball."""
    check_budget(eps, "L2", alpha, steps)
    objective = _loss_fn(loss)
    x = as_inputs(x)
    x_adv = x
    if random_start and x.numel():
        direction = _noise(x, generator, gaussian=True)
        direction = direction / _l2_norms(direction).clamp_min(1e-12)
        # radius eps·U^(1/d) makes the start uniform in the d-dimensional ball
        radius = eps * _noise(x[:, :1, :1], generator, gaussian=False) ** (1.0 / x[0].numel())
        x_adv = _project_l2(x + radius * direction, x, eps)
    with attack_mode(model, eval_mode):
        return _ascend(
            x_adv,
            lambda z: objective(model(z), y),
            lambda grad: alpha * grad / _l2_norms(grad).clamp_min(1e-12),
            lambda z: _project_l2(z, x, eps),
            steps,
        )


def _kl_clean_adv(clean_logits: Tensor, adv_logits: Tensor, reduction: str) -> Tensor:
    """KL(p(x) || p(x')) as `F.kl_div` takes it: log-probabilities of x', probabilities of x."""
    return F.kl_div(
        F.log_softmax(adv_logits, dim=1), F.softmax(clean_logits, dim=1), reduction=reduction
    )


def trades_adversary(
    model: nn.Module,
    x: Tensor,
    eps: float,
    alpha: float,
    steps: int,
    eval_mode: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """TRADES inner maximisation: ℓ∞ PGD on KL(p(x) || p(x')) from x + 0.001·N(0, 1)."""
    check_budget(eps, "Linf", alpha, steps)
    x = as_inputs(x)
    x_start = x + TRADES_INIT_STD * _noise(x, generator, gaussian=True)
    with attack_mode(model, eval_mode):
        with torch.no_grad():
            clean_logits = model(x)
        return _ascend(
            x_start,
            lambda z: _kl_clean_adv(clean_logits, model(z), "sum"),
            lambda grad: alpha * grad.sign(),
            lambda z: _project_linf(z, x, eps),
            steps,
        )


def trades_loss(model: nn.Module, x: Tensor, y: Tensor, beta: float, adv: Tensor) -> Tensor:
    """CE(f(x), y) + β·KL(p(x) || p(adv)), KL summed over classes and averaged over the batch.

    Gradients flow through both f(x) and f(adv), as in TRADES; the model's mode is left alone.
    """
    clean_logits = model(x)
    robust = _kl_clean_adv(clean_logits, model(adv), "batchmean")
    return F.cross_entropy(clean_logits, y) + beta * robust


# ------------------------------------------------------------------------------ AutoAttack


def _stepped(attack: Callable[..., Tensor]) -> AttackRun:
    """An iterative attack (`pgd_linf`, `pgd_l2`) at a config's ε, α and steps as a kind's run."""

    def run(
        model: nn.Module, x: Tensor, y: Tensor, c: AttackConfig, generator: torch.Generator | None,
        _: int,
    ) -> Tensor:
        return attack(model, x, y, c.eps, c.alpha, c.steps, generator=generator)

    return run


def _fgsm(model: nn.Module, x: Tensor, y: Tensor, c: AttackConfig, *_: object) -> Tensor:
    return fgsm(model, x, y, c.eps)


register_attack("pgd", "ℓ∞ PGD with N steps, Madry et al.", iterative=True, title="PGD")(
    _stepped(pgd_linf)
)
register_attack("fgsm", "one signed step of size ε")(_fgsm)
register_attack(
    "pgdl2", "ℓ2 PGD with N steps", norm="L2", iterative=True, separator="-", title="PGD-ℓ2"
)(_stepped(pgd_l2))
