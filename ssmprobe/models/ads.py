"""Adaptive Scaling (AdS, paper §4.2): y_k = σ(W y_k) ⊙ y_k, σ ∈ {relu, tanh, sigmoid}.

W is a d×d linear map without bias. Inserted right after an SSM, AdS lets the model rescale
each step of the SSM output from the output itself, the property the paper credits for
attention's robustness gains, at the cost of one matrix.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

Activation = Literal["relu", "tanh", "sigmoid"]
ACTIVATIONS: dict[str, nn.Module] = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid()}


class AdS(nn.Module):
    """y ↦ σ(W y) ⊙ y on (B, L, d)."""

    def __init__(self, d_model: int, activation: Activation = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"AdS activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        self.activation = activation
        self.W = nn.Linear(d_model, d_model, bias=False)
        self.sigma = ACTIVATIONS[activation]

    def forward(self, y: Tensor) -> Tensor:
        return self.sigma(self.W(y)) * y

    def extra_repr(self) -> str:
        return f"activation={self.activation}"
