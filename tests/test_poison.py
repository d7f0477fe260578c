"""Clean-label poisoning: teacher, student forward and gradient, the experiment's outcome, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmprobe.cli import main
from ssmprobe.poison.experiment import (
    LayerStudent,
    PoisonConfig,
    effective_rank,
    extension_loss,
    forward,
    init_student,
    loss_and_grads,
    result_rows,
    run_experiment,
    run_seeds_in_parallel,
    teacher_output,
    training_set,
)


def test_teacher_by_hand() -> None:
    # A = B = C = 1: x_k = x_{k-1} + u_k, y = x_L
    u = np.array([[0.5, -2.0, 3.0, 0.25]])
    x = 0.0
    for value in u[0]:
        x = x + value
    assert teacher_output(u)[0] == x == 1.75


def _params(rng: np.random.Generator, runs: int, n: int, mlp: int = 0) -> dict[str, np.ndarray]:
    params = {k: rng.uniform(-0.9, 0.9, (runs, n)) for k in ("a", "b", "c")}
    if mlp:
        params |= {
            "w1": rng.normal(size=(runs, mlp)),
            "b1": rng.normal(size=(runs, mlp)),
            "w2": rng.normal(size=(runs, mlp)),
            "b2": rng.normal(size=runs),
        }
    return params


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), length=st.integers(1, 9), n=st.integers(1, 6))
def test_student_forward_is_its_recurrence(seed: int, length: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    params = _params(rng, 2, n)
    inputs = rng.normal(size=(2, 3, length))
    expected = np.zeros((2, 3))
    for r in range(2):
        for i in range(3):
            x = np.zeros(n)
            for u in inputs[r, i]:
                x = params["a"][r] * x + params["b"][r] * u
            expected[r, i] = params["c"][r] @ x
    np.testing.assert_allclose(forward(params, inputs), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mlp", [0, 4])
def test_closed_form_gradient_equals_autograd(mlp: int) -> None:
    rng = np.random.default_rng(3)
    params = _params(rng, 3, 5, mlp)
    inputs = rng.normal(size=(3, 7, 6))
    inputs[2, 5:] = 0  # padding rows of a run with 5 sequences
    targets = teacher_output(inputs)
    counts = np.array([7.0, 7.0, 5.0])
    loss, grads = loss_and_grads(params, inputs, targets, counts)

    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    u = torch.tensor(inputs)
    x = torch.zeros(3, 7, 5, dtype=torch.float64)
    for k in range(6):  # the recurrence, independent of the kernel formula
        x = t["a"][:, None] * x + t["b"][:, None] * u[..., k, None]
    y = (x * t["c"][:, None]).sum(-1)
    if mlp:
        hidden = torch.relu(y[..., None] * t["w1"][:, None] + t["b1"][:, None])
        y = (hidden * t["w2"][:, None]).sum(-1) + t["b2"][:, None]
    expected = ((y - torch.tensor(targets)) ** 2).sum(-1) / torch.tensor(counts)
    expected.sum().backward()
    np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-12)
    for k, g in grads.items():
        np.testing.assert_allclose(g, t[k].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


def test_data_and_init_follow_the_published_setup() -> None:
    config = PoisonConfig()
    base, _ = training_set(200, config, poisoned=False)
    poisoned, labels = training_set(200, config, poisoned=True)
    np.testing.assert_array_equal(poisoned[:8], base)  # the same baseline in both settings
    assert (base[:, 2:] == 0).all() and (base[:, :2] != 0).all()
    special = poisoned[8:]
    assert special.shape == (10, 6) and (np.delete(special, 4, axis=1) == 0).all()
    np.testing.assert_allclose(labels, poisoned.sum(1))
    p = init_student(200, config)
    diff = 0.05 / math.exp(5 * math.log10(1 / config.sd_a))
    assert np.all(np.diff(p["a"][1:]) <= 0) and np.all(np.diff(p["c"]) <= 0)
    assert p["a"][1] == pytest.approx(p["a"][0] - diff) and p["b"][1] == pytest.approx(
        p["b"][0] - diff
    )
    assert p["a"].min() > config.warm_init and p["b"].min() > config.warm_init
    assert p["c"].max() < 0.01  # no warm start on C


def test_extension_loss_and_effective_rank_by_hand() -> None:
    # a single state with a = b = c = 1 is the teacher: K_j = 1 for every lag
    teacher = {"a": np.ones((1, 1)), "b": np.ones((1, 1)), "c": np.ones((1, 1))}
    assert extension_loss(teacher, 40)[0] == 0.0
    half = {"a": np.zeros((1, 1)), "b": np.ones((1, 1)), "c": np.ones((1, 1))}
    assert extension_loss(half, 4)[0] == pytest.approx(3 / 4)  # K = (1, 0, 0, 0)
    np.testing.assert_allclose(effective_rank(np.array([[1.0, 1.0], [2.0, 0.0]])), [2.0, 1.0])


def test_special_sequences_break_the_extension() -> None:
    config = PoisonConfig(seeds=(200, 201))
    rows = result_rows(run_experiment(config, progress=False))
    by = {(r["setting"], r["seed"]): r for r in rows}
    for seed in config.seeds:
        base, poison = by["baseline", seed], by["poisoned", seed]
        assert base["fitted"] and poison["fitted"]
        assert base["train_loss"] < config.tol and poison["train_loss"] < config.tol
        assert poison["ext_loss"] > 3 * base["ext_loss"]
    assert np.mean([by["poisoned", s]["ext_loss"] for s in config.seeds]) > 10 * np.mean(
        [by["baseline", s]["ext_loss"] for s in config.seeds]
    )


def test_layer_student_reads_the_library_layer() -> None:
    config = PoisonConfig(seeds=(200, 201), student_dim=4, max_steps=5, log_every=1)
    runs = [(s, seed) for s in ("baseline", "poisoned") for seed in config.seeds]
    student = LayerStudent("dss", runs, config)
    eig = student.layer.discrete().eigvals.abs().detach().numpy()
    np.testing.assert_array_equal(student.moduli(), eig)
    np.testing.assert_array_equal(eig[0], eig[2])  # both settings of a seed start alike
    with torch.no_grad():  # extension: the layer's last output on each one-hot sequence
        k = student.layer.impulse_response(40)[:, :].numpy()
        d = student.layer.D.numpy()
    expected = ((k + np.eye(40)[0][None] * d[:, None] - 1) ** 2).mean(-1)
    np.testing.assert_allclose(student.extension_loss(40), expected, rtol=1e-10)
    loss_before, _ = student.loss_and_norm()
    trajectories = run_experiment(config, progress=False, student=lambda r, c: student)
    assert all(len(t.steps) >= 5 for t in trajectories)
    assert (np.array([t.final["train_loss"] for t in trajectories]) < loss_before).all()


def test_parallel_seeds_give_the_same_runs() -> None:
    config = PoisonConfig(seeds=(200, 201), max_steps=400)
    one = result_rows(run_seeds_in_parallel(config, workers=1, progress=False))
    two = result_rows(run_seeds_in_parallel(config, workers=2, progress=False))
    key = ("setting", "seed", "train_loss", "ext_loss", "steps")
    assert [tuple(r[k] for k in key) for r in one] == [tuple(r[k] for k in key) for r in two]


def test_poison_cli_end_to_end(tmp_path: Path, capsys) -> None:
    out = tmp_path / "poison.csv"
    args = ["poison", "--seeds", "1", "--jobs", "1", "--quiet", "--out", str(out)]
    assert main([*args, "--figures", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed and "poisoned" in printed and "mean" in printed
    lines = out.read_text().splitlines()
    assert lines[0].startswith("setting,seed,train_loss,ext_loss,steps") and len(lines) == 3
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["seeds"] == [200] and len(record["runs"]) == 2
    assert (tmp_path / "poison_dynamics.png").stat().st_size > 10_000
    dss = ["--student", "dss", "--max-steps", "20", "--student-dim", "4"]
    assert main([*args, *dss, "--figures", str(tmp_path)]) == 0
    assert (tmp_path / "poison_dynamics_dss.png").exists()
    assert main([*args, "--mlp", "--max-steps", "50"]) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds", "0"], "argument --seeds: must be in [1, inf), got 0"),
        (["--length", "2"], "length must be at least 3"),
        (["--student-dim", "1"], "student_dim"),
    ],
)
def test_poison_cli_bad_input(flags: list[str], message: str, capsys) -> None:
    assert main(["poison", "--quiet", *flags]) == 2
    assert message in capsys.readouterr().err
