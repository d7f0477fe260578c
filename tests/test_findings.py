"""The numbers of the README and docs/ are read back from the committed results files.

`analysis/findings.py` writes every generated block of README.md and docs/*.md from the files the
report and the analysis scripts wrote (figures/, checkpoints/cache/); these tests fail when a block
was typed over, when a results file no longer gives the numbers shown, or when the committed
tables are not what the zoo's own files give.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from analysis_scripts import load_analysis

from ssmprobe.probe.discrepancy import load_rows, summarise
from ssmprobe.probe.verdicts import to_markdown, verdicts
from ssmprobe.report.runs import collect_runs
from ssmprobe.report.tables import write_tables
from ssmprobe.report.zoo_runs import zoo_runs

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "analysis" / "findings.py"


def findings_module():
    return load_analysis("findings")


def test_every_generated_block_matches_its_results_file() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


def test_a_typed_over_block_is_rewritten_and_an_unknown_one_refused() -> None:
    findings = findings_module()
    text = (
        "intro\n  <!-- generated: zoo -->\n  | typed | 99.99 |\n  <!-- /generated: zoo -->\nend\n"
    )
    new = findings.regenerate(text, {})
    assert "99.99" not in new and new.startswith("intro\n  <!-- generated: zoo -->\n  | name |")
    assert "  | `s4_pgd` | S4 | PGD-AT | – | Digits | 0.1 | 360 | 98.61 | 92.50 | 91.94 |\n" in new
    assert "| MNIST-10k | 0.3 | 2000 (aa 100) | 56.85 | 2.30 | 1.00 |\n" in new  # S4 TRADES
    assert new.endswith("  <!-- /generated: zoo -->\nend\n")
    with pytest.raises(KeyError, match="unknown generated block 'typed'"):
        findings.regenerate("<!-- generated: typed -->\n<!-- /generated: typed -->", {})


def test_the_mamba_bounds_sentence_counts_the_cached_checks() -> None:
    text = findings_module().mamba_bounds()
    assert "127 of 256 channels under PGD-AT at μ = 0.05" in text  # the report's μ
    assert "58 of 256 channels under TRADES at μ = 0 " in text


@pytest.mark.parametrize("docs", ["README.md", "docs/results.md", "docs/discrepancy.md"])
def test_the_docs_hold_generated_blocks(docs: str) -> None:
    assert "<!-- generated: " in (ROOT / docs).read_text(encoding="utf-8")


def test_the_committed_tables_are_what_the_zoos_files_give(tmp_path: Path) -> None:
    zoo_runs(tmp_path / "runs" / "zoo")
    tables = write_tables(collect_runs(tmp_path / "runs"), tmp_path / "out")
    for name in ("table.md", "table_gap.md"):
        assert tables["md"].with_name(name).read_text() == (ROOT / "figures" / name).read_text()
    frame = pd.read_csv(ROOT / "figures" / "table.csv")
    mega = frame[(frame["Model"] == "Mega") & (frame["Method"] == "PGD-AT")].iloc[0]
    assert mega["Robust gap Last"] == pytest.approx(14.17)


def test_the_committed_verdicts_are_what_the_discrepancy_rows_give() -> None:
    rows = load_rows([ROOT / "figures" / "discrepancy" / "discrepancy.csv"])
    table = verdicts(pd.DataFrame(summarise(rows.to_dict("records"))))
    assert to_markdown(table) == (ROOT / "figures" / "discrepancy" / "verdicts.md").read_text()
