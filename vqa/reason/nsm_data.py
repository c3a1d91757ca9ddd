"""Data side of the Neural State Machine: ontology, tokeniser, vocabulary, tensors.

    ont = NSMOntology.clevr()                       # concept vocabulary by property type
    vocab = Vocab.build(texts, ont)                 # question words
    ex = encode_example(ont, vocab, scene, text, program, answer, steps=8)
    batch = collate([ex, ...])                      # dict of padded tensors (shapes below)

A scene graph becomes, per property type j, an (n, V_j) matrix of probabilities (the
graph's attribute distributions; the identity property falls back to the object's name)
and an (n, n, R) tensor of relation probabilities, `rels[s', s, r] = P(s r s')` ("s is r
of s'"), so gold (one-hot) and predicted (soft) graphs are read the same way.

Program traces (training only): a CLEVR program is cut into *macro steps*, the state
changes the machine should make: a filter chain (with its `unique`) is one property
shift, `relate`/`same_*` one relation shift, `intersect`/`union` one and/or step; a
filter chain that follows a `scene` restarts from all objects. Each macro step has a
target set of objects from the reference executor, and labels for its op, its
restart gate and its relation-vs-property choice. Steps after the last are "skip".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from ..executor import execute
from ..ontology import CLEVR_ANSWERS, CLEVR_ATTRIBUTES, CLEVR_RELATIONS, CLEVR_SYNONYMS
from ..program import Program
from ..scene import SceneGraph

OPS = ("skip", "shift", "and", "or")
ANSWER_OPS = ("count", "exist", "equal_integer", "less_than", "greater_than")
COMPARE_OPS = ("none", "equal_integer", "greater_than", "less_than")  # count comparisons, by index
PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass
class NSMOntology:
    """Concepts grouped by property type. `properties[identity]` holds object names
    (CLEVR: shapes); `answers` is the classifier's output vocabulary."""

    properties: dict[str, tuple[str, ...]]
    relations: tuple[str, ...]
    answers: tuple[str, ...]
    identity: str
    synonyms: dict[str, str] = field(default_factory=dict)

    @classmethod
    def clevr(cls) -> "NSMOntology":
        props = {"shape": CLEVR_ATTRIBUTES["shape"]}
        props.update({c: v for c, v in CLEVR_ATTRIBUTES.items() if c != "shape"})
        return cls(props, tuple(CLEVR_RELATIONS), tuple(CLEVR_ANSWERS), "shape", dict(CLEVR_SYNONYMS))

    @property
    def property_types(self) -> tuple[str, ...]:
        return tuple(self.properties)

    def to_dict(self) -> dict:
        return {"properties": {k: list(v) for k, v in self.properties.items()}, "relations": list(self.relations),
                "answers": list(self.answers), "identity": self.identity, "synonyms": dict(self.synonyms)}

    @classmethod
    def from_dict(cls, d: dict) -> "NSMOntology":
        return cls({k: tuple(v) for k, v in d["properties"].items()}, tuple(d["relations"]),
                   tuple(d["answers"]), d["identity"], dict(d.get("synonyms", {})))


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens: "Is the big ball red?" -> ["is", "the", "big", "ball", "red"]."""
    return _TOKEN.findall(text.lower())


class Vocab:
    """Question words; index 0 is padding, 1 unknown."""

    def __init__(self, words: list[str]):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts, ontology: NSMOntology, min_count: int = 1) -> "Vocab":
        counts: dict[str, int] = {}
        for t in texts:
            for w in tokenize(t):
                counts[w] = counts.get(w, 0) + 1
        concept_words = {w for vals in ontology.properties.values() for v in vals for w in tokenize(v)}
        concept_words |= {w for r in ontology.relations for w in tokenize(r)} | set(ontology.synonyms)
        words = sorted(concept_words | {w for w, c in counts.items() if c >= min_count})
        return cls([PAD, UNK] + words)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, 1) for w in tokenize(text)] or [1]

    def __len__(self) -> int:
        return len(self.words)


# ---- scenes -----------------------------------------------------------------------
def scene_tensors(ontology: NSMOntology, scene: SceneGraph) -> dict:
    """props: list of (n, V_j) probabilities; rels (n, n, R); score (n,); ids."""
    ids = scene.ids
    index = {o: k for k, o in enumerate(ids)}
    n = len(ids)
    props = []
    for cat, values in ontology.properties.items():
        vi = {v: k for k, v in enumerate(values)}
        m = torch.zeros(n, len(values))
        for k, obj in enumerate(scene.objects):
            dist = obj.attributes.get(cat)
            if dist is None and cat == ontology.identity:
                dist = {obj.name: 1.0}
            for v, p in (dist or {}).items():
                if v in vi:
                    m[k, vi[v]] = p
        props.append(m)
    ri = {r: k for k, r in enumerate(ontology.relations)}
    rels = torch.zeros(n, n, len(ontology.relations))
    for rel in scene.relations:
        if rel.predicate in ri and rel.subject in index and rel.object in index:
            rels[index[rel.object], index[rel.subject], ri[rel.predicate]] = rel.probability
    score = torch.tensor([min(max(o.score, 0.0), 1.0) for o in scene.objects], dtype=torch.float)
    return {"props": props, "rels": rels, "score": score, "ids": ids}


# ---- program traces ------------------------------------------------------------------
@dataclass
class MacroStep:
    op: str  # one of OPS
    target: list[int]  # object indices in the state after the step
    restart: int = -1  # 1: start again from all objects, 0: filter the current set, -1: n/a
    relation: int = -1  # 1: relation shift, 0: property shift, -1: n/a
    concepts: tuple[str, ...] = ()  # the concept values the step's question words name (filters, relation)


def macro_steps(program: Program, scene: SceneGraph, index: dict[str, int] | None = None,
                answer: str | None = None) -> list[MacroStep] | None:
    """The machine steps a program asks for (None when the program fails on the scene, or
    gives another answer than `answer` when that is given). `index` maps object ids to the
    machine's node indices (default: the scene's order)."""
    result = execute(program, scene)
    if not result.ok or (answer is not None and result.answer != answer):
        return None
    index = index or {o: k for k, o in enumerate(scene.ids)}

    def objs(i):
        v = result.trace[i].value
        return sorted(index[o] for o in ((v,) if isinstance(v, str) else v))

    steps, out, i, restart = program.steps, [], 0, False
    while i < len(steps):
        op = steps[i].op
        if op == "scene":
            restart, i = True, i + 1
            continue
        if op.startswith("filter_") or (op == "unique" and restart):
            j = i
            while j < len(steps) and (steps[j].op.startswith("filter_") or steps[j].op == "unique"):
                j += 1
            values = tuple(a for st in steps[i:j] if st.op.startswith("filter_") for a in st.args)
            out.append(MacroStep("shift", objs(j - 1), restart=int(restart), relation=0, concepts=values))
            restart, i = False, j
            continue
        if restart:  # a branch that is the whole scene
            out.append(MacroStep("shift", sorted(index[o] for o in scene.ids), restart=1, relation=0))
            restart = False
        if op == "relate" or op.startswith("same_"):
            out.append(MacroStep("shift", objs(i), relation=1, concepts=tuple(steps[i].args) if op == "relate" else ()))
        elif op in ("intersect", "union"):
            out.append(MacroStep("and" if op == "intersect" else "or", objs(i)))
        i += 1
    return out


# ---- examples and batches ---------------------------------------------------------------
def confident_objects(scene: SceneGraph, min_score: float) -> SceneGraph:
    """The scene with only the objects scored >= min_score (and the relations among them):
    what a predicted scene most likely holds, for the program traces."""
    if all(o.score >= min_score for o in scene.objects):
        return scene
    keep = [o for o in scene.objects if o.score >= min_score]
    ids = {o.id for o in keep}
    return SceneGraph(scene.image_id, scene.width, scene.height, keep,
                      [r for r in scene.relations if r.subject in ids and r.object in ids],
                      scene.directions, scene.info)


def encode_example(ontology: NSMOntology, vocab: Vocab, scene: SceneGraph, text: str,
                   program: Program | None = None, answer: str | None = None, steps: int = 8,
                   family: str = "", scene_cache: dict | None = None,
                   trace_min_score: float | None = None) -> dict:
    """One (scene, question) pair as tensors; trace targets when `program` is given and
    fits in `steps` macro steps.

    Predicted (soft) scenes: with `trace_min_score`, the trace is the program run on the
    objects scored at least that much (lower-scored objects are never in a target set), and
    there is no trace when that run does not give `answer` (the scene parser erred); the
    answer itself is always trained on."""
    st = None if scene_cache is None else scene_cache.get(scene.image_id)
    if st is None:
        st = scene_tensors(ontology, scene)
        if scene_cache is not None:
            scene_cache[scene.image_id] = st
    ex = {"scene": st, "words": torch.tensor(vocab.encode(text)), "family": family,
          "answer": ontology.answers.index(answer) if answer in ontology.answers else -1,
          "anstype": answer_type(ontology, program), "cmptype": compare_type(program)}
    macros, everything = None, list(range(len(st["ids"])))
    if program is not None and trace_min_score is None:
        macros = macro_steps(program, scene)
    elif program is not None:
        sure = confident_objects(scene, trace_min_score)
        index = {o: k for k, o in enumerate(scene.ids)}
        everything = sorted(index[o] for o in sure.ids)
        macros = macro_steps(program, sure, index, answer)
    if macros is not None and len(macros) <= steps:
        n = len(st["ids"])
        tgt = torch.zeros(steps, n)
        op = torch.zeros(steps, dtype=torch.long)
        register = torch.zeros(steps, n)
        restart = torch.full((steps,), -1.0)
        relation = torch.full((steps,), -1.0)
        last = reg = everything
        for k in range(steps):
            m = macros[k] if k < len(macros) else MacroStep("skip", last)
            tgt[k, m.target] = 1.0
            op[k] = OPS.index(m.op)
            restart[k], relation[k] = m.restart, m.relation
            if m.op == "shift" and m.restart == 1:  # a restart saves the current set
                reg = last
            register[k, reg] = 1.0
            last = m.target
        # which question words each step should attend to: the words naming its concepts
        names = [ontology.synonyms.get(w, w) for w in tokenize(text)] or [""]
        words = torch.zeros(steps, len(names))
        for k, m in enumerate(macros):
            if m.concepts:
                words[k] = torch.tensor([float(w in m.concepts) for w in names])
        ex["trace"] = {"target": tgt, "op": op, "restart": restart, "relation": relation, "register": register,
                       "words": words}
    return ex


def answer_type(ontology: NSMOntology, program: Program | None) -> int:
    """Index of the property type a program's answer is about (`query_color`, `equal_size`
    ...: that type; counts, exist and count comparisons: -1)."""
    if program is None or not program.steps:
        return -1
    op = program.steps[-1].op
    for prefix in ("query_", "equal_"):
        if op.startswith(prefix) and op[len(prefix):] in ontology.properties:
            return ontology.property_types.index(op[len(prefix):])
    return -1


def compare_type(program: Program | None) -> int:
    """Index in COMPARE_OPS of a program's final count comparison (0: none; -1: no program)."""
    if program is None or not program.steps:
        return -1
    op = program.steps[-1].op
    return COMPARE_OPS.index(op) if op in COMPARE_OPS else 0


def collate(examples: list[dict]) -> dict:
    """Pad a list of `encode_example` outputs.

    Out: words (B, T) long, word_mask (B, T) bool, props list of (B, n, V_j), rels
    (B, n, n, R), score (B, n), node_mask (B, n) bool, answer (B,) long (-1 unknown),
    anstype (B,) long (-1 none), cmptype (B,) long (COMPARE_OPS index, -1 unknown), has_trace (B,) bool, target (B, S, n), register (B, S, n),
    op (B, S) long, restart (B, S), relation (B, S), att_words (B, S, T) the words each step
    should attend to (all zero: no such words).
    """
    B = len(examples)
    T = max(len(e["words"]) for e in examples)
    n = max(len(e["scene"]["ids"]) for e in examples)
    S = next((e["trace"]["op"].shape[0] for e in examples if "trace" in e), 1)
    P = len(examples[0]["scene"]["props"])
    R = examples[0]["scene"]["rels"].shape[-1]
    words = torch.zeros(B, T, dtype=torch.long)
    props = [torch.zeros(B, n, examples[0]["scene"]["props"][j].shape[1]) for j in range(P)]
    rels = torch.zeros(B, n, n, R)
    score = torch.zeros(B, n)
    node_mask = torch.zeros(B, n, dtype=torch.bool)
    target = torch.zeros(B, S, n)
    register = torch.zeros(B, S, n)
    op = torch.zeros(B, S, dtype=torch.long)
    restart = torch.full((B, S), -1.0)
    relation = torch.full((B, S), -1.0)
    has_trace = torch.zeros(B, dtype=torch.bool)
    att_words = torch.zeros(B, S, T)
    for b, e in enumerate(examples):
        w = e["words"]
        words[b, :len(w)] = w
        sc = e["scene"]
        k = len(sc["ids"])
        for j in range(P):
            props[j][b, :k] = sc["props"][j]
        rels[b, :k, :k] = sc["rels"]
        score[b, :k] = sc["score"]
        node_mask[b, :k] = True
        if "trace" in e:
            tr = e["trace"]
            has_trace[b] = True
            target[b, :, :k] = tr["target"]
            if "register" in tr:
                register[b, :, :k] = tr["register"]
            if "words" in tr:
                att_words[b, :, :tr["words"].shape[1]] = tr["words"]
            op[b], restart[b], relation[b] = tr["op"], tr["restart"], tr["relation"]
    return {"words": words, "word_mask": words != 0, "props": props, "rels": rels, "score": score,
            "node_mask": node_mask, "answer": torch.tensor([e["answer"] for e in examples]),
            "anstype": torch.tensor([e.get("anstype", -1) for e in examples]),
            "cmptype": torch.tensor([e.get("cmptype", -1) for e in examples]),
            "has_trace": has_trace, "target": target, "register": register, "op": op, "restart": restart,
            "relation": relation, "att_words": att_words,
            "ids": [e["scene"]["ids"] for e in examples], "family": [e["family"] for e in examples]}


def to_device(batch: dict, device) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device)
        elif k == "props":
            out[k] = [t.to(device) for t in v]
        else:
            out[k] = v
    return out
