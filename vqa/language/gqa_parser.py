"""GQA question parser: question text -> GQA `semantic` program, with the seq2seq model.

    parser = GQAQuestionParser.from_checkpoint("gqa_question_parser.pt")   # or its .npz export
    r = parser.parse("What color is the large box?")
    r.semantic      # [{"operation": "select", "argument": "box", "dependencies": []}, ...]
    r.confidence

The model and decoding are the CLEVR parser's building blocks (`Seq2Seq`, the numpy
runtime, `vqa.language.grammar.greedy_search/beam_search`), unchanged; what differs is
the target side and the text normalisation:

- Target tokens (`GQAProgramVocab`, built from the training programs): per step, one
  operation token (`@select`, `@filter color`, `@verify rel`, ...), then its dependencies
  (`#0`, `#1`, ...), then the pieces of its argument split at `,`, `|`, `(`, `)` with the
  separators as tokens of their own (`_` `,` `to the left of` `,` `s`; `not` `(` `red` `)`).
  Object ids are not predicted: GQA's `name (id)` arguments lose their `(ids)` / `(-)`
  part (`strip_ids`); ids come from grounding on a scene. Exact match compares programs
  in this id-free form.
- `GQAGrammar` keeps decoding well formed (an operation first; dependencies only to
  earlier steps, increasing, before the argument; EOS only after a complete step).
- `GQATokenizer`: lower case, contractions, words of letters and digits; none of the
  CLEVR synonyms (GQA distinguishes "shiny" from "metal", "ball" from "sphere").

Training (`train_gqa_parser`) reads any file in GQA's questions format (a file or a folder
of parts), so the same command trains on the real `train_balanced_questions.json`.
Checkpoints follow the CLEVR parser's conventions: `out` is the model alone (loads with
`torch.load(weights_only=True)`, exports with `vqa export-numpy`), `out` + ".state" the
optimizer/RNG state: the same command continues the run saved there (`vqa.resume`).
"""
from __future__ import annotations

import math
import random
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .config import Seq2SeqConfig
from .grammar import Decoded, beam_search, greedy_search
from .tokenizer import CONTRACTIONS, SPECIALS, QuestionTokenizer

CHECKPOINT_FORMAT = "vqa.gqa_question_parser/1"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "gqa_question_parser.pt"
PAD, BOS, EOS = "<pad>", "<s>", "</s>"
_WORD = re.compile(r"[a-z0-9]+")
_PIECES = re.compile(r"([,|()])")
_TRAILING_IDS = re.compile(r"\s*\([^()]*\)\s*$")
MAX_DEPS = 32


# ---- text side -------------------------------------------------------------------------------
def gqa_normalise(text: str) -> list[str]:
    """Lower-cased words of `text`, contractions expanded (never raises)."""
    text = str(text).lower().replace("\u2019", "'").replace("`", "'")
    for short, long in CONTRACTIONS.items():
        if short in text:
            text = re.sub(rf"\b{re.escape(short)}", long, text)
    text = re.sub(r"'s\b", " s", text)
    return _WORD.findall(text)


class GQATokenizer(QuestionTokenizer):
    """`QuestionTokenizer` with GQA's normalisation (no CLEVR synonyms)."""

    @classmethod
    def build(cls, texts, min_count: int = 1) -> "GQATokenizer":
        counts = Counter(w for t in texts for w in gqa_normalise(t))
        return cls(list(SPECIALS) + sorted(w for w, c in counts.items() if c >= min_count and w not in SPECIALS))

    def words(self, text: str) -> list[str]:
        return gqa_normalise(text)

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        ids = [self.index.get(w, 1) for w in gqa_normalise(text)]
        if max_len is not None:
            ids = ids[:max(0, max_len - 2)]
        return [2] + ids + [3]


# ---- program side ----------------------------------------------------------------------------
def strip_ids(operation: str, argument: str) -> str:
    """The argument without its object ids: "man (12)" -> "man", "_,on,s (-)" -> "_,on,s";
    arguments that carry no ids ("not(red)", "name") are only stripped of spaces."""
    from ..datasets.gqa_program import parse_step

    arg = argument.strip()
    step = parse_step(operation, arg)
    if step.unparsed is None and step.object_ids is not None:
        arg = _TRAILING_IDS.sub("", arg)
    return arg


def argument_pieces(argument: str) -> list[str]:
    return [p.strip() for p in _PIECES.split(argument) if p.strip()]


def to_tokens(semantic: list[dict]) -> list[str]:
    """A GQA `semantic` list -> target tokens (ids dropped)."""
    out = []
    for s in semantic:
        out.append("@" + s["operation"].strip())
        out += [f"#{d}" for d in s["dependencies"]]
        out += argument_pieces(strip_ids(s["operation"], s["argument"]))
    return out


def from_tokens(tokens: list[str]) -> list[dict]:
    """Target tokens -> a GQA `semantic` list (arguments without ids)."""
    steps: list[dict] = []
    for t in tokens:
        if t.startswith("@"):
            steps.append({"operation": t[1:], "argument": [], "dependencies": []})
        elif not steps:
            raise ValueError(f"program starts with {t!r}, not an operation")
        elif re.fullmatch(r"#\d+", t):
            steps[-1]["dependencies"].append(int(t[1:]))
        else:
            steps[-1]["argument"].append(t)
    for s in steps:
        s["argument"] = "".join(s["argument"])
    return steps


def normalised_semantic(semantic: list[dict]) -> list[dict]:
    """The id-free form exact match compares."""
    return from_tokens(to_tokens(semantic))


@dataclass
class GQAProgramVocab:
    """PAD, BOS, EOS, then `#0..#MAX_DEPS-1`, then operation and argument tokens."""

    tokens: list[str]
    pad_id, bos_id, eos_id = 0, 1, 2

    def __post_init__(self):
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, programs) -> "GQAProgramVocab":
        counts = Counter(t for p in programs for t in p if not re.fullmatch(r"#\d+", t))
        return cls([PAD, BOS, EOS] + [f"#{k}" for k in range(MAX_DEPS)] + sorted(counts))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: list[str]) -> list[int]:
        try:
            return [1] + [self.index[t] for t in tokens] + [2]
        except KeyError as e:
            raise KeyError(f"program token {e.args[0]!r} is not in the vocabulary") from None


@dataclass
class GQAGrammarState:
    steps: int = 0  # operations written
    phase: str = "start"  # start | deps | args
    last_dep: int = -1
    length: int = 0
    done: bool = False  # never forced: EOS competes with the next operation


class GQAGrammar:
    """Allowed-token masks for GQA token programs (the `greedy_search` protocol)."""

    def __init__(self, vocab: GQAProgramVocab, max_len: int = 120):
        self.vocab, self.max_len = vocab, max_len
        V = len(vocab)
        self.ops = np.array([t.startswith("@") for t in vocab.tokens])
        self.dep = np.full(V, -1)
        for i, t in enumerate(vocab.tokens):
            if re.fullmatch(r"#\d+", t):
                self.dep[i] = int(t[1:])
        self.args = ~self.ops & (self.dep < 0)
        self.args[:3] = False
        self._cache: dict[tuple, np.ndarray] = {}

    def start(self) -> GQAGrammarState:
        return GQAGrammarState()

    def allowed(self, s: GQAGrammarState) -> np.ndarray:
        full = s.length >= self.max_len - 1
        key = (s.phase, s.steps, s.last_dep, full)
        mask = self._cache.get(key)
        if mask is None:
            mask = np.zeros(len(self.vocab), dtype=bool)
            if s.phase != "start":
                mask[self.vocab.eos_id] = True
            if not full:
                mask |= self.ops
                if s.phase == "deps":
                    mask |= (self.dep > s.last_dep) & (self.dep < s.steps - 1)
                if s.phase in ("deps", "args"):
                    mask |= self.args
            if not mask.any():
                mask[self.vocab.eos_id] = True
            mask.setflags(write=False)
            self._cache[key] = mask
        return mask

    def step(self, s: GQAGrammarState, token_id: int) -> GQAGrammarState:
        if self.ops[token_id]:
            return GQAGrammarState(s.steps + 1, "deps", -1, s.length + 1)
        if self.dep[token_id] >= 0:
            return GQAGrammarState(s.steps, "deps", int(self.dep[token_id]), s.length + 1)
        return GQAGrammarState(s.steps, "args", s.last_dep, s.length + 1)


# ---- the parser ------------------------------------------------------------------------------
@dataclass
class GQAParseResult:
    semantic: list[dict]
    confidence: float
    tokens: list[str] = field(default_factory=list)
    token_probs: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"semantic": self.semantic, "tokens": self.tokens, "confidence": self.confidence}


class GQAQuestionParser:
    """`model`: a torch `Seq2Seq` or a numpy-runtime `NumpySeq2Seq`."""

    def __init__(self, model, tokenizer: GQATokenizer, vocab: GQAProgramVocab, max_program_len: int = 120, *,
                 beam: int = 1, batch_size: int = 256, meta: dict | None = None):
        self.model = model.eval()
        self.tokenizer, self.vocab = tokenizer, vocab
        self.grammar = GQAGrammar(vocab, max_program_len)
        self.beam, self.batch_size = beam, batch_size
        self.meta = meta or {}

    @property
    def backend(self) -> str:
        return "numpy" if hasattr(self.model, "stepper") else "torch"

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
    def from_dict(cls, ckpt: dict, *, file=None, device="cpu", arrays: dict | None = None, **kw):
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
            raise DataError(f"not a GQA question-parser checkpoint (format {got!r}, expected {CHECKPOINT_FORMAT!r})",
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
        return cls(model, GQATokenizer(list(ckpt["src_words"])), GQAProgramVocab(list(ckpt["tgt_tokens"])),
                   ckpt.get("max_program_len", 120), meta=ckpt.get("meta", {}), **kw)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, *, device="cpu", **kw) -> "GQAQuestionParser":
        """A `.pt` checkpoint (torch) or its `.npz` export (numpy runtime)."""
        path = Path(path) if path else DEFAULT_CHECKPOINT
        if not path.exists():
            raise DataError("no such checkpoint file (train one with `vqa train gqa-question-parser`)", file=path)
        if path.suffix == ".npz":
            from ..runtime.checkpoints import load_npz

            arrays, meta = load_npz(path)
            return cls.from_dict(meta, file=path, arrays=arrays, **kw)
        import torch

        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 (a truncated or foreign file)
            raise DataError(f"cannot read checkpoint: {e}", file=path) from None
        return cls.from_dict(ckpt, file=path, device=device, **kw)

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        max_len = self.model.config.max_src_len
        rows = [self.tokenizer.encode(t, max_len) for t in texts]
        src = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int64)
        for i, r in enumerate(rows):
            src[i, :len(r)] = r
        return src

    def _run(self, fn, texts, *args):
        src = self.encode_batch(texts)
        if self.backend == "numpy":
            return fn(self.model.stepper(src), *args)
        import torch

        from .decode import TorchStepper

        with torch.no_grad():
            device = next(self.model.parameters()).device
            return fn(TorchStepper(self.model, torch.as_tensor(src, device=device)), *args)

    def _result(self, d: Decoded) -> GQAParseResult:
        try:
            semantic = from_tokens(d.tokens)
        except ValueError:  # cannot happen under the grammar; kept as an empty program
            semantic = []
        return GQAParseResult(semantic, d.confidence, d.tokens, d.token_probs)

    def parse(self, text: str, *, beam: int | None = None) -> GQAParseResult:
        beam = beam or self.beam
        if beam <= 1:
            return self.parse_batch([text])[0]
        return self._result(self._run(beam_search, [text], self.grammar, beam)[0])

    def parse_batch(self, texts: list[str], *, beam: int | None = None, progress=None) -> list[GQAParseResult]:
        beam = beam or self.beam
        texts = list(texts)
        if beam > 1:
            return [self.parse(t, beam=beam) for t in (progress(texts, desc="parsing") if progress else texts)]
        out = []
        starts = range(0, len(texts), self.batch_size)
        for s in (progress(starts, desc="parsing", total=len(starts)) if progress else starts):
            out += [self._result(d) for d in self._run(greedy_search, texts[s:s + self.batch_size], self.grammar)]
        return out


def ground_ids(semantic: list[dict], scene, ontology=None) -> list[dict]:
    """The program with object ids put back by grounding it on `scene` (a SceneGraph): the
    steps whose GQA argument carries ids (select, relate, verify rel, choose rel) get the
    objects the reference executor finds for them ("(-)" for none; a relation test names
    the objects it relates). Steps after a failing one keep no ids."""
    from ..datasets.gqa_program import parse_program
    from ..reason.gqa_reference import run_gqa

    if ontology is None:
        from ..datasets.gqa_ontology import default_ontology
        ontology = default_ontology()
    steps = parse_program(semantic)
    trace: list = []
    run_gqa(scene, steps, ontology, trace=trace)
    out = []
    for i, (rec, st) in enumerate(zip(semantic, steps)):
        rec = dict(rec)
        carries = (st.family == "select" and not st.scene) or st.is_relational
        if carries and st.unparsed is None and i < len(trace):
            if st.family in ("select", "relate"):
                ids = trace[i] if isinstance(trace[i], list) else []
            else:  # verify rel / choose rel: the objects of the named kind in the relation
                ids = sorted({o.id for o in scene.objects if o.name == st.name or st.name == "_"}) \
                    if trace[i] == "yes" or st.family == "choose" else []
            rec["argument"] = f"{strip_ids(rec['operation'], rec['argument'])} ({','.join(ids) if ids else '-'})"
        out.append(rec)
    return out


def load_gqa_question_parser(path: str | Path | None = None, *, beam: int = 1) -> GQAQuestionParser:
    """What `vqa evaluate --dataset gqa --program-source parsed` uses (default: the shipped one)."""
    return GQAQuestionParser.from_checkpoint(path, beam=beam)


# ---- data and evaluation ---------------------------------------------------------------------
def load_gqa_pairs(paths, limit: int | None = None) -> list[tuple[str, list[str]]]:
    """(question, target tokens) of GQA questions files (or folders of parts); texts deduplicated."""
    from ..datasets.gqa import iter_question_records

    seen, out = set(), []
    for path in paths:
        for f, qid, rec in iter_question_records(path):
            sem = rec.get("semantic") if isinstance(rec, dict) else None
            text = rec.get("question") if isinstance(rec, dict) else None
            if not isinstance(sem, list) or not isinstance(text, str):
                raise DataError("expected 'question' and a 'semantic' list (a file without programs cannot train "
                                "a parser)", file=f, record=qid, field="semantic")
            key = text.strip().lower()
            if key in seen:
                continue
            seen.add(key)
            try:
                out.append((text, to_tokens(sem)))
            except (KeyError, TypeError, AttributeError):
                raise DataError("expected operation/argument/dependencies steps", file=f, record=qid,
                                field="semantic") from None
            if limit is not None and len(out) >= limit:
                return out
    if not out:
        raise DataError("no questions", file=", ".join(map(str, paths)), field="questions")
    return out


def evaluate_gqa_parser(parser: GQAQuestionParser, records: dict[str, dict], scenes=None, *, ontology=None,
                        beam: int | None = None, progress=None) -> dict:
    """Exact program match (id-free form) over `records` (qid -> GQA question record) and,
    with `scenes` (image id -> SceneGraph), answer accuracy of the parsed programs run by
    the reference executor on those graphs."""
    from ..datasets.gqa_program import parse_program
    from ..reason.gqa_reference import run_gqa

    if ontology is None:
        from ..datasets.gqa_ontology import default_ontology
        ontology = default_ontology()
    qids = list(records)
    results = parser.parse_batch([records[q]["question"] for q in qids], beam=beam, progress=progress)
    exact = correct = answered = 0
    mistakes = []
    for qid, r in zip(qids, results):
        rec = records[qid]
        gold = normalised_semantic(rec["semantic"]) if isinstance(rec.get("semantic"), list) else None
        ok = gold is not None and r.semantic == gold
        exact += ok
        ok_ans = None
        if scenes is not None and rec.get("answer") is not None:
            answered += 1
            got, _ = run_gqa(scenes[str(rec["imageId"])], parse_program(r.semantic), ontology) if r.semantic \
                else (None, 0)
            ok_ans = got == rec["answer"]
            correct += ok_ans
        if (not ok or ok_ans is False) and len(mistakes) < 20:
            mistakes.append({"qid": qid, "question": rec["question"], "gold": _show(gold), "parsed": _show(r.semantic),
                             "confidence": round(r.confidence, 4), "answer_ok": ok_ans})
    n = len(qids)
    return {"questions": n, "exact": exact, "exact_match": exact / n if n else 0.0, "answered": answered,
            "answer_correct": correct, "answer_accuracy": correct / answered if answered else None,
            "mean_confidence": sum(r.confidence for r in results) / n if n else 0.0, "mistakes": mistakes}


def _show(semantic) -> str | None:
    if semantic is None:
        return None
    return "->".join(f"{s['operation']}: {s['argument']}" + (f" {s['dependencies']}" if s["dependencies"] else "")
                     for s in semantic)


# ---- training --------------------------------------------------------------------------------
@dataclass
class GQATrainConfig:
    steps: int = 3000
    batch_size: int = 96
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    eval_every: int = 500
    eval_size: int = 500
    ckpt_every: int = 500
    seed: int = 0
    threads: int | None = 1
    unk_prob: float = 0.05  # noise on words that never occur in a program argument
    drop_prob: float = 0.02
    insert_prob: float = 0.02
    min_word_count: int = 1
    max_program_len: int = 120
    limit: int | None = None  # at most this many training questions
    model: dict = field(default_factory=dict)  # Seq2SeqConfig overrides


MODEL_DEFAULTS = dict(dim=128, n_heads=4, n_kv_heads=2, enc_layers=2, dec_layers=2, mlp_ratio=2,
                      max_src_len=64, max_tgt_len=128)


def _val_records(path, limit=None) -> dict[str, dict]:
    from ..datasets.gqa import iter_question_records

    out = {}
    for _, qid, rec in iter_question_records(path):
        out[qid] = rec
        if limit is not None and len(out) >= limit:
            break
    return out


def train_gqa_parser(train_paths, val_path, out, cfg: GQATrainConfig | None = None, *, resume: bool = False,
                     progress=None, log=print) -> dict:
    """Train on GQA questions files, checkpoint to `out`, measure exact match on `val_path`."""
    import torch

    from .seq2seq import Seq2Seq
    from .train import Batcher, TrainConfig, run_steps

    cfg = cfg or GQATrainConfig()
    out = Path(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    train_paths = [Path(p) for p in ([train_paths] if isinstance(train_paths, (str, Path)) else train_paths)]
    pairs = load_gqa_pairs(train_paths, cfg.limit)
    val = _val_records(val_path)
    train_texts = {t.strip().lower() for t, _ in pairs}
    overlap = sum(r["question"].strip().lower() in train_texts for r in val.values())
    log(f"{len(pairs):,} training pairs from {len(train_paths)} file(s); {len(val):,} held-out questions "
        f"({overlap:,} of them also appear verbatim in training)")
    from ..resume import continue_run, load_state
    from .train import FLAGS, _load, _saved_settings, save_state

    sp = out.with_name(out.name + ".state")
    state = None if resume is False else load_state(sp, _load)
    if continue_run(resume, _saved_settings(state, sp), {**asdict(cfg), "train_pairs": len(pairs)}, file=sp,
                    flags=FLAGS, required=True):
        parser = GQAQuestionParser.from_dict(state["checkpoint"], file=sp)
        tokenizer, vocab, model = parser.tokenizer, parser.vocab, parser.model
        cfg = GQATrainConfig(**{**state["train_config"], "steps": cfg.steps, "threads": cfg.threads})
        unknown = {t for _, p in pairs for t in p} - set(vocab.index)
        if unknown:
            raise DataError(f"{len(unknown)} program tokens of the training files are not in the resumed "
                            f"vocabulary (e.g. {sorted(unknown)[:3]})", file=train_paths[0])
    else:
        state = None
        tokenizer = GQATokenizer.build([t for t, _ in pairs], min_count=cfg.min_word_count)
        vocab = GQAProgramVocab.build(p for _, p in pairs)
        torch.manual_seed(cfg.seed)
        model = Seq2Seq(Seq2SeqConfig(src_vocab=len(tokenizer), tgt_vocab=len(vocab), **{**MODEL_DEFAULTS, **cfg.model}))
        parser = GQAQuestionParser(model, tokenizer, vocab, cfg.max_program_len)
    mcfg = model.config
    log(f"model: {model.num_parameters():,} parameters, dim {mcfg.dim}, {mcfg.enc_layers}+{mcfg.dec_layers} layers; "
        f"question vocabulary {len(tokenizer)} words, program vocabulary {len(vocab)} tokens")
    rng = random.Random(cfg.seed)
    clevr_cfg = TrainConfig(unk_prob=cfg.unk_prob, drop_prob=cfg.drop_prob, insert_prob=cfg.insert_prob)
    batcher = Batcher(pairs, tokenizer, vocab, clevr_cfg, mcfg, rng)
    # words that name program arguments decide the program: never noised
    arg_words = {w for _, p in pairs for t in p if not t.startswith(("@", "#")) for w in gqa_normalise(t)}
    batcher.protected = {tokenizer.index[w] for w in arg_words | _STRUCTURE_WORDS if w in tokenizer.index}
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    step, history = 0, []
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        step, history = state["step"], state.get("history", [])
        rng.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"])
        log(f"resumed at step {step}")
    sched = TrainConfig(steps=cfg.steps, lr=cfg.lr, min_lr_ratio=cfg.min_lr_ratio, warmup=cfg.warmup)

    def save_all(at: int | None = None):  # at: the steps done (default: `step`)
        nonlocal step
        step = step if at is None else at
        meta = {"train_config": asdict(cfg), "step": step, "history": history,
                "train_files": [str(p) for p in train_paths], "val_file": str(val_path),
                "train_pairs": len(pairs), "train_seconds": round(time.time() - t0, 1)}
        parser.save(out, meta)
        save_state({"checkpoint": parser.checkpoint(meta), "optimizer": opt.state_dict(), "step": step,
                    "history": history, "train_config": asdict(cfg), "train_pairs": len(pairs),
                    "python_rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, sp)

    def held_out(n):
        model.eval()
        recs = val if n is None else dict(list(val.items())[:n])
        res = evaluate_gqa_parser(parser, recs)
        model.train()
        return res

    running = run_steps(model, opt, batcher, pad_id=vocab.pad_id, cfg=cfg, sched=sched, start=step,
                        history=history, held_out=held_out, save=save_all, t0=t0, progress=progress, log=log)
    step = cfg.steps
    res = held_out(None)
    if running is not None or not history or history[-1]["step"] != step:  # (not again for a finished run)
        history.append({"step": step, "loss": round(running or 0.0, 5), "exact_match": res["exact_match"],
                        "seconds": round(time.time() - t0, 1)})
    save_all()
    log(f"done: {step} steps in {time.time() - t0:.0f} s; held-out exact match {res['exact_match']:.4f} "
        f"on {res['questions']:,} questions")
    return {"out": str(out), "steps": step, "train_seconds": round(time.time() - t0, 1),
            "parameters": model.num_parameters(), "train_pairs": len(pairs), "held_out": res,
            "size_bytes": out.stat().st_size}


_STRUCTURE_WORDS = frozenset(
    "what which who is are was does do there any both and or not same different color material size shape "
    "kind type left right front behind top bottom of in on made have has common larger smaller than either "
    "all image".split())
