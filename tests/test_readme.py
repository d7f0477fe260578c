"""README.md as a user reads it: short, and its Python blocks run as written.

Every ```python block runs, in order, in one fresh interpreter (`sys.executable`) whose working
directory is an empty folder outside the repository, so the code sees the installed package and
its bundled checkpoints, not files that only a clone has. Self-contained on purpose (no conftest,
no other test module): CI also runs this file against a wheel installed in a fresh environment.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
MAX_LINES = 250
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[str]:
    return [match.group(1) for match in BLOCK.finditer(text)]


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines, at most {MAX_LINES}"


def test_block_extraction_finds_only_python_blocks() -> None:
    text = "```bash\nmake demo\n```\n```python\nprint(1)\n```\n```python\nprint(2)\n```\n"
    assert python_blocks(text) == ["print(1)\n", "print(2)\n"]


def test_readme_python_blocks_run_as_written(tmp_path: Path) -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python block"
    script = tmp_path / "readme_blocks.py"
    script.write_text(
        "\n".join(f"# --- README block {i}\n{code}" for i, code in enumerate(blocks, 1)),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed package only
    env["MPLBACKEND"] = "Agg"
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, report
    assert "Traceback" not in done.stdout + done.stderr, report
    check_what_the_blocks_print(done.stdout.splitlines())


def check_what_the_blocks_print(lines: list[str]) -> None:
    """The printed values are the ones the README's comments promise, not only printed."""
    import ssmprobe

    zoo = ssmprobe.list_models()
    claim = re.search(r"the zoo: (\d+) bundled checkpoints", README.read_text(encoding="utf-8"))
    assert claim and int(claim[1]) == len(zoo), "the README's zoo count is stale"
    for entry, line in zip(zoo[:3], lines[:3], strict=True):
        assert line.split()[:3] == [entry.name, entry.family, entry.method], line
    robust = re.fullmatch(r"tensor\(([\d.]+)\)", lines[3])
    assert robust and 0 <= float(robust[1]) <= 1, lines[3]
    results = ast.literal_eval(lines[4])  # the printed dict of accuracies
    assert set(results) == {"clean", "pgd10"} and results["pgd10"] < results["clean"] <= 1
    summary = "\n".join(lines[5:])
    assert "ssm" in summary and "dss" in summary, summary
    rate = float(lines[-1])  # the wrapped GRU's first discrepancy rate: a finite number
    assert rate == rate, lines[-1]
