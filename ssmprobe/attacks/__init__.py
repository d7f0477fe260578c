"""Adversarial attacks on sequence classifiers (§3): PGD-10 for training and testing, AutoAttack.

Every attack takes inputs x (B, L, C) in [0, 1] with labels y (B,) and returns a detached
x' of the same shape with ||x' - x|| <= eps (ℓ∞ or ℓ2) and x' in [0, 1]. The kinds (pgd<N>,
pgdl2-<N>, fgsm in `gradient`, aa and aa-fast in `autoattack`) register themselves in
`spec.ATTACKS`; a user's attack is one function decorated with `register_attack`.

Model mode: by default (`eval_mode=True`) attacks run the model in eval mode, as the PGD-AT and
TRADES reference implementations do when they craft training examples, so dropout and batch
statistics do not make the attack target a different function than the one evaluated. Pass
`eval_mode=False` to attack the model in whatever mode it is in. Either way every module's own
train/eval flag is restored afterwards. Gradients are taken w.r.t. the input only
(`torch.autograd.grad`, parameters out of autograd while the attack runs), so parameter `.grad`
fields are never touched: an attack can run in the middle of a training step.

Randomness (random starts) comes from `generator` when given, else from torch's global RNG.
"""

from ssmprobe.attacks.autoattack import AutoAttackResult, AutoAttackWarning, autoattack
from ssmprobe.attacks.gradient import (
    attack_mode,
    fgsm,
    pgd_l2,
    pgd_linf,
    trades_adversary,
    trades_loss,
)
from ssmprobe.attacks.run import attack, evaluate_attack, run_attack, score
from ssmprobe.attacks.spec import (
    ATTACKS,
    PRESET_BUDGETS,
    PRESET_L2_BUDGETS,
    AttackConfig,
    AttackKind,
    attack_config,
    attack_help,
    attack_title,
    parse_attack,
    register_attack,
)

__all__ = [
    "ATTACKS",
    "PRESET_BUDGETS",
    "PRESET_L2_BUDGETS",
    "AttackConfig",
    "AttackKind",
    "AutoAttackResult",
    "AutoAttackWarning",
    "attack",
    "attack_config",
    "attack_help",
    "attack_mode",
    "attack_title",
    "autoattack",
    "evaluate_attack",
    "fgsm",
    "parse_attack",
    "pgd_l2",
    "pgd_linf",
    "register_attack",
    "run_attack",
    "score",
    "trades_adversary",
    "trades_loss",
]
