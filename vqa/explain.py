"""Explanation images: what each reasoning step selected, drawn on the image.

    from vqa.explain import explain_image
    explain_image(image, answer).save("why.png")   # answer: vqa.pipeline.Answer

One panel per program step, every step: the objects the step selects are boxed in a strong
colour (for the NSM, the box strength follows the attention weight), the rest in thin gray;
the caption gives the step and its value, and for the NSM the machine step that carried it
out (`[NSM step 2: shift, with 1]`: steps 1 and 2, a filter chain, are one machine step) or
whose state it reads (`[reads NSM step 8]`: the answer classifier reads the final state). A title line holds the question, the answer and its
confidence. Without an image (a scene given as a SceneGraph), the objects are drawn as
boxes on a blank canvas of the scene's size.
"""
from __future__ import annotations

from pathlib import Path

PANEL_WIDTH = 320
_SELECTED = (30, 200, 60)
_OTHER = (150, 150, 150)
_TEXT = (20, 20, 20)


def _describe(value) -> str:
    if isinstance(value, dict):
        top = sorted(value.items(), key=lambda kv: -kv[1])[:3]
        return "attention " + ", ".join(f"{k}:{p:.2f}" for k, p in top)
    if isinstance(value, tuple):
        return "{" + ", ".join(value) + "}" if value else "{} (empty)"
    return str(value)


def _canvas(image, scene):
    from PIL import Image

    if image is None:
        return Image.new("RGB", (max(1, scene.width), max(1, scene.height)), (235, 235, 235))
    if isinstance(image, (str, Path)):
        from .vision.core import load_image

        image = load_image(image)
    return image.convert("RGB")


def explain_image(image, answer, *, panel_width: int = PANEL_WIDTH, columns: int = 3):
    """A PIL image: a title and one panel per trace step (every step)."""
    from PIL import Image, ImageDraw

    scene = answer.scene
    base = _canvas(image, scene)
    scale = panel_width / max(1, base.width)
    panel_h = max(1, round(base.height * scale))
    base = base.resize((panel_width, panel_h), Image.BICUBIC)
    sx, sy = panel_width / max(1, scene.width), panel_h / max(1, scene.height)
    steps = list(zip(answer.trace, answer.selected()))  # every step: one panel each
    if not steps:
        steps = [(None, {})]
    cols = max(1, min(columns, len(steps)))
    rows = (len(steps) + cols - 1) // cols
    caption_h, title_h, pad = 30, 34, 6
    out = Image.new("RGB", (cols * (panel_width + pad) + pad, title_h + rows * (panel_h + caption_h + pad) + pad),
                    (255, 255, 255))
    d = ImageDraw.Draw(out)
    verdict = (f"answer: {answer.answer}  (confidence {answer.confidence:.2f}, {answer.reasoner})" if answer.ok
               else f"no answer: {answer.error}")
    d.text((pad, 4), _fit(f"Q: {answer.question}", out.width), fill=_TEXT)
    d.text((pad, 18), _fit(verdict, out.width), fill=(0, 90, 0) if answer.ok else (170, 0, 0))
    for k, (step, chosen) in enumerate(steps):
        r, c = divmod(k, cols)
        x0, y0 = pad + c * (panel_width + pad), title_h + r * (panel_h + caption_h + pad)
        panel = base.copy()
        pd = ImageDraw.Draw(panel)
        for o in scene.objects:
            x, y, w, h = o.bbox
            box = [x * sx, y * sy, (x + w) * sx, (y + h) * sy]
            weight = chosen.get(o.id, 0.0)
            if weight > 0.05:
                colour = tuple(int(_OTHER[i] + (_SELECTED[i] - _OTHER[i]) * min(1.0, weight)) for i in range(3))
                pd.rectangle(box, outline=colour, width=1 + round(3 * min(1.0, weight)))
                pd.text((box[0] + 2, box[1] + 1), o.id, fill=colour)
            else:
                pd.rectangle(box, outline=_OTHER, width=1)
        out.paste(panel, (x0, y0))
        if step is None:
            caption = "no steps"
        else:
            caption = f"{step.index}: {step.token}" + machine_note(step)
            value = step.value if step.value is not None else getattr(step, "attention", None)
            detail = f"-> {step.error}" if step.error else f"-> {_describe(value)}"
        d.text((x0, y0 + panel_h + 2), _fit(caption, panel_width), fill=_TEXT)
        if step is not None:
            d.text((x0, y0 + panel_h + 15), _fit(detail, panel_width),
                   fill=(170, 0, 0) if step.error else (60, 60, 60))
    return out


def machine_note(step) -> str:
    """For an NSM program step: which machine step carried it out or whose state it reads."""
    k = getattr(step, "machine_step", None)
    if k is None:
        return "  [all objects]" if hasattr(step, "machine_step") else ""
    if step.carried:
        with_ = [i for i in step.together if i != step.index]
        return f"  [NSM step {k + 1}: {step.machine_op}" + (f", with {','.join(map(str, with_))}]" if with_ else "]")
    return f"  [reads NSM step {k + 1}]"


def _fit(text: str, width_px: int, char_px: int = 6) -> str:
    n = max(4, width_px // char_px)
    return text if len(text) <= n else text[:n - 3] + "..."
