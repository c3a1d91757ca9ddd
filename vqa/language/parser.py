"""`QuestionParser`: natural-language questions -> CLEVR `Program`s with a seq2seq model.

    parser = QuestionParser.from_checkpoint("data/checkpoints/question_parser.pt")
    r = parser.parse("What's the colour of the big ball?")
    r.program, r.confidence               # Program, sequence probability in (0, 1]
    parser.parse_batch(texts)             # list[ParseResult], batched greedy decoding

Two backends run the same model and the same constrained search (`vqa.language.grammar`):
torch (a `.pt` checkpoint, training, CUDA) and the numpy runtime (`vqa.runtime`, an exported
`.npz` checkpoint: no torch import, a K/V cache; what `vqa answer` uses by default).
`from_checkpoint` picks the backend by the file's suffix. This module imports torch only
when a torch checkpoint is loaded or saved.

A checkpoint is one `torch.save` dict that rebuilds the model alone:
`{"format", "config" (Seq2SeqConfig as a dict), "src_words", "tgt_tokens", "max_program_len",
"state_dict", "meta"}`; it loads with `torch.load(weights_only=True)`. Training state
(optimizer, step) is kept in separate resume files (see `train.py`).

`load_question_parser(path=None)` is the hook of `vqa evaluate --program-source parsed`;
`evaluate_parser(parser, questions, scenes)` gives exact program match and answer
accuracy (answers from the reference executor on the given scenes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..program import Program
from .config import Seq2SeqConfig
from .grammar import Decoded, PrefixGrammar, beam_search, greedy_search
from .tokenizer import ProgramVocab, QuestionTokenizer

CHECKPOINT_FORMAT = "vqa.question_parser/1"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "question_parser.pt"
DEFAULT_EXPORT = DEFAULT_CHECKPOINT.with_suffix(".npz")  # its numpy-runtime twin (`vqa export-numpy`)


@dataclass
class ParseResult:
    """A parsed question. `confidence` is the decoded sequence's probability; `tokens`
    the prefix program; `token_probs` each chosen token's (constrained) probability."""

    program: Program
    confidence: float
    tokens: list[str] = field(default_factory=list)
    token_probs: list[float] = field(default_factory=list)
    words: list[str] = field(default_factory=list)  # the question as the model saw it (<unk> marked)

    def to_dict(self) -> dict:
        return {"program": self.program.to_clevr("function"), "expr": self.program.to_expr(),
                "prefix": self.tokens, "confidence": self.confidence, "token_probs": self.token_probs,
                "words": self.words}


class QuestionParser:
    """`model`: a torch `Seq2Seq` or a numpy-runtime `NumpySeq2Seq`."""

    def __init__(self, model, tokenizer: QuestionTokenizer, vocab: ProgramVocab,
                 max_program_len: int = 40, *, beam: int = 1, batch_size: int = 256, meta: dict | None = None):
        self.model = model.eval()
        self.tokenizer, self.vocab = tokenizer, vocab
        self.grammar = PrefixGrammar(vocab, max_program_len)
        self.beam, self.batch_size = beam, batch_size
        self.meta = meta or {}

    @property
    def backend(self) -> str:
        return "numpy" if hasattr(self.model, "stepper") else "torch"

    @property
    def device(self):
        if self.backend == "numpy":
            return "cpu"
        return next(self.model.parameters()).device

    # ---- checkpoints ------------------------------------------------------------
    def checkpoint(self, meta: dict | None = None) -> dict:
        if self.backend != "torch":
            raise DataError("a numpy-runtime parser cannot be saved as a torch checkpoint")
        return {"format": CHECKPOINT_FORMAT, "config": self.model.config.to_dict(),
                "src_words": list(self.tokenizer.words_list), "tgt_tokens": list(self.vocab.tokens),
                "max_program_len": self.grammar.max_len,
                "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "meta": dict(self.meta, **(meta or {}))}

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.checkpoint(meta), tmp)
        tmp.replace(path)

    @classmethod
    def from_dict(cls, ckpt: dict, *, file=None, device="cpu", arrays: dict | None = None,
                  **kw) -> "QuestionParser":
        """From a checkpoint dict (torch tensors in `state_dict`), or, with `arrays`, from an
        exported checkpoint's entries and arrays (the numpy runtime)."""
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
            raise DataError(f"not a question-parser checkpoint (format {got!r}, expected {CHECKPOINT_FORMAT!r})",
                            file=file, field="format")
        for key in ("config", "src_words", "tgt_tokens") + (() if arrays is not None else ("state_dict",)):
            if key not in ckpt:
                raise DataError("missing", file=file, field=key)
        config = Seq2SeqConfig(**ckpt["config"])
        if arrays is not None:
            from ..runtime.seq2seq import NumpySeq2Seq

            model = NumpySeq2Seq(arrays, config)
        else:
            from .seq2seq import Seq2Seq

            model = Seq2Seq(config)
            model.load_state_dict(ckpt["state_dict"])
            model = model.to(device)
        return cls(model, QuestionTokenizer(list(ckpt["src_words"])), ProgramVocab(list(ckpt["tgt_tokens"])),
                   ckpt.get("max_program_len", 40), meta=ckpt.get("meta", {}), **kw)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, *, device="cpu", **kw) -> "QuestionParser":
        """Load a checkpoint (default: the shipped `data/checkpoints/question_parser.pt`): a
        `.npz` export runs on the numpy runtime, anything else is a torch checkpoint."""
        path = Path(path) if path else DEFAULT_CHECKPOINT
        if not path.exists():
            raise DataError("no such checkpoint file (train one with `vqa train question-parser`)", file=path)
        if path.suffix == ".npz":
            from ..runtime.checkpoints import load_npz

            if str(device) != "cpu":
                raise DataError(f"the numpy runtime runs on the CPU only (device {device!r} asked)", file=path)
            arrays, meta = load_npz(path)
            return cls.from_dict(meta, file=path, arrays=arrays, **kw)
        import torch

        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file
            raise DataError(f"cannot read checkpoint: {e}", file=path) from None
        return cls.from_dict(ckpt, file=path, device=device, **kw)

    # ---- parsing ----------------------------------------------------------------
    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """texts -> src (B, S) int64, padded with 0."""
        max_len = self.model.config.max_src_len
        rows = [self.tokenizer.encode(t, max_len) for t in texts]
        src = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int64)
        for i, r in enumerate(rows):
            src[i, :len(r)] = r
        return src

    def stepper(self, src: np.ndarray):
        """The `vqa.language.grammar.Stepper` of this parser's model over src (B, S)."""
        if self.backend == "numpy":
            return self.model.stepper(src)
        import torch

        from .decode import TorchStepper

        with torch.no_grad():
            return TorchStepper(self.model, torch.as_tensor(src, device=self.device))

    def _result(self, text: str, d: Decoded) -> ParseResult:
        ids = self.tokenizer.encode(text, self.model.config.max_src_len)[1:-1]
        return ParseResult(Program.from_prefix(d.tokens), d.confidence, d.tokens, d.token_probs,
                           self.tokenizer.decode(ids))

    def _search(self, fn, *args):
        if self.backend == "numpy":
            return fn(*args)
        import torch

        with torch.no_grad():
            return fn(*args)

    def parse(self, text: str, *, beam: int | None = None) -> ParseResult:
        beam = beam or self.beam
        if beam <= 1:
            return self.parse_batch([text])[0]
        best = self._search(beam_search, self.stepper(self.encode_batch([text])), self.grammar, beam)[0]
        return self._result(text, best)

    def parse_batch(self, texts: list[str], *, beam: int | None = None, progress=None) -> list[ParseResult]:
        """Parse many questions (greedy, batched; with beam > 1 one question at a time)."""
        beam = beam or self.beam
        texts = list(texts)
        out: list[ParseResult] = []
        if beam > 1:
            it = progress(texts, desc="parsing") if progress else texts
            return [self.parse(t, beam=beam) for t in it]
        starts = range(0, len(texts), self.batch_size)
        it = progress(starts, desc="parsing", total=len(starts)) if progress else starts
        for s in it:
            chunk = texts[s:s + self.batch_size]
            decoded = self._search(greedy_search, self.stepper(self.encode_batch(chunk)), self.grammar)
            for t, d in zip(chunk, decoded):
                out.append(self._result(t, d))
        return out


def load_question_parser(path: str | Path | None = None, *, device="cpu",
                         beam: int = 1) -> QuestionParser:
    """The seq2seq parser of a checkpoint (default: the shipped one); what
    `vqa evaluate --program-source parsed` uses."""
    return QuestionParser.from_checkpoint(path, device=device, beam=beam)


def commutative_key(program: Program) -> str:
    """The program's functional form with the inputs of `intersect` and `union` sorted: two
    programs with the same key differ at most in the order of and/or branches (the released
    programs put the second-named branch of "both ... and ..." first, the project's own
    families the first-named)."""
    def expr(i: int) -> str:
        s = program.steps[i]
        kids = [expr(k) for k in s.inputs]
        if s.op in ("intersect", "union"):
            kids.sort()
        return f"{s.token}({', '.join(kids)})"

    return expr(len(program.steps) - 1) if program.steps else ""


def evaluate_parser(parser: QuestionParser, questions: list, scenes: dict | None = None, *,
                    beam: int | None = None, progress=None, unsure_below: float | None = None,
                    fallback=None) -> dict:
    """Exact program match (prefix tokens) and, with `scenes` (image id -> SceneGraph),
    answer accuracy of the parsed program run by the reference executor; both also per
    template file (`by_template`, named as `vqa.eval.clevr.template_group` names them).

    Unsure parses: with `unsure_below`, a parse whose confidence is below it, or (with
    scenes) whose program the scene refuses (a failing step, e.g. a `unique` over a set that
    is not one object; the reference executor and the ASP theory refuse the same programs
    on gold scenes), is counted as unsure (`unsure`, and how many of those were exact). With
    `fallback` (an object with `parse(text) -> .program`, e.g. `LLMQuestionParser`), unsure
    questions are parsed again by it and its program is scored instead (`fallback_used`;
    a fallback error keeps the seq2seq program and counts in `fallback_failed`).

    `questions`: `vqa.question.Question`s with programs (and answers). Returns counts,
    rates and up to 20 examples of mistakes."""
    from ..errors import VQAError
    from ..eval.clevr import template_group
    from ..executor import execute

    results = parser.parse_batch([q.text for q in questions], beam=beam, progress=progress)
    exact = correct = answered = commutative = 0
    unsure = unsure_exact = used = failed = 0
    mistakes = []
    by_template: dict[str, dict] = {}
    for q, r in zip(questions, results):
        program = r.program
        scene = None
        if scenes is not None and q.answer is not None:
            scene = scenes.get(q.image_id)
            if scene is None:
                raise DataError(f"no scene {q.image_id!r} for question {q.qid}", field="image_id")
        result = execute(program, scene) if scene is not None else None
        if unsure_below is not None and (r.confidence < unsure_below or (result is not None and not result.ok)):
            unsure += 1
            unsure_exact += q.program is not None and program.to_prefix() == q.program.to_prefix()
            if fallback is not None:
                try:
                    program = fallback.parse(q.text).program
                    used += 1
                    result = execute(program, scene) if scene is not None else None
                except VQAError:
                    failed += 1
        ok_prog = q.program is not None and program.to_prefix() == q.program.to_prefix()
        exact += ok_prog
        commutative += ok_prog or (q.program is not None and commutative_key(program) == commutative_key(q.program))
        cell = by_template.setdefault(template_group(q), {"questions": 0, "exact": 0, "answered": 0,
                                                          "answer_correct": 0})
        cell["questions"] += 1
        cell["exact"] += ok_prog
        ok_ans = None
        if result is not None:
            answered += 1
            ok_ans = result.answer == q.answer
            correct += ok_ans
            cell["answered"] += 1
            cell["answer_correct"] += ok_ans
        if (not ok_prog or ok_ans is False) and len(mistakes) < 20:
            mistakes.append({"qid": q.qid, "question": q.text, "gold": q.program.to_expr() if q.program else None,
                             "parsed": program.to_expr(), "confidence": round(r.confidence, 4),
                             "answer": q.answer, "answer_ok": ok_ans})
    n = len(questions)
    out = {"questions": n, "exact": exact, "exact_match": exact / n if n else 0.0,
           "exact_up_to_branch_order": commutative / n if n else 0.0,
           "answered": answered, "answer_correct": correct,
           "answer_accuracy": correct / answered if answered else None,
           "mean_confidence": sum(r.confidence for r in results) / n if n else 0.0,
           "by_template": {k: {**c, "exact_match": c["exact"] / c["questions"],
                               "answer_accuracy": c["answer_correct"] / c["answered"] if c["answered"] else None}
                           for k, c in sorted(by_template.items())},
           "mistakes": mistakes}
    if unsure_below is not None:
        out.update(unsure_below=unsure_below, unsure=unsure, unsure_exact=unsure_exact)
        if fallback is not None:
            out.update(fallback_used=used, fallback_failed=failed)
    return out
