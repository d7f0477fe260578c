"""Input and component attributions of a classifier's true-class logit, clean and adversarial.

Everything is computed with captum (Integrated Gradients, Saliency, Layer Integrated
Gradients) on the model's logits, with the target the true label y.

Input attributions (`input_attributions`): for n samples x (n, L, C), their labels y (n,) and
adversarial examples x_adv, one attribution per time step and channel of each input:

- "ig": Integrated Gradients from the all-zeros (black) baseline. Completeness: the
  attributions of a sample sum to logit_y(x) - logit_y(0) up to captum's convergence delta
  (`InputAttribution.delta`, (n, 2): clean, adversarial), which shrinks as `n_steps` grows.
- "saliency": |∂ logit_y / ∂x| (captum's Saliency, abs=True); no delta.

Component attributions (`component_shares`): for every component of `model.components()`,
Layer Integrated Gradients at the component's exit (the module's output, or its input when the
exit site's side is "input": captum then interpolates every input of that module, and each such
module in ssmprobe's models has one) along the straight line from the clean activation
(baseline, input x) to the adversarial one (input x_adv). Captum runs the rest of the network
on x_adv and only interpolates the component's exit activation, so per sample the layer
attributions sum to

    logit_y(x_adv) - logit_y(x_adv with the component's exit patched to its clean value),

up to the convergence delta. When every path from the input to the logits goes through the
component (a cut: the block output, the SSM of a plain non-residual S4/DSS/S5/Mamba block)
that is the whole adversarial logit drop logit_y(x_adv) - logit_y(x), so `share` is 1 up to
the IG quadrature error. Where a skip connection bypasses the component (any block with
`residual=True`, Mega's gated-attention and FFN residuals) the sum is the part of the drop that
flows through the component's exit with everything else adversarial, and the share can be
anything (even negative or above 1); captum's `delta` is then mostly that bypassed remainder,
not quadrature error. In a plain chain (no residual: the bundled S4/DSS checkpoints) every
S4/DSS/S5/Mamba component is a cut and every share is 1; shares tell components apart only
where skips exist (residual blocks, Mega). `drop` is negative when the attack lowers the
true-class logit, so a component that carries the drop has a positive share.

Public API:

    input_attributions(model, x, y, x_adv, method="ig", n_steps=32) -> InputAttribution
    component_shares(model, x, y, x_adv, n_steps=32) -> (drop, [ComponentShare, ...])
    plot_input_attributions(attr, image_shape, out_path, formats=(".png", ".pdf")) -> [paths]
    attribute_checkpoint(ckpt, n=8, method="ig", split="test", attack="pgd10", eps=None,
                         data_dir=None, device=None, seed=0, n_steps=32) -> dict

All functions evaluate the model in eval mode with its parameters out of autograd and restore
every module's mode and parameter's `requires_grad` afterwards; no parameter `.grad` is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients, Saliency
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn
from tqdm.auto import tqdm

from ssmprobe.attacks import attack_config, attack_mode, parse_attack, run_attack
from ssmprobe.data import DATASETS, load_dataset
from ssmprobe.interop.reference import Reference
from ssmprobe.interop.userdata import UserData, first_samples, model_meta
from ssmprobe.io import FIGURE_FORMATS, save_figure, write_json
from ssmprobe.loading import load_model

__all__ = [
    "METHODS",
    "ComponentShare",
    "InputAttribution",
    "attribute_checkpoint",
    "component_shares",
    "input_attributions",
    "plot_input_attributions",
]

METHODS = ("ig", "saliency")
_METHOD_NAMES = {"ig": "Integrated Gradients", "saliency": "Saliency"}
_DIVERGING = "RdBu_r"


@dataclass
class InputAttribution:
    """Per-time-step input attributions of the true-class logit for n samples.

    x, x_adv, clean, adversarial: (n, L, C); y: (n,). `delta` is IG's convergence delta
    (n, 2), column 0 clean and 1 adversarial; None for saliency.
    """

    x: Tensor
    x_adv: Tensor
    y: Tensor
    clean: Tensor
    adversarial: Tensor
    method: str
    delta: Tensor | None


@dataclass
class ComponentShare:
    """A component's Layer-IG attribution of the adversarial logit drop (see the module
    docstring): `attribution` is the per-sample sum averaged over samples, `share` is
    attribution / mean drop (NaN when the drop is 0), `delta` the mean |convergence delta|."""

    name: str
    kind: str
    attribution: float
    share: float
    delta: float


def _check_batch(x: Tensor, y: Tensor, x_adv: Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must be (n, L, C), got shape {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError("need at least one sample (n >= 1)")
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv {tuple(x_adv.shape)} does not match x {tuple(x.shape)}")
    if y.shape != x.shape[:1]:
        raise ValueError(f"y must be ({x.shape[0]},), got shape {tuple(y.shape)}")


def _check_steps(n_steps: int) -> None:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def input_attributions(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    x_adv: Tensor,
    method: str = "ig",
    n_steps: int = 32,
) -> InputAttribution:
    """Attributions of logit_y for x and x_adv (see the module docstring); tensors come back
    detached on the model's device."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {METHODS}")
    _check_batch(x, y, x_adv)
    _check_steps(n_steps)
    device = _device(model)
    x, x_adv, y = x.detach().to(device), x_adv.detach().to(device), y.to(device)
    both, targets = torch.cat([x, x_adv]), torch.cat([y, y])  # one captum call for the two
    n = x.shape[0]
    delta: Tensor | None = None
    with attack_mode(model, True):
        if method == "ig":
            attr, conv = IntegratedGradients(model).attribute(
                both,
                baselines=torch.zeros_like(both),
                target=targets,
                n_steps=n_steps,
                return_convergence_delta=True,
            )
            delta = conv.detach().view(2, n).T.contiguous()
        else:
            attr = Saliency(model).attribute(both.requires_grad_(True), target=targets)
    attr = attr.detach()
    return InputAttribution(x, x_adv, y, attr[:n], attr[n:], method, delta)


def _true_logit(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return model(x).gather(1, y[:, None])[:, 0]


def component_shares(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    x_adv: Tensor,
    n_steps: int = 32,
    progress: bool = False,
) -> tuple[float, list[ComponentShare]]:
    """The mean adversarial drop logit_y(x_adv) - logit_y(x), and each component's Layer-IG
    attribution of it from clean (x) to adversarial (x_adv), in `model.components()` order
    (a progress bar per component on stderr with `progress`)."""
    _check_batch(x, y, x_adv)
    _check_steps(n_steps)
    device = _device(model)
    x, x_adv, y = x.detach().to(device), x_adv.detach().to(device), y.to(device)
    shares = []
    with attack_mode(model, True):
        with torch.no_grad():
            drop = (_true_logit(model, x_adv, y) - _true_logit(model, x, y)).mean().item()
        for comp in tqdm(model.components(), desc="components", disable=not progress):
            attr, conv = LayerIntegratedGradients(model, comp.exit.module).attribute(
                x_adv,
                baselines=x,
                target=y,
                n_steps=n_steps,
                attribute_to_layer_input=comp.exit.side == "input",
                return_convergence_delta=True,
                # a tuple output (a GRU's (output, h_n)) may have elements the model never uses
                grad_kwargs={"allow_unused": True, "materialize_grads": True},
            )
            # Of a tuple, the element whose features the component records (`Site.index`).
            part = attr[comp.exit.index] if isinstance(attr, tuple | list) else attr
            total = part.detach().flatten(1).sum(1).mean().item()
            shares.append(
                ComponentShare(
                    name=comp.name,
                    kind=comp.kind,
                    attribution=total,
                    share=total / drop if drop != 0 else math.nan,
                    delta=conv.detach().abs().mean().item(),
                )
            )
    return drop, shares


# ---------------------------------------------------------------------------------- plots


def _grid(values: Tensor, shape: tuple[int, int]) -> np.ndarray:
    """(L, C) -> (h, w), summed over channels."""
    return values.detach().float().cpu().sum(-1).reshape(shape).numpy()


def _show_input(ax: Axes, x: Tensor, shape: tuple[int, int], aspect: str) -> None:
    values = x.detach().float().cpu().clamp(0, 1)
    if values.shape[-1] == 3:  # RGB
        ax.imshow(values.reshape(*shape, 3).numpy(), aspect=aspect)
    else:
        grey = values.mean(-1).reshape(shape).numpy()
        ax.imshow(grey, cmap="gray", vmin=0.0, vmax=1.0, aspect=aspect)


def _show_signed(ax: Axes, image: np.ndarray, limit: float, aspect: str) -> Any:
    limit = limit if limit > 0 else 1.0
    return ax.imshow(image, cmap=_DIVERGING, vmin=-limit, vmax=limit, aspect=aspect)


def plot_input_attributions(
    attr: InputAttribution,
    image_shape: tuple[int, int] | None,
    out_path: str | Path,
    formats: Sequence[str] = FIGURE_FORMATS,
) -> list[Path]:
    """One row per sample: clean input, its attribution, adversarial input, its attribution
    and the perturbation x_adv - x, drawn as `image_shape` (rows, cols) images, or as a (1, L)
    strip when `image_shape` is None. Attributions share one colour scale per row, centred at
    0 (channels summed). Writes `out_path` with each suffix of `formats` (PNG and PDF by
    default); returns the paths."""
    n, length = attr.x.shape[:2]
    if n < 1:
        raise ValueError("nothing to plot: the attribution holds no samples")
    if image_shape is None:
        shape, aspect = (1, length), "auto"
    else:
        shape, aspect = (int(image_shape[0]), int(image_shape[1])), "equal"
        if shape[0] * shape[1] != length:
            raise ValueError(
                f"image_shape {image_shape} does not hold a sequence of length {length}"
            )
    name = _METHOD_NAMES.get(attr.method, attr.method)
    titles = (
        "clean input",
        f"{name} (clean)",
        "adversarial input",
        f"{name} (adversarial)",
        "perturbation x′ − x",
    )
    height = 2.0 if aspect == "equal" else 0.9
    fig = Figure(figsize=(12, 0.6 + height * n), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 5, squeeze=False)
    for i in range(n):
        row = axes[i]
        clean, adv = _grid(attr.clean[i], shape), _grid(attr.adversarial[i], shape)
        perturbation = _grid(attr.x_adv[i] - attr.x[i], shape)
        limit = float(max(np.abs(clean).max(), np.abs(adv).max()))
        _show_input(row[0], attr.x[i], shape, aspect)
        _show_signed(row[1], clean, limit, aspect)
        _show_input(row[2], attr.x_adv[i], shape, aspect)
        image = _show_signed(row[3], adv, limit, aspect)
        fig.colorbar(image, ax=row[3], shrink=0.9)
        delta = _show_signed(row[4], perturbation, float(np.abs(perturbation).max()), aspect)
        fig.colorbar(delta, ax=row[4], shrink=0.9)
        inf_norm = (attr.x_adv[i] - attr.x[i]).abs().max().item()
        row[4].set_xlabel(f"‖x′ − x‖∞ = {inf_norm:.3g}", fontsize=8)
        row[0].set_ylabel(f"#{i}  y = {int(attr.y[i])}")
        for j, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=9)
    what = "red raises it" if attr.method == "ig" else "|∂ logit / ∂x|"
    fig.suptitle(f"{name} attributions of the true-class logit ({what})")
    return save_figure(fig, Path(out_path).with_suffix(""), formats)


# ---------------------------------------------------------------------------------- checkpoints


def attribute_checkpoint(
    ckpt: str | Path | nn.Module,
    n: int = 8,
    method: str = "ig",
    split: str = "test",
    attack: str = "pgd10",
    eps: float | None = None,
    data_dir: str | Path | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    n_steps: int = 32,
    reference: Reference | None = None,
    progress: bool = False,
    data: UserData | None = None,
) -> dict[str, Any]:
    """Input and component attributions of a checkpoint on the first `n` samples of `split`
    (or of a model in memory, `ssmprobe.wrap`'s, on the first `n` of its `data`).

    Adversarial examples come from `attack` with ℓ∞ budget `eps`, else the run's training
    eps (and then its alpha too), else the dataset's preset, as
    `evaluation.evaluate.evaluate` chooses them; random starts are drawn from a
    generator seeded with `seed`. Returns
    {"inputs": InputAttribution, "drop": float, "components": [ComponentShare, ...],
    "meta": {...}, "image_shape": (h, w)}.
    With `reference`, `ckpt` is a state dict of the paper's reference code (`Reference`).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {METHODS}")
    _check_steps(n_steps)
    if isinstance(ckpt, nn.Module):  # a model in memory (`ssmprobe.wrap`'s) and its data
        if data is None:
            raise ValueError("a model needs data=: (x, y) tensors, a Dataset or a file")
        model, meta = model_meta(ckpt, device)
        config = attack_config(attack, meta, eps)
        x, y = first_samples(model, data, n)
    else:
        parse_attack(attack)  # checks the spec before anything is loaded
        model = load_model(ckpt, device, reference)
        meta = model.meta
        config = attack_config(attack, meta, eps)
        x, y = load_dataset(meta["dataset"], split, data_dir).head(n)[:]
    dataset = meta["dataset"]
    dev = _device(model)
    x, y = x.to(dev), y.to(dev)
    generator = torch.Generator(device=dev).manual_seed(seed)
    x_adv = run_attack(model, x, y, config, generator=generator, seed=seed)
    inputs = input_attributions(model, x, y, x_adv, method=method, n_steps=n_steps)
    drop, components = component_shares(model, x, y, x_adv, n_steps=n_steps, progress=progress)
    with attack_mode(model, True), torch.no_grad():
        pred_clean, pred_adv = model(x).argmax(-1), model(x_adv).argmax(-1)
    size = DATASETS[dataset].image_size if dataset in DATASETS else (1, x.shape[1])
    image_shape = size if math.prod(size) == x.shape[1] else (1, x.shape[1])
    record = {
        "checkpoint": meta["model"] if isinstance(ckpt, nn.Module) else str(ckpt),
        "file": meta.get("file"),
        "dataset": dataset,
        "model": meta.get("config", {}).get("model", meta.get("model")),
        "train_method": meta.get("method"),
        "split": split,
        "n": len(y),
        "attack": config.label,
        "eps": config.eps,
        "alpha": config.alpha,
        "method": method,
        "n_steps": n_steps,
        "seed": seed,
        "labels": y.tolist(),
        "pred_clean": pred_clean.tolist(),
        "pred_adv": pred_adv.tolist(),
        "clean_acc": (pred_clean == y).float().mean().item(),
        "adv_acc": (pred_adv == y).float().mean().item(),
    }
    return {
        "inputs": inputs,
        "drop": drop,
        "components": components,
        "meta": record,
        "image_shape": image_shape,
    }


def save_attribution(
    result: dict[str, Any], out_dir: str | Path, formats: Sequence[str] = FIGURE_FORMATS
) -> list[Path]:
    """The figure of `attribute_checkpoint`'s result, in each of `formats`, and a JSON of its
    numbers, as `out_dir/attributions_<checkpoint>_<method>.png/.pdf/.json`; returns the
    paths."""
    meta = result["meta"]
    stem = Path(out_dir) / f"attributions_{Path(meta['checkpoint']).stem}_{meta['method']}"
    paths = plot_input_attributions(result["inputs"], result["image_shape"], f"{stem}.png", formats)
    shares = [vars(c) for c in result["components"]]
    write_json(f"{stem}.json", {"meta": meta, "drop": result["drop"], "components": shares})
    return [*paths, Path(f"{stem}.json")]


def format_attribution(result: dict[str, Any]) -> str:
    """Accuracies, the logit drop, IG's completeness and each component's share, as text."""
    meta, inputs = result["meta"], result["inputs"]
    lines = [
        f"{meta['checkpoint']}: {meta['n']} {meta['split']} samples, {meta['attack']} at eps "
        f"{meta['eps']:g}: clean acc {100 * meta['clean_acc']:.1f}%, adversarial "
        f"{100 * meta['adv_acc']:.1f}%, mean true-class logit drop {result['drop']:.3f}"
    ]
    if inputs.delta is not None:
        lines.append(f"IG completeness: max |delta| {inputs.delta.abs().max().item():.2e}")
    head = ("component", "kind", "attribution", "share %", "|delta|")
    lines.append("  {:<22}{:<11}{:>12}{:>10}{:>10}".format(*head))
    lines += [
        f"  {c.name:<22}{c.kind:<11}{c.attribution:>12.4f}{100 * c.share:>10.1f}{c.delta:>10.2e}"
        for c in result["components"]
    ]
    return "\n".join(lines)
