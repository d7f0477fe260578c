"""The toolkit's vocabularies, spelled once: model families, training methods, AdS activations
and component kinds, with the names tables and figures show for them (and for datasets, whose
shapes live in `ssmprobe.data.DATASETS`)."""

from __future__ import annotations

from typing import Literal, get_args

FAMILIES = ("s4", "dss", "s5", "mega", "mamba")  # the paper's order, kept in tables and figures
FAMILY_NAMES = {"s4": "S4", "dss": "DSS", "s5": "S5", "mega": "Mega", "mamba": "Mamba"}

METHODS = ("st", "pgd", "trades")
METHOD_NAMES = {"st": "ST", "pgd": "PGD-AT", "trades": "TRADES"}

Activation = Literal["relu", "tanh", "sigmoid"]
ADS_ACTIVATIONS: tuple[str, ...] = get_args(Activation)
ADS_NAMES = {"none": "–", "relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}

ComponentKind = Literal["ssm", "linear", "attention", "ads", "norm"]
COMPONENT_KINDS: tuple[str, ...] = get_args(ComponentKind)

# mnist10k: the 10k official MNIST test images split 8k/2k; never to be read as "MNIST test".
DATASET_NAMES = {
    "digits": "Digits",
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "mnist10k": "MNIST-10k",
}
