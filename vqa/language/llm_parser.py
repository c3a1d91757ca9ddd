"""`--parser llm`: questions -> CLEVR programs with an LLM and a few-shot prompt.

The prompt is built from the function catalogue (`vqa.ontology`) and a handful of
worked examples. The reply is validated as a `Program` (syntax, known functions,
vocabulary, input types); an invalid reply is sent back once with the error. With
`samples > 1` the most frequent valid program wins and its share of the votes is the
confidence (self-consistency); with one sample a valid first reply has confidence 1.0,
a reply valid only after the retry 0.5. A model may decline a question that is not about
the scene ("P: none"): `Declined`, no program (the pipeline's fallback for questions the
seq2seq parser does not understand then reports the question as not understood).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ..errors import DataError, VQAError
from ..ontology import CLEVR_ATTRIBUTES, CLEVR_FUNCTIONS, CLEVR_RELATIONS
from ..program import Program

FEW_SHOT: list[tuple[str, str]] = [
    ("How many red things are there?", "count(filter_color[red](scene))"),
    ("What shape is the small metal object?",
     "query_shape(unique(filter_material[metal](filter_size[small](scene))))"),
    ("Is there a big cylinder to the left of the blue ball?",
     "exist(filter_shape[cylinder](filter_size[large](relate[left](unique(filter_shape[sphere](filter_color[blue](scene)))))))"),
    ("Are there more cubes than spheres?",
     "greater_than(count(filter_shape[cube](scene)), count(filter_shape[sphere](scene)))"),
    ("Does the green block have the same size as the rubber cylinder?",
     "equal_size(query_size(unique(filter_shape[cube](filter_color[green](scene)))), "
     "query_size(unique(filter_shape[cylinder](filter_material[rubber](scene)))))"),
    ("How many things are either yellow spheres or large cubes?",
     "count(union(filter_shape[sphere](filter_color[yellow](scene)), filter_shape[cube](filter_size[large](scene))))"),
    ("What color is the other object that is the same material as the gray cube?",
     "query_color(unique(same_material(unique(filter_shape[cube](filter_color[gray](scene))))))"),
]


class ParseError(VQAError):
    pass


class Declined(ParseError):
    """The model says the question is not about the scene ("P: none")."""


@dataclass
class ParseResult:
    program: Program
    confidence: float
    replies: list[str]


def catalogue_text() -> str:
    lines = []
    for spec in CLEVR_FUNCTIONS.values():
        arg = f"[{spec.arg}]" if spec.arg else ""
        ins = ", ".join(spec.inputs)
        lines.append(f"- {spec.name}{arg}({ins}) -> {spec.output}")
    vocab = [f"- {cat}: {', '.join(vals)}" for cat, vals in CLEVR_ATTRIBUTES.items()]
    vocab.append(f"- relation: {', '.join(CLEVR_RELATIONS)}")
    return "Functions (name[value](inputs) -> output type):\n" + "\n".join(lines) + "\nValues:\n" + "\n".join(vocab)


def system_prompt() -> str:
    shots = "\n".join(f"Q: {q}\nP: {p}" for q, p in FEW_SHOT)
    return f"""You translate questions about a scene of simple 3-D objects into programs.
A program is one nested expression over these functions; `scene` is all objects.
{catalogue_text()}
Rules: `unique` turns a set that must hold exactly one object into that object; `query_*`,
`relate`, `same_*` take one object; `same_*` excludes the object itself; use only the listed values
(ball=sphere, block=cube, big=large, tiny=small, shiny/metallic=metal, matte=rubber).
Examples:
{shots}
If the question is not about the objects of such a scene, reply "P: none".
Reply with the program only, on one line, after "P: "."""


def extract_program(reply: str) -> Program:
    text = reply.strip()
    m = re.search(r"P:\s*(.+)", text)
    line = m.group(1) if m else next((ln for ln in text.splitlines() if "(" in ln), text)
    line = line.strip().strip("`").strip()
    if line.rstrip(".").lower() == "none":
        raise Declined("the LLM says the question is not about the objects of the scene")
    return Program.parse(line).validate()


class LLMQuestionParser:
    def __init__(self, client, *, samples: int = 1):
        self.client = client
        self.samples = samples

    def parse(self, question: str) -> ParseResult:
        messages = [{"role": "system", "content": system_prompt()}, {"role": "user", "content": f"Q: {question}"}]
        reply = self.client.chat(messages, n=self.samples)
        valid, replies, errors = [], list(reply.texts), []
        declined = 0
        for text in reply.texts:
            try:
                valid.append(extract_program(text))
            except Declined:
                declined += 1
            except DataError as e:
                errors.append((text, str(e)))
        if not valid and declined and declined >= len(errors):  # most replies decline: no program
            raise Declined(f"the LLM says {question!r} is not about the objects of the scene")
        retried = False
        if not valid and errors:  # send the error back once
            text, err = errors[0]
            retried = True
            again = self.client.chat(messages + [
                {"role": "assistant", "content": text},
                {"role": "user", "content": f"That program is invalid: {err}\nReply with a corrected program only."}])
            replies += again.texts
            for t in again.texts:
                try:
                    valid.append(extract_program(t))
                except Declined:
                    raise Declined(f"the LLM says {question!r} is not about the objects of the scene") from None
                except DataError as e:
                    errors.append((t, str(e)))
        if not valid:
            raise ParseError(f"the LLM gave no valid program for {question!r}: {errors[-1][1]}")
        votes = Counter(p.to_expr() for p in valid)
        best, n = votes.most_common(1)[0]
        confidence = (0.5 if retried else 1.0) * n / max(self.samples, 1)
        return ParseResult(Program.parse(best), min(confidence, 1.0), replies)
