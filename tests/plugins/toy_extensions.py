"""What a researcher adds to ssmprobe from their own code, editing none of it (tests/
test_extending.py): a random-start FGSM, the cosine distance between clean and adversarial
features, and a real diagonal LTI SSM family."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import ssmprobe
from ssmprobe.models import DiscreteSSM, ModelConfig
from ssmprobe.models.backbone import SSMBlock
from ssmprobe.models.base import ConvSSM


@ssmprobe.register_attack("rfgsm", "FGSM from a random start, Wong et al.")
def rfgsm(model: nn.Module, x: Tensor, y: Tensor, config, generator, seed: int) -> Tensor:
    """One signed step of 1.25·ε from a uniform start in the ε-ball, projected back."""
    eps = config.eps
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    start = (x + eps * (2 * noise - 1)).clamp(0, 1).requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(F.cross_entropy(model(start), y), start)
    step = start.detach() + 1.25 * eps * grad.sign()
    return torch.minimum(torch.maximum(step, x - eps), x + eps).clamp(0, 1)


@ssmprobe.register_metric("cos", "cosine distance 1 - cos(f, f') over (L, d), per sample")
def cosine_distance(f: Tensor, f_adv: Tensor) -> Tensor:
    return 1 - F.cosine_similarity(f.flatten(1), f_adv.flatten(1), dim=1)


class RealDiagonalSSM(ConvSSM):
    """x_k = a ⊙ x_{k-1} + b u_k, y_k = c·x_k + D u_k per channel, a = exp(-softplus(w)) in (0, 1)
    (paper eq. 1-5 with a real diagonal Ā): h_k = Σ_n c_n a_n^k b_n."""

    def __init__(self, d_model: int, d_state: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.w = nn.Parameter(torch.linspace(-2.0, 2.0, d_state).repeat(d_model, 1))
        self.b = nn.Parameter(torch.randn(d_model, d_state) / d_state**0.5)
        self.c = nn.Parameter(torch.randn(d_model, d_state) / d_state**0.5)
        self.d = nn.Parameter(torch.ones(d_model))

    @property
    def skip(self) -> Tensor:
        return self.d

    def discrete(self) -> DiscreteSSM:
        a = torch.exp(-F.softplus(self.w))
        dt = torch.ones(self.d_model)
        return DiscreteSSM(a, self.b, self.c, self.d, dt, a, scale=1.0)

    def impulse_response(self, length: int) -> Tensor:
        a = self.discrete().A_bar
        powers = a[..., None] ** torch.arange(length, dtype=a.dtype)  # (H, N, L)
        return torch.einsum("hn,hnl->hl", self.b * self.c, powers)


@ssmprobe.register_family("realdiag", "RealDiag")
def realdiag_block(config: ModelConfig) -> nn.Module:
    ssm = RealDiagonalSSM(config.d_model, config.d_state or 8)
    return SSMBlock(ssm, config.d_model, None, config.residual, linear=True)
