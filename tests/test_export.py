"""Export of every model family: dynamic shapes, checker-clean, parity with PyTorch."""

from __future__ import annotations

import onnx
import pytest

from srexport.export.model_bundle import model_from_bundle
from srexport.export.parity import TOLERANCE, check_parity, verification_sizes
from srexport.models import build_model

FAMILIES = [
    ("gmgbp", None, None),
    ("pcarn-m", "m", 2),
    ("pcarn-m", "m", 3),
    ("pcarn", "full", 4),
    ("mgbpv2", "2x", None),
    ("mgbp", "ntire2018-track1", None),
    ("bpp", "x2", None),
    ("discriminator", None, None),
]


@pytest.mark.parametrize("name,variant,scale", FAMILIES, ids=[f"{n}-{v}-{s}" for n, v, s in FAMILIES])
def test_every_family_exports_with_dynamic_shapes_and_parity(bundle_factory, name, variant, scale):
    bundle = bundle_factory(name, variant, scale)
    graph = onnx.load(str(bundle.graph_path("fp32")))
    onnx.checker.check_model(graph, full_check=True)
    assert graph.opset_import[0].version >= 17
    for value in [*graph.graph.input, *graph.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param and dims[2].dim_param and dims[3].dim_param, value.name
    manifest = bundle.manifest
    model = build_model(name, variant, scale)
    assert manifest.shape_rules == model.shape_rules()
    assert manifest.inputs == ["image", *(n.name for n in model.noise_inputs)]
    assert manifest.shape_rules.is_legal(manifest.patch)
    # The build verified three sizes (a square, a non-square, one needing padding) ...
    sizes = [(c.height, c.width) for c in manifest.verification]
    assert len(sizes) == 3 and any(h != w for h, w in sizes)
    assert max(c.max_abs_error for c in manifest.verification) <= TOLERANCE
    # ... and an independent re-check on other sizes and a batch of two agrees.
    rules = manifest.shape_rules
    other = rules.legal_at_least(verification_sizes(rules)[1][0] + 3 * rules.multiple_of)
    checks = check_parity(model_from_bundle(bundle), bundle.graph_path("fp32"), [(other, rules.legal_at_least(other + 5))])
    assert checks[0].max_abs_error <= TOLERANCE


def test_verification_sizes_include_one_that_needs_the_padding_rule():
    for name, variant, scale in FAMILIES:
        rules = build_model(name, variant, scale).shape_rules()
        sizes = verification_sizes(rules)
        assert all(rules.is_legal(h) and rules.is_legal(w) for h, w in sizes[:2])
        if rules.multiple_of > 1:
            assert not all(rules.is_legal(s) for s in sizes[2])
