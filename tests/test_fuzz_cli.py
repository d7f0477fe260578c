"""A careless or hostile user of the command line: hypothesis draws a subcommand and one bad
thing (a numeric option at NaN, inf, a negative, zero or a huge value it cannot take; a file
argument that is missing, a folder, empty, truncated, a non-checkpoint, a checkpoint with
flipped bytes; an --out that cannot be written). Every draw must end with exit code 1 or 2,
one line on stderr that starts with `ssmprobe: error:`, no traceback, and no file of the
working folder (nor of the zoo) changed or left half-written. Outputs are drawn by class (the
output rule of `ssmprobe.io`): folders, inputs, a user's files, FIFOs, a character device made in
the temporary folder, links, a derived name on a user's file, the zoo, the package."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ssmprobe
from ssmprobe.checkpoint import bundled_dir
from ssmprobe.cli import main

POSITIVE_BAD = ["0", "-3", "nan", "inf", "-inf", "1e400", "2.5", "x"]
# A valid value of every other required argument: the one bad thing decides the outcome.
COMMANDS: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "eval": (
        ["--ckpt", "{ckpt}", "--attack", "pgd10"],
        {
            "--n": POSITIVE_BAD,
            "--batch-size": POSITIVE_BAD,
            "--eps": ["0", "-0.1", "nan", "inf", "1.5"],
            "--attack": [",", "fgsm,fgsm", "pgd0", "pgd100000000000000000000", "cw10"],
            "--device": ["meta", "mps", "cuda:3", "nonsense"],
        },
    ),
    "discrepancy": (
        ["--ckpt", "{ckpt}", "--split", "test"],
        {
            "--n": POSITIVE_BAD,
            "--batch-size": POSITIVE_BAD,
            "--eps": ["0", "nan", "-1", "7"],
            "--split": [",", "test,test", "val"],
        },
    ),
    "attribute": (
        ["--ckpt", "{ckpt}"],
        {"--n": POSITIVE_BAD, "--ig-steps": POSITIVE_BAD, "--seed": ["-1", "nan", "1.5"]},
    ),
    "bounds": (
        ["--model", "dss", "--ckpt", "{ckpt}"],
        {
            "--L": [*POSITIVE_BAD, "100000000"],
            "--mu": ["nan", "inf", "-inf", "1e308"],
            "--samples": ["-3", "nan", "1.5"],
            "--eps": ["0", "-1", "nan", "inf"],
            "--channels": ["5-2", "a", "3-", "-"],
        },
    ),
    "train": (
        ["--model", "s5", "--d-model", "4", "--n-layers", "1"],
        {
            "--epochs": POSITIVE_BAD,
            "--lr": ["0", "-1", "nan", "inf", "1e300"],
            "--batch-size": [*POSITIVE_BAD, "10000000000"],  # activations past any memory
            "--d-state": [*POSITIVE_BAD, "100000"],
            "--n-layers": ["0", "100000"],
            "--eps-warmup": ["-1", "nan", "x"],
            "--beta": ["-1", "nan", "inf"],
            "--name": ["../x", "a/b", "..", "zoo"],
        },
    ),
    "poison": (
        ["--max-steps", "2"],
        {"--jobs": POSITIVE_BAD, "--seeds": POSITIVE_BAD, "--length": POSITIVE_BAD},
    ),
    "report": ([], {"--n": POSITIVE_BAD, "--n-probe": POSITIVE_BAD}),
}
FILE_COMMANDS = {
    "eval": ["eval", "--ckpt", "{bad}", "--attack", "pgd10", "--n", "4"],
    "discrepancy": ["discrepancy", "--ckpt", "{bad}", "--n", "4"],
    "attribute": ["attribute", "--ckpt", "{bad}", "--n", "2"],
    "bounds": ["bounds", "--ckpt", "{bad}"],
    "export": ["export", "--ckpt", "{bad}", "--out", "exported.pt"],
    "import": ["import", "{bad}", "--model", "s4", "--dataset", "digits", "--out", "i.pt"],
    "plot": ["plot", "discrepancy", "{bad}"],
    "table": ["table", "{bad}"],
}
BAD_FILES = ("missing", "folder", "empty", "truncated", "text", "flipped", "device")
BAD_OUTS = {  # an --out that cannot be written as what the command writes
    "eval": ["eval", "--ckpt", "{ckpt}", "--n", "4", "--out", "{out}"],
    "discrepancy": ["discrepancy", "--ckpt", "{ckpt}", "--n", "4", "--out", "{out}"],
    "bounds": ["bounds", "--model", "dss", "--out", "{out}"],
    "export": ["export", "--ckpt", "{ckpt}", "--out", "{out}"],
    "train": ["train", "--epochs", "1", "--out", "{out}"],
    "report": ["report", "--out", "{out}"],
    "poison": ["poison", "--max-steps", "2", "--out", "{out}"],
}
OUTS = (  # by class: a folder, a path under a file, an input, a user's files, special files,
    # links (to elsewhere, in a loop), a derived name on a user's file, the zoo, the package
    "a_folder", "under_a_file/x.csv", "the_checkpoint", "existing.json", "existing.pt",
    "a_fifo", "a_device", "a_link", "a_loop", "run/config.csv", "the_zoo", "the_package",
)  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder with one real checkpoint and the bad files drawn from."""
    root = tmp_path_factory.mktemp("user")
    ckpt = root / "model.pt"
    shutil.copy(bundled_dir() / "dss_pgd.pt", ckpt)
    data = ckpt.read_bytes()
    (root / "folder").mkdir()
    (root / "a_folder").mkdir()
    (root / "empty").write_bytes(b"")
    (root / "truncated").write_bytes(data[: len(data) // 2])
    (root / "text").write_text("these are my notes, not a checkpoint\n")
    middle = len(data) // 2
    flipped = bytearray(data)
    flipped[middle : middle + 64] = bytes(b ^ 0xFF for b in flipped[middle : middle + 64])
    (root / "flipped").write_bytes(bytes(flipped))
    (root / "under_a_file").write_text("a file where a folder would go\n")
    (root / "existing.json").write_text("{}\n")
    (root / "existing.pt").write_bytes(b"mine")
    os.mkfifo(root / "a_fifo")
    try:  # a character device like /dev/null, made here: the real /dev is never a target
        os.mknod(root / "a_device", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:  # not root: a FIFO stands in for it
        os.mkfifo(root / "a_device")
    (root / "a_link").symlink_to(root / "text")
    (root / "a_loop").symlink_to(root / "a_loop")
    (root / "run").mkdir()
    (root / "run" / "config.json").write_text('{"mine": true}\n')
    return root


def target_of(out: str) -> str:
    """The --out of a drawn output class (the zoo and the package are outside the workdir)."""
    if out == "the_zoo":
        return str(bundled_dir() / "dss_pgd.pt")
    if out == "the_package":
        return str(Path(ssmprobe.__file__).parent / "results.csv")
    return "model.pt" if out == "the_checkpoint" else out


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every entry under `folder`, links as links."""
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in folder.rglob("*")
    } | {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in bundled_dir().glob("*.pt")}


def run_refused(argv: list[str], workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(workdir)
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        code = main(argv)
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code in (1, 2), (argv, code, err)
    errors = [line for line in lines if line.startswith("ssmprobe: error:")]
    assert len(errors) == 1 and "Traceback" not in err, (argv, err)
    assert all(line.startswith("ssmprobe: ") for line in lines), (argv, err)
    assert snapshot(workdir) == before, argv


FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def bad_number(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(sorted(COMMANDS)))
    base, options = COMMANDS[command]
    flag = draw(st.sampled_from(sorted(options)))
    value = draw(st.sampled_from(options[flag]))
    return [command, *base, f"{flag}={value}"]


@FUZZ
@given(argv=bad_number())
def test_a_bad_number_is_one_clear_error(argv, workdir, capsys) -> None:
    run_refused([a.replace("{ckpt}", "model.pt") for a in argv], workdir, capsys)


# Options that would do nothing in the combination given, or cannot run on this machine.
IDLE_OPTIONS = [
    ["train", "--model", "s5", "--amp"],
    ["eval", "--ckpt", "model.pt", "--attack", "fgsm", "--partition", "gpu"],
    ["eval", "--ckpt", "model.pt", "--attack", "fgsm", "--launcher", "slurm"],
    ["eval", "--ckpt", "model.pt", "--attack", "aa", "--shards", "2", "--launcher", "slurm"],
]


@pytest.mark.parametrize("argv", IDLE_OPTIONS, ids=" ".join)
def test_an_option_that_would_do_nothing_is_refused(argv, workdir, capsys) -> None:
    run_refused(argv, workdir, capsys)


@FUZZ
@given(command=st.sampled_from(sorted(FILE_COMMANDS)), bad=st.sampled_from(BAD_FILES))
def test_a_bad_file_is_one_clear_error(command, bad, workdir, capsys) -> None:
    path = {"missing": "no_such_file.pt", "device": "/dev/zero"}.get(bad, bad)
    argv = [a.replace("{bad}", path) for a in FILE_COMMANDS[command]]
    if command == "table" and bad in ("folder",):
        return  # an empty folder is a valid (empty) folder of runs
    run_refused(argv, workdir, capsys)


@FUZZ
@given(command=st.sampled_from(sorted(BAD_OUTS)), out=st.sampled_from(OUTS))
def test_an_output_that_cannot_be_written_is_refused_before_any_work(
    command, out, workdir, capsys
) -> None:
    # A folder of runs or of report files is no bad output for them; a CSV's derived JSON
    # name matters only to the commands that write a CSV.
    if (command, out) in {("train", "a_folder"), ("report", "a_folder")}:
        return
    if out == "run/config.csv" and command not in ("discrepancy", "bounds", "poison"):
        return
    target = target_of(out)
    argv = [a.replace("{ckpt}", "model.pt").replace("{out}", target) for a in BAD_OUTS[command]]
    run_refused(argv, workdir, capsys)
