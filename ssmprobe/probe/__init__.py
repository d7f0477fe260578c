"""Looking inside a model: record component features, measure clean/adversarial discrepancy.

from ssmprobe.probe import record, discrepancy, summarise
result = discrepancy("s4_pgd.pt", splits=("test",), n=200)
"""

from ssmprobe.probe.discrepancy import DiscrepancyResult, DiscrepancyStats, discrepancy, summarise
from ssmprobe.probe.recorder import Features, Recording, record

__all__ = [
    "DiscrepancyResult",
    "DiscrepancyStats",
    "Features",
    "Recording",
    "discrepancy",
    "record",
    "summarise",
]
