"""Regenerate examples/sample.png: a small synthetic test card (rings, edges, text-like bars)."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def sample(size: int = 96) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    r = np.hypot(x - 0.5, y - 0.5)
    rings = 0.5 + 0.5 * np.cos(2 * np.pi * 18 * r**2)
    rgb = np.stack([rings * (1 - x) + x * 0.9, 0.3 + 0.6 * y * rings, 0.8 - 0.5 * x * y], axis=-1)
    image = Image.fromarray(np.uint8(np.clip(rgb, 0, 1) * 255))
    draw = ImageDraw.Draw(image)
    for i in range(6):
        draw.rectangle([6 + 7 * i, 70, 8 + 7 * i, 70 + 3 * (i + 1) % 20], fill=(20, 20, 20))
    draw.line([0, 0, size - 1, size - 1], fill=(250, 250, 250), width=1)
    draw.ellipse([58, 8, 88, 38], outline=(255, 40, 40), width=2)
    return image


if __name__ == "__main__":
    sample().save(Path(__file__).with_name("sample.png"), optimize=True)
