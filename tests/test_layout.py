"""The architecture as a checked contract: the import layers hold, every subcommand's --help
runs, options that several commands share take their help from one place (`options.HELP`: one
text, or one per meaning), and every --out states its kind."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from ssmprobe.cli import build_parser, main
from ssmprobe.cli.options import OUT_KINDS, help_texts

ROOT = Path(__file__).resolve().parents[1]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_import_layers_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a [dev] dependency"
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_subcommand_explains_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr()
    assert out.err == "" and out.out.startswith(f"usage: ssmprobe {command}")


def test_shared_options_have_their_help_from_one_place_and_out_says_its_kind() -> None:
    helps: dict[str, set[str]] = defaultdict(set)
    for command, parser in subcommands().items():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag == "--out":
                    assert action.help in OUT_KINDS.values(), (command, action.help)
                elif action.help != argparse.SUPPRESS and flag not in ("-h", "--help"):
                    helps[flag].add(action.help)
    shared = {
        flag: texts
        for flag, texts in helps.items()
        if len(texts) > 1 and not texts <= help_texts(flag[2:].replace("-", "_"))
    }
    assert not shared, shared


@pytest.mark.parametrize(
    ("command", "old", "new"),
    [
        (["attribute", "--ckpt", "s4_pgd.pt"], "--method", "--attribution"),
        (["attribute", "--ckpt", "s4_pgd.pt"], "--steps", "--ig-steps"),
        (["poison"], "--model", "--student"),
    ],
)
def test_a_renamed_option_names_its_new_spelling(
    command: list[str], old: str, new: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, old, "1"])
    assert exit_.value.code == 2
    assert f"{old} is now {new}" in capsys.readouterr().err


def test_the_wheel_lists_every_package() -> None:
    """setuptools ships only the packages pyproject.toml lists: a new subpackage left out of
    the list works from the clone and fails from the installed wheel."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {
        ".".join(p.parent.relative_to(root).parts) for p in (root / "ssmprobe").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
