"""PCARN / PCARN-M (srexport.models.pcarn) against models.md, the paper and the checkpoints."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import shared_file
from srexport.errors import CheckpointError, ModelError
from srexport.models import count_parameters, load_checkpoint, read_state_dict
from srexport.models.pcarn import ENTRY, PCARN, PCARNM, used_parameters

CHECKPOINTS = ("PCARN-M.pth", "PCARN-M-L1.pth")
CSET5 = ("baby", "bird", "butterfly", "head", "woman")


def weights(name: str):
    return shared_file("weights", "pcarn", name)


# ---------------------------------------------------------------- metric helper
def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma on [0, 1] RGB: Y = 16 + 65.481 R + 128.553 G + 24.966 B."""
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def psnr_y(sr8: np.ndarray, hr8: np.ndarray, shave: int) -> float:
    """PSNR of the Y channel (peak 255) of two 8-bit RGB images, `shave` border pixels off."""
    a = rgb_to_y(sr8 / 255.0)[shave:-shave, shave:-shave]
    b = rgb_to_y(hr8 / 255.0)[shave:-shave, shave:-shave]
    return float(10.0 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def lr_hr_pair(name: str, scale: int) -> tuple[Image.Image, Image.Image]:
    """HR cropped to a multiple of the scale; LR = PIL bicubic downscale of it."""
    hr = Image.open(shared_file("images", "CSet5", f"{name}.png")).convert("RGB")
    w, h = hr.size
    hr = hr.crop((0, 0, w - w % scale, h - h % scale))
    return hr.resize((hr.width // scale, hr.height // scale), Image.BICUBIC), hr


def to_tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


# ---------------------------------------------------------------- parameter counts
def test_pcarn_m_parameter_counts_match_the_published_figures():
    # Reading: tied tensors count once; the frozen mean-shift convs (24 values) count.
    assert count_parameters(PCARNM(4)) == 414_811
    assert [used_parameters(PCARNM(s)) for s in (2, 3, 4)] == [257_051, 303_451, 294_171]


def test_the_frozen_mean_shifts_are_counted_as_parameters():
    # 414,811 = 414,787 learned + 24 frozen: the published figures count the mean shifts.
    model = PCARNM(2)
    frozen = {n: p.numel() for n, p in model.named_parameters() if not p.requires_grad}
    names = {f"{m}.shifter.{t}" for m in ("sub_mean", "add_mean") for t in ("weight", "bias")}
    assert set(frozen) == names
    assert sum(frozen.values()) == 24


def test_full_pcarn_builds_with_the_same_reading():
    # Three distinct plain residual blocks per cascading block, ungrouped upsamplers:
    # 1,591,963 with all upsamplers (paper: 1.6M), per scale as below.
    assert count_parameters(PCARN(4)) == 1_591_963
    assert [used_parameters(PCARN(s)) for s in (2, 3, 4)] == [964_187, 1_148_827, 1_111_899]


def test_registry_entries_build_each_scale():
    m, full = ENTRY
    assert (m.name, full.name) == ("pcarn-m", "pcarn")
    assert m.needs_weights and full.needs_weights
    for scale in (2, 3, 4):
        assert isinstance(m.build(None, scale), PCARNM) and m.build(None, scale).scale == scale
        assert type(full.build(None, scale)) is PCARN and full.build(None, scale).scale == scale
    assert m.build().scale == 4
    with pytest.raises(ModelError, match="x8"):
        PCARNM(8)


# ---------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_published_checkpoints_load_strictly_with_original_keys(name):
    path = weights(name)
    state = read_state_dict(path)
    model = load_checkpoint(PCARNM(4), path)
    own = model.state_dict()
    assert set(own) <= set(state)  # every key of the module is an original key name
    # ... and what is left over is exactly the stored copies of the shared blocks.
    assert set(state) - set(own) == {k for k in state if re.match(r"b[123]\.b[23]\.", k)}
    for key, tensor in own.items():
        assert torch.equal(tensor, state[key])


def _save_modified(tmp_path, edit) -> str:
    state = read_state_dict(weights("PCARN-M-L1.pth"))
    edit(state)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("key", ["c2.bias", "upsample.up4.body.3.weight", "b1.b3.pw.weight"])
def test_a_removed_key_is_refused_by_name(tmp_path, key):
    path = _save_modified(tmp_path, lambda s: s.pop(key))
    with pytest.raises(CheckpointError, match=f"missing key '{key}'"):
        load_checkpoint(PCARNM(2), path)


def test_a_changed_shape_is_refused_by_name(tmp_path):
    def edit(state):
        state["exit.weight"] = torch.zeros(3, 64, 5, 5)

    path = _save_modified(tmp_path, edit)
    with pytest.raises(CheckpointError, match=r"'exit.weight' has shape \(3, 64, 5, 5\)"):
        load_checkpoint(PCARNM(3), path)


def test_an_unexpected_key_is_refused_by_name(tmp_path):
    path = _save_modified(tmp_path, lambda s: s.__setitem__("b4.c1.bias", torch.zeros(64)))
    with pytest.raises(CheckpointError, match="unexpected key 'b4.c1.bias'"):
        load_checkpoint(PCARNM(3), path)


def test_shared_block_copies_that_differ_are_refused(tmp_path):
    def edit(state):
        state["b2.b2.conv1.weight"] = state["b2.b2.conv1.weight"] + 1e-3

    path = _save_modified(tmp_path, edit)
    message = "'b2.b2.conv1.weight' differs from 'b2.b1.conv1.weight'"
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(PCARNM(4), path)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- shapes and sizes
@pytest.mark.parametrize("cls", [PCARNM, PCARN])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_is_scale_times_the_input_at_odd_sizes(cls, scale):
    model = cls(scale).eval()
    rules = model.shape_rules()
    assert (rules.multiple_of, rules.min_size, rules.output_scale) == (1, 1, scale)
    with torch.no_grad():
        for n, h, w in ((2, 7, 11), (1, 1, 1)):
            assert rules.is_legal(h) and rules.is_legal(w)
            out = model(torch.rand(n, 3, h, w))
            assert out.shape == (n, 3, scale * h, scale * w) and out.dtype == torch.float32


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_halo_is_the_measured_receptive_field(scale):
    # Gradient of the scale x scale output block owned by LR pixel (24, 24) w.r.t. the
    # LR input: its support is the union over sub-pixel phases, and its furthest pixel
    # from (24, 24) is the receptive-field radius in LR pixels.
    torch.manual_seed(0)
    model = PCARNM(scale).eval()
    x = torch.rand(1, 3, 48, 48, requires_grad=True)
    block = model(x)[0, :, 24 * scale : 25 * scale, 24 * scale : 25 * scale]
    (grad,) = torch.autograd.grad(block.sum(), x)
    reach = int(((grad[0].abs().sum(0) > 0).nonzero() - 24).abs().max())
    assert model.shape_rules().halo == reach == 21


def test_recommended_patch_is_legal_and_mostly_outside_the_halo():
    for model in (PCARNM(4), PCARN(2)):
        patch, halo = model.recommended_patch(), model.shape_rules().halo
        assert model.shape_rules().is_legal(patch) and patch >= 128
        assert ((patch - 2 * halo) / patch) ** 2 >= 0.6


def test_forward_matches_the_structure_written_in_models_md():
    # An independent functional statement of models.md, on the real L1 weights.
    s = read_state_dict(weights("PCARN-M-L1.pth"))

    def conv(x, key, groups=1):
        w = s[f"{key}.weight"]
        return F.conv2d(x, w, s[f"{key}.bias"], padding=w.shape[-1] // 2, groups=groups)

    def eres(x, key):
        out = F.relu(conv(x, f"{key}.conv1", 4))
        out = F.relu(conv(out, f"{key}.conv2", 4))
        return F.relu(conv(out, f"{key}.pw") + x)

    def cascade(x, prefix, unit):
        c = o = x
        for i in (1, 2, 3):
            c = torch.cat([c, unit(o, i)], 1)
            o = conv(c, f"{prefix}c{i}")
        return o

    def block(x, i):
        # Cascading block i: its one shared EResidual, read here from the stored copy
        # b{i}.b{j} of each application j.
        return cascade(x, f"b{i}.", lambda h, j: eres(h, f"b{i}.b{j}"))

    x = torch.rand(1, 3, 19, 23, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
    for scale in (3, 4):
        entry = conv(x - mean, "entry")
        up = cascade(entry, "", block) + entry
        for n in range(0, 6, 3):
            if f"upsample.up{scale}.body.{n}.weight" in s:
                factor = 3 if scale == 3 else 2
                up = F.pixel_shuffle(F.relu(conv(up, f"upsample.up{scale}.body.{n}", 4)), factor)
        expected = conv(up, "exit") + mean
        with torch.no_grad():
            got = load_checkpoint(PCARNM(scale), weights("PCARN-M-L1.pth"))(x)
        assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_traces_to_onnx_with_dynamic_sizes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = PCARNM(3).eval()
    path = tmp_path / "pcarn_m_x3.onnx"
    torch.onnx.export(
        model, model.example_inputs(1, 16, 16), path, dynamo=False, opset_version=17,
        input_names=["image"], output_names=["output"],
        dynamic_axes={"image": {0: "N", 2: "H", 3: "W"}, "output": {0: "N", 2: "OH", 3: "OW"}},
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n, h, w in ((1, 16, 16), (2, 13, 21)):
        (x,) = model.example_inputs(n, h, w)
        with torch.no_grad():
            expected = model(x).numpy()
        got = sess.run(None, {"image": x.numpy()})[0]
        assert got.shape == (n, 3, 3 * h, 3 * w)
        assert np.abs(got - expected).max() <= 1e-4


# ---------------------------------------------------------------- quality on CSet5
@pytest.fixture(scope="module")
def cset5_x4():
    """Mean PSNR-Y at 4x per checkpoint (round and truncating 8-bit saves) and bicubic."""
    scale = 4
    models = {n: load_checkpoint(PCARNM(scale), weights(n)) for n in CHECKPOINTS}
    scores: dict[str, list[float]] = {}
    for name in CSET5:
        lr, hr = lr_hr_pair(name, scale)
        hr8 = np.asarray(hr, dtype=np.float64)
        x = to_tensor(lr)
        for ckpt, model in models.items():
            with torch.no_grad():
                sr = model(x)[0].permute(1, 2, 0).double().numpy()
            rounded = np.round(np.clip(sr, 0.0, 1.0) * 255.0)
            truncated = np.floor(np.clip(sr * 255.0, 0.0, 255.0))  # authors' save_image
            scores.setdefault(ckpt, []).append(psnr_y(rounded, hr8, scale))
            scores.setdefault(ckpt + ":trunc", []).append(psnr_y(truncated, hr8, scale))
        bicubic = np.asarray(lr.resize(hr.size, Image.BICUBIC), dtype=np.float64)
        scores.setdefault("bicubic", []).append(psnr_y(bicubic, hr8, scale))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def test_pcarn_m_gan_checkpoint_reproduces_table_4_on_set5(cset5_x4):
    # Table 4 (PCARN-M, Set5 4x: 29.39 dB in FACTS.md; 29.38 in our text of the paper)
    # is the GAN-trained PCARN-M.pth, scored on the authors' truncating 8-bit save.
    assert abs(cset5_x4["PCARN-M.pth:trunc"] - 29.39) <= 0.05
    # The project protocol rounds instead of truncating, which is 0.08 dB higher here
    # (measured 29.484 dB); pinned so a change in the network shows up.
    assert abs(cset5_x4["PCARN-M.pth"] - 29.484) <= 0.01
    assert cset5_x4["PCARN-M.pth"] > cset5_x4["bicubic"]


def test_pcarn_m_l1_checkpoint_beats_bicubic_on_set5(cset5_x4):
    # Measured: 31.90 dB against bicubic 28.43 dB.
    assert cset5_x4["PCARN-M-L1.pth"] > cset5_x4["bicubic"] + 3.0
    assert cset5_x4["PCARN-M-L1.pth"] > cset5_x4["PCARN-M.pth"]
