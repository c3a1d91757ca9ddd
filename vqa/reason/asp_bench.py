"""Benchmark of the ASP reasoner on generated scenes, measured side by side in one run.

    report = run_benchmark(n_scenes=100, questions_per_scene=10)
    print(format_benchmark(report))

Methods (all on the same questions, gold scenes, one process, one thread):
- `batched_many`, the issue's (a): the batched solving as `vqa evaluate` runs it, one
  ground+solve for all the questions of `scenes_per_call` scenes (`answer_many`; default 32,
  `vqa evaluate --scenes-per-call`'s default);
- `batched`: one ground+solve per scene (`ASPReasoner.answer_batch`, what `Pipeline` does
  for the questions about one image), where clingo's fixed cost per call counts most;
- `batched_large` (when `large_call` is given, e.g. 100): one ground+solve per
  `large_call` scenes (`answer_many`: all questions of that many scenes in one call), where
  clingo's fixed cost per call no longer counts;
- `per_question`: a fresh clingo Control per question, as earlier ASP VQA pipelines do;
- `reference`: the Python reference executor, for scale.
Every ASP answer is checked against the reference executor (answer, error and failing
step, and the trace when traces are on); `mismatches` counts disagreements. Wall-clock and process CPU time are both
reported (best of `repeats`): on a shared machine the CPU figure is the steadier one.

Questions come from the project's question generator (`vqa.datasets.synth.questions`,
source "generated") or from the random-program fuzzer (`vqa.reason.random_programs`,
source "random", which also includes broken programs).
"""
from __future__ import annotations

import random
import time

import numpy as np

from ..executor import execute
from ..program import Program
from ..scene import SceneGraph
from .asp import ASPReasoner
from .random_programs import random_program

SCENES_PER_CALL = 32  # vqa evaluate's default --scenes-per-call
TARGET_QPS = 5000     # issue 4: (a) >= 5,000 questions/s on one core with gold scenes
TARGET_RATIO = 5      # and (a)/(b) >= 5


def make_workload(n_scenes: int, questions_per_scene: int, *, seed: int = 0, source: str = "generated"
                  ) -> list[tuple[SceneGraph, list[Program]]]:
    """`n_scenes` generated scenes with `questions_per_scene` programs each."""
    from ..datasets.synth.scenes import sample_scene

    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    gen = None
    if source == "generated":
        from ..datasets.synth.questions import QuestionGenerator

        gen = QuestionGenerator(np.random.default_rng(seed + 1))
    elif source != "random":
        raise ValueError(f"unknown question source {source!r} (generated or random)")
    batch = []
    for i in range(n_scenes):
        record = sample_scene(rng)
        record = {**record, "image_index": i, "image_filename": f"BENCH_{i:06d}.png"}
        scene = SceneGraph.from_clevr(record)
        if gen is not None:
            programs = [Program.from_clevr(q["program"]) for q in gen.generate(record, questions_per_scene)]
        else:
            programs = [random_program(pyrng, scene) for _ in range(questions_per_scene)]
        batch.append((scene, programs))
    return batch


def run_benchmark(n_scenes: int = 100, questions_per_scene: int = 10, *, seed: int = 0, source: str = "generated",
                  scenes_per_call: int = SCENES_PER_CALL, large_call: int | None = None, repeats: int = 1, explain: bool = True) -> dict:
    """Questions/s of each method (best of `repeats`) and agreement with the executor;
    `explain=False` leaves the traces out (as `vqa evaluate` does)."""
    batch = make_workload(n_scenes, questions_per_scene, seed=seed, source=source)
    n = sum(len(ps) for _, ps in batch)
    reasoner = ASPReasoner(explain=explain)
    reference = [[execute(p, s) for p in ps] for s, ps in batch]

    def batched():
        return [reasoner.answer_batch(s, ps) for s, ps in batch]

    def batched_many():
        out = []
        for i in range(0, len(batch), scenes_per_call):
            out.extend(reasoner.answer_many(batch[i:i + scenes_per_call]))
        return out

    def batched_large():
        out = []
        for i in range(0, len(batch), large_call):
            out.extend(reasoner.answer_many(batch[i:i + large_call]))
        return out

    def per_question():
        return [[reasoner.answer(s, p) for p in ps] for s, ps in batch]

    def ref():
        return [[execute(p, s) for p in ps] for s, ps in batch]

    methods = {"batched_many": batched_many, "batched": batched, "batched_large": batched_large,
               "per_question": per_question, "reference": ref}
    if large_call is None:
        del methods["batched_large"]
    report = {"scenes": n_scenes, "questions": n, "questions_per_scene": questions_per_scene, "source": source,
              "scenes_per_call": scenes_per_call, "large_call": large_call, "seed": seed, "explain": explain, "methods": {}}
    for name, fn in methods.items():
        best, best_cpu, answers = None, None, None
        for _ in range(max(1, repeats)):
            t, c = time.perf_counter(), time.process_time()
            answers = fn()
            dt, dc = time.perf_counter() - t, time.process_time() - c
            best = dt if best is None else min(best, dt)
            best_cpu = dc if best_cpu is None else min(best_cpu, dc)
        mismatches = sum(not _agrees(a, r, explain and name != "reference")
                         for rs, as_ in zip(reference, answers) for r, a in zip(rs, as_))
        report["methods"][name] = {"seconds": round(best, 4), "questions_per_second": round(n / best, 1),
                                   "cpu_seconds": round(best_cpu, 4),
                                   "questions_per_cpu_second": round(n / max(best_cpu, 1e-9), 1),
                                   "mismatches": mismatches}
    m = report["methods"]
    report["batched_over_per_question"] = round(m["batched"]["questions_per_second"]
                                                / m["per_question"]["questions_per_second"], 2)
    report["batched_many_over_per_question"] = round(m["batched_many"]["questions_per_second"]
                                                     / m["per_question"]["questions_per_second"], 2)
    if "batched_large" in m:
        report["batched_large_over_per_question"] = round(m["batched_large"]["questions_per_second"]
                                                          / m["per_question"]["questions_per_second"], 2)
    report["batched_over_per_question_cpu"] = round(m["batched"]["questions_per_cpu_second"]
                                                    / m["per_question"]["questions_per_cpu_second"], 2)
    report["batched_many_over_per_question_cpu"] = round(m["batched_many"]["questions_per_cpu_second"]
                                                         / m["per_question"]["questions_per_cpu_second"], 2)
    report["failed_questions"] = sum(r.answer is None for rs in reference for r in rs)
    a = m["batched_many"]
    report["targets"] = {"a_questions_per_cpu_second": a["questions_per_cpu_second"],
                         "a_over_b": report["batched_many_over_per_question"],
                         "a_meets_5000": a["questions_per_cpu_second"] >= TARGET_QPS,
                         "a_over_b_meets_5": report["batched_many_over_per_question"] >= TARGET_RATIO}
    return report


def _agrees(a, r, traces: bool) -> bool:
    """An ASP answer (or an executor result) against the reference executor's result."""
    if (a.answer, a.error, a.error_step) != (r.answer, r.error, r.error_step):
        return False
    return not traces or [t.to_dict() for t in a.trace] == [t.to_dict() for t in r.trace]


def format_benchmark(report: dict) -> str:
    lines = [f"{report['questions']} questions on {report['scenes']} generated scenes "
             f"({report['questions_per_scene']} per scene, {report['source']} programs, "
             f"{report['failed_questions']} of them fail by design of the data; "
             f"{'with' if report.get('explain', True) else 'without'} traces)"]
    labels = {"batched_many": f"(a) one ground+solve per {report['scenes_per_call']} scenes",
              "batched": "(a1) one ground+solve per scene",
              "batched_large": f"(a'') one ground+solve per {report['large_call']} scenes",
              "per_question": "(b) fresh Control per question", "reference": "Python reference executor"}
    for name, m in report["methods"].items():
        lines.append(f"  {labels[name]:<38} {m['questions_per_second']:>10.1f} questions/s "
                     f"({m['questions_per_cpu_second']:.1f} per CPU second)   mismatches {m['mismatches']}")
    lines.append(f"  (a)/(b) = {report['batched_many_over_per_question']} "
                 f"(CPU time: {report['batched_many_over_per_question_cpu']})"
                 f"   (a1)/(b) = {report['batched_over_per_question']} (CPU time: {report['batched_over_per_question_cpu']})"
                 + (f"   (a'')/(b) = {report['batched_large_over_per_question']}" if "batched_large" in report["methods"] else ""))
    t = report["targets"]
    lines.append(f"  targets: (a) >= {TARGET_QPS} questions per CPU second: "
                 f"{'met' if t['a_meets_5000'] else 'NOT met'} ({t['a_questions_per_cpu_second']:.0f}); "
                 f"(a)/(b) >= {TARGET_RATIO}: {'met' if t['a_over_b_meets_5'] else 'NOT met'} ({t['a_over_b']})")
    return "\n".join(lines)
