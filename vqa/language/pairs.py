"""Training data of the question parser, read without torch (so that a bad file is named in
one line before torch is imported by `vqa train question-parser`)."""
from __future__ import annotations

from pathlib import Path

from ..datasets.clevr import iter_questions
from ..errors import DataError


def load_pairs(paths) -> list[tuple[str, list[str]]]:
    """(question, prefix program) pairs of CLEVR questions files; texts deduplicated."""
    seen, out = set(), []
    for path in paths:
        for q in iter_questions(path):
            if q.program is None:
                raise DataError("question has no program (a test split cannot train a parser)",
                                file=path, record=q.qid, field="program")
            key = q.text.strip().lower()
            if key not in seen:
                seen.add(key)
                out.append((q.text, q.program.to_prefix()))
    if not out:
        raise DataError("no questions", file=", ".join(map(str, paths)), field="questions")
    return out


def load_training_data(train_paths, val_path) -> tuple[list[tuple[str, list[str]]], list]:
    """(training pairs, held-out questions) of `vqa train question-parser`'s files."""
    train_paths = [Path(p) for p in ([train_paths] if isinstance(train_paths, (str, Path)) else train_paths)]
    return load_pairs(train_paths), list(iter_questions(val_path))
