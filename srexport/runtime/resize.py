"""Bicubic resizing of float planes (PIL's filter, as the papers' data pipelines use)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def bicubic(planes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize each plane of a CxHxW float32 array to height x width with PIL bicubic."""
    return np.stack(
        [np.asarray(Image.fromarray(p.astype(np.float32)).resize((width, height), Image.BICUBIC)) for p in planes]
    )
