"""sr-export: compile super-resolution networks to deployable bundles and run them."""

from __future__ import annotations

from srexport.version import __version__


def load(*args, **kwargs):
    """Open a bundle for upscaling; see `srexport.runtime.upscaler.load`."""
    from srexport.runtime.upscaler import load as _load

    return _load(*args, **kwargs)


__all__ = ["load", "__version__"]
