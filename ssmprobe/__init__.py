"""ssmprobe: adversarial robustness of deep state space models."""

__version__ = "0.1.0"
