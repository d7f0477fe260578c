"""Importing the paper reference code's state dicts: forward, S4 kernel, eigenvalues, errors."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ssmprobe.checkpoint import CheckpointError
from ssmprobe.cli import main
from ssmprobe.interop.reference import ADS_FORM_KEYS, ads_form, load_reference
from ssmprobe.loading import load_model
from ssmprobe.models.ads import FORMS

D, HALF, CIN, SIDE, LAYERS = 6, 4, 3, 4, 2
LS = SIDE * SIDE


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float32)


def classifier_head(cin: int = CIN) -> dict[str, torch.Tensor]:
    """The keys around the layers: input, post_norm, output."""
    return {
        "input.weight": _randn(D, cin),
        "input.bias": _randn(D),
        "post_norm.weight": 1 + 0.1 * _randn(D),
        "post_norm.bias": 0.1 * _randn(D),
        "output.weight": _randn(10, D),
        "output.bias": _randn(10),
    }


def ads_keys(prefix: str, form: str) -> dict[str, torch.Tensor]:
    """One layer's AdS under `prefix`: the paper's code's bias-free `scale` (paper) or the
    Jacobian follow-up's `scale` and `bias` with biases (jac)."""
    state = {f"{prefix}.scale.weight": _randn(D, D) / math.sqrt(D)}
    if form == "jac":
        state[f"{prefix}.scale.bias"] = 0.1 * _randn(D)
        state[f"{prefix}.bias.weight"] = _randn(D, D) / math.sqrt(D)
        state[f"{prefix}.bias.bias"] = 0.1 * _randn(D)
    return state


def ads_forward(s: dict, prefix: str, y: torch.Tensor, act) -> torch.Tensor:
    """σ(W y) ⊙ y, or σ(W_s y + b_s) ⊙ y + σ(W_b y + b_b) when the file has the bias map."""
    scale = y @ s[f"{prefix}.scale.weight"].T
    if f"{prefix}.bias.weight" not in s:
        return act(scale) * y
    shift = y @ s[f"{prefix}.bias.weight"].T + s[f"{prefix}.bias.bias"]
    return act(scale + s[f"{prefix}.scale.bias"]) * y + act(shift)


def s4_ads(form: str) -> dict[str, torch.Tensor]:
    """Every layer's AdS of a reference S4 in `form`."""
    layers = (ads_keys(f"mapping_layers.{i}.adss", form) for i in range(LAYERS))
    return {k: v for layer in layers for k, v in layer.items()}


def s4_state(ads: str | None, cin: int = CIN) -> dict[str, torch.Tensor]:
    """A reference S4 classifier's state dict; `ads` is the AdS form (None: no AdS)."""
    torch.manual_seed(0)
    state = classifier_head(cin)
    for i in range(LAYERS):
        pre = f"mapping_layers.{i}."
        kern = pre + "kernel.kernel."
        state |= {
            pre + "D": _randn(1, D),
            pre + "output_linear.weight": _randn(D, D) / math.sqrt(D),
            pre + "output_linear.bias": 0.1 * _randn(D),
            kern + "log_dt": math.log(0.05) + 0.5 * _randn(D),
            kern + "w_imag": math.pi * torch.arange(HALF, dtype=torch.float32)[None] + 0.3,
            kern + "log_w_real": math.log(0.5) + 0.2 * _randn(1, HALF),
            kern + "B": _randn(1, 1, HALF, 2) / 2,
            kern + "P": _randn(1, 1, HALF, 2) / 2,
            kern + "C": _randn(1, D, HALF, 2) / 2,
            kern + "L": torch.tensor(LS),
            f"norms.{i}.weight": 1 + 0.1 * _randn(D),
            f"norms.{i}.bias": 0.1 * _randn(D),
        }
        if ads:
            state |= ads_keys(pre + "adss", ads)
    return state


def full_system(state: dict, i: int) -> tuple[torch.Tensor, ...]:
    """Λ, p, B, C̃ completed with their conjugates (N = 2·HALF), Δ per channel, float64."""
    kern = f"mapping_layers.{i}.kernel.kernel."
    lam = torch.complex(
        -torch.exp(state[kern + "log_w_real"][0].double()), state[kern + "w_imag"][0].double()
    )
    p = torch.view_as_complex(state[kern + "P"].double())[0, 0]
    b = torch.view_as_complex(state[kern + "B"].double())[0, 0]
    c = torch.view_as_complex(state[kern + "C"].double())[0]
    both = lambda v: torch.cat([v, v.conj()], dim=-1)  # noqa: E731
    return both(lam), both(p), both(b), both(c), torch.exp(state[kern + "log_dt"].double())


def reference_kernel(state: dict, i: int) -> torch.Tensor:
    """The reference code's algorithm: Cauchy sums over both halves at z = (2/Δ)(1-ω)/(1+ω),
    the rank-1 Woodbury correction, the bilinear factor 2/(1+ω), inverse FFT of length L_s."""
    lam, p, b, c, dt = full_system(state, i)
    omega = torch.exp(-2j * math.pi * torch.arange(LS, dtype=torch.float64) / LS)
    z = (2 / dt)[:, None] * ((1 - omega) / (1 + omega))  # (D, L)
    r = 1 / (z[:, :, None] - lam)  # (D, L, N)
    k_cb = (c[:, None, :] * b * r).sum(-1)
    k_cp = (c[:, None, :] * p * r).sum(-1)
    k_qb = (p.conj() * b * r).sum(-1)
    k_qp = (p.conj() * p * r).sum(-1)
    k_hat = 2 / (1 + omega) * (k_cb - k_cp * k_qb / (1 + k_qp))
    return torch.fft.ifft(k_hat, dim=-1).real


def reference_forward(state: dict, image: torch.Tensor, act=torch.relu) -> torch.Tensor:
    s = {k: v.double() for k, v in state.items()}
    x = image.double().reshape(image.shape[0], LS, CIN)  # image.view(B, H·W, C)
    x = F.layer_norm(
        x @ s["input.weight"].T + s["input.bias"], (D,), s["post_norm.weight"], s["post_norm.bias"]
    )
    for i in range(LAYERS):
        pre = f"mapping_layers.{i}."
        k = reference_kernel(state, i)  # (D, L)
        y = (
            torch.stack(
                [sum(k[:, t - j] * x[:, j] for j in range(t + 1)) for t in range(LS)], dim=1
            )
            + s[pre + "D"][0] * x
        )
        if pre + "adss.scale.weight" in s:
            y = ads_forward(s, pre + "adss", y, act)
        y = y @ s[pre + "output_linear.weight"].T + s[pre + "output_linear.bias"]
        x = F.layer_norm(x + y, (D,), s[f"norms.{i}.weight"], s[f"norms.{i}.bias"])
    return x.mean(dim=1) @ s["output.weight"].T + s["output.bias"]


def save(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


@pytest.mark.parametrize("ads", [None, "paper", "jac"])
def test_s4_import_reproduces_the_reference_forward(tmp_path: Path, ads: str | None) -> None:
    state = s4_state(ads)
    path = save(state, tmp_path / "s4.pt")
    model, meta = load_reference(path, "s4", "cifar10", ads="relu" if ads else None)
    assert meta["config"]["input_order"] == "view" and meta["config"]["d_state"] == 2 * HALF
    assert meta["config"]["ads_form"] == (ads or "paper") and meta["source"]["ads_form"] == ads
    image = torch.rand(3, CIN, SIDE, SIDE, dtype=torch.float64)
    pixels = image.reshape(3, CIN, LS).transpose(1, 2)  # ssmprobe's input order
    with torch.no_grad():
        got = model.double()(pixels)
    torch.testing.assert_close(got, reference_forward(state, image), rtol=1e-6, atol=1e-6)


def test_s4_import_kernel_and_eigenvalues(tmp_path: Path) -> None:
    state = s4_state(None)
    model, _ = load_reference(save(state, tmp_path / "s4.pt"), "s4", "cifar10")
    layer = model.double().ssm_layers()["layers.1.ssm"]
    with torch.no_grad():
        kernel = layer.impulse_response(LS)
        eig = layer.discrete().eigvals
    torch.testing.assert_close(kernel, reference_kernel(state, 1), rtol=1e-6, atol=1e-8)
    lam, p, _, _, dt = full_system(state, 1)
    a = torch.diag(lam) - p[:, None] * p.conj()[None, :]
    eye = torch.eye(2 * HALF, dtype=torch.complex128)
    for h in (0, D - 1):
        a_bar = torch.linalg.solve(eye - dt[h] / 2 * a, eye + dt[h] / 2 * a)
        expected = torch.linalg.eigvals(a_bar)
        found = eig[h]
        distance = (expected[:, None] - found[None, :]).abs().min(dim=1).values
        assert distance.max() < 1e-8


def mamba_state(ads: str | None, cin: int = CIN) -> dict[str, torch.Tensor]:
    """A reference Mamba classifier's state dict; `ads` is the AdS form (None: no AdS)."""
    torch.manual_seed(1)
    inner, n, rank, kernel = 2 * D, 5, 2, 4
    state = classifier_head(cin)
    for i in range(LAYERS):
        pre = f"mapping_layers.{i}."
        state |= {
            pre + "A_log": torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(inner, 1),
            pre + "D": _randn(inner),
            pre + "in_proj.weight": _randn(2 * inner, D) / math.sqrt(D),
            pre + "conv1d.weight": _randn(inner, 1, kernel) / 2,
            pre + "conv1d.bias": 0.1 * _randn(inner),
            pre + "x_proj.weight": _randn(rank + 2 * n, inner) / math.sqrt(inner),
            pre + "dt_proj.weight": _randn(inner, rank) / math.sqrt(rank),
            pre + "dt_proj.bias": math.log(math.expm1(0.05)) + 0.1 * _randn(inner),
            pre + "out_proj.weight": _randn(D, inner) / math.sqrt(inner),
            f"norms.{i}.weight": 1 + 0.1 * _randn(D),
            f"norms.{i}.bias": 0.1 * _randn(D),
        }
        if ads:
            state |= ads_keys(f"adss_layers.{i}", ads)
    return state


def mamba_forward(state: dict, image: torch.Tensor, act=torch.tanh) -> torch.Tensor:
    s = {k: v.double() for k, v in state.items()}
    x = image.double().reshape(image.shape[0], LS, CIN)
    x = F.layer_norm(
        x @ s["input.weight"].T + s["input.bias"], (D,), s["post_norm.weight"], s["post_norm.bias"]
    )
    for i in range(LAYERS):
        pre = f"mapping_layers.{i}."
        a = -torch.exp(s[pre + "A_log"])
        inner, n = a.shape
        u, z = (x @ s[pre + "in_proj.weight"].T).chunk(2, dim=-1)
        w = s[pre + "conv1d.weight"][:, 0]  # (inner, K)
        taps = w.shape[-1]
        padded = F.pad(u.transpose(1, 2), (taps - 1, 0))
        u = F.silu(F.conv1d(padded, w[:, None, :], s[pre + "conv1d.bias"], groups=inner)).transpose(
            1, 2
        )
        rank = s[pre + "dt_proj.weight"].shape[1]
        dt, bb, cc = (u @ s[pre + "x_proj.weight"].T).split([rank, n, n], dim=-1)
        dt = F.softplus(dt @ s[pre + "dt_proj.weight"].T + s[pre + "dt_proj.bias"])
        h = torch.zeros(x.shape[0], inner, n, dtype=torch.float64)
        ys = []
        for t in range(LS):
            h = (
                torch.exp(dt[:, t, :, None] * a) * h
                + dt[:, t, :, None] * bb[:, t, None, :] * u[:, t, :, None]
            )
            ys.append((h * cc[:, t, None, :]).sum(-1) + s[pre + "D"] * u[:, t])
        y = torch.stack(ys, dim=1) * F.silu(z)
        y = x + y @ s[pre + "out_proj.weight"].T
        if f"adss_layers.{i}.scale.weight" in s:
            y = ads_forward(s, f"adss_layers.{i}", y, act)
        x = F.layer_norm(y, (D,), s[f"norms.{i}.weight"], s[f"norms.{i}.bias"])
    return x.mean(dim=1) @ s["output.weight"].T + s["output.bias"]


@pytest.mark.parametrize("ads", [None, "paper", "jac"])
def test_mamba_import_reproduces_the_reference_forward(tmp_path: Path, ads: str | None) -> None:
    state = mamba_state(ads)
    path = save(state, tmp_path / "mamba.pt")
    model, meta = load_reference(path, "mamba", "cifar10", ads="tanh" if ads else None)
    assert meta["config"]["dt_rank"] == 2 and meta["config"]["d_state"] == 5
    assert meta["config"]["ads_form"] == (ads or "paper") and meta["source"]["ads_form"] == ads
    image = torch.rand(2, CIN, SIDE, SIDE, dtype=torch.float64)
    pixels = image.reshape(2, CIN, LS).transpose(1, 2)
    with torch.no_grad():
        got = model.double()(pixels)
    torch.testing.assert_close(got, mamba_forward(state, image), rtol=1e-8, atol=1e-8)
    names = [c.name for c in model.components()]
    assert "layers.0.ssm" in names and ("layers.0.ads" in names) == bool(ads)


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s.pop("mapping_layers.1.kernel.kernel.B"),
            "missing key 'mapping_layers.1.kernel.kernel.B'",
        ),
        (
            lambda s: s.__setitem__("mapping_layers.0.output_linear.weight", torch.zeros(D, D + 1)),
            f"expected shape ({D}, {D}), found ({D}, {D + 1})",
        ),
        (lambda s: s.update(s4_ads("paper")), "AdS weights (paper form): say which activation"),
    ],
)
def test_import_errors_name_the_key(tmp_path: Path, change, message: str) -> None:
    state = s4_state(None)
    change(state)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_reference(save(state, tmp_path / "bad.pt"), "s4", "cifar10")


@pytest.mark.parametrize(("model", "form"), [(m, f) for m in ("s4", "mamba") for f in FORMS])
def test_the_ads_form_comes_from_the_keys(model: str, form: str) -> None:
    state = (s4_state if model == "s4" else mamba_state)(form)
    assert ads_form(state, model, list(range(LAYERS))) == form
    assert ads_form((s4_state if model == "s4" else mamba_state)(None), model, [0, 1]) is None


@pytest.mark.parametrize(("form", "key"), [("paper", "scale.weight"), ("jac", "bias.bias")])
def test_an_ads_tensor_of_the_wrong_shape_is_named(tmp_path: Path, form: str, key: str) -> None:
    state = s4_state(form)
    good = tuple(state[f"mapping_layers.1.adss.{key}"].shape)
    state[f"mapping_layers.1.adss.{key}"] = _randn(*good[:-1], D + 1)
    bad = (*good[:-1], D + 1)
    message = f"key 'mapping_layers.1.adss.{key}': expected shape {good}, found {bad}"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_reference(save(state, tmp_path / "bad.pt"), "s4", "cifar10", ads="relu")


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.pop("mapping_layers.1.adss.scale.weight"),  # one layer without AdS
        lambda s: s.pop("mapping_layers.0.adss.bias.bias"),  # a bias map without its bias
        lambda s: s.pop("mapping_layers.0.adss.scale.bias"),  # half jac, half paper
        lambda s: s.__setitem__("mapping_layers.0.adss.W.weight", torch.zeros(D, D)),
        lambda s: s.__setitem__("adss_layers.0.scale.weight", torch.zeros(D, D)),  # Mamba's
    ],
)
def test_other_ads_keys_are_refused_by_name(tmp_path: Path, change) -> None:
    state = s4_state("jac")
    change(state)
    expected = sorted(k for k in state if ".adss." in k or k.startswith("adss_layers."))
    with pytest.raises(CheckpointError, match="are neither form") as err:
        load_reference(save(state, tmp_path / "bad.pt"), "s4", "cifar10", ads="relu")
    assert str(expected) in str(err.value)


def test_a_pickle_carrying_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"input.weight": _Boom()}))
    with pytest.raises(CheckpointError, match="Nothing from it was executed"):
        load_reference(path, "s4", "cifar10")


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ("paper", "AdS form: paper (scale.weight, no bias)"),
        ("jac", "AdS form: jac (scale.{weight,bias} and bias.{weight,bias})"),
    ],
)
def test_import_writes_a_native_checkpoint_with_provenance(
    tmp_path: Path, capsys, form: str, says: str
) -> None:
    src = save(s4_state(form, cin=1), tmp_path / "their_s4.pt")
    out = tmp_path / "s4.pt"
    args = ["import", str(src), "--model", "s4", "--dataset", "digits", "--ads", "relu"]
    assert main([*args, "--out", str(out)]) == 0
    assert says in capsys.readouterr().out.splitlines()
    native = load_model(out)
    meta = native.meta
    converted, _ = load_reference(src, "s4", "digits", ads="relu")
    x = torch.rand(2, 64, 1)
    with torch.no_grad():
        torch.testing.assert_close(native(x), converted(x))
    assert meta["dataset"] == "digits" and meta["method"] == "reference"
    assert meta["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["source"]["ads"] == "relu" and meta["config"]["ads_form"] == form
    assert meta["source"]["ads_form"] == form


def test_commands_analyse_a_reference_state_dict(tmp_path: Path) -> None:
    src = save(mamba_state(None, cin=1), tmp_path / "their_mamba.pt")
    ref = ["--from", "reference", "--dataset", "digits"]
    common = [*ref, "--model", "mamba", "--ckpt", str(src)]
    evaluate = ["--attack", "pgd10", "--n", "8", "--quiet"]
    native = tmp_path / "native.pt"
    imported = ["import", str(src), "--model", "mamba", "--dataset", "digits", "--out", str(native)]
    assert main(["eval", *common, *evaluate]) == 0
    assert main(imported) == 0
    assert main(["eval", "--ckpt", str(native), *evaluate]) == 0
    record = json.loads((tmp_path / "eval_their_mamba.json").read_text())
    assert record["eps"] == 0.1 and record["n"] == 8  # digits' preset budget
    # the model converted in memory and its imported checkpoint score alike
    assert record["results"] == json.loads((tmp_path / "eval_native.json").read_text())["results"]

    csv = tmp_path / "disc.csv"
    disc = ["discrepancy", *common, "--split", "test", "--n", "4", "--quiet", "--out", str(csv)]
    assert main(disc) == 0
    assert "layers.0.ssm" in csv.read_text()
    assert main(["attribute", *common, "--n", "2", "--ig-steps", "4", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "attributions_their_mamba_ig.png").exists()

    out = ["--channels", "0-1", "--out", str(tmp_path / "bounds.csv")]
    assert main(["bounds", "--model", "mamba", *ref, "--ckpt", str(src), "--n", "4", *out]) == 0
    assert len((tmp_path / "bounds.csv").read_text().splitlines()) == 1 + LAYERS * 2
    s4 = save(s4_state(None, cin=1), tmp_path / "their_s4.pt")
    assert main(["bounds", "--model", "s4", *ref, "--ckpt", str(s4), "--L", "16", *out]) == 0
    assert len((tmp_path / "bounds.csv").read_text().splitlines()) == 1 + LAYERS * 2


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["eval", "--ckpt", "X", "--from", "reference", "--model", "s4"], "needs --dataset", 2),
        (["eval", "--ckpt", "X", "--dataset", "digits"], "add --from reference", 2),
        (["bounds", "--model", "s4", "--from", "reference", "--dataset", "digits"], "--ckpt", 2),
        (
            ["bounds", "--ckpt", "X", "--from", "reference", "--dataset", "digits"],
            "needs --model",
            2,
        ),
        (
            ["import", "X", "--model", "s4", "--dataset", "digits", "--out", "X"],
            "is also an input",  # checked before anything is read
            2,
        ),
        (  # the file is read and does not fit: the work failed
            ["eval", "--ckpt", "X", "--from", "reference", "--model", "s4", "--dataset", "digits"],
            "3 input channels",
            1,
        ),
    ],
)
def test_reference_flags_give_clear_errors(
    tmp_path: Path, capsys, args: list[str], message: str, code: int
) -> None:
    save(s4_state(None), tmp_path / "X")  # CIFAR-shaped: 3 input channels
    args = [str(tmp_path / "X") if a == "X" else a for a in args]
    assert main(args) == code
    assert message in capsys.readouterr().err


def test_a_missing_reference_file_is_named_without_the_bundle(tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "theirs.pt")
    out = str(tmp_path / "out.pt")
    args = ["import", missing, "--model", "s4", "--dataset", "digits", "--out", out]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"reference state dict not found: {missing} (no such file)" in err
    assert "bundled" not in err  # the bundle holds ssmprobe checkpoints, not their state dicts


@pytest.mark.parametrize("ads", [None, "paper"])
def test_arch_reference_is_the_importers_model(tmp_path: Path, ads: str | None) -> None:
    """`train --arch reference` builds the importer's architecture, AdS in the paper form of
    the paper's code: the imported weights load into it unchanged and give the reference
    forward."""
    from ssmprobe.models import build_model, model_config
    from ssmprobe.models.registry import ARCHS

    state = mamba_state(ads)
    imported, meta = load_reference(
        save(state, tmp_path / "m.pt"), "mamba", "cifar10", "tanh" if ads else None
    )
    sizes = {k: meta["config"][k] for k in ("d_model", "n_layers", "d_state", "dt_rank", "d_input")}
    built = build_model(
        model_config("mamba", "cifar10", **ARCHS["reference"], **sizes, ads="tanh" if ads else None)
    )
    built.load_state_dict(imported.state_dict())  # strict: the same modules, the same shapes
    image = torch.rand(2, CIN, SIDE, SIDE, dtype=torch.float64)
    pixels = image.reshape(2, CIN, LS).transpose(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(
            built.double()(pixels), mamba_forward(state, image), rtol=1e-8, atol=1e-8
        )


def test_train_arch_defaults_and_config(tmp_path: Path) -> None:
    tiny = "--d-model 8 --n-layers 1 --d-state 4 --epochs 1 --steps 1 --quiet --batch-size 256"
    tiny += " --train-eval-size 16 --test-eval-size 16"
    command = f"train --model s4 --arch reference --augment crop-flip {tiny} --out {tmp_path}"
    assert main(command.split()) == 0
    config = json.loads((tmp_path / "s4_st_digits" / "config.json").read_text())
    assert {k: config["model"][k] for k in ("layout", "input_order", "residual", "ads_form")} == {
        "layout": "reference",
        "input_order": "view",
        "residual": True,
        "ads_form": "paper",
    }
    assert config["train"]["augment"] == "crop-flip"
    assert main(f"train --model s4 {tiny} --out {tmp_path} --name plain".split()) == 0
    plain = json.loads((tmp_path / "plain" / "config.json").read_text())["model"]
    assert (plain["layout"], plain["residual"]) == ("table3", False)  # digits: Table 3


@pytest.mark.parametrize(
    ("model", "ads", "form"),
    [
        ("mamba", None, None),
        ("mamba", "sigmoid", None),  # --arch reference: the paper form
        ("s4", "relu", None),
        ("s4", "tanh", "jac"),
        ("mamba", "relu", "jac"),
    ],
)
def test_a_trained_reference_model_exports_to_the_reference_names(
    tmp_path: Path, model: str, ads: str | None, form: str | None
) -> None:
    """Round trip: train --arch reference, export to the reference code's key names (AdS in the
    model's form), import."""
    from ssmprobe.checkpoint import load_checkpoint
    from ssmprobe.interop.reference import export_reference

    tiny = "--d-model 8 --n-layers 2 --d-state 4 --epochs 1 --steps 1 --quiet --batch-size 256"
    tiny += " --train-eval-size 16 --test-eval-size 16 --arch reference --method st"
    command = f"train --model {model} {tiny} --out {tmp_path} --name m"
    ads_args = [*(["--ads", ads] if ads else []), *(["--ads-form", form] if form else [])]
    assert main([*command.split(), *ads_args]) == 0
    ckpt = load_checkpoint(tmp_path / "m" / "last.pt")
    assert ckpt.config["shared_nplr"] and ckpt.config["ads_form"] == (form or "paper")
    out = tmp_path / "exported.pt"
    assert main(["export", "--ckpt", str(tmp_path / "m" / "last.pt"), "--out", str(out)]) == 0
    exported = torch.load(out, weights_only=True)
    assert exported.keys() == export_reference(ckpt.config, ckpt.state_dict, 64).keys()
    assert "mapping_layers.1.D" in exported and "post_norm.weight" in exported
    ads_found = {k for k in exported if ".adss." in k or k.startswith("adss_layers.")}
    prefix = "mapping_layers.{}.adss" if model == "s4" else "adss_layers.{}"
    suffixes = ("scale.weight",) if form is None else ADS_FORM_KEYS["jac"]
    expected = {f"{prefix.format(i)}.{s}" for i in range(2) for s in suffixes} if ads else set()
    assert ads_found == expected  # paper: scale.weight alone, no bias; jac: both biased maps
    trained = load_model(tmp_path / "m" / "last.pt")
    back, meta = load_reference(out, model, "digits", ads)
    assert meta["source"]["ads_form"] == ((form or "paper") if ads else None)
    x = torch.rand(3, 64, 1)
    with torch.no_grad():
        torch.testing.assert_close(back(x), trained(x), rtol=1e-4, atol=1e-5)
    per_channel = {**ckpt.config, "shared_nplr": False}
    if model == "s4":
        with pytest.raises(ValueError, match="per channel"):
            export_reference(per_channel, ckpt.state_dict, 64)
