"""Adaptive Scaling (AdS, paper §4.2): y_k = σ(W y_k) ⊙ y_k, σ ∈ {relu, tanh, sigmoid}.

W is a d×d linear map without bias (`form="paper"`): the paper's formula, and what its public
code (Norma7755/robustness_copy, class `AdSS`: one bias-free Linear `scale`) computes. The code of
the Jacobian follow-up (anonymousmambarobustness/jacobian-role-in-mamba-robustness) computes
instead σ(W_s y_k + b_s) ⊙ y_k + σ(W_b y_k + b_b), two d×d maps with biases named `scale` and
`bias` (`form="jac"`), which `ssmprobe.interop.reference` needs to import that code's checkpoints.
Inserted right after an SSM, AdS lets the model rescale each step of the SSM output from the
output itself, the property the paper credits for attention's robustness gains, at the cost of
one matrix.
"""

from __future__ import annotations

from torch import Tensor, nn

from ssmprobe.vocab import Activation

FORMS = ("paper", "jac")
# Names a form had before; configs stored under them still load (`ModelConfig.from_dict`).
LEGACY_FORMS = {"reference": "jac"}
ACTIVATIONS: dict[str, nn.Module] = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid()}


class AdS(nn.Module):
    """y ↦ σ(W y) ⊙ y (paper) or σ(W_s y + b_s) ⊙ y + σ(W_b y + b_b) (jac) on (B, L, d)."""

    def __init__(self, d_model: int, activation: Activation = "relu", form: str = "paper") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"AdS activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        if form not in FORMS:
            raise ValueError(f"AdS form must be one of {FORMS}, got {form!r}")
        self.activation = activation
        self.form = form
        self.sigma = ACTIVATIONS[activation]
        if form == "paper":
            self.W = nn.Linear(d_model, d_model, bias=False)
        else:
            self.scale = nn.Linear(d_model, d_model)
            self.bias = nn.Linear(d_model, d_model)

    def forward(self, y: Tensor) -> Tensor:
        if self.form == "paper":
            return self.sigma(self.W(y)) * y
        return self.sigma(self.scale(y)) * y + self.sigma(self.bias(y))

    def extra_repr(self) -> str:
        return f"activation={self.activation}, form={self.form}"
