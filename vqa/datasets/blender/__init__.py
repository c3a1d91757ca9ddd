"""Blender (Cycles) renderer of CLEVR-layout datasets: `render_dataset` (see `driver.py`);
`scene_script.py` is the part that runs inside Blender."""
from .driver import BlenderError, blender_command, gather, render_dataset

__all__ = ["BlenderError", "blender_command", "gather", "render_dataset"]
