"""Seconds per image of the Blender renderer, variants side by side in one run (`vqa bench render`).

For each variant (scene model: the project's own or CLEVR's asset files; Cycles samples; device),
one Blender process renders the same `images` scenes (the sampler's scenes of `seed`) after one
warm-up image; reported per variant: the process start, and the median seconds per image of the
whole image (sampling, scene building, flat pre-render, Cycles render, writing) and of the
Cycles render alone.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path


def bench_render(*, images: int = 3, image_size=(480, 320), samples=(64,), models=("own",), assets=None,
                 devices=("cpu",), threads: int | None = None, blender: str | None = None, seed: int = 0,
                 timeout: float = 900.0, log=print, stage=None) -> list[dict]:
    """`stage(what)`, when given, is called before each image (progress: `vqa.cli._util.Stages`),
    len(devices) * len(models) * len(samples) * (images + 1) times."""
    from .driver import BlenderProcess, blender_command, render_one

    command = blender_command(blender)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for device in devices:
            for model in models:
                for s in samples:
                    init = {"width": image_size[0], "height": image_size[1], "samples": int(s),
                            "threads": threads or 0, "device": device}
                    proc = BlenderProcess(command, assets=str(assets) if model == "official" else None, init=init,
                                          timeout=timeout)
                    t0 = time.perf_counter()
                    info = proc.start()
                    proc.info["samples"] = int(s)
                    start = time.perf_counter() - t0
                    whole, cycles = [], []
                    try:
                        for i in range(images + 1):
                            if stage:
                                stage(f"{model} scene model, {s} samples, {device}: "
                                      + ("warm-up image" if i == 0 else f"image {i}/{images}"))
                            t = time.perf_counter()
                            rec = render_one(proc, i, seed=seed, split="bench", image_size=tuple(image_size),
                                             image_path=tmp / f"{model}_{s}_{i}.png", tmp_dir=tmp / "tmp")
                            if i:  # image 0 warms up
                                whole.append(time.perf_counter() - t)
                                cycles.append(rec["blender"]["render_seconds"])
                    finally:
                        proc.close()
                    row = {"model": model, "samples": int(s), "device": info.get("device"), "blender": info.get("blender"),
                           "size": f"{image_size[0]}x{image_size[1]}", "images": images,
                           "start_s": round(start, 2), "s_per_image": round(statistics.median(whole), 2),
                           "cycles_s_per_image": round(statistics.median(cycles), 2)}
                    log(f"{row['model']:>8}  {row['samples']:>4} samples  {row['device']:<12} "
                        f"{row['s_per_image']:>6.2f} s/image (Cycles {row['cycles_s_per_image']:.2f} s, "
                        f"start {row['start_s']:.2f} s)")
                    rows.append(row)
    return rows
