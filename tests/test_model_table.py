"""The registered models' figures that loading a bundle checks without building the model,
and the runtime path that therefore never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from srexport.errors import BundleError, ModelError
from srexport.model_table import TABLE_FILE, registered, table_to_json
from srexport.models import registry

REGENERATE = 'python -c "from srexport.models.registry import write_rules_table; write_rules_table()"'


def test_the_table_file_is_what_every_model_computes():
    """Every registered (model, variant, scale) rebuilt: the shipped file holds exactly its
    input kind, noise inputs and shape rules (a changed or added model must regenerate it)."""
    rebuilt = table_to_json(registry.rules_table())
    assert TABLE_FILE.read_text() == rebuilt, f"srexport/models/registered.json is stale: run {REGENERATE}"


def test_the_table_covers_every_variant_and_scale_of_the_registry():
    table = registered()
    entries = registry.entries()
    assert set(table) == set(entries)
    for name, entry in entries.items():
        want = {(variant, scale) for variant, scales in entry.variants.items() for scale in scales}
        assert set(table[name].rules) == want, name
        assert table[name].default_variant == entry.default_variant
        assert table[name].task == entry.task


def test_figures_match_the_models_own_shape_rules_for_two_families():
    """Spot checks against the models' documented rules (models.md): PCARN-M takes any size
    and scales by 4; MGBPv2 16x takes the pre-upscaled image (output scale 1)."""
    pcarn = registered()["pcarn-m"].rules[("m", 4)]
    assert pcarn.input_kind == "lr" and pcarn.noise_inputs == ()
    assert dict(pcarn.shape_rules) == {"multiple_of": 1, "offset": 0, "min_size": 1, "output_scale": 4}
    mgbpv2 = registered()["mgbpv2"].rules[("16x", 16)]
    assert mgbpv2.input_kind == "upscaled" and mgbpv2.shape_rules["output_scale"] == 1


@pytest.mark.parametrize("variant, scale, message", [
    ("nope", None, "model 'pcarn-m' has no variant 'nope' (variants: m)"),
    ("m", 8, "model 'pcarn-m' variant 'm' has no scale x8 (scales: x2, x3, x4)"),
])
def test_registry_and_table_refuse_the_same_variant_with_the_same_line(variant, scale, message):
    with pytest.raises(ModelError) as from_registry:
        registry.get("pcarn-m").resolve(variant, scale)
    with pytest.raises(ModelError) as from_table:
        registered()["pcarn-m"].resolve(variant, scale)
    assert str(from_registry.value) == str(from_table.value) == message


def test_a_tampered_manifest_is_still_refused(bundle_factory, tmp_path):
    import shutil

    from srexport.bundle import load_bundle

    bundle = bundle_factory("pcarn-m", "m", 2)
    copy = tmp_path / "bundle"
    shutil.copytree(bundle.root, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shape_rules"]["min_size"] = 7
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"'shape_rules.min_size' is 7, but pcarn-m m x2 has 1"):
        load_bundle(copy)


_NO_TORCH = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None  # any import of torch now fails
    import numpy as np
    import srexport
    from srexport.cli import main
    for backend in sys.argv[2].split(","):
        up = srexport.load(sys.argv[1], backend=backend)
        out = up.upscale(np.full((24, 20, 3), 128, np.uint8))
        print(backend, out.shape)
    sys.argv = ["sr-export", "run", sys.argv[1], sys.argv[3], "-o", sys.argv[4], "--quiet"]
    main()
""")


def test_loading_and_running_a_bundle_never_imports_torch(bundle_factory, tmp_path):
    """The runtime is light: `srexport.load(...).upscale` and `sr-export run` work in a
    process where importing torch fails (ONNX Runtime, and OpenVINO where installed)."""
    from PIL import Image

    from srexport.runtime.backends.selection import available_backends

    bundle = bundle_factory("pcarn-m", "m", 2)
    backends = ["onnxruntime"] + (["openvino"] if available_backends()["openvino"] else [])
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    Image.new("RGB", (20, 16), (40, 90, 200)).save(src)
    done = subprocess.run([sys.executable, "-c", _NO_TORCH, str(bundle.root), ",".join(backends), str(src), str(dst)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:len(backends)] == [f"{b} (48, 40, 3)" for b in backends]
    assert Image.open(dst).size == (40, 32)
