"""Shared fixtures: the real checkpoints and images live in ../shared beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def shared_file(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent.

    Checkpoints that ship inside the package (srexport/weights/) are taken from there, so
    the tests that need them run on a bare clone too."""
    from srexport.models.published import SHIPPED

    if parts[:1] == ("weights",):
        for shipped in SHIPPED:
            if shipped.path.name == parts[-1] and shipped.path.parent.name == parts[-2]:
                return shipped.path
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared data folder beside the repository)")
    return path


def one_torch_thread():
    """Fixture body: one intra-op torch thread while a module runs (on the 2 shared cores of
    the test machines it is 2-3x faster than two)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bundle_factory(tmp_path_factory):
    """Build registry bundles once per test session: factory(model, variant, scale, weights)."""
    from srexport.export.build import BuildRequest, build_bundle
    from srexport.models.published import INIT

    cache: dict = {}

    def make(model: str, variant: str | None = None, scale: int | None = None, weights: Path | None = None):
        """`weights` None builds the model's initialisation (not its shipped checkpoint)."""
        key = (model, variant, scale, str(weights))
        if key not in cache:
            out = tmp_path_factory.mktemp("bundles") / f"{model}-{variant}-{scale}"
            request = BuildRequest(model=model, variant=variant, scale=scale,
                                   weights=INIT if weights is None else weights, out=out)
            cache[key] = build_bundle(request, warn=lambda message: None)
        return cache[key]

    return make


@pytest.fixture
def no_openvino(monkeypatch):
    """This process sees no OpenVINO package (as on a machine without the extra), so that
    `--backend auto` falls to ONNX Runtime on the CPU."""
    from srexport.runtime.backends import selection

    installed = selection._installed
    monkeypatch.setattr(selection, "_installed", lambda module: module != "openvino" and installed(module))
