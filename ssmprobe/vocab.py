"""The toolkit's vocabularies, spelled once: training methods, AdS activations and component
kinds, with the names tables and figures show for them (and for datasets, whose shapes live in
`ssmprobe.data.DATASETS`). Families are a registry: `ssmprobe.models.FAMILIES`."""

from __future__ import annotations

from typing import Literal, get_args

METHODS = ("st", "pgd", "trades")
METHOD_NAMES = {"st": "ST", "pgd": "PGD-AT", "trades": "TRADES"}

Activation = Literal["relu", "tanh", "sigmoid"]
ADS_ACTIVATIONS: tuple[str, ...] = get_args(Activation)
ADS_NAMES = {"none": "–", "relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}

# In the order tables and figures show them, with the names prose gives them.
ComponentKind = Literal["ssm", "ads", "attention", "linear", "norm"]
COMPONENT_KINDS: tuple[str, ...] = get_args(ComponentKind)
KIND_NAMES = {
    "ssm": "SSM",
    "ads": "AdS",
    "attention": "attention",
    "linear": "linear layer",
    "norm": "LayerNorm",
}

# mnist10k: the 10k official MNIST test images split 8k/2k; never to be read as "MNIST test".
# Tables list datasets in this order: the embedded default, then by sequence length as the
# paper does (MNIST at 784 before CIFAR-10 at 1024).
DATASET_NAMES = {
    "digits": "Digits",
    "mnist10k": "MNIST-10k",
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
}


def samples_text(n: int, n_by_attack: dict[str, int]) -> str:
    """The test samples of an evaluation as tables print them: "2000", or "2000 (aa 100)"
    where attacks ran on their own number of samples (`eval --add`)."""
    own = ", ".join(f"{attack} {k}" for attack, k in n_by_attack.items())
    return f"{n} ({own})" if own else str(n)
