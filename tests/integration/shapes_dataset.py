"""Tiny real images for training tests: a circle, a square or a cross per class, slightly shifted."""

from __future__ import annotations

from PIL import Image, ImageDraw


def draw_shape(label: int, index: int, size: int = 20) -> Image.Image:
    image = Image.new("RGB", (size, size), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    offset = index % 3
    box = (3 + offset, 3 + offset, size - 4, size - 4)
    if label == 0:
        draw.ellipse(box, outline=(20, 20, 160), width=2)
    elif label == 1:
        draw.rectangle(box, outline=(160, 20, 20), width=2)
    else:
        draw.line(box, fill=(20, 120, 20), width=2)
        draw.line((box[0], box[3], box[2], box[1]), fill=(20, 120, 20), width=2)
    return image
