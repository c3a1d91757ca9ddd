"""Setting up a distillation run: theory, examples, split, run directory; then the loop.

    summary = distill_clevr(DistillRun(theory_text, questions, scenes, out="runs/x"), client)
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..datasets import clevr
from ..errors import DataError, VQAError
from ..reason.solver import load_theory
from .clevr_checker import ENCODING_DOC, CLEVRChecker, example_from_question
from .loop import DistillConfig, Distiller, Split
from .theory import ablate_fraction, ablate_predicate, statements

RULES = Path(__file__).resolve().parents[2] / "rules"


@dataclass
class DistillRun:
    dataset: str
    questions: str
    scenes: str
    out: str
    theory: str | None = None  # incomplete theory file; None: the complete theory, ablated below
    ablate_predicate: str | None = None
    ablate_fraction: float | None = None
    seed: int = 0
    limit: int | None = None  # questions used (first N)
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    config: DistillConfig = field(default_factory=DistillConfig)


# the shipped demo (`vqa distill --replay demo`): theory, questions, scenes, settings, transcript
DEMO_DIR = Path(__file__).resolve().parents[1] / "data" / "distill_demo"

def starting_theory(run: DistillRun) -> tuple[str, dict]:
    """The incomplete theory text and a note on how it was made."""
    if run.theory:
        path = Path(run.theory)
        if not path.exists():
            raise DataError("theory file does not exist", file=path)
        if path.is_dir():
            raise DataError("is a directory; expected one .lp file", file=path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=path) from None
        statements(text, file=path)  # a theory that does not parse is refused here, not by every check
        note = {"theory": str(path)}
    else:
        rules = RULES / run.dataset
        text = load_theory(rules, exclude=[p.name for p in rules.glob("example*.lp")])
        note = {"theory": f"rules/{run.dataset} (complete)"}
    if run.ablate_predicate:
        text, dropped = ablate_predicate(text, run.ablate_predicate)
        note["ablated"] = [s.text for s in dropped]
    if run.ablate_fraction is not None:
        text, dropped = ablate_fraction(text, run.ablate_fraction, run.seed)
        note["ablated"] = note.get("ablated", []) + [s.text for s in dropped]
    return text, note


def load_examples(run: DistillRun) -> list:
    if run.dataset == "gqa":
        from .gqa_checker import load_examples as load_gqa

        examples = load_gqa(run.questions, run.scenes, run.limit)
        if not examples:
            raise DataError("no questions with programs, answers and scene graphs", file=run.questions)
        return examples
    if run.dataset != "clevr":
        raise VQAError(f"unknown dataset {run.dataset!r} (expected clevr or gqa)")
    scenes = clevr.load_scenes(run.scenes)
    examples = []
    for q in clevr.iter_questions(run.questions):
        if run.limit is not None and len(examples) >= run.limit:
            break
        if q.program is None or q.answer is None:
            continue
        if q.image_id not in scenes:
            raise DataError(f"no scene for image {q.image_id!r}", file=run.questions, record=q.qid)
        examples.append(example_from_question(q, scenes[q.image_id]))
    if not examples:
        raise DataError("no questions with programs and answers", file=run.questions)
    return examples


def split_examples(examples: list, test_fraction: float, val_fraction: float, seed: int) -> Split:
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = round(len(order) * test_fraction)
    n_val = round(len(order) * val_fraction)
    pick = lambda idx: [examples[i] for i in sorted(idx)]
    return Split(train=pick(order[n_test + n_val:]), val=pick(order[n_test:n_test + n_val]),
                 test=pick(order[:n_test]))


def prepare(run: DistillRun, *, resume_check: bool = True) -> tuple[str, dict, Split]:
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "run.json"
    record = asdict(run)
    if cfg_path.exists() and resume_check:
        old = json.loads(cfg_path.read_text())
        if old != record:
            diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise VQAError(f"{out} holds a run with other settings ({', '.join(diff)}); "
                           "rerun the same command to resume, or choose another --out")
    theory, note = starting_theory(run)
    (out / "initial_theory.lp").write_text(theory)
    if not cfg_path.exists():
        cfg_path.write_text(json.dumps(record, indent=1))
        (out / "ablation.json").write_text(json.dumps(note, indent=1))
    split = split_examples(load_examples(run), run.test_fraction, run.val_fraction, run.seed)
    return theory, note, split


def distill(run: DistillRun, client, *, replay: str | None = None, progress=None, limits=None) -> dict:
    """`limits`: the sandbox's `SandboxLimits` for every check (default: the checker's)."""
    theory, _, split = prepare(run, resume_check=replay is None)
    if run.dataset == "gqa":
        from .gqa_checker import ENCODING_DOC as doc, GQAChecker

        checker = GQAChecker(limits=limits)
    else:
        checker, doc = CLEVRChecker(limits=limits), ENCODING_DOC
    sample = split.train[:1] or split.test[:1]
    d = Distiller(theory, split, checker, client, run.out, run.config, encoding_doc=doc,
                  example_facts=checker.prompt_facts(sample), replay=replay, progress=progress)
    return d.run()
