"""Draw a scene graph's boxes and labels on its image.

    draw_scene(image, graph).save("out.png")     # PIL image in, PIL image out
"""
from __future__ import annotations

_COLORS = {"gray": (160, 160, 160), "red": (230, 40, 40), "blue": (60, 90, 255), "green": (40, 170, 40),
           "brown": (160, 100, 40), "purple": (170, 60, 230), "cyan": (40, 220, 220), "yellow": (250, 230, 40)}


def draw_scene(image, graph, *, min_size: int = 480):
    """A copy of `image` (upscaled to at least `min_size` wide so labels are legible) with each
    object's box and "id: size color material shape score"."""
    from PIL import Image, ImageDraw

    im = image.convert("RGB")
    scale = max(1.0, min_size / max(1, im.width))
    if scale > 1:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)
    sx, sy = im.width / max(1, graph.width), im.height / max(1, graph.height)
    d = ImageDraw.Draw(im)
    for o in graph.objects:
        x, y, w, h = o.bbox
        box = [x * sx, y * sy, (x + w) * sx, (y + h) * sy]
        colour = _COLORS.get(o.value("color") or "", (255, 255, 255))
        d.rectangle(box, outline=colour, width=2)
        label = f"{o.id}: " + " ".join(str(o.value(c)) for c in ("size", "color", "material", "shape")
                                       if o.value(c)) + f" {o.score:.2f}"
        tx, ty = box[0], max(0, box[1] - 11)
        d.rectangle([tx, ty, tx + 6 * len(label), ty + 10], fill=(0, 0, 0))
        d.text((tx + 1, ty), label, fill=colour)
    return im
