"""G-MGBP 4x (PIRM-SR 2018): architecture, checkpoints, shapes, noise, accuracy.

The published checkpoints load under their original key names; the CSet5 PSNR-Y of
BOE-R1 at W = 0 reproduces the figure measured with the authors' code (FACTS.md).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from srexport.errors import CheckpointError, ModelError
from srexport.models import count_parameters, load_checkpoint, read_state_dict
from srexport.models.gmgbp import ENTRY, GMGBP, Act, _Support, _support_of

from conftest import one_torch_thread, shared_file

WEIGHTS = ("weights", "gmgbp-pirm2018")
CSET5 = ("baby", "bird", "butterfly", "head", "woman")



@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from one_torch_thread()


def checkpoint(region: str):
    return shared_file(*WEIGHTS, f"BOE-{region}.model")


def zero_noise(model: GMGBP, image: torch.Tensor) -> list[torch.Tensor]:
    n, _, h, w = image.shape
    return [torch.zeros(*spec.shape(n, h, w)) for spec in model.noise_inputs]


@pytest.fixture(scope="module")
def r1() -> GMGBP:
    return load_checkpoint(GMGBP(), checkpoint("R1"))


# ------------------------------------------------------------- PSNR-Y helpers
# (to move into the shared metrics module once it exists)
def y_bt601(rgb_u8: np.ndarray) -> np.ndarray:
    """Y in [16, 235] of an HxWx3 uint8 RGB image (BT.601 as in MATLAB's rgb2ycbcr)."""
    rgb = rgb_u8.astype(np.float64) / 255.0
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def psnr_y(a_u8: np.ndarray, b_u8: np.ndarray, shave: int = 4, round_y: bool = True) -> float:
    """PSNR (peak 255) of the Y channels, `shave` border pixels left out.

    `round_y`: Y rounded to integers, as MATLAB's rgb2ycbcr returns it for uint8 images
    (the SR papers' evaluation). With BOE-R1 on CSet5 this gives 31.616 dB, the
    published 31.62; the unrounded Y gives 31.637 dB.
    """
    ya, yb = y_bt601(a_u8), y_bt601(b_u8)
    if round_y:
        ya, yb = np.round(ya), np.round(yb)
    if shave:
        ya, yb = ya[shave:-shave, shave:-shave], yb[shave:-shave, shave:-shave]
    mse = np.mean((ya - yb) ** 2)
    return float(10.0 * np.log10(255.0**2 / mse))


def to_u8(image: torch.Tensor) -> np.ndarray:
    """The authors' deployment: clamp to [0, 1], round(x * 255)."""
    return np.round(image[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)


def hr_lr_pair(name: str, scale: int = 4) -> tuple[Image.Image, Image.Image]:
    hr = Image.open(shared_file("images", "CSet5", f"{name}.png")).convert("RGB")
    w, h = hr.size
    hr = hr.crop((0, 0, w - w % scale, h - h % scale))
    return hr, hr.resize((hr.width // scale, hr.height // scale), Image.BICUBIC)


def test_psnr_y_of_identical_images_is_infinite_and_of_known_errors_is_exact():
    a = np.full((12, 12, 3), 100, np.uint8)
    b = a.copy()
    b[..., 1] += 2  # Y: 101.882 -> 102.890 everywhere (rounded: 102 -> 103)
    exact = 10 * np.log10(255.0**2 / (2 * 128.553 / 255) ** 2)
    assert psnr_y(a, b, shave=4, round_y=False) == pytest.approx(exact, abs=1e-9)
    assert psnr_y(a, b, shave=4) == pytest.approx(10 * np.log10(255.0**2), abs=1e-9)
    with np.errstate(divide="ignore"):
        assert psnr_y(a, a, shave=4) == float("inf")


# ------------------------------------------------------------ architecture
def test_parameter_count_is_281084():
    assert count_parameters(GMGBP()) == 281_084


@pytest.mark.parametrize("region", ["R1", "R2", "R3"])
def test_published_checkpoints_load_strictly_under_their_original_names(region):
    path = checkpoint(region)
    model = load_checkpoint(GMGBP(), path)
    state = read_state_dict(path)
    assert set(model.state_dict()) == set(state)
    assert torch.equal(model.ClassicUpscale.weight, state["ClassicUpscale.weight"].float())
    assert torch.equal(model.Synthesis.conv4.bias, state["Synthesis.conv4.bias"].float())


def test_checkpoint_missing_a_key_is_refused_naming_the_key(tmp_path):
    state = read_state_dict(checkpoint("R1"))
    key = "Upscaling.pre_up.dense.denselayer2.act_1.norm.bias"
    del state[key]
    torch.save(state, tmp_path / "bad.model")
    with pytest.raises(CheckpointError, match=f"missing key '{key}'"):
        load_checkpoint(GMGBP(), tmp_path / "bad.model")


def test_checkpoint_with_a_wrong_shape_is_refused_naming_the_key(tmp_path):
    state = read_state_dict(checkpoint("R1"))
    key = "Downscaling.conv_down.weight"
    state[key] = torch.zeros(48, 48, 5, 5)
    torch.save(state, tmp_path / "bad.model")
    with pytest.raises(CheckpointError, match=f"'{key}' has shape"):
        load_checkpoint(GMGBP(), tmp_path / "bad.model")


# ------------------------------------------------------------------ shapes
def test_shape_rules_follow_from_the_padding_and_levels():
    model = GMGBP()
    rules = model.shape_rules()
    assert (rules.multiple_of, rules.offset, rules.output_scale) == (1, 0, 4)
    assert rules.min_size == model.pad + 1 == 5  # reflection pad 4 needs size > 4
    assert rules.halo == 85
    patch = model.recommended_patch()
    assert rules.is_legal(patch) and patch == 96


@pytest.mark.parametrize("size", [(5, 7), (9, 6), (13, 11)])
def test_output_is_four_times_the_input_for_odd_sizes(r1, size):
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = r1(x, *zero_noise(r1, x))
    assert y.shape == (2, 3, 4 * size[0], 4 * size[1])


def test_input_below_the_minimum_size_fails(r1):
    x = torch.rand(1, 3, 4, 8)
    with pytest.raises(RuntimeError), torch.no_grad():
        r1(x, *zero_noise(r1, x))


def test_noise_inputs_have_the_size_of_the_level_states_they_join(r1):
    """noise_l is concatenated with r_l: record every Upscaling input's size."""
    seen = set()
    hook = r1.Upscaling.register_forward_pre_hook(lambda m, args: seen.add(tuple(args[0].shape[2:])))
    try:
        x = torch.rand(1, 3, 7, 10)
        with torch.no_grad():
            r1(x, *zero_noise(r1, x))
    finally:
        hook.remove()
    declared = {spec.shape(1, 7, 10)[2:] for spec in r1.noise_inputs}
    assert seen == declared == {(15, 18), (30, 36)}
    assert [(n.name, n.channels, n.factor, n.border) for n in r1.noise_inputs] == [
        ("noise0", 1, 1, 4),
        ("noise1", 1, 2, 4),
    ]


# ------------------------------------------------------------------- noise
def test_noise_changes_the_output_and_zero_noise_is_deterministic(r1):
    x, *noise = r1.example_inputs(1, 9, 11)
    zeros = zero_noise(r1, x)
    with torch.no_grad():
        a = r1(x, *zeros)
        b = r1(x, *zero_noise(r1, x))
        noisy0 = r1(x, noise[0], zeros[1])
        noisy1 = r1(x, zeros[0], noise[1])
        ignored = r1(x, *zeros, torch.randn(1, 1, 4 * 17, 4 * 19))  # the reference's unread n_2
    assert torch.equal(a, b)
    assert torch.equal(a, ignored)
    assert (noisy0 - a).abs().max() > 1e-3
    assert (noisy1 - a).abs().max() > 1e-3


# -------------------------------------------------------------------- halo
def linearised(module: torch.nn.Module) -> torch.nn.Module:
    """ReLU removed and |weights| + eps: every structural path carries gradient."""
    module = copy.deepcopy(module)
    for sub in module.modules():
        if isinstance(sub, Act):
            sub.forward = sub.norm.forward
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.abs() + 1e-3)
    return module


@pytest.mark.parametrize("blocks", [["Analysis"], ["Synthesis"], ["Upscaling"], ["ClassicUpscale"],
                                    ["ClassicUpscale", "Analysis", "Downscaling"]])
def test_support_rules_match_autograd_on_every_block(r1, blocks):
    """The halo is propagated through `_cascade` by these rules; check them per block."""
    chain = linearised(torch.nn.Sequential(*(getattr(r1, b) for b in blocks)))
    support = _support_of(chain, _Support.identity())
    channels = {"Synthesis": 48, "Upscaling": 97}.get(blocks[0], 3)
    rows, centre = 41, 20
    x = torch.rand(1, channels, rows, 3, requires_grad=True)
    y = chain(x)
    s = y.shape[2] // rows
    assert s == support.scale
    for phase in range(s):
        (grad,) = torch.autograd.grad(y[0, :, s * centre + phase, 1].sum(), x, retain_graph=True)
        read = grad.abs().sum(dim=(0, 1, 3)).nonzero().flatten() - centre
        assert (read.min().item(), read.max().item()) == (support.lo[phase], support.hi[phase])


# ---------------------------------------------------------------- registry
def test_registry_entry():
    assert ENTRY.name == "gmgbp" and ENTRY.needs_weights
    assert ENTRY.resolve(None, None) == ("pirm2018", 4)
    assert isinstance(ENTRY.build(), GMGBP)
    assert ENTRY.extra["published_noise"] == {"R1": 0.0632, "R2": 0.275, "R3": 1.0}
    with pytest.raises(ModelError):
        ENTRY.build("pirm2018", 2)


# ---------------------------------------------------------------- accuracy
@pytest.fixture(scope="module")
def cset5_r1_psnr() -> dict[str, tuple[float, float]]:
    """(G-MGBP BOE-R1 at W = 0, bicubic) PSNR-Y per CSet5 image at 4x."""
    model = load_checkpoint(GMGBP(), checkpoint("R1"))
    # channels_last only for speed here (about 2x on this CPU; outputs within 2e-6).
    model = model.to(memory_format=torch.channels_last)
    table = {}
    for name in CSET5:
        hr, lr = hr_lr_pair(name)
        x = torch.from_numpy(np.array(lr)).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            sr = model(x.contiguous(memory_format=torch.channels_last), *zero_noise(model, x))
        hr_u8 = np.array(hr)
        bicubic = np.array(lr.resize(hr.size, Image.BICUBIC))
        table[name] = (psnr_y(to_u8(sr), hr_u8, shave=4), psnr_y(bicubic, hr_u8, shave=4))
    return table


@pytest.mark.slow
def test_boe_r1_reproduces_the_published_cset5_psnr_y(cset5_r1_psnr):
    mean = np.mean([v[0] for v in cset5_r1_psnr.values()])
    assert mean == pytest.approx(31.62, abs=0.02)


@pytest.mark.slow
def test_boe_r1_beats_bicubic_on_cset5(cset5_r1_psnr):
    model = np.mean([v[0] for v in cset5_r1_psnr.values()])
    bicubic = np.mean([v[1] for v in cset5_r1_psnr.values()])
    assert model > bicubic + 2.0
