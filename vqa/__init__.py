"""vqa: neuro-symbolic visual question answering with inspectable reasoning."""
from .errors import DataError, Problem, VQAError
from .program import Program, Step
from .question import Question
from .scene import Relation, SceneGraph, SceneObject

__version__ = "0.1.0"


def __getattr__(name):  # `from vqa import Pipeline` without importing torch for the rest
    if name in ("Pipeline", "Answer"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'vqa' has no attribute {name!r}")

__all__ = ["Answer", "DataError", "Pipeline", "Problem", "Program", "Question", "Relation", "SceneGraph", "SceneObject", "Step",
           "VQAError", "__version__"]
