"""MGBPv2: structure and parameter counts, valid-size rules, MACs, receptive field, ONNX."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from srexport.models.base import NoiseInput, count_parameters
from srexport.models.mgbpv2 import ENTRY, VARIANTS, MGBPv2, MGBPv2Config, build


def meta_model(variant: str) -> MGBPv2:
    """Build without allocating or initialising weights (big variants are never run)."""
    with torch.device("meta"):
        return build(variant, VARIANTS[variant][1])


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("aim2019-16x", 28_170_450),  # models.md acceptance figure
        ("16x", 59_951_542),  # models.md acceptance figure
        ("2x", 21_287_075),
        ("3x", 21_287_075),
        ("4x", 46_487_099),
        ("8x", 13_321_231),
    ],
)
def test_parameter_count_is_exact(variant, expected):
    assert count_parameters(meta_model(variant)) == expected


def test_every_call_site_owns_its_down_and_up_pair():
    model = meta_model("aim2019-16x")
    cfg = model.config
    downs = [n for n, _ in model.named_children() if n.startswith("Downscale_")]
    ups = [n for n, _ in model.named_children() if n.startswith("Upscale_")]
    assert len(downs) == len(ups) == sum(cfg.mu ** (cfg.levels - k) for k in range(1, cfg.levels))
    for k in range(1, cfg.levels):  # mu^(L-k) instances for the level pair (k-1, k): 16/8/4/2
        assert sum(n.startswith(f"Downscale_{k}-") for n in downs) == cfg.mu ** (cfg.levels - k)
    # the authors' key names (github.com/pnavarre/mgbpv2, model.py) load unchanged
    keys = model.state_dict().keys()
    assert {"Analysis_0.weight", "AnalysisN_4.bias", "Synthesis.weight"} <= set(keys)
    assert "Downscale_4-0-0-0-0.weight" in keys and "Upscale_4-1-1-1-1.1.weight" in keys
    up = model.get_submodule("Upscale_1-1-1-1-1")
    assert isinstance(up[0], nn.ReLU) and up[1].in_channels == 2 * 256 + 1
    assert model.get_submodule("Analysis_0").kernel_size == (31, 31)
    assert model.get_submodule("Analysis_0").stride == (16, 16)
    # the top-level AnalysisN (1x1, 3 -> 1) exists and is counted though never read
    assert count_parameters(model.get_submodule("AnalysisN_4")) == 4


def test_entry_contract():
    assert ENTRY.name == "mgbpv2" and ENTRY.task == "sr"
    assert ENTRY.variants["aim2019-16x"] == (16,) and ENTRY.variants["3x"] == (3,)
    model = meta_model("8x")
    assert model.scale == 8 and model.input_kind == "upscaled"
    assert model.noise_inputs == (NoiseInput("noise", 3, 1, 0),)
    with pytest.raises(ValueError):
        build("8x", 4)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_shape_rules_are_the_valid_size_progression(variant):
    model = meta_model(variant)
    rules = model.shape_rules()
    cfg = model.config
    legal = set()
    for t in range(1, 40):  # p = f^(L-1)(t), f(t) = (t-1)*2 + K
        p = t
        for _ in range(cfg.levels - 1):
            p = (p - 1) * 2 + cfg.kernel
        legal.add(p)
    top = max(legal)
    assert {n for n in range(1, top + 1) if rules.is_legal(n)} == legal
    assert rules.min_size == min(legal) and rules.multiple_of == 2 ** (cfg.levels - 1)
    assert rules.output_scale == 1 and rules.halo == model.receptive_radius()
    assert "reflect" in rules.pad_rule and "crop" in rules.pad_rule
    assert rules.is_legal(model.recommended_patch())


def test_valid_padding_follows_the_authors_rule():
    model = meta_model("aim2019-16x")  # legal sizes 16t + 15
    assert model.valid_padding(256) == (271, 8, 7)  # models.md: border 8/7 at 256
    assert model.valid_padding(767) == (767, 0, 0)  # the authors' perceptual block size
    assert model.valid_padding(1000) == (1007, 4, 3)
    assert model.valid_padding(31) == (47, 8, 8)  # the authors' search starts at t = 2
    rules = model.shape_rules()
    for n in range(rules.min_size + 1, 700):
        p, before, after = model.valid_padding(n)
        assert p == rules.legal_at_least(n) and before + after == p - n
        assert before - after in (0, 1)


TINY = MGBPv2Config(3, (8, 6, 4), mu=2)  # the same code path at a fraction of the cost


def _run(model: MGBPv2, height: int, width: int) -> torch.Tensor:
    image, noise = model.example_inputs(1, height, width)
    assert noise.shape == (1, 3, height, width)
    with torch.no_grad():
        return model(image, noise)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {"8x": build("8x", 8).eval(), "tiny": MGBPv2(TINY, 4).eval()}


def test_smallest_published_variant_runs_a_legal_non_square_size(models):
    model = models["8x"]  # 13.3 M parameters, legal sizes 16t + 15
    assert model.shape_rules().is_legal(31) and model.shape_rules().is_legal(47)
    out = _run(model, 31, 47)
    assert out.shape == (1, 3, 31, 47) and torch.isfinite(out).all()


@pytest.mark.parametrize("size", [(7, 7), (11, 19), (23, 15)])
def test_legal_sizes_run_and_keep_their_size(models, size):
    model = models["tiny"]  # legal sizes 4t + 3
    assert all(model.shape_rules().is_legal(s) for s in size)
    assert _run(model, *size).shape == (1, 3, *size)


@pytest.mark.parametrize("size", [(8, 7), (12, 12)])
def test_illegal_sizes_are_refused(models, size):
    model = models["tiny"]
    assert not all(model.shape_rules().is_legal(s) for s in size)
    with pytest.raises(RuntimeError):
        _run(model, *size)


def test_noise_enters_the_graph(models):
    model = models["tiny"]
    image, noise = model.example_inputs(1, 11, 11)
    with torch.no_grad():
        a = model(image, noise)
        b = model(image, 2 * noise)
    assert not torch.allclose(a, b)


def test_macs_per_output_pixel_match_models_md():
    """models.md: 230,306 MACs per output pixel for aim2019-16x at 256x256 (valid border
    8/7 included), conv and transposed-conv layers counted with forward hooks."""
    model = meta_model("aim2019-16x")
    macs = []

    def hook(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):  # every input pixel scatters K*K*C_out
            macs.append(inputs[0].numel() * module.out_channels * k // module.groups)
        else:
            macs.append(output.numel() * module.in_channels // module.groups * k)

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.register_forward_hook(hook)
    size, before, after = model.valid_padding(256)
    x = torch.empty(1, 3, size, size, device="meta")
    out = model(x, x)
    assert out.shape == (1, 3, 271, 271)
    assert round(sum(macs) / 256**2) == 230_306


@pytest.mark.parametrize(
    "config",
    [
        MGBPv2Config(2, (3, 3), mu=3),
        MGBPv2Config(3, (2, 2, 2), mu=2),
        MGBPv2Config(3, (2, 2, 2), mu=2, kernel=5),
        MGBPv2Config(4, (2, 2, 2, 2), mu=2),
    ],
)
def test_halo_is_the_receptive_field_seen_by_autograd(config):
    """Positive weights and inputs keep every ReLU open, so the gradient of one output
    pixel is non-zero exactly on its receptive field; take the worst over one period."""
    torch.manual_seed(0)
    model = MGBPv2(config, 2).double()
    for p in model.parameters():
        nn.init.uniform_(p, 0.01, 0.1)
    rules = model.shape_rules()
    radius = rules.halo
    height = rules.legal_at_least(2 * radius + 2 ** (config.levels + 1))
    width = rules.min_size
    period = 2 ** (config.levels - 1)
    rows = range(height // 2, height // 2 + period)  # one output row per batch element
    image = torch.rand(1, 3, height, width, dtype=torch.double).expand(period, -1, -1, -1)
    noise = torch.rand(1, 3, height, width, dtype=torch.double).expand(period, -1, -1, -1)
    image, noise = image.clone().requires_grad_(), noise.clone().requires_grad_()
    out = model(image, noise)
    sum(out[b, 0, row, width // 2] for b, row in enumerate(rows)).backward()
    worst = 0
    for g in (image.grad, noise.grad):
        for b, row in enumerate(rows):
            support = (g[b].abs().sum((0, 2)) != 0).nonzero()[:, 0]
            worst = max(worst, row - support.min().item(), support.max().item() - row)
    assert worst == radius


def test_halo_of_the_published_configurations():
    assert meta_model("aim2019-16x").shape_rules().halo == 270
    assert meta_model("2x").shape_rules().halo == 64  # 32 steps of +-2 pixels


def test_onnx_export_is_dynamic_and_matches_torch(models):
    import onnxruntime as ort

    model = models["tiny"]
    names = ["image", "noise"]
    axes = {n: {0: "N", 2: f"{n}_h", 3: f"{n}_w"} for n in [*names, "output"]}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, model.example_inputs(1, 11, 11), buffer, dynamo=False,
                          opset_version=17, input_names=names, output_names=["output"],
                          dynamic_axes=axes)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for batch, height, width in [(1, 11, 11), (1, 15, 27), (2, 19, 19)]:
        inputs = model.example_inputs(batch, height, width)
        with torch.no_grad():
            expected = model(*inputs).numpy()
        got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
        assert got.shape == (batch, 3, height, width)
        assert np.abs(got - expected).max() <= 1e-4
