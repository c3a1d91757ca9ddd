"""The parts composed into what a user calls: image + question -> checked answer.

    from vqa import Pipeline
    pipe = Pipeline.from_pretrained()                 # the shipped checkpoints, CPU
    result = pipe.answer("scene.png", "How many red cubes are there?")
    result.answer, result.confidence, result.program, result.trace, result.scene
    pipe.answer_many("scene.png", ["...", "..."])      # one scene parse, one batched parse/solve
    pipe.answer("scene.png", "...", reasoner="nsm")     # the Neural State Machine instead of ASP

A parsed question with more than `max_unknown` (default `DEFAULT_MAX_UNKNOWN`) of its words
outside the question parser's vocabulary, or (with `min_parse`) a parse probability below
`min_parse`, is not answered: `understood` is False, `error` says why, and `program` holds
the parse the reasoner would have run.

The image goes through the scene parser (`vqa.vision`) into a probabilistic `SceneGraph`
(cached per image, so many questions about one image parse it once), the question through
the question parser (`vqa.language.parser`) into a CLEVR `Program`, and the reasoner
answers:

- "asp" (default): the clingo theory in `rules/clevr/` runs the program over the scene's
  readings; the answer is that of the most probable reading in which the program can be
  carried out, and `trace` holds each step's value (object sets as tuples of object ids).
  `confidence` = question-parse probability x the answer's share among the top readings x
  the probability of the answer's reading relative to the scene's most probable reading
  (`reading_probability`, exp(-cost / 1000)). A question that can be carried out only on a
  reading less probable than `min_reading` (default `vqa.reason.asp.DEFAULT_MIN_READING`)
  times the scene's best gets no answer: `error` says that the question presupposes what
  the most probable reading does not hold, naming the failing step, as on a gold scene
  (`presupposition` True).
  On an uncertain scene the search for that reading has a budget (`budget` seconds per
  question, default `vqa.reason.asp.DEFAULT_BUDGET`); an answer whose reading was not
  proven the best within it has `proven` False and its confidence halved
  (`UNPROVEN_FACTOR`).
- "nsm": the Neural State Machine answers from the scene graph and the question text;
  `confidence` is its answer probability. `trace` holds one entry per step of the parsed
  program (`vqa.reason.nsm.NSMTraceStep`): the attention over objects ({object id:
  probability}) of the machine step that carries the step out, or whose state the step
  reads (`carried` False: `scene`, `count`, `query_*`, ... are read by the answer
  classifier), with the machine step's number and op; a filter chain is one machine step
  (`together`). Where the program asks for more machine steps than the model has, `trace`
  holds the machine's own steps (op, attention).

A `SceneGraph` (or a path to a SceneGraph JSON / CLEVR scenes file via `load_scene`) can be
given instead of an image: then no scene parser runs. A `Program` (or program text such
as "count(filter_color[red](scene))") can be given as `program=` to skip the question
parser.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .datasets import clevr
from .datasets.jsonstream import top_level_keys
from .errors import SOURCE_TREE_HINT, DataError, VQAError
from .executor import TraceStep
from .program import Program
from .scene import SceneGraph

REASONERS = ("asp", "nsm")
# a parsed question with more than this share of its words outside the question parser's
# vocabulary is not understood (issue 25, item 2; measured in rules/README.md, "Honest answers")
DEFAULT_MAX_UNKNOWN = 0.3
UNPROVEN_FACTOR = 0.5  # an ASP answer whose best reading was not proven within the budget: confidence x this
_DEFAULT = object()  # "the reasoner's default budget"
BACKENDS = ("auto", "numpy", "torch")
CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "data" / "checkpoints"
# the shipped model sets: scene parser, question parser, NSM (files in CHECKPOINT_DIR)
# - synth: trained on the project's own world (its renderer, its 59 question families); the default
# - clevr: for CLEVR's distribution: the scene parser fine-tuned on Blender renders like CLEVR's,
#   the question parser and the NSM trained on the official templates' questions too
MODEL_SETS = {
    "synth": {"scene_checkpoint": "scene_parser.pt", "parser_checkpoint": "question_parser.pt",
              "nsm_checkpoint": "nsm_clevr.pt"},
    "clevr": {"scene_checkpoint": "scene_parser_clevr.pt", "parser_checkpoint": "question_parser_official.pt",
              "nsm_checkpoint": "nsm_clevr_official.pt"},
}


_BLAS = None  # one threadpoolctl controller (finding the loaded BLAS libraries takes milliseconds)


@contextmanager
def compute_threads(n: int | None):
    """Run the block with `n` compute threads (None: leave as is): torch's intra-op threads
    when torch is loaded, and the BLAS pool of numpy (the numpy runtime). The models are
    small: one thread is fastest for one image or question, and many threads on a busy
    machine make every small operation wait for the others."""
    global _BLAS
    if n is None:
        yield
        return
    import sys

    if _BLAS is None:
        import numpy  # noqa: F401 (its BLAS must be loaded for threadpoolctl to find it)
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    torch = sys.modules.get("torch")
    old = torch.get_num_threads() if torch is not None else None
    if old is not None and old != n:
        torch.set_num_threads(n)
    try:
        with _BLAS.limit(limits=n, user_api="blas"):
            yield
    finally:
        if old is not None and old != n:
            torch.set_num_threads(old)



def load_scene(path: str | Path, image_id: str | None = None) -> SceneGraph:
    """A scene from a SceneGraph JSON file or from a CLEVR scenes file (by image id or
    image index, else the first scene)."""
    path = Path(path)
    if "scenes" not in top_level_keys(path, stop_at="scenes"):
        return SceneGraph.load(path)
    for i, rec in enumerate(clevr.iter_scene_records(path)):
        if image_id is None or image_id in (clevr.clevr_image_id(rec), str(rec.get("image_index"))):
            return SceneGraph.from_clevr(rec, file=path, record=i)
    raise DataError(f"no scene with image id or index {image_id!r}", file=path)


@dataclass
class Answer:
    """One answered question.

    `answer` is None when the question could not be answered (then `error` says why and
    `trace` shows the step that failed). `top` lists (answer, probability) alternatives,
    best first. `selected` gives, per trace step, the objects it selects (for drawings)."""

    question: str
    answer: str | None
    confidence: float
    program: Program | None
    trace: list[TraceStep]
    scene: SceneGraph
    reasoner: str
    error: str | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    parse_confidence: float = 1.0
    timings: dict[str, float] = field(default_factory=dict)
    # ASP: whether the answer's reading is proven the most probable one in which the program
    # can be carried out (False: the search stopped at its budget, see `Pipeline`)
    proven: bool = True
    # ASP: the probability of the answer's reading relative to the scene's most probable one
    # (1.0 when the question is answered on that reading); for a refused question
    # (`presupposition`), that of the cheapest reading on which it could be carried out
    reading_probability: float | None = None
    presupposition: bool = False  # ASP: refused, its presupposition fails on the most probable reading
    understood: bool = True  # False: the question looks outside the domain (`Pipeline`, `max_unknown`)
    unknown_share: float = 0.0  # the share of the question's words outside the parser's vocabulary
    # which parser gave `program`: "seq2seq", "llm" (the fallback, for a question the seq2seq
    # parser did not understand) or "given" (a program passed in)
    parser: str = "seq2seq"
    fallback: str | None = None  # the LLM fallback's outcome when it was asked: "used" or why it gave nothing

    @property
    def ok(self) -> bool:
        return self.error is None

    def selected(self) -> list[dict[str, float]]:
        """Per trace step: {object id: weight} of the objects the step selects (1.0 for the
        ASP reasoner's sets and single objects, the attention for the NSM); {} for steps
        whose value is not objects (counts, attribute values, yes/no)."""
        ids = set(self.scene.ids)
        out = []
        for t in self.trace:
            v = t.value
            att = getattr(t, "attention", None)  # NSM program steps: the state the step carries out or reads
            if att is not None:
                out.append({k: float(p) for k, p in att.items() if k in ids})
            elif isinstance(v, dict):
                out.append({k: float(p) for k, p in v.items() if k in ids})
            elif isinstance(v, tuple):
                out.append({k: 1.0 for k in v if k in ids})
            elif isinstance(v, str) and v in ids:
                out.append({v: 1.0})
            else:
                out.append({})
        return out

    def to_dict(self) -> dict:
        trace = []
        for t in self.trace:
            d = t.to_dict()
            if isinstance(t.value, dict):
                d["value"] = {k: round(float(p), 4) for k, p in t.value.items()}
            trace.append(d)
        return {"question": self.question, "answer": self.answer, "confidence": round(self.confidence, 6),
                "error": self.error, "reasoner": self.reasoner,
                "program": None if self.program is None else self.program.to_clevr("function"),
                "program_text": None if self.program is None else self.program.to_expr(),
                "parse_confidence": round(self.parse_confidence, 6),
                "top": [[a, round(p, 6)] for a, p in self.top], "proven": self.proven,
                "reading_probability": None if self.reading_probability is None else float(
                    f"{self.reading_probability:.6g}"),
                "presupposition": self.presupposition, "understood": self.understood,
                "unknown_share": round(self.unknown_share, 4), "parser": self.parser, "fallback": self.fallback,
                "trace": trace,
                "image_id": self.scene.image_id, "timings": {k: round(v, 6) for k, v in self.timings.items()}}


class Pipeline:
    """Scene parser + question parser + reasoners; each part is loaded on first use.

    `backend`: how the two parsers run. "numpy" (what "auto" picks on the CPU when the
    checkpoints have their `.npz` exports, as the shipped ones do): the torch-free runtime of
    `vqa.runtime`, same outputs, no torch import (a fast start). "torch": the `.pt`
    checkpoints on `device` (what "auto" picks for CUDA, or for `.pt` files given
    explicitly). The NSM reasoner always runs on torch."""

    def __init__(self, *, scene_checkpoint=None, parser_checkpoint=None, nsm_checkpoint=None,
                 theory_dir=None, reasoner: str = "asp", device: str = "cpu", top_k: int = 3,
                 threads: int | None = 1, backend: str = "auto", budget=_DEFAULT, min_reading=_DEFAULT,
                 max_unknown: float | None = DEFAULT_MAX_UNKNOWN, min_parse: float | None = None, fallback=None):
        if reasoner not in REASONERS:
            raise VQAError(f"unknown reasoner {reasoner!r} (expected one of {', '.join(REASONERS)})")
        if backend not in BACKENDS:
            raise VQAError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
        if backend == "numpy" and str(device) != "cpu":
            raise VQAError(f"the numpy backend runs on the CPU only (device {device!r} asked)")
        self.reasoner = reasoner
        self.device = device
        self.threads = threads
        self.backend = backend
        self._paths = {"scene": scene_checkpoint, "parser": parser_checkpoint, "nsm": nsm_checkpoint}
        self._theory_dir, self._top_k = theory_dir, top_k
        if budget is not _DEFAULT and budget is not None and not budget > 0:
            raise VQAError(f"budget must be positive seconds (or None: no limit), got {budget}")
        self._budget = budget  # ASP search seconds per question on uncertain scenes
        if min_reading is not _DEFAULT and min_reading is not None and not 0 <= min_reading <= 1:
            raise VQAError(f"min_reading must be in [0, 1] (0 or None: no limit), got {min_reading}")
        self._min_reading = min_reading  # ASP: least reading probability relative to the scene's best
        for name, v in (("max_unknown", max_unknown), ("min_parse", min_parse)):
            if v is not None and not 0 <= v <= 1:
                raise VQAError(f"{name} must be in [0, 1] (None: no limit), got {v}")
        self.max_unknown, self.min_parse = max_unknown, min_parse
        # a question the seq2seq parser did not understand is parsed again by `fallback` (an
        # object with `parse(question) -> .program, .confidence`, e.g. the LLM parser)
        self.fallback = fallback
        self._parts: dict[str, object] = {}
        self._scenes: dict[object, SceneGraph] = {}  # image key -> parsed scene (recent images)
        self.cache_size = 16

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path | None = None, *, models: str = "synth",
                        dataset: str = "clevr", **kw) -> "Pipeline":
        """A pipeline on the shipped checkpoints (or on `checkpoint_dir` holding
        scene_parser.pt, question_parser.pt and nsm_clevr.pt, and optionally the parsers'
        `.npz` exports, which the numpy backend uses).

        `models`: which shipped set (`MODEL_SETS`): "synth" (the project's own world, the
        default) or "clevr" (CLEVR's distribution: Blender renders, official question
        templates). Checkpoints given in `kw` win over the set's.

        `dataset="gqa"`: a `vqa.gqa_pipeline.GQAPipeline` on the GQA models instead (GQA
        scene parser, GQA question parser, GQA NSM; ASP on rules/gqa)."""
        if dataset == "gqa":
            from .gqa_pipeline import GQAPipeline

            if models != "synth":
                raise VQAError("--models picks a CLEVR model set; the GQA models are one set")
            return GQAPipeline.from_pretrained(checkpoint_dir, **kw)
        if dataset != "clevr":
            raise VQAError(f"unknown dataset {dataset!r} (expected clevr or gqa)")
        if models not in MODEL_SETS:
            raise VQAError(f"unknown model set {models!r} (expected one of {', '.join(MODEL_SETS)})")
        if checkpoint_dir is not None and models != "synth":
            raise VQAError("give a checkpoint folder or a model set, not both")
        if checkpoint_dir is None:
            for key, name in MODEL_SETS[models].items():
                kw.setdefault(key, CHECKPOINT_DIR / name if models != "synth" else None)
        if checkpoint_dir is not None:
            d = Path(checkpoint_dir)
            if not d.is_dir():
                raise VQAError(f"{d}: no such checkpoint folder")
            kw.setdefault("scene_checkpoint", d / "scene_parser.pt")
            kw.setdefault("parser_checkpoint", d / "question_parser.pt")
            kw.setdefault("nsm_checkpoint", d / "nsm_clevr.pt")
        return cls(**kw)

    def checkpoint(self, part: str) -> Path:
        """The file the scene ("scene") or question ("parser") parser loads under this
        pipeline's backend: a `.npz` export runs on numpy, a `.pt` file on torch."""
        given = self._paths[part]
        path = Path(given) if given is not None else CHECKPOINT_DIR / ("scene_parser.pt" if part == "scene"
                                                                       else "question_parser.pt")
        npz = path.with_suffix(".npz")
        if self.backend == "torch" or (self.backend == "auto" and str(self.device) != "cpu"):
            if path.suffix == ".npz":
                raise VQAError(f"{path}: an exported .npz checkpoint runs on the numpy backend only")
            return path
        if path.suffix == ".npz" or (self.backend == "auto" and given is not None and not npz.is_file()):
            return path  # auto: a .pt file without its export runs on torch
        if not npz.is_file() and not path.is_file() and path.parent == CHECKPOINT_DIR:
            raise VQAError(f"{path}: no shipped checkpoint ({SOURCE_TREE_HINT})")
        if not npz.is_file():
            raise VQAError(f"{npz}: no numpy export of {path.name} (make it with `vqa export-numpy {path}`, "
                           f"or use backend='torch')")
        if path.is_file():
            from .runtime.checkpoints import check_export

            check_export(npz, path)
        return npz

    # ---- the parts (lazy) ---------------------------------------------------------------
    @property
    def scene_parser(self):
        if "scene" not in self._parts:
            path = self.checkpoint("scene")
            if path.suffix == ".npz":
                from .runtime.scene_parser import NumpySceneParser

                self._parts["scene"] = NumpySceneParser.load(path)
            else:
                from .vision.scene_parser import load_scene_parser

                self._parts["scene"] = load_scene_parser(path, device=self.device)
        return self._parts["scene"]

    @property
    def question_parser(self):
        if "parser" not in self._parts:
            from .language.parser import load_question_parser

            path = self.checkpoint("parser")
            self._parts["parser"] = load_question_parser(path, device="cpu" if path.suffix == ".npz" else self.device)
        return self._parts["parser"]

    @property
    def asp(self):
        if "asp" not in self._parts:
            from .reason.asp import ASPReasoner

            kw = {} if self._budget is _DEFAULT else {"budget": self._budget}
            if self._min_reading is not _DEFAULT:
                kw["min_reading"] = self._min_reading or None
            self._parts["asp"] = ASPReasoner(self._theory_dir, top_k=self._top_k, explain=True, **kw)
        return self._parts["asp"]

    @property
    def nsm(self):
        if "nsm" not in self._parts:
            from .reason.nsm import DEFAULT_CHECKPOINT, NSMReasoner

            self._parts["nsm"] = NSMReasoner.from_checkpoint(self._paths["nsm"] or DEFAULT_CHECKPOINT,
                                                             device=self.device)
        return self._parts["nsm"]

    # ---- scenes and programs --------------------------------------------------------------
    def scene(self, image) -> SceneGraph:
        """The scene graph of an image (path or PIL image; parsed once and cached), or the
        scene itself when given a SceneGraph."""
        if isinstance(image, SceneGraph):
            return image
        if isinstance(image, (str, Path)):
            p = Path(image)
            if not p.exists():
                raise VQAError(f"{p}: no such image file")
            key = (str(p.resolve()), p.stat().st_mtime_ns)
        elif hasattr(image, "convert") and hasattr(image, "tobytes"):  # a PIL image: keyed by its pixels
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

    def programs(self, questions: list[str], programs=None) -> list[tuple[Program, float]]:
        """(program, parse probability) per question; `programs` (Program or program text,
        one per question, None entries parsed) skips the parser."""
        return [(p, c) for p, c, _ in self._parse(questions, programs)]

    def _parse(self, questions: list[str], programs=None) -> list[tuple[Program, float, list[str] | None]]:
        """(program, parse probability, the words as the parser saw them: None for a given
        program) per question."""
        given = list(programs) if programs is not None else [None] * len(questions)
        if len(given) != len(questions):
            raise VQAError(f"{len(questions)} questions but {len(given)} programs")
        out: list[tuple[Program, float] | None] = [None] * len(questions)
        todo = []
        for i, p in enumerate(given):
            if p is None:
                todo.append(i)
            else:
                prog = p if isinstance(p, Program) else Program.parse(str(p))
                out[i] = (prog.validate(), 1.0, None)
        if todo:
            with compute_threads(self.threads):
                parsed = self.question_parser.parse_batch([questions[i] for i in todo])
            for i, r in zip(todo, parsed):
                out[i] = (r.program, float(r.confidence), list(r.words))
        return out  # type: ignore[return-value]

    # ---- answering ------------------------------------------------------------------------
    def answer(self, image, question: str, *, reasoner: str | None = None, program=None) -> Answer:
        """Answer one question about an image (path, PIL image or SceneGraph)."""
        return self.answer_many(image, [question], reasoner=reasoner,
                                programs=None if program is None else [program])[0]

    def answer_many(self, image, questions: list[str], *, reasoner: str | None = None,
                    programs=None) -> list[Answer]:
        """Answer many questions about one image: one scene parse, one batched question
        parse and one reasoner call."""
        reasoner = reasoner or self.reasoner
        if reasoner not in REASONERS:
            raise VQAError(f"unknown reasoner {reasoner!r} (expected one of {', '.join(REASONERS)})")
        questions = [str(q) for q in questions]
        given = list(programs) if programs is not None else [None] * len(questions)
        for i, q in enumerate(questions):
            if not q.strip() and (reasoner == "nsm" or i >= len(given) or given[i] is None):
                raise VQAError(f"question {i + 1} is empty")
        t0 = time.perf_counter()
        scene = self.scene(image)
        t1 = time.perf_counter()
        parsed = self._parse(questions, programs)
        t2 = time.perf_counter()
        verdicts = [self.not_understood(prog, conf, words) for prog, conf, words in parsed]
        parsers = ["seq2seq" if words is not None else "given" for _, _, words in parsed]
        outcomes: list[str | None] = [None] * len(questions)
        if self.fallback is not None:
            for i, v in enumerate(verdicts):
                if v is not None:
                    got, outcomes[i] = self._ask_fallback(questions[i])
                    if got is not None:
                        parsed[i] = (got[0], got[1], parsed[i][2])
                        verdicts[i], parsers[i] = None, "llm"
                    else:
                        verdicts[i] = f"{v}; the LLM parser gave no program either: {outcomes[i]}"
        keep = [i for i, v in enumerate(verdicts) if v is None]
        kept = [(parsed[i][0], parsed[i][1]) for i in keep]
        answered = (self._answer_asp if reasoner == "asp" else self._answer_nsm)(
            scene, [questions[i] for i in keep], kept) if keep else []
        results: list = [None] * len(questions)
        for i, r in zip(keep, answered):
            r.unknown_share = _unknown_share(parsed[i][2])
            r.parser, r.fallback = parsers[i], outcomes[i]
            results[i] = r
        for i, v in enumerate(verdicts):
            if v is not None:
                prog, conf, words = parsed[i]
                results[i] = Answer(questions[i], None, 0.0, prog, [], scene, reasoner, error=v, parse_confidence=conf,
                                    understood=False, unknown_share=_unknown_share(words), fallback=outcomes[i])
        t3 = time.perf_counter()
        n = max(1, len(questions))
        for r in results:
            r.timings = {"scene": t1 - t0, "parse": (t2 - t1) / n, "reason": (t3 - t2) / n}
        return results

    def _ask_fallback(self, question: str) -> tuple[tuple[Program, float] | None, str]:
        """The fallback parser's (program, confidence) for a question, or None with why."""
        try:
            r = self.fallback.parse(question)
        except VQAError as e:  # no valid program, the model declined, or the endpoint failed
            return None, str(e)
        return (r.program, float(r.confidence)), "used"

    def not_understood(self, program: Program, confidence: float, words: list[str] | None) -> str | None:
        """Why a parsed question is not understood (None: it is): too many words outside the
        parser's vocabulary (`max_unknown`), or an unlikely parse (`min_parse`). A given
        program (words None) is always understood."""
        if words is None:
            return None
        share = _unknown_share(words)
        unknown = [w for w in words if w == "<unk>"]
        parse = f"parsed as {program.to_expr()} with probability {confidence:.3f}"
        if self.max_unknown is not None and share > self.max_unknown:
            return (f"not understood: {len(unknown)} of {len(words)} words are outside the vocabulary "
                    f"({' '.join(words)}; limit {self.max_unknown:.0%}); {parse}")
        if self.min_parse is not None and confidence < self.min_parse:
            return f"not understood: the parse is unlikely ({parse}; limit {self.min_parse})"
        return None

    def _answer_asp(self, scene, questions, parsed) -> list[Answer]:
        answers = self.asp.answer_batch(scene, [p for p, _ in parsed])
        out = []
        for q, (prog, pconf), a in zip(questions, parsed, answers):
            out.append(Answer(q, a.answer, asp_confidence(a, pconf), prog, a.trace, scene, "asp", error=a.error,
                              top=list(a.top), parse_confidence=pconf, proven=a.proven,
                              reading_probability=a.reading_probability,
                              presupposition=a.presupposition))
        return out

    def _answer_nsm(self, scene, questions, parsed) -> list[Answer]:
        with compute_threads(self.threads):
            answers = self.nsm.answer_batch([scene] * len(questions), questions)
        out = []
        from .reason.nsm import program_trace

        for q, (prog, pconf), a in zip(questions, parsed, answers):
            trace = program_trace(prog, a)  # one entry per program step (see vqa.reason.nsm)
            if trace is None:  # the machine's own steps
                trace = [TraceStep(i, op, (), dict(dist)) for i, (op, dist) in enumerate(zip(a.step_ops,
                                                                                             a.step_distributions))]
            out.append(Answer(q, a.answer, float(a.confidence), prog, trace, scene, "nsm",
                              top=[(a.answer, float(a.confidence))], parse_confidence=pconf))
        return out


def asp_confidence(a, parse_confidence: float = 1.0) -> float:
    """The `confidence` of an ASP answer `a` (`vqa.reason.asp.ASPAnswer`): question-parse
    probability x the answer's share among the top readings x the probability of its reading
    relative to the scene's most probable one x `UNPROVEN_FACTOR` when that reading was not
    proven the best within the budget; 0 for no answer."""
    if not a.ok:
        return 0.0
    share = a.top[0][1] if a.top else 1.0
    reading = a.reading_probability
    return (parse_confidence * share * (1.0 if reading is None else reading)
            * (1.0 if a.proven else UNPROVEN_FACTOR))


def _unknown_share(words: list[str] | None) -> float:
    """The share of `words` (as the question parser saw them) outside its vocabulary."""
    if not words:
        return 0.0
    return sum(w == "<unk>" for w in words) / len(words)
