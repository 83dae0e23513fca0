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
    assert model.noise_inputs == (
        NoiseInput("noise", 3, 1, 0),
        NoiseInput("noise_amplitude", 1, 1, 0, kind="amplitude"),
    )
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
    assert rules.pad_align == "split"  # the authors' init_border: ceil(d/2) before
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
    image, noise, amplitude = model.example_inputs(1, height, width)
    assert noise.shape == (1, 3, height, width) and amplitude.shape == (1, 1, height, width)
    with torch.no_grad():
        return model(image, noise, amplitude)


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
    image, noise, amplitude = model.example_inputs(1, 11, 11)
    with torch.no_grad():
        a = model(image, noise, amplitude)
        b = model(image, 2 * noise, amplitude)
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
    out = model(x, x, x[:, :1])
    assert out.shape == (1, 3, 271, 271)
    # AnalysisN_k runs as a functional conv (bias scaled by W), unseen by module hooks:
    # out size per level (271 - a_k) / s_k + 1, 3 * a_k^2 MACs per output value
    for k in range(5):
        s = 2 ** (4 - k)
        a = 2 * (s - 1) + 1
        macs.append(((271 - a) // s + 1) ** 2 * 3 * a * a)
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
    out = model(image, noise, torch.ones(period, 1, height, width, dtype=torch.double))
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
    names = ["image", "noise", "noise_amplitude"]
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


# ---- the authors' definitions, re-derived here from their model.py (not the code under test)
def authors_wcycle(state: dict, config: MGBPv2Config, image, z, w: float):
    """github.com/pnavarre/mgbpv2 model.py, whole-image forward on a legal size:
    x_k = Analysis_k(X), n_k = W * AnalysisN_k(Z), one W-cycle, Synthesis. Labels are
    `level-step_0-...-step_{L-2}` over a step array the recursion updates in place."""
    import torch.nn.functional as F

    top = config.levels - 1
    stride = [2 ** (top - k) for k in range(config.levels)]
    x = [F.conv2d(image, state[f"Analysis_{k}.weight"], state[f"Analysis_{k}.bias"], stride[k])
         for k in range(config.levels)]
    n = [w * F.conv2d(z, state[f"AnalysisN_{k}.weight"], state[f"AnalysisN_{k}.bias"], stride[k])
         for k in range(config.levels)]
    step = [0] * top

    def bp(h, level):
        if level == 0:
            return h
        for i in range(config.mu):
            step[level - 1] = i
            label = f"{level}-" + "-".join(map(str, step))
            low = F.conv2d(h, state[f"Downscale_{label}.weight"], state[f"Downscale_{label}.bias"], 2)
            cat = torch.cat([x[level - 1], bp(low, level - 1), n[level - 1]], 1)
            h = h + F.conv_transpose2d(torch.relu(cat), state[f"Upscale_{label}.1.weight"],
                                       state[f"Upscale_{label}.1.bias"], 2)
        return h

    return F.conv2d(bp(x[top], top), state["Synthesis.weight"], state["Synthesis.bias"])


def _randomised(model):
    """Random weights and biases of a visible size (biases are what W = 0 must silence)."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


@pytest.fixture(scope="module")
def tiny64():
    torch.manual_seed(0)
    return _randomised(MGBPv2(TINY, 4).double().eval())


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0])
def test_noise_is_w_times_analysis_n_of_z(tiny64, w):
    """Graph inputs as the runtime feeds them (W Z and a map of W) give the authors'
    n_k = W * AnalysisN_k(Z) for every W, not AnalysisN_k(W Z)."""
    gen = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 15, 19, generator=gen, dtype=torch.double)
    z = torch.randn(2, 3, 15, 19, generator=gen, dtype=torch.double)
    state = tiny64.state_dict()
    with torch.no_grad():
        got = tiny64(image, w * z, torch.full((2, 1, 15, 19), w, dtype=torch.double))
        expected = authors_wcycle(state, TINY, image, z, w)
        leaky = authors_wcycle({**state}, TINY, image, w * z, 1.0)  # AnalysisN_k(W Z)
    assert (got - expected).abs().max() <= 1e-10
    if w != 1.0:  # the old reading differs by (W - 1) times the AnalysisN bias
        assert (got - leaky).abs().max() > 1e-3


def test_zero_amplitude_is_exactly_deterministic(tiny64):
    """W = 0 (zeros for the noise, as the runtime sends them): the same output bit for bit
    as the W-cycle with all noise features 0, whatever the AnalysisN biases."""
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 11, 11, generator=gen, dtype=torch.double)
    zeros = torch.zeros(1, 3, 11, 11, dtype=torch.double)
    state = {k: (torch.zeros_like(v) if k.startswith("AnalysisN") else v) for k, v in tiny64.state_dict().items()}
    assert any(v.abs().sum() > 0 for k, v in tiny64.state_dict().items() if k.startswith("AnalysisN"))
    with torch.no_grad():
        got = tiny64(image, zeros, torch.zeros(1, 1, 11, 11, dtype=torch.double))
        expected = authors_wcycle(state, TINY, image, zeros, 1.0)
    assert torch.equal(got, expected)


def _authors_state(model) -> dict:
    """A checkpoint as the authors' MGBPv2 saves it: Synthesis registered twice."""
    state = dict(model.state_dict())
    state.update({"synthesis." + k[len("Synthesis."):]: v.clone() for k, v in state.items()
                  if k.startswith("Synthesis.")})
    return state


def test_authors_checkpoint_with_both_synthesis_keys_loads(tmp_path):
    from srexport.models.checkpoint import load_checkpoint

    source = _randomised(MGBPv2(TINY, 4))
    path = tmp_path / "authors.model"
    torch.save(_authors_state(source), path)
    assert {"synthesis.weight", "Synthesis.weight"} <= set(torch.load(path, weights_only=True))
    loaded = load_checkpoint(MGBPv2(TINY, 4), path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_checkpoint_whose_synthesis_aliases_differ_is_refused(tmp_path):
    from srexport.errors import CheckpointError
    from srexport.models.checkpoint import load_checkpoint

    state = _authors_state(MGBPv2(TINY, 4))
    state["synthesis.bias"] = state["synthesis.bias"] + 1.0
    path = tmp_path / "bad.model"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(MGBPv2(TINY, 4), path)
    message = str(info.value)
    assert "\n" not in message and "synthesis.bias" in message and "Synthesis.bias" in message


# ---- AIM 2019 Fidelity: the authors' mergeModel (K = 3, 5, 7 summed, each padding itself)
def _mgbpv2_parameters(channels, levels, mu, kernel, noise=1) -> int:
    """Weights + biases from the architecture: Analysis_k and AnalysisN_k (kernel
    (K-1)(s-1)+1, stride s = 2^(L-1-k), 1x1 at the top), Synthesis 1x1, and mu^(L-k)
    Down (K x K, C_k -> C_{k-1}) / Up (K x K, 2 C_{k-1} + 1 -> C_k) pairs per level pair."""
    total = 0
    for k in range(levels):
        s = 2 ** (levels - 1 - k)
        a = (kernel - 1) * (s - 1) + 1
        total += 3 * channels[k] * a * a + channels[k] + 3 * noise * a * a + noise
    total += channels[-1] * 3 + 3
    for k in range(1, levels):
        pairs = mu ** (levels - k)
        down = channels[k] * channels[k - 1] * kernel**2 + channels[k - 1]
        up = (2 * channels[k - 1] + noise) * channels[k] * kernel**2 + channels[k]
        total += pairs * (down + up)
    return total


def test_fidelity_parameter_count_is_the_sum_of_three_branches():
    aim = (256, 192, 128, 48, 9)
    assert _mgbpv2_parameters(aim, 5, 2, 3) == 28_170_450  # models.md, the perceptual model
    expected = sum(_mgbpv2_parameters(aim, 5, 2, k) for k in (3, 5, 7))
    assert expected == 263_421_182
    with torch.device("meta"):
        model = build("aim2019-fidelity", 16)
    assert count_parameters(model) == expected
    assert [b.config.kernel for b in model.branches()] == [3, 5, 7]
    assert ENTRY.variants["aim2019-fidelity"] == (16,)
    assert model.noise_inputs == () and model.input_kind == "upscaled"


def _authors_init_border(n: int, levels: int, kernel: int) -> tuple[int, int]:
    """model.py init_border along one axis: (before, after)."""
    tmp = s = 1
    while s < n:
        tmp += 1
        p = tmp
        for _ in range(levels - 1):
            p = (p - 1) * 2 + kernel
        s = p
    d = s - n
    return d - d // 2, d // 2


MERGE_TINY = MGBPv2Config(3, (4, 4, 3), mu=2)


@pytest.fixture(scope="module")
def merged():
    from srexport.models.mgbpv2 import MGBPv2Merge

    torch.manual_seed(0)
    return _randomised(MGBPv2Merge(MERGE_TINY, (3, 5, 7), 4).double().eval())


def authors_merge(merged, image):
    """mergeModel.forward at W = 0: each branch reflect-pads by its own init_border,
    runs, is cropped back; the three outputs are summed."""
    import torch.nn.functional as F

    total = 0
    for index, kernel in enumerate((3, 5, 7)):
        config = MGBPv2Config(MERGE_TINY.levels, MERGE_TINY.channels, MERGE_TINY.mu, kernel)
        state = {k[len(f"model{index}."):]: v for k, v in merged.state_dict().items()
                 if k.startswith(f"model{index}.")}
        top, bottom = _authors_init_border(image.shape[2], config.levels, kernel)
        left, right = _authors_init_border(image.shape[3], config.levels, kernel)
        padded = F.pad(image, (left, right, top, bottom), mode="reflect")
        out = authors_wcycle(state, config, padded, torch.randn_like(padded), 0.0)
        total = total + out[:, :, top : out.shape[2] - bottom, left : out.shape[3] - right]
    return total


@pytest.mark.parametrize("size", [(21, 21), (24, 30), (33, 27)])
def test_merge_model_pads_each_branch_itself(merged, size):
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(5), dtype=torch.double)
    with torch.no_grad():
        got = merged(image)
        expected = authors_merge(merged, image)
    assert got.shape == (1, 3, *size)
    assert (got - expected).abs().max() <= 1e-10


def test_merge_model_shape_rules(merged):
    rules = merged.shape_rules()
    assert rules.multiple_of == 1 and rules.output_scale == 1 and rules.pad_align == "split"
    assert rules.halo == max(b.receptive_radius() for b in merged.branches())
    # min_size: the smallest size from which no branch reflects by as much as the image
    ok = [all(max(_authors_init_border(n, 3, k)) < n for k in (3, 5, 7)) for n in range(1, 60)]
    assert rules.min_size == 1 + max(i for i, good in enumerate(ok) if not good) + 1
    with torch.device("meta"):
        aim = build("aim2019-fidelity", 16)
    assert aim.recommended_patch() == 667 and aim.shape_rules().is_legal(667)


def test_merge_model_onnx_keeps_the_per_size_padding_dynamic(merged):
    import onnxruntime as ort

    from srexport.export.onnx_export import to_onnx_model

    model = merged.float()
    try:
        graph = to_onnx_model(model)
        session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        for size in [(21, 21), (24, 30), (33, 27)]:
            image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(6))
            with torch.no_grad():
                expected = model(image).numpy()
            got = session.run(None, {"image": image.numpy()})[0]
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() <= 1e-4
    finally:
        merged.double()
