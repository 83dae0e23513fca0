"""Scale-out on an existing distributed engine: Ray Data pipelines (`ray_run`).

Importing this package never imports Ray; `run_images_ray` does, and says
"pip install 'sr-export[ray]'" when it is missing.
"""

from __future__ import annotations


def run_images_ray(*args, **kwargs) -> int:
    """Upscale images on a Ray cluster; see `srexport.distributed.ray_run.run_images_ray`."""
    from srexport.distributed.ray_run import run_images_ray as _run

    return _run(*args, **kwargs)


__all__ = ["run_images_ray"]
