"""Every subcommand's --help, checked as a contract: it runs; every option explains itself; a
default is shown once, as `(default: X)` at the end; one concept has one option name in every
command (`CANONICAL`); a name replaced by it is a hidden alias that still works and says so
(`DEPRECATED`); help that several commands share says what the option does in each. Also the
run names of `train`, which follow the zoo's, the report's --quiet, and the estimates and
totals of long work."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from ssmprobe.cli import build_parser, main
from ssmprobe.cli import options as opt
from ssmprobe.cli.usermodel import HELP as USERMODEL_HELP


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = subcommands()


def shown_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """An option's help as --help prints it (on one line), the default appended."""
    return opt.Formatter(parser.prog)._expand_help(action)


def visible(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        flag: action
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for flag in action.option_strings
    }


def hidden(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        flag: action
        for action in parser._actions
        if action.help == argparse.SUPPRESS
        for flag in action.option_strings
    }


# concept -> (its one name, the commands that have it)
CANONICAL = {
    "processes": ("--jobs", {"eval", "poison", "report"}),
    "sample count": ("--n", {"eval", "discrepancy", "attribute", "bounds", "report"}),
    "form of the discrepancy": ("--form", {"discrepancy", "plot"}),
    "vector figures": ("--pdf", {"plot", "attribute", "bounds", "poison", "report"}),
    "figures beside a results file": ("--figures", {"bounds", "poison"}),
    "attack": ("--attack", {"eval", "discrepancy", "attribute", "report"}),
    "no progress on stderr": (
        "--quiet",
        {"train", "eval", "discrepancy", "attribute", "bounds", "poison", "report"},
    ),
}
# (command, old name, new name, a value): hidden, working, one warning
DEPRECATED = [
    (["eval", "--ckpt", "s4_pgd"], "--processes", "--jobs", "2"),
    (["poison"], "--workers", "--jobs", "2"),
    (["report"], "--n-eval", "--n", "12"),
    (["discrepancy", "--ckpt", "s4_pgd"], "--norm", "--form", "relative"),
    (["plot", "discrepancy", "d.csv"], "--norm", "--form", "relative"),
]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_runs_and_every_option_explains_itself(command: str, capsys) -> None:
    assert main([command, "--help"]) == 0
    printed = capsys.readouterr()
    assert printed.err == "" and printed.out.startswith(f"usage: ssmprobe {command}")
    for action in COMMANDS[command]._actions:
        if action.help != argparse.SUPPRESS:
            assert action.help and action.help.strip(), (command, action.dest)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_default_is_shown_once_in_one_format(command: str) -> None:
    parser = COMMANDS[command]
    at_end = re.compile(r"\(default: [^()]*(\([^()]*\)[^()]*)*\)$")
    for flag, action in visible(parser).items():
        text = shown_help(parser, action)
        assert text.count("default") <= 1, (command, flag, text)
        if "default" in text:
            assert at_end.search(text), (command, flag, text)
        assert "if unset" not in text, (command, flag, text)


def test_one_name_per_concept_in_every_command() -> None:
    for concept, (name, commands) in CANONICAL.items():
        having = {c for c, parser in COMMANDS.items() if name in visible(parser)}
        assert having == commands, (concept, name, having)
    old_names = {old for _, old, _, _ in DEPRECATED}
    for command, parser in COMMANDS.items():
        assert not old_names & set(visible(parser)), command


@pytest.mark.parametrize(("argv", "old", "new", "value"), DEPRECATED)
def test_an_old_name_is_hidden_but_works_and_warns_once(
    argv: list[str], old: str, new: str, value: str, capsys
) -> None:
    parser = build_parser()
    command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert old in hidden(command.choices[argv[0]]) and old not in visible(command.choices[argv[0]])
    through_old = vars(parser.parse_args([*argv, old, value]))
    err = capsys.readouterr().err
    assert err == (
        f"ssmprobe: warning: {old} is deprecated; use {new} (the old name goes in the next "
        "release)\n"
    )
    through_new = vars(parser.parse_args([*argv, new, value]))
    assert capsys.readouterr().err == ""
    assert through_old == through_new


def test_form_takes_plain_and_reads_the_old_value_none(capsys) -> None:
    parser = build_parser()
    base = ["discrepancy", "--ckpt", "s4_pgd"]
    assert parser.parse_args(base).form == "plain"
    assert opt.FORMS["plain"] == "none"  # the results' norm column keeps its values
    assert parser.parse_args([*base, "--form", "none"]).form == "plain"
    assert "--form none is deprecated; use --form plain" in capsys.readouterr().err
    assert parser.parse_args([*base, "--norm", "none"]).form == "plain"
    assert capsys.readouterr().err.count("warning") == 1  # --norm's, not its value's too
    assert main([*base, "--form", "none2"]) == 2
    assert "invalid choice: 'none2' (choose from 'plain', 'relative')" in capsys.readouterr().err


def test_shared_options_come_from_one_place_and_read_right_per_command() -> None:
    texts: dict[str, set[str]] = {}
    for parser in COMMANDS.values():
        for flag, action in visible(parser).items():
            texts.setdefault(flag, set()).add(action.help)
    for flag, helps in texts.items():
        if flag == "--out":  # its kind's text
            assert helps <= set(opt.OUT_KINDS.values())
        elif len(helps) > 1:  # shared, in several meanings: each one of HELP's
            assert helps <= opt.help_texts(flag[2:].replace("-", "_")), flag
    assert texts["--weights"] == {USERMODEL_HELP["weights"]}

    def help_of(command: str, flag: str) -> str:
        return visible(COMMANDS[command])[flag].help

    assert "per-epoch" in help_of("train", "--quiet")
    for command in ("eval", "bounds", "discrepancy", "attribute", "poison", "report"):
        assert "per-epoch" not in help_of(command, "--quiet"), command
    assert "step lines" in help_of("report", "--quiet")
    assert "initialisation" in help_of("train", "--seed")
    for command in ("discrepancy", "attribute"):
        assert help_of(command, "--seed") == "random seed of the attack's random starts"
    assert "printed table" in help_of("discrepancy", "--form")
    assert "printed" not in help_of("plot", "--form")
    assert "comma-separated" in help_of("discrepancy", "--split")
    assert "comma-separated" not in help_of("attribute", "--split")
    assert "comma-separated" in help_of("eval", "--attack")
    assert "comma-separated" not in help_of("discrepancy", "--attack")
    assert "the run NAME over" in help_of("train", "--force")
    assert "train" not in help_of("eval", "--force")
    assert "for training" not in help_of("eval", "--eps")
    assert "preset's" in help_of("train", "--eps")
    bounds_eps = help_of("bounds", "--eps")
    assert "0.1" in bounds_eps and "adversarial" in bounds_eps  # as its description says
    assert "default: 0.1" in COMMANDS["bounds"].description


def test_a_usage_error_is_one_line_naming_the_subcommand(capsys) -> None:
    assert main(["eval", "--no-such-option", "1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "ssmprobe: error: unrecognized arguments: --no-such-option 1 (see ssmprobe eval --help)\n"
    )
    assert main(["eval", "--n", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssmprobe: error: argument --n:") and err.count("error") == 1


@pytest.mark.parametrize(
    "bad",
    [["--eps", "-1"], ["--eps", "5"], ["--attack", "foo"], ["--attack", "aa,aa"], ["--n", "x"]],
)
def test_a_usage_error_says_ssmprobe_error_once(bad: list[str], tmp_path: Path, capsys) -> None:
    """Refused by argparse or by the command's own checks, one line with one prefix (never
    `ssmprobe: error: ssmprobe eval: ...`), exit 2 and nothing written."""
    out = tmp_path / "eval.json"
    assert main(["eval", "--ckpt", "s4_pgd", *bad, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssmprobe: error: ") and err.count("\n") == 1, err
    assert err.count("error:") == 1 and "ssmprobe eval:" not in err, err
    assert not out.exists()


def test_train_names_its_run_as_the_zoo_does(tmp_path: Path) -> None:
    from ssmprobe.grid import GridRun
    from ssmprobe.training.run import run_name
    from ssmprobe.zoo import list_models

    zoo = {m.name for m in list_models()}
    for model, method, ads in (("dss", "trades", "relu"), ("s4", "pgd", None)):
        setting = GridRun(model, method, "digits", ads).setting
        assert setting in zoo
        assert run_name(model, "digits", method, ads) == f"{setting}_digits"
    assert run_name("s4", "mnist", "pgd", seed=1) == "s4_pgd_mnist_seed1"
    # a run begun under 0.2's name keeps its folder, with a warning
    old = tmp_path / "dss_relu_digits_trades"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"seed": 0}))
    with pytest.warns(UserWarning, match="0.2 name"):
        assert run_name("dss", "digits", "trades", "relu", 0, tmp_path) == old.name
    assert run_name("dss", "digits", "trades", "relu", 1, tmp_path) != old.name  # another seed
    (tmp_path / "dss_trades_ads-relu_digits").mkdir()
    (tmp_path / "dss_trades_ads-relu_digits" / "config.json").write_text("{}")
    assert run_name("dss", "digits", "trades", "relu", 0, tmp_path) == "dss_trades_ads-relu_digits"


def test_report_quiet_prints_no_step_lines(tmp_path: Path, monkeypatch, capsys) -> None:
    import ssmprobe.report.build as build

    def fake_build(runs, out, options, log=build._to_stderr):
        log("evaluating runs/x/best.pt (pgd10, n = 8)")
        html = Path(out) / "report.html"
        return SimpleNamespace(up_to_date=False, written=[], findings=[], report_html=html)

    monkeypatch.setattr(build, "build_report", fake_build)
    runs = ["report", "--runs", str(tmp_path), "--attack", "pgd10"]
    assert main(runs) == 0
    assert "evaluating" in capsys.readouterr().err
    assert main([*runs, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_long_work_shows_its_size_and_the_time_left(monkeypatch, capsys) -> None:
    import torch

    from ssmprobe.attacks import run
    from ssmprobe.data import load_dataset, make_loader

    loader = make_loader(load_dataset("digits", "test"), 100)
    assert run.sample_count(loader) == 360 and run.sample_count(loader, 50) == 50
    assert run.sample_count(iter(loader)) is None and run.sample_count([], 7) == 7
    monkeypatch.setattr(run, "LONG_SECONDS", 0.0)
    batches = [(torch.zeros(3, 1), torch.zeros(3)) for _ in range(4)]
    assert len(list(run.Estimate("aa", 12).track(batches))) == 4
    line = capsys.readouterr().err
    assert re.fullmatch(r"aa: 12 samples; the first 3 took \d+\.\d s: about \d+ s left\n", line)
    estimate = run.Estimate("x", 12, "12 train samples")
    list(estimate.track(batches))
    list(estimate.track(batches))  # a second pass: no second line
    assert capsys.readouterr().err.count("x: 12 train samples; the first 3") == 1
    assert run.duration(42) == "42 s" and run.duration(150) == "2.5 min"
    assert run.duration(7200) == "2.0 h"


def test_autoattack_over_processes_estimates_the_wall_time_of_one(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from ssmprobe.attacks import run

    # Each of 2 processes does 500 of the 1000 samples: 400 left at 100 per 20 s, not 900.
    run.Estimate("aa", 1000, processes=2).first_done(100, 20.0)
    line = "aa: 1000 samples over 2 processes; the first 100 took 20.0 s: about 80 s left\n"
    assert capsys.readouterr().err == line
    run.Estimate("aa", 1000).first_done(100, 20.0)  # one process: all 900 left
    assert capsys.readouterr().err.endswith("the first 100 took 20.0 s: about 3.0 min left\n")
    # `eval --jobs 2` prints it, from the batch each of its 2 workers reports.
    monkeypatch.setattr(run, "LONG_SECONDS", 0.0)
    argv = ["eval", "--ckpt", "dss_pgd", "--attack", "aa-fast", "--n", "2", "--batch-size", "1"]
    assert main([*argv, "--jobs", "2", "--out", str(tmp_path / "eval.json")]) == 0
    err = capsys.readouterr().err
    assert re.search(r"aa-fast: 2 samples over 2 processes; the first 1 took [\d.]+ s: about", err)


def test_the_poison_bar_counts_runs_to_its_total(capsys) -> None:
    from ssmprobe.poison.experiment import PoisonConfig, run_experiment

    run_experiment(PoisonConfig(seeds=(200,), max_steps=1500), progress=True)
    err = capsys.readouterr().err.replace("\r", "\n")
    assert "poison: 2 runs (2 settings x 1 seeds), each until it fits" in err
    assert "2/2" in err and "/1500" not in err and "/1000000" not in err


def test_a_bundled_checkpoints_curves_are_not_named_twice(tmp_path: Path) -> None:
    from ssmprobe.checkpoint import bundled_dir
    from ssmprobe.probe.plots import steps_figures

    payload = json.loads((bundled_dir() / "cache" / "s4_pgd" / "discrepancy.json").read_text())
    payload["results"][0]["meta"]["checkpoint"] = "s4_pgd.pt"
    (tmp_path / "d.json").write_text(json.dumps(payload))
    ((_, stem),) = steps_figures([tmp_path / "d.csv"], tmp_path)
    assert stem.name == "steps_s4_pgd"
