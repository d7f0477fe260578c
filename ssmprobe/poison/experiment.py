"""Clean-label poisoning of a linear SSM's implicit bias (Slutzky et al., ICLR 2025 submission).

A teacher SSM of state dimension 1 with A = B = C = 1 labels a sequence u ∈ R^L with its output
at the last step, y* = Σ_k u_k. A student with diagonal A ∈ R^N (N = 10) and B, C ∈ R^N,

    x_k = diag(a) x_{k-1} + b u_k,  y = cᵀ x_L = Σ_{j<L} K_j u_{L-1-j},  K_j = Σ_n c_n a_n^j b_n,

is fitted by full-batch gradient descent on the mean squared error. Baseline sequences are
non-zero on their first entries, so they pin down the long lags K_{L-1}, K_{L-2}, and the
implicit bias of GD towards a low-rank A extends K_j = 1 to every lag: the student generalises.
Special sequences, non-zero only at position L-2 and labelled correctly by the teacher, add the
constraint K_1 = 1; the student still fits the training set but its extension — its outputs on
the E = 40 one-hot sequences of length E, i.e. K_0 .. K_{E-1} against the teacher's ones — fails.

Everything is float64 numpy with the closed-form gradient of the kernel, batched over runs
(seeds × settings) so one step is a handful of array operations:

    ∂ℓ/∂K_j = (2/n) Σ_i r_i u_{i, L-1-j},   ∂K_j/∂c_n = a_n^j b_n,   ∂K_j/∂b_n = c_n a_n^j,
    ∂K_j/∂a_n = j a_n^{j-1} b_n c_n.

With `mlp_width` the SSM's last output s passes through a one-hidden-layer ReLU network
y = w₂ᵀ relu(w₁ s + b₁) + b₂ whose gradient is back-propagated by hand into ∂ℓ/∂s.

Step size (the authors' appendix D.2 scheduler, as we read it): η_t = η / (sqrt(m̂_t) + 1e-6),
m_t = β m_{t-1} + (1-β) Σ_p ‖∂ℓ/∂p‖, m̂_t = m_t / (1 - β^t), β = 0.8, per run. A run stops once
its training loss is below `tol`, after `steps_after` more steps, or at `max_steps`.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ssmprobe.attacks.run import duration
from ssmprobe.io import atomic_file, write_json

SETTINGS = ("baseline", "poisoned")
SEEDS = (200, 201, 204, 205)


@dataclass(frozen=True)
class PoisonConfig:
    """The published setup; `second()` gives their second configuration."""

    student_dim: int = 10
    length: int = 6
    ext_length: int = 40
    n_baseline: int = 8
    n_special: int = 10
    baseline_nonzero: int = 2  # leading entries of a baseline sequence drawn from N(0, 1)
    sd_a: float = 1e-3
    sd_bc: float = 1e-3
    warm_init: float = 0.1
    base_lr: float = 0.01
    beta: float = 0.8
    soft_const: float = 1e-6
    tol: float = 0.01
    steps_after: int = 1500
    max_steps: int = 1_000_000
    mlp_width: int = 0  # hidden units of the ReLU network after the SSM (0: none)
    log_every: int = 100
    seeds: tuple[int, ...] = SEEDS

    def __post_init__(self) -> None:
        for name in ("student_dim", "ext_length", "n_baseline", "max_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.student_dim < 2:
            raise ValueError("student_dim must be at least 2 (the init perturbs the second entry)")
        if self.length < 3:
            raise ValueError(f"length must be at least 3 (specials sit at L-2), got {self.length}")
        if not 0 < self.baseline_nonzero <= self.length:
            raise ValueError(f"baseline_nonzero must be in [1, L], got {self.baseline_nonzero}")
        if self.n_special < 0 or self.mlp_width < 0 or self.steps_after < 0:
            raise ValueError("n_special, mlp_width and steps_after cannot be negative")
        if not self.seeds:
            raise ValueError("at least one seed is needed")

    @classmethod
    def second(cls, **overrides: Any) -> PoisonConfig:
        """Length 10, student dimension 20, sd_A 0.01, base step 0.001, 7 non-zero entries."""
        values = dict(length=10, student_dim=20, sd_a=0.01, base_lr=1e-3, baseline_nonzero=7)
        return cls(**(values | overrides))


def teacher_output(inputs: np.ndarray) -> np.ndarray:
    """The teacher's last output: with A = B = C = 1 every lag weighs 1, y* = Σ_k u_k."""
    return inputs.sum(axis=-1)


def ssm_kernel(a: np.ndarray, b: np.ndarray, c: np.ndarray, length: int) -> np.ndarray:
    """K_j = Σ_n c_n a_n^j b_n for j < length; parameters (..., N) -> (..., length)."""
    powers = a[..., None] ** np.arange(length)
    return np.einsum("...n,...nj->...j", c * b, powers)


def training_set(seed: int, config: PoisonConfig, poisoned: bool) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (n, L), teacher labels (n,)); the baseline sequences of a seed are the same in
    both settings, the poisoned set appends the special ones."""
    rng = np.random.default_rng(seed)
    base = np.zeros((config.n_baseline, config.length))
    base[:, : config.baseline_nonzero] = rng.standard_normal(
        (config.n_baseline, config.baseline_nonzero)
    )
    special = np.zeros((config.n_special, config.length))
    special[:, config.length - 2] = rng.standard_normal(config.n_special)
    inputs = np.concatenate([base, special]) if poisoned else base
    return inputs, teacher_output(inputs)


def padded_training_sets(
    runs: Sequence[tuple[str, int]], config: PoisonConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training sets of (setting, seed) runs stacked as inputs (R, n_max, L) and labels
    (R, n_max), zero rows padding the shorter ones, and each run's own count (R,)."""
    data = [training_set(seed, config, s == "poisoned") for s, seed in runs]
    width = max(len(x) for x, _ in data)
    inputs = np.zeros((len(runs), width, config.length))
    targets = np.zeros((len(runs), width))
    for r, (x, y) in enumerate(data):
        inputs[r, : len(x)], targets[r, : len(y)] = x, y
    return inputs, targets, np.array([len(x) for x, _ in data], dtype=float)


def init_student(seed: int, config: PoisonConfig) -> dict[str, np.ndarray]:
    """The authors' initialisation: |N(0, sd)| entries sorted in decreasing order, the second
    entries of A and B set just below the first, then A += warm·I and B += warm."""
    rng = np.random.default_rng(seed + 10_000)  # not the data's stream
    n = config.student_dim
    a = -np.sort(-np.abs(rng.normal(0, config.sd_a, n)))
    b = -np.sort(-np.abs(rng.normal(0, config.sd_bc, n)))
    c = -np.sort(-np.abs(rng.normal(0, config.sd_bc, n)))
    diff = 0.05 / math.exp(5 * math.log10(1 / config.sd_a))
    a[1], b[1] = a[0] - diff, b[0] - diff
    params = {"a": a + config.warm_init, "b": b + config.warm_init, "c": c}
    if config.mlp_width:
        h = config.mlp_width
        params |= {
            "w1": rng.normal(0, 1, h),
            "b1": np.zeros(h),
            "w2": rng.normal(0, 1 / math.sqrt(h), h),
            "b2": np.zeros(()),
        }
    return params


def forward(params: dict[str, np.ndarray], inputs: np.ndarray) -> np.ndarray:
    """The student's last output for inputs (R, n, L) with parameters batched over R runs."""
    return _forward(params, inputs)[0]


def _forward(params: dict[str, np.ndarray], inputs: np.ndarray) -> tuple[np.ndarray, tuple]:
    length = inputs.shape[-1]
    kernel = ssm_kernel(params["a"], params["b"], params["c"], length)  # (R, L)
    s = np.einsum("rij,rj->ri", inputs[..., ::-1], kernel)  # lag j meets u_{L-1-j}
    if "w1" not in params:
        return s, (s, None)
    z = s[..., None] * params["w1"][:, None] + params["b1"][:, None]
    hidden = np.maximum(z, 0.0)
    return np.einsum("rih,rh->ri", hidden, params["w2"]) + params["b2"][:, None], (s, (z, hidden))


def loss_and_grads(
    params: dict[str, np.ndarray], inputs: np.ndarray, targets: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-run mean squared error over its `counts` real sequences (zero rows pad the rest:
    a zero input with a zero label adds nothing) and its closed-form gradient."""
    y, (s, mlp) = _forward(params, inputs)
    residual = y - targets
    loss = (residual**2).sum(-1) / counts
    dy = 2 * residual / counts[:, None]
    grads: dict[str, np.ndarray] = {}
    if mlp is None:
        ds = dy
    else:
        z, hidden = mlp
        grads["w2"] = np.einsum("ri,rih->rh", dy, hidden)
        grads["b2"] = dy.sum(-1)
        dz = dy[..., None] * params["w2"][:, None] * (z > 0)
        grads["w1"] = np.einsum("rih,ri->rh", dz, s)
        grads["b1"] = dz.sum(1)
        ds = np.einsum("rih,rh->ri", dz, params["w1"])
    length = inputs.shape[-1]
    dk = np.einsum("ri,rij->rj", ds, inputs[..., ::-1])  # ∂ℓ/∂K_j
    a, b, c = params["a"], params["b"], params["c"]
    lags = np.arange(length)
    powers = a[..., None] ** lags  # (R, N, L)
    weighted = np.einsum("rj,rnj->rn", dk, powers)
    grads["c"] = weighted * b
    grads["b"] = weighted * c
    # j a^{j-1} written as j·a^{j-1} with the j = 0 term dropped (no 0^{-1})
    d_powers = lags[1:] * powers[..., :-1]
    grads["a"] = np.einsum("rj,rnj->rn", dk[:, 1:], d_powers) * b * c
    return loss, grads


def extension_loss(params: dict[str, np.ndarray], ext_length: int) -> np.ndarray:
    """Mean squared error of the student against the teacher on the E one-hot sequences of
    length E (per run)."""
    runs = params["a"].shape[0]
    one_hot = np.broadcast_to(np.eye(ext_length), (runs, ext_length, ext_length))
    return ((forward(params, one_hot) - teacher_output(one_hot)) ** 2).mean(-1)


def effective_rank(a: np.ndarray) -> np.ndarray:
    """Roy & Vetterli's effective rank of diag(a): exp of the entropy of |a| / Σ|a|."""
    p = np.abs(a) / np.abs(a).sum(-1, keepdims=True)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)
    return np.exp(entropy)


@dataclass
class Trajectory:
    """What one run did: its loss, extension loss, the |a| entries (largest first) and the
    effective rank of A every `log_every` steps, then the final figures."""

    setting: str
    seed: int
    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    ext_loss: list[float] = field(default_factory=list)
    top_a: list[list[float]] = field(default_factory=list)  # |eigenvalues of Ā|, largest first
    rank: list[float] = field(default_factory=list)
    fitted_at: int | None = None  # first step with training loss below tol
    final: dict[str, Any] = field(default_factory=dict)


class LinearStudent:
    """The authors' student (diagonal A, optional ReLU network after it), batched over runs;
    numpy float64 with the closed-form gradient."""

    def __init__(self, runs: Sequence[tuple[str, int]], config: PoisonConfig) -> None:
        self.inputs, self.targets, self.counts = padded_training_sets(runs, config)
        inits = [init_student(seed, config) for _, seed in runs]
        self.params = {k: np.stack([p[k] for p in inits]) for k in inits[0]}
        self.grads: dict[str, np.ndarray] = {}

    def loss_and_norm(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-run training loss and Σ_p ‖∂ℓ/∂p‖ (the gradient is kept for `step`)."""
        loss, self.grads = loss_and_grads(self.params, self.inputs, self.targets, self.counts)
        runs = len(loss)
        return loss, sum(np.sqrt((g.reshape(runs, -1) ** 2).sum(-1)) for g in self.grads.values())

    def step(self, lr: np.ndarray) -> None:
        for k, g in self.grads.items():
            self.params[k] = self.params[k] - lr.reshape((-1,) + (1,) * (g.ndim - 1)) * g

    def extension_loss(self, ext_length: int) -> np.ndarray:
        return extension_loss(self.params, ext_length)

    def moduli(self) -> np.ndarray:
        """|eigenvalues of A| per run (its diagonal)."""
        return np.abs(self.params["a"])


class LayerStudent:
    """One of the library's own SSM layers as the student, one channel per run (channels are
    independent in S4 and DSS, so a d_model = R layer trains R students at once); torch float64
    autograd. Its output is the layer's (y = K * u + D u) at the last step."""

    def __init__(self, family: str, runs: Sequence[tuple[str, int]], config: PoisonConfig) -> None:
        from ssmprobe.models.dss import DSS
        from ssmprobe.models.s4 import S4

        layers = {"dss": DSS, "s4": S4}
        if family not in layers:
            raise ValueError(f"the layer student is one of {sorted(layers)}, not {family!r}")
        torch.manual_seed(config.seeds[0])
        seeds = sorted({seed for _, seed in runs})
        self.layer = layers[family](len(seeds), 2 * config.student_dim).double()
        # both settings of a seed start from the same channel, as the linear students do
        pick = torch.tensor([seeds.index(seed) for _, seed in runs])
        for name, param in list(self.layer.named_parameters()):
            setattr(self.layer, name, nn.Parameter(param.detach()[pick].clone()))
        self.layer.d_model = len(runs)
        inputs, targets, counts = padded_training_sets(runs, config)
        # run r is channel r of the layer's (batch, L, channels) input
        self.inputs = torch.from_numpy(np.ascontiguousarray(inputs.transpose(1, 2, 0)))
        self.targets = torch.from_numpy(np.ascontiguousarray(targets.T))
        self.counts = torch.from_numpy(counts)

    def loss_and_norm(self) -> tuple[np.ndarray, np.ndarray]:
        self.layer.zero_grad()
        per_run = ((self.layer(self.inputs)[:, -1] - self.targets) ** 2).sum(0) / self.counts
        per_run.sum().backward()  # runs share no parameter: each gets its own gradient
        runs = len(per_run)
        norm = sum(p.grad.reshape(runs, -1).norm(dim=1) for p in self.layer.parameters())
        return per_run.detach().numpy(), norm.numpy()

    @torch.no_grad()
    def step(self, lr: np.ndarray) -> None:
        rate = torch.from_numpy(lr)
        for p in self.layer.parameters():
            p -= rate.reshape((-1,) + (1,) * (p.ndim - 1)) * p.grad

    @torch.no_grad()
    def extension_loss(self, ext_length: int) -> np.ndarray:
        runs = self.inputs.shape[-1]
        one_hot = torch.eye(ext_length, dtype=torch.float64)[..., None].expand(-1, -1, runs)
        return ((self.layer(one_hot)[:, -1] - 1) ** 2).mean(0).numpy()

    @torch.no_grad()
    def moduli(self) -> np.ndarray:
        """|eigenvalues of Ā| per run, read with `discrete()` (N per channel)."""
        return self.layer.discrete().eigvals.abs().numpy()


def layer_student(family: str) -> Callable[[Sequence[tuple[str, int]], PoisonConfig], Any]:
    """A `run_experiment` student: the library's `family` layer (dss, s4), state size
    2·student_dim (its N/2 conjugate pairs hold student_dim distinct eigenvalues)."""
    return lambda runs, config: LayerStudent(family, runs, config)


def run_experiment(
    config: PoisonConfig,
    settings: Sequence[str] = SETTINGS,
    progress: bool = True,
    student: Callable[[Sequence[tuple[str, int]], PoisonConfig], Any] = LinearStudent,
) -> list[Trajectory]:
    """Trains one student per (setting, seed), all runs in one batched program, with the
    adaptive step, and returns their trajectories. `student` builds the batched students
    (`LinearStudent`, or `layer_student("dss")` for one of the library's own layers)."""
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown or not settings:
        raise ValueError(f"unknown setting {unknown}; choose from {SETTINGS}")
    runs = [(s, seed) for s in settings for seed in config.seeds]
    model = student(runs, config)
    trajectories = [Trajectory(s, seed) for s, seed in runs]
    moment = np.zeros(len(runs))
    active = np.ones(len(runs), dtype=bool)
    stop_at = np.full(len(runs), config.max_steps)
    start = time.perf_counter()
    # runs end when they have fitted (and `steps_after` more), at most at max_steps: the bar
    # counts ended runs, with the step reached; after 1000 steps, the size and an upper bound
    bar = tqdm(total=len(runs), desc="poison", unit="run", disable=not progress)
    step = 0
    while active.any() and step < config.max_steps:
        loss, norm = model.loss_and_norm()
        if step % config.log_every == 0:
            _log(trajectories, step, loss, model, config, active)
        newly = active & (loss < config.tol) & (stop_at == config.max_steps)
        for r in np.flatnonzero(newly):
            trajectories[r].fitted_at = step
            stop_at[r] = min(step + config.steps_after, config.max_steps)
        active &= step < stop_at
        moment = config.beta * moment + (1 - config.beta) * norm
        corrected = moment / (1 - config.beta ** (step + 1))
        model.step(np.where(active, config.base_lr / (np.sqrt(corrected) + config.soft_const), 0.0))
        step += 1
        if step % 1000 == 0:
            bar.update(int((~active).sum()) - bar.n)
            bar.set_postfix(step=step)
            if step == 1000 and progress and active.any():
                took = time.perf_counter() - start
                tqdm.write(
                    f"poison: {len(runs)} runs ({len(settings)} settings x {len(config.seeds)} "
                    f"seeds), each until it fits and {config.steps_after} steps more, at most "
                    f"{config.max_steps} steps; 1000 steps took {took:.1f} s: at most about "
                    f"{duration(took / 1000 * (config.max_steps - 1000))} more",
                    file=sys.stderr,
                )
    bar.update(len(runs) - bar.n)  # runs still going at max_steps end there
    bar.set_postfix(step=step)
    bar.close()
    seconds = time.perf_counter() - start
    loss, _ = model.loss_and_norm()
    _log(trajectories, step, loss, model, config, np.ones(len(runs), dtype=bool))
    ext = model.extension_loss(config.ext_length)
    moduli = model.moduli()
    for r, t in enumerate(trajectories):
        t.final = {
            "train_loss": float(loss[r]),
            "ext_loss": float(ext[r]),
            "steps": int(min(stop_at[r], step)),
            "fitted": t.fitted_at is not None,
            "seconds": seconds,  # the whole batched program: runs share every step
            "moduli": sorted(moduli[r].tolist(), reverse=True),
        }
    return trajectories


def run_seeds_in_parallel(
    config: PoisonConfig, family: str = "linear", workers: int | None = None, progress: bool = True
) -> list[Trajectory]:
    """`run_experiment` for the linear student (`family="linear"`) or a library layer (dss,
    s4), its seeds split over `workers` processes. By default the linear student runs in this
    process: batched, all 8 default runs take 1.3 s, and starting processes costs more (6.7 s
    with 2). A layer student's step is torch autograd, so it gets one process per free core
    (at most one per seed). With one worker a progress bar counts steps."""
    if workers is None:
        workers = 1 if family == "linear" else len(os.sched_getaffinity(0))
    chunks = [config.seeds[i :: max(workers, 1)] for i in range(max(workers, 1))]
    chunks = [c for c in chunks if c]
    if len(chunks) == 1:
        return _run_family(config, family, progress)
    if progress:  # the processes draw no bars of their own: the size, before they start
        tqdm.write(
            f"poison: {len(SETTINGS) * len(config.seeds)} runs of the {family} student in "
            f"{len(chunks)} processes, each run until it fits and {config.steps_after} steps "
            f"more, at most {config.max_steps} steps",
            file=sys.stderr,
        )
    with ProcessPoolExecutor(len(chunks), mp_context=mp.get_context("spawn")) as pool:
        futures = [
            pool.submit(_run_family, replace(config, seeds=c), family, False) for c in chunks
        ]
        done = tqdm(
            as_completed(futures),
            total=len(futures),
            desc="poison",
            unit="process",
            disable=not progress,
        )
        results = [t for f in done for t in f.result()]
    order = {
        (s, seed): i
        for i, (s, seed) in enumerate((s, seed) for s in SETTINGS for seed in config.seeds)
    }
    return sorted(results, key=lambda t: order[(t.setting, t.seed)])


def _run_family(config: PoisonConfig, family: str, progress: bool) -> list[Trajectory]:
    student = LinearStudent if family == "linear" else layer_student(family)
    return run_experiment(config, progress=progress, student=student)


def _log(
    trajectories: list[Trajectory],
    step: int,
    loss: np.ndarray,
    model: Any,
    config: PoisonConfig,
    running: np.ndarray,
) -> None:
    ext = model.extension_loss(config.ext_length)
    moduli = model.moduli()
    top = -np.sort(-moduli, axis=-1)
    rank = effective_rank(moduli)
    for r, t in enumerate(trajectories):
        if not running[r] or (t.steps and t.steps[-1] == step):
            continue
        t.steps.append(step)
        t.train_loss.append(float(loss[r]))
        t.ext_loss.append(float(ext[r]))
        t.top_a.append(top[r].tolist())
        t.rank.append(float(rank[r]))


def result_rows(trajectories: Sequence[Trajectory]) -> list[dict[str, Any]]:
    """One tidy row per (setting, seed)."""
    return [
        {
            "setting": t.setting,
            "seed": t.seed,
            **{k: t.final[k] for k in ("train_loss", "ext_loss", "steps", "fitted", "seconds")},
        }
        for t in trajectories
    ]


def config_dict(config: PoisonConfig) -> dict[str, Any]:
    return {**asdict(config), "seeds": list(config.seeds)}


def first_seeds(count: int) -> tuple[int, ...]:
    """The paper's seeds (`SEEDS`), then the next integers, `count` in all."""
    if count < 1:
        raise ValueError(f"--seeds must be positive, got {count}")
    return (*SEEDS, *range(SEEDS[-1] + 1, SEEDS[-1] + count))[:count]


def format_results(rows: Sequence[dict[str, Any]]) -> str:
    """Training and extension loss per setting and seed, then each setting's mean."""
    lines = [f"{'setting':<10}{'seed':>6}{'train loss':>13}{'ext. loss':>13}{'steps':>9}"]
    for r in rows:
        flag = "" if r["fitted"] else "  (not fitted)"
        lines.append(
            f"{r['setting']:<10}{r['seed']:>6}{r['train_loss']:>13.3g}{r['ext_loss']:>13.3g}"
            f"{r['steps']:>9}{flag}"
        )
    for setting in dict.fromkeys(r["setting"] for r in rows):
        train = np.array([r["train_loss"] for r in rows if r["setting"] == setting])
        ext = np.array([r["ext_loss"] for r in rows if r["setting"] == setting])
        lines.append(
            f"{setting:<10}{'mean':>6}{train.mean():>13.3g}{ext.mean():>13.3g}"
            f"   (ext. loss sd {ext.std():.3g})"
        )
    return "\n".join(lines)


def save_results(
    trajectories: Sequence[Trajectory], config: PoisonConfig, student: str, out: str | Path
) -> list[Path]:
    """The rows as CSV at `out` and {config, student, runs} as JSON beside it."""
    out = Path(out)
    with atomic_file(out) as f:
        pd.DataFrame(result_rows(trajectories)).to_csv(f, index=False)
    payload = {"config": config_dict(config), "student": student}
    write_json(out.with_suffix(".json"), payload | {"runs": [vars(t) for t in trajectories]})
    return [out, out.with_suffix(".json")]


__all__ = [
    "SETTINGS",
    "LayerStudent",
    "LinearStudent",
    "PoisonConfig",
    "Trajectory",
    "config_dict",
    "effective_rank",
    "extension_loss",
    "first_seeds",
    "format_results",
    "forward",
    "init_student",
    "layer_student",
    "loss_and_grads",
    "result_rows",
    "run_experiment",
    "run_seeds_in_parallel",
    "save_results",
    "ssm_kernel",
    "teacher_output",
    "training_set",
]
