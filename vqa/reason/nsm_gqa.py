"""The Neural State Machine on GQA: concepts from scene graphs, typed nodes, GQA answers.

    report = train_nsm_gqa("train_balanced_questions.json", "train_sceneGraphs.json", out="nsm_gqa.pt",
                           val_questions="val_balanced_questions.json", val_scenes="val_sceneGraphs.json")
    answers, stats = answer_questions_nsm(records, "val_sceneGraphs.json", checkpoint="nsm_gqa.pt")

The machine is `vqa.reason.nsm.NSM`, unchanged; this module supplies GQA's side:

- concept vocabulary (`gqa_nsm_ontology`), built from the training scene graphs: the
  identity property is the object name; "category" holds the names above it in the name
  hierarchy (the GQA ontology's hypernyms, so "container" can select boxes and cans);
  every attribute type the ontology gives a seen attribute value (a value of unknown type
  goes to "other"); "hposition"/"vposition" from the box (image thirds, as GQA's
  positions); relations are the relation names seen. Answers: the answers of the
  training questions (GQA's answer vocabulary, most frequent first).
- nodes and edges from a `SceneGraph` (`typed_scene`): GQA's bare attribute strings are
  spread over their types, typed categories of a predicted graph keep their category, and
  probabilities stay probabilities, so gold and predicted graphs are read the same way
  (an object with name readings, `info["name_readings"]`, has them as its name
  distribution, and each category at its most probable name's probability).
- training traces from the `semantic` programs, run by the reference executor
  (`gqa_macro_steps`): a select with its filters is one restarting property shift, a
  relate one relation shift (followed by a property shift on its name when it names
  one), verify rel / choose rel likewise on their (first) relation; a comparative
  (`choose larger` of two objects) is the union of the two, then a property shift on the
  comparative's positive attribute ("large"), which leaves the winner; the answer's
  property type comes from `query X` / `same X` / `different X` (a comparative: name).
  Programs are used in training only: answering needs the graph and the question text.
- question words start at the concepts' scale (`init_gqa_word_embeddings`) so that the
  soft tagger does not saturate on a random concept (`concept_tags` shows the tags).

Checkpoints are `nsm.save_checkpoint` files (format vqa-nsm-1) with the GQA ontology used
for typing stored beside the weights (`gqa_ontology`), the optimizer, epoch and RNG states:
the same command continues the run saved in `out` (`resume`, as `nsm_train.train_nsm`).
"""
from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..datasets.gqa import SceneGraphs, iter_question_records
from ..datasets.gqa_ontology import GQAOntology, default_ontology
from ..datasets.gqa_program import parse_step
from ..errors import DataError
from ..resume import check_size, continue_run, not_a_run
from ..scene import SceneGraph, SceneObject
from .gqa_reference import run_gqa
from .nsm import NSM, NSMConfig, load_checkpoint
from .nsm_data import OPS, MacroStep, NSMOntology, Vocab, encode_example, tokenize

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "nsm_gqa.pt"
POSITIONS = {"hposition": ("left", "middle", "right"), "vposition": ("top", "middle", "bottom")}


# ---- concepts and typed scenes ------------------------------------------------------------------
def categories(name: str, onto: GQAOntology) -> list[str]:
    """Every name above `name` in the ontology's hierarchy (closed transitively)."""
    up: dict[str, set] = onto.__dict__.get("_up") or {}
    if not up:
        for h, below in onto.hypernyms.items():
            for n in below:
                up.setdefault(n, set()).add(h)
        onto.__dict__["_up"] = up
    out, todo = [], [name]
    while todo:
        for h in sorted(up.get(todo.pop(), ())):
            if h not in out and h != name:
                out.append(h)
                todo.append(h)
    return out


def _third(pos: float, extent: float, size: float, names) -> str:
    s = 3 * (2 * round(pos) + round(size))
    extent = round(extent)
    return names[0] if s < 2 * extent else names[2] if s > 4 * extent else names[1]


def typed_scene(scene: SceneGraph, onto: GQAOntology) -> SceneGraph:
    """The graph with attributes grouped by property type (see the module docstring)."""
    objs = []
    readings = scene.info.get("name_readings") or {}
    for o in scene.objects:
        names = readings.get(o.id) or {o.name: 1.0}  # an unsure name: its readings (`gqa_core.reasoning_view`)
        attrs: dict[str, dict[str, float]] = {"name": dict(names)}
        cats: dict[str, float] = {}
        for n, p in names.items():
            for c in categories(n, onto):
                cats[c] = max(cats.get(c, 0.0), p)
        if cats:
            attrs["category"] = cats
        for cat, dist in o.attributes.items():
            for v, p in dist.items():
                for t in ((onto.types_of(v) or ["other"]) if cat == "attribute" else [cat]):
                    if t in POSITIONS:
                        continue
                    d = attrs.setdefault(t, {})
                    d[v] = max(d.get(v, 0.0), p)
        x, y, w, h = o.bbox
        attrs["hposition"] = {_third(x, scene.width, w, POSITIONS["hposition"]): 1.0}
        attrs["vposition"] = {_third(y, scene.height, h, POSITIONS["vposition"]): 1.0}
        objs.append(SceneObject(o.id, o.name, o.bbox, attrs, o.score))
    return SceneGraph(scene.image_id, scene.width, scene.height, objs, scene.relations, scene.directions, scene.info)


def gqa_nsm_ontology(scenes, answers: Counter, onto: GQAOntology, max_answers: int | None = None) -> NSMOntology:
    """Concepts of the (typed) training graphs `scenes` and the answer vocabulary."""
    props: dict[str, set] = defaultdict(set)
    rels = set()
    for sc in scenes:
        for o in typed_scene(sc, onto).objects:
            for t, dist in o.attributes.items():
                props[t] |= set(dist)
        rels |= {r.predicate for r in sc.relations}
    for t, vals in POSITIONS.items():
        props[t] |= set(vals)
    order = ["name", "category"] + sorted(t for t in props if t not in ("name", "category"))
    properties = {t: tuple(sorted(props[t])) for t in order if props.get(t)}
    answers = answers + Counter({"yes": 0, "no": 0})
    ans = [a for a, _ in sorted(answers.items(), key=lambda kv: (-kv[1], kv[0]))][:max_answers]
    return NSMOntology(properties, tuple(sorted(rels)), tuple(ans), "name", {})


# ---- word embeddings -----------------------------------------------------------------------------
RELATION_STOPWORDS = frozenset({"to", "the", "of", "in", "on", "a", "an"})


@torch.no_grad()
def init_gqa_word_embeddings(model: NSM, vocab: Vocab) -> dict:
    """Start the question words so that soft tagging can learn: concept words at their
    concept's embedding (`NSM.init_word_embeddings`), the content words of multi-word relation
    names ("front" of "in front of", "next" of "next to") at their relation's, and every other
    word at the concepts' scale (N(0, 1/d)) instead of `nn.Embedding`'s N(0, 1).

    Why: a tag logit is (word . concept) * sqrt(d); with N(0, 1) words its spread is about 8
    against the "not a concept" bias of 4, so from the first step most function words were
    tagged one-hot as a random concept and never moved (the gradient of a saturated softmax
    is near zero): in the first GQA checkpoint "size", "shape" and "material" were all
    `shape:round`, "larger" `color:purple`, "not" `hposition:middle`, so "What size ..." and
    "What shape ..." were the same question. At the concepts' scale a word's logits spread
    about 1 and the bias keeps it mostly itself. Out: counts of words set per kind."""
    concept = model.init_word_embeddings(vocab)
    ont, d = model.ontology, model.config.dim
    table = {v for vals in ont.properties.values() for v in vals} | set(ont.relations) | set(ont.synonyms)
    rel_words = 0
    for k, r in enumerate(ont.relations):
        for w in tokenize(r):
            if w not in RELATION_STOPWORDS and w not in table and w in vocab.index and len(tokenize(r)) > 1:
                model.embed.weight[vocab.index[w]] = model.rel_concepts[k]
                table.add(w)
                rel_words += 1
    other = [i for w, i in vocab.index.items() if i > 0 and w not in table]
    if other:
        # torch's global generator (seeded by the training): a fresh generator with the training's
        # seed would repeat the concept tables' draws and tag word k as concept k
        model.embed.weight[other] = torch.randn(len(other), d, device=model.embed.weight.device) * d ** -0.5
    return {"concept": concept, "relation": rel_words, "other": len(other)}


@torch.no_grad()
def concept_tags(model: NSM, vocab: Vocab, words) -> dict[str, tuple[str, float]]:
    """word -> (its most probable soft tag, probability): "type:value", "rel:name" or "-" for
    "not a concept" (the word keeps its own embedding). A diagnostic of the question side."""
    ont = model.ontology
    names = [f"{t}:{v}" for t, vals in ont.properties.items() for v in vals] + \
        [f"rel:{r}" for r in ont.relations] + ["-"]
    ids = torch.tensor([[vocab.index.get(w, 1) for w in words]], device=model.embed.weight.device)
    e = model.embed(ids)
    keys = torch.cat(list(model.concepts) + [model.rel_concepts, model.default_tag], 0)
    logits = (model.tag_proj(e) @ keys.t()) * model.config.dim ** 0.5
    logits[..., -1] += model.default_bias
    p, k = torch.softmax(logits, -1)[0].max(-1)
    return {w: (names[int(i)], float(q)) for w, i, q in zip(words, k, p)}


# ---- training traces -----------------------------------------------------------------------------
def _related(scene: SceneGraph, xs, relation: str, direction: str) -> set[str]:
    out = set()
    for r in scene.relations:
        if r.predicate != relation or r.probability < 0.5:
            continue
        if direction in ("s", "_") and r.object in xs:
            out.add(r.subject)
        if direction in ("o", "_") and r.subject in xs:
            out.add(r.object)
    return out


def gqa_macro_steps(steps, scene: SceneGraph, onto: GQAOntology, answer: str | None = None,
                    index: dict[str, int] | None = None, typed_graph: SceneGraph | None = None,
                    tables: dict | None = None) -> list[MacroStep] | None:
    """The machine steps a structured GQA program asks for (None when it fails or gives
    another answer than `answer`). `typed_graph`: `typed_scene(scene, onto)` when the
    caller has it; `tables`: `run_gqa`'s per-scene tables (both only save time)."""
    res: list = []
    got, failed = run_gqa(scene, steps, onto, trace=res, tables=tables)
    if failed is not None or (answer is not None and got != answer):
        return None
    index = index or {o: k for k, o in enumerate(scene.ids)}
    ix = lambda objs: sorted(index[o] for o in objs)  # noqa: E731
    typed = {o.id: o.attributes for o in (typed_graph or typed_scene(scene, onto)).objects}
    out: list[MacroStep] = []
    tested: dict[int, list[str]] = {}  # input step -> the objects still passing its verify tests
    i = 0
    while i < len(steps):
        s = steps[i]
        if s.family == "verify" and s.type != "rel" and not s.negated and isinstance(res[s.inputs[0]], list):
            # an attribute test is a filter: the set stays non-empty exactly when the answer is yes
            # (two tests of one object in a row, as in "both red and large", filter in turn)
            base = tested.get(s.inputs[0], res[s.inputs[0]])
            keep = [o for o in base if any(v in typed[o].get(s.type or "", {}) or
                                           (s.type == "name" and v in typed[o]["name"]) for v in s.values)]
            tested[s.inputs[0]] = keep
            out.append(MacroStep("shift", ix(keep), restart=0, relation=0, concepts=s.values))
            i += 1
            continue
        if s.family == "select" and not s.scene:
            j = i + 1
            while j < len(steps) and steps[j].family == "filter" and steps[j].inputs == (j - 1,):
                j += 1
            concepts = (s.name,) + tuple(w for st in steps[i + 1:j] for w in _filter_words(st))
            out.append(MacroStep("shift", ix(res[j - 1]), restart=1, relation=0, concepts=concepts))
            i = j
            continue
        if s.is_comparative:
            out += _comparative_steps(s, res, res[i], typed, scene, onto, ix)
        elif s.family == "filter":
            out.append(MacroStep("shift", ix(res[i]), restart=0, relation=0, concepts=_filter_words(s)))
        elif s.is_relational and s.values and isinstance(res[s.inputs[0]], list):
            rel = s.values[0]
            xs = set(res[s.inputs[0]])
            out.append(MacroStep("shift", ix(_related(scene, xs, rel, s.direction or "_")), relation=1,
                                 concepts=relation_words(rel)))
            if s.name and s.name != "_":
                named = [o for o in scene.ids if o in _related(scene, xs, rel, s.direction or "_")
                         and (o in res[i] if s.family == "relate" else _named(scene, o, s.name, onto))]
                out.append(MacroStep("shift", ix(named), restart=0, relation=0, concepts=(s.name,)))
        i += 1
    return out


def relation_words(relation: str) -> tuple[str, ...]:
    """The words a relation step's instruction should attend to: the relation name without
    "to", "the", "of", "in", "on" ("to the left of" -> "left"). With them, the attention
    target held every "the" and "of" of the question, the instruction settled on those, and
    the relation shift learned nothing (5 % of relation steps right on held-out questions)."""
    words = tuple(w for w in tokenize(relation) if w not in RELATION_STOPWORDS)
    return words or tuple(tokenize(relation))


def _filter_words(step) -> tuple[str, ...]:
    """A filter's values, with "not" for a negated one ("the box that is not red"): without
    it the instruction of "not red" was the instruction of "red"."""
    return tuple(step.values) + (("not",) if step.negated else ())


def _comparative_steps(s, res, winner: str, typed, scene, onto, ix) -> list[MacroStep]:
    """`choose larger` of two objects as machine steps: the union of the two (the second
    select pushed the first into the register), then a property shift on the comparative's
    positive attribute ("larger": "large", from the ontology's comparatives), which leaves
    the winner, whose name the answer reads. None of that when the attribute does not single
    out the reference executor's winner (a tie broken by the box, a missing attribute):
    then the answer is read from the two sets as before."""
    pos = (onto.comparatives.get(s.type) or (None,))[0]
    a, b = (res[k] for k in s.inputs)
    if not pos or not (isinstance(a, list) and isinstance(b, list)):
        return []
    both = sorted(set(a) | set(b))
    keep = [o for o in both if any(pos in vals for vals in typed[o].values())]
    names = {o.id: o.name for o in scene.objects}
    if len(keep) != 1 or names[keep[0]] != winner:
        return []
    return [MacroStep("or", ix(both)), MacroStep("shift", ix(keep), restart=0, relation=0, concepts=(s.type,))]


def _named(scene, oid, name, onto) -> bool:
    o = next(x for x in scene.objects if x.id == oid)
    return name == o.name or name in categories(o.name, onto) or onto.plurals.get(name) in ([o.name] + categories(o.name, onto))


def answer_property(ontology: NSMOntology, steps) -> int:
    """Index of the property type the final step asks about (-1: none)."""
    if not steps:
        return -1
    s = steps[-1]
    t = (s.values[0] if s.values else "name") if s.family == "query" else \
        (s.type or "name") if s.family in ("same", "different") else \
        "name" if s.is_comparative else \
        s.type if s.family == "choose" and not s.is_comparative and s.type != "rel" else None
    return ontology.property_types.index(t) if t in ontology.properties else -1


def encode_gqa_example(ontology: NSMOntology, vocab: Vocab, scene: SceneGraph, text: str, steps=None,
                       answer: str | None = None, n_steps: int = 8, family: str = "", scene_cache=None,
                       onto: GQAOntology | None = None, raw_scene: SceneGraph | None = None,
                       tables: dict | None = None) -> dict:
    """`encode_example` of a typed scene, with the GQA trace when `steps` are given
    (`raw_scene`: the graph before typing, whose typed form `scene` is; `tables`: a dict
    kept per scene for `run_gqa`)."""
    ex = encode_example(ontology, vocab, scene, text, None, answer, steps=n_steps, family=family,
                        scene_cache=scene_cache)
    if steps is None:
        return ex
    ex["anstype"], ex["cmptype"] = answer_property(ontology, steps), 0
    macros = gqa_macro_steps(steps, raw_scene or scene, onto or default_ontology(), answer,
                             typed_graph=scene if raw_scene is not None else None, tables=tables)
    if macros is None or len(macros) > n_steps:
        return ex
    n = len(scene.ids)
    # built as lists, turned into tensors once (a tensor op per entry was most of the loading time)
    tgt, register = [[0.0] * n for _ in range(n_steps)], [[0.0] * n for _ in range(n_steps)]
    op, restart, relation = [0] * n_steps, [-1.0] * n_steps, [-1.0] * n_steps
    last = reg = list(range(n))
    for k in range(n_steps):
        m = macros[k] if k < len(macros) else MacroStep("skip", last)
        for j in m.target:
            tgt[k][j] = 1.0
        op[k] = OPS.index(m.op)
        restart[k], relation[k] = float(m.restart), float(m.relation)
        if m.op == "shift" and m.restart == 1:
            reg = last
        for j in reg:
            register[k][j] = 1.0
        last = m.target
    names = tokenize(text) or [""]
    words = [[0.0] * len(names) for _ in range(n_steps)]
    for k, m in enumerate(macros):
        cw = {w for c in m.concepts for w in tokenize(c)}
        if cw:
            words[k] = [float(w in cw) for w in names]
    ex["trace"] = {"target": torch.tensor(tgt).reshape(n_steps, n), "op": torch.tensor(op, dtype=torch.long),
                   "restart": torch.tensor(restart), "relation": torch.tensor(relation),
                   "register": torch.tensor(register).reshape(n_steps, n), "words": torch.tensor(words)}
    return ex


# ---- data ----------------------------------------------------------------------------------------
def _records(path, limit=None) -> dict[str, dict]:
    out = {}
    for f, qid, rec in iter_question_records(path):
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), str):
            raise DataError("expected a question object with a 'question' string", file=f, record=qid)
        out[qid] = rec
        if limit is not None and len(out) >= limit:
            break
    return out


def _steps(rec, qid):
    sem = rec.get("semantic")
    if not isinstance(sem, list):
        return None
    try:
        return [parse_step(r["operation"], r["argument"], r["dependencies"]) for r in sem]
    except (KeyError, TypeError, AttributeError):
        raise DataError("expected operation/argument/dependencies steps", record=qid, field="semantic") from None


_LOAD_ARGS: tuple = ()


def _load_chunk(qids: list[str]) -> bytes:
    import pickle

    records, scenes, ontology, vocab, onto, n_steps, traces = _LOAD_ARGS
    return pickle.dumps(load_gqa_examples({q: records[q] for q in qids}, scenes, ontology, vocab, onto, n_steps,
                                          traces))


def load_gqa_examples(records: dict, scenes: SceneGraphs, ontology: NSMOntology, vocab: Vocab, onto: GQAOntology,
                      n_steps: int, traces: bool = True, workers: int = 1) -> list[dict]:
    """Encoded examples of question records over their scene graphs, in the records' order.
    `workers` > 1: in that many forked processes (contiguous chunks; the same examples)."""
    if workers > 1 and len(records) >= 2 * workers:
        import multiprocessing
        import pickle

        global _LOAD_ARGS
        qids = list(records)
        size = -(-len(qids) // (4 * workers))
        chunks = [qids[i:i + size] for i in range(0, len(qids), size)]
        _LOAD_ARGS = (records, scenes, ontology, vocab, onto, n_steps, traces)
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                return [e for blob in pool.imap(_load_chunk, chunks) for e in pickle.loads(blob)]
        finally:
            _LOAD_ARGS = ()
    cache, typed, out = {}, {}, []
    for qid, rec in records.items():
        image_id = str(rec.get("imageId"))
        if image_id not in scenes:
            raise DataError(f"no scene graph for image {image_id!r}", file=scenes.path, record=qid, field="imageId")
        if image_id not in typed:
            raw = scenes[image_id]
            typed[image_id] = (raw, typed_scene(raw, onto), {})
        raw, sc, tables = typed[image_id]
        types = rec.get("types") or {}
        out.append(encode_gqa_example(ontology, vocab, sc, rec["question"], _steps(rec, qid) if traces else None,
                                      rec.get("answer"), n_steps, {"group": types.get("structural", ""),
                                                                   "family": types.get("detailed", ""),
                                                                   "function": types.get("semantic", "")},
                                      cache, onto, raw, tables))
    return out


# ---- training ------------------------------------------------------------------------------------
FLAGS = {"questions": "--questions", "scenes": "--scenes", "val_questions": "--val-questions",
         "val_scenes": "--val-scenes", "max_answers": "max_answers (library setting)"}

@dataclass
class GQANSMTrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    trace_weight: float = 1.0
    attention_weight: float = 1.0
    shift_weight: float = 1.0  # the shift BCE (nsm_train.loss_fn): without it GQA's relation shifts did not learn
    seed: int = 0
    threads: int = 1
    limit: int | None = None
    max_minutes: float | None = None
    max_answers: int | None = 2000  # GQA's open answers: the most frequent ones
    workers: int = 1  # processes that encode the examples (loading only; the same examples)
    log_every: int = 100
    ckpt_every: int = 0  # also save a resumable checkpoint every this many batches (0: only per epoch)


def train_nsm_gqa(questions, scenes, *, out="nsm_gqa.pt", val_questions=None, val_scenes=None,
                  config: GQANSMTrainConfig | None = None, model_config: NSMConfig | None = None,
                  ontology: GQAOntology | None = None, resume: bool = False, progress=None, log=print,
                  device: str = "cpu") -> dict:
    """Train the NSM on a GQA questions file over its scene graphs; evaluate on the
    held-out pair after every epoch; checkpoint after every epoch. Out: a report dict."""
    from .nsm_train import fit

    cfg = config or GQANSMTrainConfig()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    out = Path(out)
    onto = ontology or default_ontology()
    t0 = time.time()
    records = _records(questions, cfg.limit)
    graphs = SceneGraphs(scenes, keep={str(r.get("imageId")) for r in records.values()})
    state = None
    if resume is not False and out.is_file():
        model, vocab, state = load_checkpoint(out, device)
        if "optimizer" not in state or "gqa_ontology" not in state:
            raise not_a_run(out, "GQA NSM checkpoint" if "gqa_ontology" in state else "checkpoint of another model")
    now = {**asdict(cfg), "model": asdict(model_config or NSMConfig()), "questions": str(questions),
           "scenes": str(scenes), "val_questions": str(val_questions) if val_questions else None,
           "val_scenes": str(val_scenes) if val_scenes else None}
    saved = state and {**(state.get("train_config") or {}), "model": state["config"], **{
        k: v for k, v in (state.get("data") or {}).items() if k != "n"}}
    if continue_run(resume, saved, now, file=out, flags=FLAGS):
        nont = model.ontology
        onto = GQAOntology.from_dict(state["gqa_ontology"])
        log(f"resuming from {out} (epoch {state.get('epoch', 0)})")
    else:
        state = None
        nont = gqa_nsm_ontology((graphs[i] for i in graphs), Counter(r.get("answer") for r in records.values()
                                                                      if r.get("answer")), onto, cfg.max_answers)
        vocab = Vocab.build([r["question"] for r in records.values()], nont)
        model = NSM(model_config or NSMConfig(), nont, len(vocab)).to(device)
        init_gqa_word_embeddings(model, vocab)
    mcfg = model.config
    train = load_gqa_examples(records, graphs, nont, vocab, onto, mcfg.steps, workers=cfg.workers)
    val = []
    if val_questions:
        vr = _records(val_questions)
        val = load_gqa_examples(vr, SceneGraphs(val_scenes, keep={str(r.get("imageId")) for r in vr.values()}),
                                nont, vocab, onto, mcfg.steps, traces=False, workers=cfg.workers)
    log(f"loaded {len(train):,} training ({sum('trace' in e for e in train):,} with a trace) and {len(val):,} "
        f"held-out questions in {time.time() - t0:.1f} s; {len(nont.answers)} answers, "
        f"{sum(len(v) for v in nont.properties.values())} concepts in {len(nont.properties)} property types, "
        f"{len(nont.relations)} relations")
    if state:
        check_size((state.get("data") or {}).get("n"), len(train), file=out, what="training questions")
    extra = {"gqa_ontology": onto.to_dict(), "dataset": "gqa",
             "data": {"questions": str(questions), "scenes": str(scenes), "n": len(train),
                      "val_questions": str(val_questions) if val_questions else None,
                      "val_scenes": str(val_scenes) if val_scenes else None}}
    return fit(model, vocab, train, val, cfg, out, rng, state=state, checkpoint_extra=extra, progress=progress,
               log=log, device=device, report_extra={"dataset": "gqa"})


def strip_gqa_checkpoint(path, out) -> None:
    """A copy without optimizer state (a shippable checkpoint): `nsm_train.strip_checkpoint`."""
    from .nsm_train import strip_checkpoint

    strip_checkpoint(path, out)


# ---- answering -----------------------------------------------------------------------------------
class GQANSMReasoner:
    """A trained GQA NSM: answers question texts over scene graphs (gold or predicted)."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu"):
        from .nsm import NSMReasoner

        path = Path(path) if path else DEFAULT_CHECKPOINT
        model, vocab, data = load_checkpoint(path, device)
        if "gqa_ontology" not in data:
            raise DataError("not a GQA NSM checkpoint (no gqa_ontology; train one with "
                            "`vqa train nsm --dataset gqa`)", file=path)
        self.onto = GQAOntology.from_dict(data["gqa_ontology"])
        self.reasoner = NSMReasoner(model, vocab, device)

    def answer_batch(self, scenes: list[SceneGraph], questions: list[str]):
        typed = {}
        ts = []
        for sc in scenes:
            if sc.image_id not in typed:
                typed[sc.image_id] = typed_scene(sc, self.onto)
            ts.append(typed[sc.image_id])
        return self.reasoner.answer_batch(ts, questions)


def answer_questions_nsm(records: dict, scenes, *, checkpoint=None, progress=None,
                         attentions: dict | None = None) -> tuple[dict, dict]:
    """qid -> answer for GQA question records (texts only) over scene graphs (a file or a
    mapping image id -> SceneGraph), and stats; what `vqa evaluate --dataset gqa
    --reasoner nsm` uses. `attentions`, when given (a dict), gets qid -> the final step's
    attention over the graph's objects as [x0, y0, x1, y1, score] boxes in pixels (GQA's
    attentions format, `vqa.eval.gqa_grounding`)."""
    reasoner = GQANSMReasoner(checkpoint)
    by_image = defaultdict(list)
    for qid, rec in records.items():
        by_image[str(rec.get("imageId"))].append(qid)
    graphs = scenes if not isinstance(scenes, (str, Path)) else SceneGraphs(scenes, keep=by_image)
    t0 = time.perf_counter()
    qids, sc, texts = [], [], []
    for image_id, qs in sorted(by_image.items()):
        if image_id not in graphs:
            raise DataError(f"no scene graph for image {image_id!r}", file=getattr(graphs, "path", None),
                            record=qs[0], field="imageId")
        g = graphs[image_id]
        for q in qs:
            qids.append(q)
            sc.append(g)
            texts.append(records[q].get("question", ""))
    answers = {}
    chunks = range(0, len(qids), 512)
    for s in (progress(chunks, desc="answering") if progress else chunks):
        for q, g, a in zip(qids[s:s + 512], sc[s:s + 512], reasoner.answer_batch(sc[s:s + 512], texts[s:s + 512])):
            answers[q] = a.answer
            if attentions is not None:
                from ..eval.gqa_grounding import graph_attention

                attentions[q] = graph_attention(g, a.step_distributions[-1] if a.step_distributions else {})
    seconds = time.perf_counter() - t0
    return answers, {"failed": 0, "failures_by_operation": {}, "unsupported_by_operation": {},
                     "images": len(by_image), "seconds": round(seconds, 3),
                     "questions_per_second": round(len(qids) / seconds, 1) if seconds > 0 else None}
