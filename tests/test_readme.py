"""README.md as a user reads it: short, and its Python blocks run as written and print what it
shows.

Every ```python block runs, in order, in one fresh interpreter (`sys.executable`) whose working
directory is an empty folder outside the repository, so the code sees the installed package and
its bundled checkpoints, not files that only a clone has. A ```text block that follows a python
block (prose between them is fine, another fenced block is not) is that block's expected output:
every printed line must match it, words exactly and numbers to the rounding of their last shown
digit. The attacks table must name what `ssmprobe.attacks.parse_attack` reads, and the docs'
landing page and API reference must keep up with the README and `ssmprobe.__all__`.
Self-contained on purpose (no conftest, no other test module): CI also runs this file against a
wheel installed in a fresh environment.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_LINES = 250
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARK = "--- README block {} ---"  # printed before each block, to split the output per block
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def python_blocks(text: str) -> list[str]:
    return [match.group(1) for match in BLOCK.finditer(text)]


def expected_outputs(text: str) -> dict[int, list[str]]:
    """{index of a python block (from 0): the lines of the ```text block right after it}."""
    expected: dict[int, list[str]] = {}
    index, previous = -1, ""
    for match in FENCE.finditer(text):
        kind = match.group(1)
        if kind == "python":
            index += 1
        elif kind == "text" and previous == "python":
            expected[index] = match.group(2).splitlines()
        previous = kind
    return expected


def same_line(got: str, want: str) -> bool:
    """`got` reads as `want`: the same words, integers equal, and every decimal within a unit
    of its last shown digit (or 0.1% of it), so float noise passes and a changed result fails."""
    if NUMBER.sub("#", got.rstrip()) != NUMBER.sub("#", want.rstrip()):
        return False
    for g, w in zip(NUMBER.findall(got), NUMBER.findall(want), strict=True):
        mantissa = w.lower().split("e")[0]
        if "." not in mantissa:
            if g != w:
                return False
            continue
        unit = 10.0 ** -len(mantissa.split(".")[1])
        if not math.isclose(float(g), float(w), rel_tol=1e-3, abs_tol=1.01 * unit):
            return False
    return True


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines, at most {MAX_LINES}"


def test_block_extraction_finds_only_python_blocks() -> None:
    text = "```bash\nmake demo\n```\n```python\nprint(1)\n```\n```python\nprint(2)\n```\n"
    assert python_blocks(text) == ["print(1)\n", "print(2)\n"]


def test_an_expected_output_belongs_to_the_python_block_before_it() -> None:
    text = (
        "```python\nprint(1)\n```\nIt prints:\n\n```text\n1\n```\n"
        "```python\nprint(2)\n```\n```bash\nls\n```\n```text\nnot an output\n```\n"
    )
    assert expected_outputs(text) == {0: ["1"]}


def test_lines_match_to_their_last_digit_only() -> None:
    assert same_line("acc 98.94%  loss 0.0165", "acc 98.9%  loss 0.0165")
    assert same_line("  ssm  mse  3062.4", "  ssm  mse  3062.2")
    assert not same_line("acc 98.6%", "acc 98.9%")  # a result changed
    assert not same_line("labels: [1, 4, 8]", "labels: [1, 4, 9]")  # integers are exact
    assert not same_line("pgd20 91%", "pgd10 91%")
    assert not same_line("clean 99%", "robust 99%")
    assert not same_line("1.5 2.5", "1.5")


def test_readme_python_blocks_run_as_written(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    blocks = python_blocks(text)
    assert blocks, "README.md has no ```python block"
    script = tmp_path / "readme_blocks.py"
    script.write_text(
        "\n".join(f"print({MARK.format(i)!r})\n{code}" for i, code in enumerate(blocks)),
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
    printed: list[list[str]] = []
    for line in done.stdout.splitlines():
        if line == MARK.format(len(printed)):
            printed.append([])
        else:
            printed[-1].append(line)
    assert len(printed) == len(blocks), report
    check_what_the_blocks_print(text, printed)


def check_what_the_blocks_print(text: str, printed: list[list[str]]) -> None:
    """Each block with an expected output prints exactly those lines; the rest print what the
    README's comments promise."""
    import ssmprobe

    claim = re.search(r"the zoo: (\d+) bundled checkpoints", text)
    assert claim and int(claim[1]) == len(ssmprobe.list_models()), "the zoo count is stale"
    expected = expected_outputs(text)
    assert 0 in expected, "the quickstart has no expected output (a ```text block after it)"
    for index, want in expected.items():
        got = printed[index]
        assert len(got) == len(want), f"block {index} printed {len(got)} lines:\n" + "\n".join(got)
        for g, w in zip(got, want, strict=True):
            assert same_line(g, w), (
                f"README block {index} printed\n  {g!r}\nwhere it shows\n  {w!r}"
            )
    rate = float(printed[-1][-1])  # the wrapped GRU's first discrepancy rate: a finite number
    assert math.isfinite(rate), printed[-1]


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in `text`, as stripped cells."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_the_attacks_table_is_what_the_parser_reads() -> None:
    """Every name and example in the table parses to its row's attack, norm and digits budget,
    and every attack the parser knows has a row."""
    from ssmprobe.attacks import ATTACKS, parse_attack

    attacks = section(README.read_text(encoding="utf-8"), "Attacks")
    rows = table_rows(attacks)
    assert rows, "README.md has no attacks table"
    families = []
    for name, _, norm, default, examples in rows:
        pattern = name.strip("`")
        family = pattern.replace("<N>", "").rstrip("-")
        families.append(family)
        specs = re.findall(r"`([^`]+)`", examples)
        assert specs, f"no example for {name}"
        for spec in [*specs, pattern.replace("<N>", "7")]:
            config = parse_attack(spec, "digits")
            assert config.label == spec and config.name == family, spec
            assert config.norm == {"ℓ∞": "Linf", "ℓ2": "L2"}[norm], spec
            eps = re.search(r"ε = ([\d.]+)", default)
            assert eps and config.eps == pytest.approx(float(eps[1])), spec
            alpha = re.search(r"α = ([^,]+)$", default)
            if alpha is None:
                assert config.alpha is None, spec
            elif alpha[1] == "2.5·ε/N":
                assert config.alpha == pytest.approx(2.5 * config.eps / config.steps), spec
            else:
                assert config.alpha == pytest.approx(float(alpha[1])), spec
    assert sorted(families) == sorted(ATTACKS), "the table and the parser name other attacks"
    other = re.search(
        r"On MNIST the defaults are ε = ([\d.]+), α = ([\d.]+) \(ℓ2: ([\d.]+)\); "
        r"on CIFAR-10 ε = ([\d.]+), α = ([\d.]+) \(ℓ2: ([\d.]+)\)",
        " ".join(attacks.split()),
    )
    assert other, "the MNIST / CIFAR-10 budgets sentence is gone"
    for dataset, (eps, alpha, radius) in (
        ("mnist", other.groups()[:3]),
        ("cifar10", other.groups()[3:]),
    ):
        pgd, l2 = parse_attack("pgd10", dataset), parse_attack("pgdl2-10", dataset)
        assert (pgd.eps, pgd.alpha, l2.eps) == pytest.approx(
            tuple(map(float, (eps, alpha, radius)))
        )


def test_the_docs_landing_page_quick_start_is_the_readmes() -> None:
    """docs/index.md's Python lines are README lines, which the test above runs."""
    readme = {
        line.rstrip()
        for b in python_blocks(README.read_text(encoding="utf-8"))
        for line in b.splitlines()
    }
    index = ROOT / "docs" / "index.md"
    if not index.exists():  # a wheel's test run outside the clone has no docs
        pytest.skip("no docs/ here")
    lines = [
        line.rstrip()
        for b in python_blocks(index.read_text(encoding="utf-8"))
        for line in b.splitlines()
    ]
    assert lines, "docs/index.md has no quick start"
    assert [line for line in lines if line and line not in readme] == []


def test_the_api_reference_covers_the_public_api() -> None:
    """docs/api.md documents every name of `ssmprobe.__all__` from the object it stands for:
    `::: module.attribute` with `heading: ssmprobe.NAME`, as `ssmprobe._API` maps them."""
    import ssmprobe

    api = ROOT / "docs" / "api.md"
    if not api.exists():
        pytest.skip("no docs/ here")
    entries = re.findall(
        r"^::: ([\w.]+)\n(?:[ ]+.*\n)*?[ ]+heading: ssmprobe\.(\w+)$",
        api.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    documented = {name: target for target, name in entries}
    public = {name: ".".join(where) for name, where in ssmprobe._API.items()}
    assert documented == public, "docs/api.md and ssmprobe._API name other objects"
    assert set(public) == set(ssmprobe.__all__) - {"__version__"}
