"""Scale-out on an existing distributed engine: Ray Data pipelines for images (`ray_run`)
and Ray actors for one video split at keyframes (`ray_video`).

Importing this package never imports Ray; the functions below do, and say
"pip install 'sr-export[ray]'" when it is missing.
"""

from __future__ import annotations


def run_images_ray(*args, **kwargs) -> int:
    """Upscale images on a Ray cluster; see `srexport.distributed.ray_run.run_images_ray`."""
    from srexport.distributed.ray_run import run_images_ray as _run

    return _run(*args, **kwargs)


def ray_upscale_video(*args, **kwargs):
    """Upscale one video on a Ray cluster; see `srexport.distributed.ray_video.ray_upscale_video`."""
    from srexport.distributed.ray_video import ray_upscale_video as _run

    return _run(*args, **kwargs)


__all__ = ["ray_upscale_video", "run_images_ray"]
