"""Question: one question record, normalised across CLEVR and GQA (core module)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .program import Program


@dataclass
class Question:
    qid: str  # CLEVR: question_index as a string; GQA: the question id key (digits, kept a string)
    image_id: str  # joins with SceneGraph.image_id
    text: str
    program: Program | None = None  # None for CLEVR test questions
    answer: str | None = None  # None when the split has no answers
    dataset: str = "clevr"
    meta: dict = field(default_factory=dict)  # family, types, isBalanced, entailed, ...

    @property
    def family(self) -> int | None:
        return self.meta.get("question_family_index")
