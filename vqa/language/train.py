"""Training of the seq2seq question parser on generated question/program pairs.

    summary = train_parser(["train/questions/CLEVR_train_questions.json"],
                           "val/questions/CLEVR_val_questions.json", "parser.pt",
                           TrainConfig(steps=6000), progress=tqdm_like, log=print)

Data: CLEVR questions files (released or generator program form); each pair is
(question text, prefix program); duplicate texts are dropped. The question vocabulary is
built from the training texts. Noise during training makes the model robust to words it
has never seen: words that do not decide the program (not in `tokenizer.CONTENT_WORDS`)
are replaced by UNK, dropped, and UNKs are inserted, each with a small probability.

Checkpoints: `out` is the model alone (`QuestionParser.save`, a few MB); `out` +
".state" holds the optimizer, step and RNG states too, written every `ckpt_every` steps and
at the end. `resume`: "auto" (the command's default) continues the run saved there when its
settings are this call's and refuses one with other settings; True continues it (`steps` may
grow); False starts over (`vqa.resume`). Held-out exact match (greedy constrained
decoding) is measured every `eval_every` steps on `eval_size` validation questions, and on
the whole validation file at the end.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import DataError
from ..resume import continue_run, load_state
from .parser import QuestionParser, evaluate_parser
from .pairs import load_pairs, load_training_data  # noqa: F401 (load_pairs re-exported)
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .tokenizer import CONTENT_WORDS, ProgramVocab, QuestionTokenizer


@dataclass
class TrainConfig:
    steps: int = 6000
    batch_size: int = 128
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 300
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    eval_every: int = 1000
    eval_size: int = 1000
    ckpt_every: int = 1000
    seed: int = 0
    threads: int | None = None  # torch.set_num_threads
    unk_prob: float = 0.08  # noise on non-content words
    drop_prob: float = 0.04
    insert_prob: float = 0.03
    min_word_count: int = 2
    max_program_len: int = 40
    model: dict = field(default_factory=dict)  # Seq2SeqConfig overrides (dim, layers, heads, ...)
    init: str | None = None  # fine-tune: start from this parser checkpoint (its weights, vocabulary, architecture)


class Batcher:
    """Random batches of (src (B, S), tgt (B, T)) with training noise on the source side."""

    def __init__(self, pairs, tokenizer: QuestionTokenizer, vocab: ProgramVocab, cfg: TrainConfig,
                 model_cfg: Seq2SeqConfig, rng: random.Random):
        self.src = [tokenizer.encode(t, model_cfg.max_src_len)[1:-1] for t, _ in pairs]
        self.tgt = [vocab.encode(p) for _, p in pairs]
        too_long = [i for i, t in enumerate(self.tgt) if len(t) > model_cfg.max_tgt_len]
        if too_long:
            raise DataError(f"{len(too_long)} programs are longer than max_tgt_len={model_cfg.max_tgt_len}",
                            field="program")
        self.protected = {tokenizer.index[w] for w in CONTENT_WORDS if w in tokenizer.index}
        self.by_length = sorted(range(len(self.src)), key=lambda i: (len(self.src[i]), rng.random()))
        self.cfg, self.mcfg, self.rng = cfg, model_cfg, rng

    def noisy(self, ids: list[int]) -> list[int]:
        c, r = self.cfg, self.rng
        out = []
        for i in ids:
            if r.random() < c.insert_prob:
                out.append(1)
            if i in self.protected:
                out.append(i)
                continue
            u = r.random()
            if u < c.drop_prob:
                continue
            out.append(1 if u < c.drop_prob + c.unk_prob else i)
        return out[:self.mcfg.max_src_len - 2]

    def batch(self, size: int, noise: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """A window of `size` questions of similar length (less padding) at a random place."""
        size = min(size, len(self.src))
        start = self.rng.randrange(len(self.src) - size + 1)
        idx = self.by_length[start:start + size]
        srcs = [[2] + (self.noisy(self.src[i]) if noise else self.src[i]) + [3] for i in idx]
        tgts = [self.tgt[i] for i in idx]
        src = torch.zeros(size, max(map(len, srcs)), dtype=torch.long)
        tgt = torch.zeros(size, max(map(len, tgts)), dtype=torch.long)
        for k, (s, t) in enumerate(zip(srcs, tgts)):
            src[k, :len(s)] = torch.tensor(s)
            tgt[k, :len(t)] = torch.tensor(t)
        return src, tgt


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state")


# the command-line flags of settings whose names differ (the resume check names them)
FLAGS = {"model.n_heads": "--heads", "model.n_kv_heads": "--kv-heads", "model.variant": "--attention",
         "train_pairs": "question pairs in --train"}


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _saved_settings(state: dict | None, file) -> dict | None:
    """The settings a saved run was started with (and its number of training pairs)."""
    if state is None:
        return None
    if not isinstance(state.get("train_config"), dict) or "checkpoint" not in state:
        raise DataError("not a question-parser training state; add --restart to start over", file=file,
                        field="train_config")
    return {**state["train_config"], **({"train_pairs": state["train_pairs"]} if "train_pairs" in state else {})}


def save_state(obj: dict, path: Path) -> None:
    """torch.save to a temporary file, then renamed: a kill -9 leaves the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train_parser(train_paths, val_path, out, cfg: TrainConfig | None = None, *, resume: bool = False,
                 max_minutes: float | None = None, progress=None, log=print, data=None) -> dict:
    """Train, checkpoint to `out`, evaluate on `val_path`; returns a summary dict.

    `cfg.init`: fine-tune the parser saved there (its question vocabulary and architecture;
    `cfg.model` is then not used) with a fresh optimizer and the schedule of `cfg`.
    `max_minutes`: stop after this much wall time with the run saved (summary "stopped":
    True, no final evaluation); the same call continues it. `data`: the (pairs, held-out
    questions) of `load_training_data(train_paths, val_path)` when already read."""
    cfg = cfg or TrainConfig()
    out = Path(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    train_paths = [Path(p) for p in ([train_paths] if isinstance(train_paths, (str, Path)) else train_paths)]
    pairs, val_questions = data if data is not None else load_training_data(train_paths, val_path)
    train_texts = {t.strip().lower() for t, _ in pairs}
    overlap = sum(q.text.strip().lower() in train_texts for q in val_questions)
    log(f"{len(pairs):,} training pairs from {len(train_paths)} file(s); {len(val_questions):,} held-out questions "
        f"({overlap:,} of them also appear verbatim in training)")

    sp = _state_path(out)
    state = None if resume is False else load_state(sp, _load)
    if continue_run(resume, _saved_settings(state, sp), {**asdict(cfg), "train_pairs": len(pairs)}, file=sp,
                    flags=FLAGS, required=True):
        parser = QuestionParser.from_dict(state["checkpoint"], file=sp)
        tokenizer, vocab, model = parser.tokenizer, parser.vocab, parser.model
        cfg = TrainConfig(**{**state["train_config"], "steps": cfg.steps, "threads": cfg.threads})
    elif cfg.init:
        state = None
        if not Path(cfg.init).is_file():
            raise DataError("no such parser checkpoint to fine-tune", file=cfg.init)
        torch.manual_seed(cfg.seed)
        parser = QuestionParser.from_checkpoint(cfg.init)
        tokenizer, vocab, model = parser.tokenizer, parser.vocab, parser.model
        known = sum(all(w in tokenizer.index for w in tokenizer.words(t)) for t, _ in pairs)
        log(f"fine-tuning {cfg.init}; {known:,} of {len(pairs):,} training texts have no word outside its vocabulary")
    else:
        state = None
        tokenizer = QuestionTokenizer.build([t for t, _ in pairs], min_count=cfg.min_word_count)
        vocab = ProgramVocab.clevr()
        torch.manual_seed(cfg.seed)
        model = Seq2Seq(Seq2SeqConfig(src_vocab=len(tokenizer), tgt_vocab=len(vocab), **cfg.model))
        parser = QuestionParser(model, tokenizer, vocab, cfg.max_program_len)
    mcfg = model.config
    log(f"model: {model.num_parameters():,} parameters, {mcfg.variant} attention "
        f"({mcfg.n_heads} query / {mcfg.n_kv_heads} K/V heads), dim {mcfg.dim}, "
        f"{mcfg.enc_layers}+{mcfg.dec_layers} layers; question vocabulary {len(tokenizer)} words")

    rng = random.Random(cfg.seed)
    batcher = Batcher(pairs, tokenizer, vocab, cfg, mcfg, rng)
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

    def save_all(at: int | None = None):  # at: the steps done (default: `step`)
        nonlocal step
        step = step if at is None else at
        meta = {"train_config": asdict(cfg), "step": step, "history": history,
                "train_files": [str(p) for p in train_paths], "val_file": str(val_path),
                "train_pairs": len(pairs), "train_seconds": round(time.time() - t0, 1)}
        parser.save(out, meta)
        save_state({"checkpoint": parser.checkpoint(meta), "optimizer": opt.state_dict(), "step": step,
                    "history": history, "train_config": asdict(cfg), "train_pairs": len(pairs),
                    "python_rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, _state_path(out))

    def held_out(n: int | None) -> dict:
        model.eval()
        qs = val_questions if n is None else val_questions[:n]
        res = evaluate_parser(parser, qs)
        model.train()
        return res

    deadline = None if max_minutes is None else t0 + 60 * max_minutes
    running = run_steps(model, opt, batcher, pad_id=vocab.pad_id, cfg=cfg, sched=cfg, start=step,
                        history=history, held_out=held_out, save=save_all, t0=t0, progress=progress, log=log,
                        deadline=deadline)
    if isinstance(running, tuple):  # stopped at the deadline, the run saved
        done = running[1]
        log(f"stopped after {max_minutes:g} minutes at step {done} of {cfg.steps} (saved; the same command continues)")
        return {"out": str(out), "steps": done, "stopped": True, "train_seconds": round(time.time() - t0, 1),
                "parameters": model.num_parameters(), "train_pairs": len(pairs), "held_out": None,
                "size_bytes": out.stat().st_size}
    step = cfg.steps
    train_seconds = time.time() - t0
    res = held_out(None)
    if running is not None or not history or history[-1]["step"] != step:  # (not again for a finished run)
        history.append({"step": step, "loss": round(running or 0.0, 5), "exact_match": res["exact_match"],
                        "seconds": round(train_seconds, 1)})
    save_all()
    log(f"done: {step} steps in {train_seconds:.0f} s; held-out exact match {res['exact_match']:.4f} "
        f"on {res['questions']:,} questions")
    return {"out": str(out), "steps": step, "train_seconds": round(train_seconds, 1),
            "parameters": model.num_parameters(), "train_pairs": len(pairs), "held_out": res,
            "size_bytes": out.stat().st_size}


def run_steps(model, opt, batcher, *, pad_id: int, cfg, sched: "TrainConfig", start: int, history: list,
              held_out, save, t0: float, progress=None, log=print, deadline: float | None = None):
    """The seq2seq training loop shared by the CLEVR and GQA question parsers: steps
    `start`..`cfg.steps` (batches of `cfg.batch_size` from `batcher`, teacher forcing,
    label smoothing, clipping, `lr_at(step, sched)`), a held-out evaluation every
    `cfg.eval_every` steps appended to `history`, `save()` every `cfg.ckpt_every` steps.
    `save(steps_done)` records the steps done. Returns the running loss, or (running loss,
    steps done) when it stopped at `deadline` (a time.time() value) after saving."""
    model.train()
    bar = progress(range(start, cfg.steps), desc="training", total=cfg.steps - start) if progress else \
        range(start, cfg.steps)
    running = None
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, sched)
        src, tgt = batcher.batch(cfg.batch_size)
        logits = model(src, tgt[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1),
                               ignore_index=pad_id, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{running:.4f}")
        done = step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
            res = held_out(cfg.eval_size)
            history.append({"step": done, "loss": round(running, 5), "exact_match": res["exact_match"],
                            "seconds": round(time.time() - t0, 1)})
            log(f"step {done}: loss {running:.4f}, held-out exact match {res['exact_match']:.4f} "
                f"({res['questions']} questions), {time.time() - t0:.0f} s")
        if cfg.ckpt_every and done % cfg.ckpt_every == 0:
            save(done)
        if deadline is not None and time.time() >= deadline and done < cfg.steps:
            save(done)
            return running, done
    return running
