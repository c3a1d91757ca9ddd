"""GQA end to end: image + question -> answer, with the GQA models.

    from vqa import Pipeline
    pipe = Pipeline.from_pretrained(dataset="gqa")          # a GQAPipeline on the shipped GQA models
    r = pipe.answer("data/samples/gqa_sample.png", "What color is the large box?")
    r.answer, r.confidence, r.program, r.trace, r.scene     # a `vqa.pipeline.Answer`
    pipe.answer(..., reasoner="nsm")                         # the Neural State Machine instead of ASP

The parts: the GQA scene parser (`vqa.vision.gqa_scene_parser`; its numpy runtime twin when
the `.npz` export is there) turns the image into a probabilistic SceneGraph with GQA names,
attributes and relations; the GQA question parser (`vqa.language.gqa_parser`) turns the
question into a GQA `semantic` program; then

Both reasoners read `vqa.vision.gqa_core.reasoning_view` of the parsed graph (`certain`,
default 0.95): detected objects exist, facts of probability >= 0.95 are facts, those below
0.05 are left out, the rest stay uncertain.

- "asp" (default): the GQA theory (`rules/gqa/`, `vqa.reason.gqa_asp`) answers on the
  most probable reading of the scene; `trace` holds each step's objects or value,
  `confidence` = parse probability x the answer's share among the top answers' readings
  (exp(-cost / 1000) each). The search has a budget (`budget` seconds per question, the
  image's questions together): an answer whose reading is not proven the most probable
  within it has `proven` False and its confidence halved, as in `vqa.pipeline`;
- "nsm": the GQA Neural State Machine (`vqa.reason.nsm_gqa`) answers from the graph and the
  question text; `trace` holds the attention over objects per reasoning step.

Checkpoints (data/checkpoints/): gqa_scene_parser.pt (.npz), gqa_question_parser.pt (.npz),
nsm_gqa.pt.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from .errors import VQAError
from .executor import TraceStep
from .pipeline import BACKENDS, CHECKPOINT_DIR, UNPROVEN_FACTOR, Answer, compute_threads
from .program import Program
from .scene import SceneGraph

REASONERS = ("asp", "nsm")
FILES = {"scene": "gqa_scene_parser.pt", "parser": "gqa_question_parser.pt", "nsm": "nsm_gqa.pt"}


class GQAPipeline:
    """GQA scene parser + GQA question parser + the GQA reasoners (each loaded on first use).
    `backend`: "auto" runs the parsers on the numpy runtime when their `.npz` exports exist
    (no torch import: a fast start) and on torch otherwise; "torch" or "numpy" force one."""

    def __init__(self, *, scene_checkpoint=None, parser_checkpoint=None, nsm_checkpoint=None,
                 reasoner: str = "asp", device: str = "cpu", threads: int | None = 1, backend: str = "auto",
                 top_k: int = 3, certain: float | None = 0.95, budget: float | None = 2.0):  # = vqa.reason.gqa_asp.DEFAULT_BUDGET
        if reasoner not in REASONERS:
            raise VQAError(f"unknown reasoner {reasoner!r} (expected one of {', '.join(REASONERS)})")
        if backend not in BACKENDS:
            raise VQAError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
        self.reasoner, self.device, self.threads, self.backend, self.top_k = reasoner, device, threads, backend, top_k
        if budget is not None and not budget > 0:
            raise VQAError(f"budget must be positive seconds (or None: no limit), got {budget}")
        self.budget = budget  # ASP: seconds of search per question on an uncertain graph (GQAReasonerConfig.budget)
        self.certain = certain  # reasoners answer on `gqa_core.reasoning_view(scene, certain)` (None: the raw graph)
        self._paths = {"scene": scene_checkpoint, "parser": parser_checkpoint, "nsm": nsm_checkpoint}
        self._parts: dict[str, object] = {}
        self._scenes: dict[object, SceneGraph] = {}
        self.cache_size = 16

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path | None = None, **kw) -> "GQAPipeline":
        """The shipped GQA checkpoints, or those of `checkpoint_dir` (same file names)."""
        d = Path(checkpoint_dir) if checkpoint_dir is not None else CHECKPOINT_DIR
        if not d.is_dir():
            raise VQAError(f"{d}: no such checkpoint folder")
        for part, name in FILES.items():
            kw.setdefault(f"{part}_checkpoint", d / name)
        return cls(**kw)

    def checkpoint(self, part: str) -> Path:
        """The file the scene ("scene") or question ("parser") parser loads under the backend."""
        path = Path(self._paths[part] or CHECKPOINT_DIR / FILES[part])
        npz = path.with_suffix(".npz")
        if self.backend == "torch" or (self.backend == "auto" and str(self.device) != "cpu"):
            if path.suffix == ".npz":
                raise VQAError(f"{path}: an exported .npz checkpoint runs on the numpy backend only")
            return path
        if path.suffix == ".npz":
            return path
        if npz.is_file():
            if path.is_file():
                from .errors import DataError
                from .runtime.checkpoints import check_export

                try:
                    check_export(npz, path)
                except DataError as e:
                    if self.backend == "numpy":
                        raise
                    import warnings  # auto: the .pt file is the model; its export only starts faster

                    warnings.warn(f"{e}; running {path.name} on torch", stacklevel=3)
                    return path
            return npz
        if self.backend == "numpy":
            raise VQAError(f"{npz}: no numpy export of {path.name} (make it with `vqa export-numpy {path}`)")
        return path

    # ---- the parts (lazy) ---------------------------------------------------------------
    @property
    def scene_parser(self):
        if "scene" not in self._parts:
            path = self.checkpoint("scene")
            if path.suffix == ".npz":
                from .runtime.gqa_scene_parser import NumpyGQASceneParser

                self._parts["scene"] = NumpyGQASceneParser.load(path)
            else:
                from .vision.gqa_scene_parser import load_gqa_scene_parser

                self._parts["scene"] = load_gqa_scene_parser(path, device=self.device)
        return self._parts["scene"]

    @property
    def question_parser(self):
        if "parser" not in self._parts:
            from .language.gqa_parser import GQAQuestionParser

            path = self.checkpoint("parser")
            self._parts["parser"] = GQAQuestionParser.from_checkpoint(
                path, device="cpu" if path.suffix == ".npz" else self.device)
        return self._parts["parser"]

    @property
    def asp(self):
        if "asp" not in self._parts:
            from .reason.gqa_asp import GQAReasoner, GQAReasonerConfig

            self._parts["asp"] = GQAReasoner(GQAReasonerConfig(top_k=self.top_k, budget=self.budget))
        return self._parts["asp"]

    @property
    def nsm(self):
        if "nsm" not in self._parts:
            from .reason.nsm_gqa import GQANSMReasoner

            self._parts["nsm"] = GQANSMReasoner(self._paths["nsm"], device=self.device)
        return self._parts["nsm"]

    # ---- scenes ---------------------------------------------------------------------------
    def scene(self, image) -> SceneGraph:
        """The scene graph of an image path or PIL image (parsed once, cached), or a SceneGraph."""
        if isinstance(image, SceneGraph):
            return image
        if isinstance(image, (str, Path)):
            p = Path(image)
            if not p.exists():
                raise VQAError(f"{p}: no such image file")
            key = (str(p.resolve()), p.stat().st_mtime_ns)
        elif hasattr(image, "convert") and hasattr(image, "tobytes"):
            import hashlib

            key = ("pil", image.size, image.mode, hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest())
        else:
            raise VQAError(f"expected an image path, a PIL image or a SceneGraph, got {type(image).__name__}")
        graph = self._scenes.get(key)
        if graph is None:
            with compute_threads(self.threads):
                graph = self.scene_parser.parse_image(image, image_id=Path(image).stem if key[0] != "pil" else None)
            if len(self._scenes) >= self.cache_size:
                self._scenes.pop(next(iter(self._scenes)))
            self._scenes[key] = graph
        return graph

    # ---- answering ------------------------------------------------------------------------
    def answer(self, image, question: str, *, reasoner: str | None = None) -> Answer:
        return self.answer_many(image, [question], reasoner=reasoner)[0]

    def answer_many(self, image, questions: list[str], *, reasoner: str | None = None) -> list[Answer]:
        """Answer questions about one image: one scene parse, one batched question parse,
        one reasoner call."""
        reasoner = reasoner or self.reasoner
        if reasoner not in REASONERS:
            raise VQAError(f"unknown reasoner {reasoner!r} (expected one of {', '.join(REASONERS)})")
        questions = [str(q) for q in questions]
        for i, q in enumerate(questions):
            if not q.strip():
                raise VQAError(f"question {i + 1} is empty")
        t0 = time.perf_counter()
        scene = self.scene(image)
        t1 = time.perf_counter()
        with compute_threads(self.threads):
            parsed = self.question_parser.parse_batch(questions)
        t2 = time.perf_counter()
        if self.certain is not None and scene.info.get("source") == "gqa_scene_parser":
            from .vision.gqa_core import reasoning_view

            scene = reasoning_view(scene, self.certain)
        results = (self._answer_asp if reasoner == "asp" else self._answer_nsm)(scene, questions, parsed)
        t3 = time.perf_counter()
        n = max(1, len(questions))
        for r in results:
            r.timings = {"scene": t1 - t0, "parse": (t2 - t1) / n, "reason": (t3 - t2) / n}
        return results

    def _answer_asp(self, scene, questions, parsed) -> list[Answer]:
        from .datasets.gqa_program import parse_step

        programs = {str(i): [parse_step(s["operation"], s["argument"], s["dependencies"]) for s in r.semantic]
                    for i, r in enumerate(parsed)}
        answers = self.asp.answer_image(scene, programs)
        out = []
        for i, (q, r) in enumerate(zip(questions, parsed)):
            a = answers.get(str(i))
            prog = _program(r.semantic)
            if a is None:  # an empty program (cannot happen under the parser's grammar)
                out.append(Answer(q, None, 0.0, prog, [], scene, "asp", error="the question parser gave no program",
                                  parse_confidence=float(r.confidence)))
                continue
            trace = [_trace_step(t, r.semantic) for t in a.trace]
            best = min((c for _, c in a.top), default=0)
            weights = [(ans, math.exp(-(c - best) / 1000)) for ans, c in a.top]
            total = sum(w for _, w in weights) or 1.0
            top = [(ans, w / total) for ans, w in weights]
            share = (top[0][1] if top else 0.0) * (1.0 if a.proven else UNPROVEN_FACTOR)
            if a.answer is not None:
                error = None
            elif a.failed_operation == "budget":
                error = f"no reading of the scene found within the budget of {self.budget} s per question"
            else:
                error = f"step {a.failed_step} ({a.failed_operation}) found nothing in the scene"
            out.append(Answer(q, a.answer, float(r.confidence) * share if a.answer is not None else 0.0, prog, trace,
                              scene, "asp", error=error, top=top, parse_confidence=float(r.confidence),
                              reading_probability=math.exp(-a.cost / 1000), proven=a.proven))
        return out

    def _answer_nsm(self, scene, questions, parsed) -> list[Answer]:
        with compute_threads(self.threads):
            answers = self.nsm.answer_batch([scene] * len(questions), questions)
        out = []
        for q, r, a in zip(questions, parsed, answers):
            trace = [TraceStep(i, op, (), dict(dist)) for i, (op, dist) in enumerate(zip(a.step_ops,
                                                                                         a.step_distributions))]
            out.append(Answer(q, a.answer, float(a.confidence), _program(r.semantic), trace, scene, "nsm",
                              top=[(a.answer, float(a.confidence))], parse_confidence=float(r.confidence)))
        return out


def _program(semantic: list[dict]) -> Program | None:
    try:
        return Program.from_gqa(semantic) if semantic else None
    except Exception:  # noqa: BLE001 (the parser's grammar keeps programs well formed; shown raw otherwise)
        return None


def _trace_step(t: dict, semantic: list[dict]) -> TraceStep:
    """One ASP trace entry ({step, operation, argument, objects?, value?, failed?}) as a TraceStep."""
    i = int(t["step"])
    deps = tuple(semantic[i].get("dependencies", ())) if i < len(semantic) else ()
    token = f"{t['operation']}: {t['argument']}" if t.get("argument") else t["operation"]
    value = tuple(t["objects"]) if "objects" in t else t.get("value")
    return TraceStep(i, token, deps, value, "no object found" if t.get("failed") else None)
