"""vqa: neuro-symbolic visual question answering with inspectable reasoning."""
from .errors import DataError, Problem, VQAError
from .program import Program, Step
from .question import Question
from .scene import Relation, SceneGraph, SceneObject

__version__ = "0.1.0"

__all__ = ["DataError", "Problem", "Program", "Question", "Relation", "SceneGraph", "SceneObject", "Step",
           "VQAError", "__version__"]
