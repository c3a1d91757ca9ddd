"""Training and held-out evaluation of the Neural State Machine.

    cfg = TrainConfig(epochs=10)
    report = train_nsm("synth/", split="train", val_split="val", out="nsm.pt", config=cfg)
    report = evaluate_nsm(model, examples)      # accuracy by group, family, final function

Loss: cross-entropy on the answer plus, with weight `trace_weight`, auxiliary losses on
the reasoning steps from the program traces (`nsm_data.macro_steps`): binary
cross-entropy of each step's soft set against the executor's objects, and of the op,
keep and relation gates against the step's labels, and the instruction attention's mass on
the question words naming the step's concepts. The programs are used in training only;
answering needs the scene graph and the question text.

Predicted scenes (`TrainConfig.predicted`): the questions of CLEVR-layout folders with images
are trained on the scenes the scene parser predicts from those images (`predicted_scenes`,
parsed once and cached beside the gold scenes); `evaluate_checkpoint(scene_source="predicted")`
measures a held-out split the same way.

Checkpoints (`nsm.save_checkpoint`) carry config, ontology, vocabulary and weights, plus
the optimizer, epoch, RNG states and the training config: `resume="auto"` (the command's
default) continues the run saved in `out` when its settings are this call's and refuses one
with other settings, True continues it (`epochs` may grow), False starts over (`vqa.resume`).
"""
from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..datasets.clevr import CLEVRDataset
from ..errors import DataError
from ..resume import check_size, continue_run, not_a_run
from ..scene import SceneGraph
from .nsm import NSM, NSMConfig, load_checkpoint, save_checkpoint
from .nsm_data import NSMOntology, Vocab, collate, encode_example, to_device


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    trace_weight: float = 1.0
    attention_weight: float = 1.0  # weight (relative to the trace losses) of the instruction attention loss
    seed: int = 0
    threads: int = 2
    limit: int | None = None  # only the first N training questions
    max_minutes: float | None = None  # stop (and save) after this much training time
    init: str | None = None  # start from this checkpoint's weights and vocabulary (new parameters fresh)
    # with `init`: add the training questions' words the checkpoint's vocabulary lacks (new
    # embedding rows start fresh; the old rows keep their weights)
    extend_vocab: bool = False
    # CLEVR-layout folders with images whose questions are trained on the scenes the scene
    # parser predicts (soft attributes, object scores), besides the gold scenes of `data`
    predicted: tuple[str, ...] = ()
    predicted_split: str = "train"
    predicted_limit: int | None = None  # only the first N questions of each predicted folder
    val_scene_source: str = "gold"  # "predicted": the held-out split is read from predicted scenes
    scene_checkpoint: str | None = None  # scene parser for the predicted scenes (default: shipped)
    log_every: int = 250  # a log line every this many batches (0: only per epoch)
    ckpt_every: int = 0  # also save a resumable checkpoint every this many batches (0: only per epoch)


# command-line flags of settings whose names differ (the resume check names them)
FLAGS = {"predicted": "--predicted-data", "val_scene_source": "--scene-source", "root": "--data",
         "val_split": "--val-split"}


def predicted_scenes(root, split: str, checkpoint: str | None = None, log=print) -> dict[str, SceneGraph]:
    """{image id: SceneGraph} the scene parser predicts from `root/images/<split>`. Parsed once
    and cached beside the gold scenes (`scenes/CLEVR_<split>_scenes.predicted.jsonl`, first
    line: the parser checkpoint's path and size; another checkpoint parses again, a change of
    the parser's code does not: delete the file then)."""
    from ..vision.scene_parser import DEFAULT_CHECKPOINT as SP_DEFAULT, load_scene_parser

    ds = CLEVRDataset(root, split)
    ckpt = Path(checkpoint or SP_DEFAULT)
    stamp = {"scene_checkpoint": str(ckpt.resolve()), "bytes": ckpt.stat().st_size if ckpt.is_file() else None}
    cache = ds.scenes_path.with_name(f"CLEVR_{split}_scenes.predicted.jsonl")
    if cache.is_file():
        with open(cache) as f:
            if json.loads(f.readline()) == stamp:
                scenes = {}
                for line in f:
                    sg = SceneGraph.from_dict(json.loads(line), file=cache)
                    scenes[sg.image_id] = sg
                log(f"{len(scenes):,} predicted scenes from {cache}")
                return scenes
    images = sorted(ds.images_dir.glob("*.png"))
    if not images:
        raise DataError("no images to parse (predicted scenes need the split's images)", file=ds.images_dir)
    parser, t0, scenes = load_scene_parser(checkpoint), time.time(), {}
    for i in range(0, len(images), 32):
        for g in parser.parse_images(images[i:i + 32]):
            scenes[g.image_id] = g
    log(f"parsed {len(scenes):,} images of {ds.images_dir} in {time.time() - t0:.1f} s; cached in {cache}")
    tmp = cache.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(stamp) + "\n")
        for g in scenes.values():
            f.write(json.dumps(g.to_dict()) + "\n")
    tmp.replace(cache)
    return scenes


def _extended_vocab(vocab: Vocab, root, split: str, limit: int | None) -> Vocab:
    """`vocab` plus the words of `root/<split>`'s questions it lacks, appended in sorted order."""
    from .nsm_data import tokenize

    seen = set(vocab.words)
    new = set()
    for i, q in enumerate(CLEVRDataset(root, split).questions()):
        if limit is not None and i >= limit:
            break
        new.update(w for w in tokenize(q.text) if w not in seen)
    return Vocab(vocab.words + sorted(new))


def load_examples(root, split: str, ontology: NSMOntology, vocab: Vocab | None, steps: int,
                  limit: int | None = None, scenes: dict[str, SceneGraph] | None = None,
                  trace_min_score: float | None = None) -> tuple[list[dict], Vocab]:
    """Encoded examples of one split of a CLEVR-layout folder (and the vocabulary, built
    from this split's questions when `vocab` is None). `scenes` replaces the gold scenes
    (predicted ones, by image id); `trace_min_score`: see `encode_example`."""
    ds = CLEVRDataset(root, split)
    pairs = []
    for q, sg in ds.iter_with_scenes():
        if scenes is not None:
            sg = scenes.get(q.image_id)
            if sg is None:
                raise DataError(f"no predicted scene for image {q.image_id!r}", file=ds.questions_path, record=q.qid)
        if q.answer is None:
            raise DataError("question has no answer (training and evaluation need answers)",
                            file=ds.questions_path, record=q.qid, field="answer")
        pairs.append((q, sg))
        if limit is not None and len(pairs) >= limit:
            break
    if vocab is None:
        vocab = Vocab.build((q.text for q, _ in pairs), ontology)
    cache: dict = {}
    examples = []
    for q, sg in pairs:
        meta = {"group": str(q.meta.get("template_filename", "")).replace(".json", ""),
                "family": q.family, "function": q.program[-1].op if q.program else ""}
        examples.append(encode_example(ontology, vocab, sg, q.text, q.program, q.answer, steps,
                                       family=meta, scene_cache=cache, trace_min_score=trace_min_score))
    return examples, vocab


def loss_fn(out: dict, batch: dict, trace_weight: float, attention_weight: float = 1.0,
            shift_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Answer cross-entropy + trace_weight * (state BCE + register BCE + op NLL +
    keep/relation BCE + answer-type NLL + instruction attention NLL on the step's words
    + shift_weight * the shift BCE: at each traced shift step, the relation shift's set
    (relation steps) or the property shift's set (the others) against the step's objects,
    before the op and relation gates mix them in: the state's BCE reaches a relation shift
    through those gates, and once its edge scores had gone negative (as they did on GQA,
    while the gates were still untrained) its sigmoid's gradient vanished; on the shift's own
    set the BCE's gradient does not)."""
    ce = F.cross_entropy(out["logits"], batch["answer"], ignore_index=-1)
    parts = {"answer": ce.item()}
    loss = ce
    typed = batch["anstype"] >= 0 if "anstype" in batch else None
    if trace_weight > 0 and typed is not None and bool(typed.any()):
        # which property type the answer is about (query_X, equal_X: X), read by the classifier
        p = out["anstype"][typed].gather(-1, batch["anstype"][typed][:, None]).clamp(min=1e-6)
        type_loss = -torch.log(p).mean()
        loss = loss + trace_weight * type_loss
        parts["type"] = type_loss.item()
    cmp = batch["cmptype"] >= 0 if "cmptype" in out and "cmptype" in batch else None
    if trace_weight > 0 and cmp is not None and bool(cmp.any()):
        p = out["cmptype"][cmp].gather(-1, batch["cmptype"][cmp][:, None]).clamp(min=1e-6)
        cmp_loss = -torch.log(p).mean()
        loss = loss + trace_weight * cmp_loss
        parts["cmp"] = cmp_loss.item()
    has = batch["has_trace"]
    if trace_weight > 0 and bool(has.any()):
        m = batch["node_mask"][has].float()[:, None, :]  # (b, 1, n)
        st = out["states"][has].clamp(1e-6, 1 - 1e-6)
        bce = F.binary_cross_entropy(st, batch["target"][has], reduction="none")
        state_loss = (bce * m).sum() / (m.sum() * st.shape[1])
        rg = out["registers"][has].clamp(1e-6, 1 - 1e-6)
        bce = F.binary_cross_entropy(rg, batch["register"][has], reduction="none")
        reg_loss = (bce * m).sum() / (m.sum() * rg.shape[1])
        op_loss = -torch.log(out["op"][has].gather(-1, batch["op"][has][..., None]).clamp(min=1e-6)).mean()

        def gate(p, label):
            ok = label >= 0
            if not bool(ok.any()):
                return p.sum() * 0
            return F.binary_cross_entropy(p[ok].clamp(1e-6, 1 - 1e-6), label[ok])

        restart = batch["restart"][has]
        keep_loss = gate(out["keep"][has], torch.where(restart >= 0, 1 - restart, restart))
        rel_loss = gate(out["rel"][has], batch["relation"][has])
        trace = state_loss + reg_loss + op_loss + keep_loss + rel_loss
        if shift_weight > 0 and "rel_states" in out:
            from .nsm_data import OPS

            shift = (batch["op"][has] == OPS.index("shift")) & (batch["relation"][has] >= 0)  # (b, S)
            if bool(shift.any()):
                is_rel = (batch["relation"][has] == 1)[..., None]
                own = torch.where(is_rel, out["rel_states"][has], out["prop_states"][has]).clamp(1e-6, 1 - 1e-6)
                bce = F.binary_cross_entropy(own, batch["target"][has], reduction="none") * m
                sm = shift[..., None].float()
                shift_loss = (bce * sm).sum() / (m.expand_as(bce) * sm).sum().clamp(min=1)
                trace = trace + shift_weight * shift_loss
                parts["shift"] = shift_loss.item()
        parts.update(state=state_loss.item(), reg=reg_loss.item(), op=op_loss.item(), keep=keep_loss.item(),
                     rel=rel_loss.item())
        if attention_weight > 0 and "att" in out and "att_words" in batch:
            # each step's instruction attends to the words naming its concepts (filter values,
            # the relation): without it the second branch of and/or questions attended to the
            # word "and"/"or" and never found its object
            att = out["att"][has]
            words = batch["att_words"][has][..., :att.shape[-1]]
            on = words.sum(-1) > 0
            if bool(on.any()):
                att_loss = -torch.log((att * words).sum(-1)[on].clamp(min=1e-6)).mean()
                trace = trace + attention_weight * att_loss
                parts["att"] = att_loss.item()
        loss = loss + trace_weight * trace
    return loss, parts


@torch.no_grad()
def evaluate_nsm(model: NSM, examples: list[dict], batch_size: int = 256, device="cpu") -> dict:
    """Accuracy overall and by group (template file), family and final function."""
    model.eval()
    tallies = {k: defaultdict(lambda: [0, 0]) for k in ("group", "family", "function")}
    right = total = 0
    for s in range(0, len(examples), batch_size):
        batch = collate(examples[s:s + batch_size])
        pred = model(to_device(batch, device))["logits"].argmax(-1).cpu()
        ok = (pred == batch["answer"]).tolist()
        for meta, good in zip(batch["family"], ok):
            right += good
            total += 1
            for k in tallies:
                t = tallies[k][str(meta.get(k, "")) if isinstance(meta, dict) else ""]
                t[0] += good
                t[1] += 1
    return {"accuracy": right / max(total, 1), "questions": total,
            **{f"by_{k}": {name: {"accuracy": r / n, "questions": n}
                           for name, (r, n) in sorted(v.items(), key=_order)}
               for k, v in tallies.items()}}


def train_nsm(data, *, split: str = "train", val_split: str | None = "val", out="nsm.pt",
              config: TrainConfig | None = None, model_config: NSMConfig | None = None, resume: bool = False,
              progress=None, log=print, device: str = "cpu") -> dict:
    """Train on `data/<split>` (a CLEVR-layout folder), evaluate on `val_split` after every
    epoch, save a checkpoint to `out` after every epoch. Out: a report dict (per-epoch
    losses and accuracies, wall seconds, the final held-out evaluation)."""
    cfg = config or TrainConfig()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    out = Path(out)
    ontology = NSMOntology.clevr()
    state = None
    if resume is not False and out.is_file():
        model, vocab, state = load_checkpoint(out, device)
        if "optimizer" not in state:
            raise not_a_run(out, "NSM checkpoint")
        saved = {**(state.get("train_config") or {}), "model": state["config"],
                 **{k: v for k, v in (state.get("data") or {}).items() if k in ("root", "split", "val_split")}}
    now = {**asdict(cfg), "model": asdict(model_config or NSMConfig()), "root": str(data), "split": split,
           "val_split": val_split}
    if continue_run(resume, saved if state else None, now, file=out, flags=FLAGS):
        log(f"resuming from {out} (epoch {state.get('epoch', 0)})")
    else:
        state, vocab = None, None
    init = None
    if state is None and cfg.init:
        init = torch.load(cfg.init, map_location=device, weights_only=False)
        vocab = Vocab(init["vocab"])
        if cfg.extend_vocab:
            vocab = _extended_vocab(vocab, data, split, cfg.limit)
            log(f"vocabulary: {len(init['vocab'])} words from {cfg.init}, {len(vocab) - len(init['vocab'])} added")
    mcfg = model.config if state else (model_config or NSMConfig())
    t0 = time.time()
    train, vocab = load_examples(data, split, ontology, vocab, mcfg.steps, cfg.limit)
    min_score = 0.5 if mcfg.score_threshold is None else mcfg.score_threshold
    for root in cfg.predicted:
        scenes = predicted_scenes(root, cfg.predicted_split, cfg.scene_checkpoint, log=log)
        more = load_examples(root, cfg.predicted_split, ontology, vocab, mcfg.steps, cfg.predicted_limit,
                             scenes=scenes, trace_min_score=min_score)[0]
        log(f"{len(more):,} questions on predicted scenes of {root} "
            f"({sum('trace' in e for e in more):,} with a trace)")
        train += more
    val = []
    if val_split:
        vs = (predicted_scenes(data, val_split, cfg.scene_checkpoint, log=log)
              if cfg.val_scene_source == "predicted" else None)
        val = load_examples(data, val_split, ontology, vocab, mcfg.steps, scenes=vs)[0]
    log(f"loaded {len(train):,} training and {len(val):,} held-out questions in {time.time() - t0:.1f} s")
    if state:
        check_size((state.get("data") or {}).get("questions"), len(train), file=out, what="training questions")
    if state is None:
        model = NSM(mcfg, ontology, len(vocab)).to(device)
        model.init_word_embeddings(vocab)
        if init is not None:
            weights = dict(init["state_dict"])
            old = weights.get("embed.weight")
            if old is not None and old.shape[0] < len(vocab):  # extended vocabulary: new rows stay fresh
                full = model.embed.weight.detach().clone()
                full[:old.shape[0]] = old
                weights["embed.weight"] = full
            missing, unexpected = model.load_state_dict(weights, strict=False)
            log(f"weights from {cfg.init}; new: {', '.join(missing) or '-'}; dropped: {', '.join(unexpected) or '-'}")
    extra = {"data": {"root": str(data), "split": split, "val_split": val_split, "questions": len(train)}}
    return fit(model, vocab, train, val, cfg, out, rng, state=state, checkpoint_extra=extra,
               progress=progress, log=log, device=device)


def fit(model: NSM, vocab: Vocab, train: list[dict], val: list[dict], cfg, out, rng: random.Random, *,
        state: dict | None = None, checkpoint_extra: dict | None = None, progress=None, log=print,
        device: str = "cpu", report_extra: dict | None = None) -> dict:
    """The epoch loop of both NSM trainings (CLEVR here, GQA in nsm_gqa.py): AdamW, a warm-up
    then a cosine learning rate (by steps, or by time under `cfg.max_minutes`), shuffled
    batches from `rng`, `loss_fn`, gradients clipped at 5, a log line every `cfg.log_every`
    batches; after every epoch the held-out accuracy and a checkpoint at `out` (optimizer,
    step, epoch, history, train seconds, rng, `cfg`, then `checkpoint_extra`); `state` (a
    loaded checkpoint) resumes. `cfg` needs epochs, batch_size, lr, weight_decay,
    trace_weight, attention_weight, max_minutes, log_every. Out: the report dict (epochs,
    train_seconds, history, checkpoint, questions, then `report_extra`, then val)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    history, epoch, elapsed, step, skip = [], 0, 0.0, 0, 0
    if state:
        opt.load_state_dict(state["optimizer"])
        epoch, history, elapsed = state["epoch"], state.get("history", []), state.get("train_seconds", 0.0)
        step = state.get("step", 0)
        rng.setstate(_tuple_state(state["rng"]))
        # a checkpoint saved inside an epoch holds the RNG state before that epoch's shuffle
        # and the number of batches done: the same order is drawn and those batches skipped
        skip = state.get("batch", 0)
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])

    def learning_rate() -> float:
        """Warm-up, then a cosine over the run: by steps, or by time under --max-minutes."""
        done = step / max(total_steps, 1)
        if cfg.max_minutes:
            done = max(done, (time.time() - start) / (60 * cfg.max_minutes))
        return cfg.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))

    start = time.time() - elapsed
    # a run already stopped by --max-minutes stays stopped (run again, it trains no further)
    stopped = cfg.max_minutes is not None and elapsed > 60 * cfg.max_minutes
    def save(epoch_rng=None, batch: int = 0) -> None:
        save_checkpoint(out, model, vocab, {
            "optimizer": opt.state_dict(), "step": step, "epoch": epoch, "history": history,
            "train_seconds": time.time() - start, "rng": epoch_rng or rng.getstate(), "batch": batch,
            "torch_rng": torch.get_rng_state(),
            "train_config": asdict(cfg), **(checkpoint_extra or {})})

    while epoch < cfg.epochs and not stopped:
        order = list(range(len(train)))
        epoch_rng = rng.getstate()
        rng.shuffle(order)
        batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        done_before, skip = skip, 0
        if done_before:
            log(f"epoch {epoch + 1}: continuing after batch {done_before}")
        it = progress(batches[done_before:], desc=f"epoch {epoch + 1}/{cfg.epochs}") if progress else batches[done_before:]
        sums, n = defaultdict(float), 0
        model.train()
        for idx in it:
            batch = to_device(collate([train[i] for i in idx]), device)
            loss, parts = loss_fn(model(batch), batch, cfg.trace_weight, cfg.attention_weight,
                                  getattr(cfg, "shift_weight", 0.0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            for group in opt.param_groups:
                group["lr"] = learning_rate()
            opt.step()
            step += 1
            for k, v in parts.items():
                sums[k] += v
            n += 1
            if hasattr(it, "set_postfix") and n % 20 == 0:
                it.set_postfix(loss=f"{sums['answer'] / n:.3f}")
            if cfg.log_every and n % cfg.log_every == 0:
                log(f"epoch {epoch + 1} batch {done_before + n}/{len(batches)} {time.time() - start:.0f} s "
                    + " ".join(f"{k}={v / n:.4f}" for k, v in sums.items()))
            if cfg.max_minutes is not None and time.time() - start > 60 * cfg.max_minutes:
                stopped = True
                break
            every = getattr(cfg, "ckpt_every", 0)
            if every and n % every == 0 and done_before + n < len(batches):
                save(epoch_rng, done_before + n)
        partial = done_before + n < len(batches)  # stopped by max_minutes inside the epoch
        entry = {"epoch": epoch + 1, "seconds": round(time.time() - start, 1),
                 **{k: round(v / max(n, 1), 4) for k, v in sums.items()}}
        if partial:
            entry["batches"] = done_before + n
        else:
            epoch += 1
        if val:
            entry["val_accuracy"] = round(evaluate_nsm(model, val, device=device)["accuracy"], 4)
        history.append(entry)
        log(" ".join(f"{k}={v}" for k, v in entry.items()))
        if partial:
            save(epoch_rng, done_before + n)  # --resume (with a larger --max-minutes) continues here
        else:
            save()
    report = {"epochs": epoch, "train_seconds": round(time.time() - start, 1), "history": history,
              "checkpoint": str(out), "questions": len(train), **(report_extra or {})}
    if val:
        report["val"] = evaluate_nsm(model, val, device=device)
    return report


def evaluate_checkpoint(path, data, split: str, limit: int | None = None, device: str = "cpu",
                        scene_source: str = "gold", scene_checkpoint: str | None = None,
                        score_threshold: float | None = None, score_temperature: float | None = None,
                        log=print) -> dict:
    """Held-out accuracy of a saved model on `data/<split>` (by group, family, final function),
    on the gold scenes or on the scenes the scene parser predicts from the split's images.
    `score_threshold`/`score_temperature` override the model's objectness calibration."""
    model, vocab, _ = load_checkpoint(path, device)
    if score_threshold is not None:
        model.config.score_threshold = score_threshold
    if score_temperature is not None:
        model.config.score_temperature = score_temperature
    scenes = predicted_scenes(data, split, scene_checkpoint, log=log) if scene_source == "predicted" else None
    examples, _ = load_examples(data, split, model.ontology, vocab, model.config.steps, limit, scenes=scenes)
    report = evaluate_nsm(model, examples, device=device)
    report.update(checkpoint=str(path), data=str(data), split=split, scene_source=scene_source)
    return report


def strip_checkpoint(path, out) -> None:
    """Copy a checkpoint without the optimizer state (what ships; a GQA one keeps its ontology)."""
    model, vocab, data = load_checkpoint(path)
    keep = {k: data[k] for k in ("epoch", "history", "train_seconds", "train_config", "data", "gqa_ontology",
                                 "dataset") if k in data}
    save_checkpoint(out, model, vocab, keep)


def _tuple_state(s):
    return tuple(_tuple_state(x) if isinstance(x, list) else x for x in s) if isinstance(s, (list, tuple)) else s


def _order(item):
    """Family indices in numeric order, names alphabetically."""
    name = item[0]
    return (0, int(name), "") if name.isdigit() else (1, 0, name)
