"""Neural State Machine (Hudson & Manning, NeurIPS 2019) over `SceneGraph`s.

    reasoner = NSMReasoner.from_checkpoint("data/checkpoints/nsm_clevr.pt")
    result = reasoner.answer(scene, "How many red cubes are there?")
    result.answer, result.confidence, result.step_distributions   # [{object id: p}, ...]

The machine, as in the paper:
- concepts grouped by property type (identity = object names, each attribute type,
  relations) come from an `NSMOntology`; a node is represented per property type as the
  graph's probability-weighted mixture of that type's concept embeddings, an edge as the
  mixture of relation concepts, so gold (one-hot) and predicted (soft) graphs both work;
- question words are softly tagged against all concepts (plus a default that keeps the
  word's own embedding, for function words), encoded by a BiLSTM and decoded by a
  recurrent decoder into N instructions, each an attention over the question words;
- step i: property-type weights r_i = softmax(W q_i) over P node properties + relations;
  node relevance from sum_j r_i(j) (q_i * W_j s^j), edge relevance from q_i * W_e e;
  a property shift and a relation shift along edges (from the current distribution),
  mixed by r_i(relation); the answer classifier reads the question vector and the final
  state's aggregated node features.

Extensions (documented in data/checkpoints/README.md), needed for CLEVR's counting,
`same_*`, and/or and two-branch comparisons:
- the state is a soft set a_i in [0, 1]^n; the NSM distribution is p_i = a_i / sum a_i
  (what `step_distributions` shows) and sum a_i is a soft count for the classifier;
- a property shift either filters the current set or restarts from all objects (a keep
  gate); a restart pushes the current set into a one-slot register; op weights over
  {skip, shift, and, or} let a step keep the state or intersect/unite it with the register;
- "same <property>" and "self" are virtual relation concepts added to every edge, with
  the probability that the two nodes share the property;
- the classifier also reads, per property type, the value distributions of the final
  set and of the register and the probability that they agree, with an answer-type
  distribution over property types (`readout="values"`; the first checkpoints, which
  only saw a type-weighted mixture of concept embeddings, load as `readout="mixture"`);
- training may add auxiliary losses on the steps from program traces (nsm_train.py),
  including the register's content, the answer's property type and each instruction's
  attention on the words naming its step's concepts;
- predicted scenes: an object's score (the scene parser's objectness) becomes its initial
  mass through `NSMConfig.score_threshold` / `score_temperature` (a calibrated sigmoid).

Layering: imports torch and core modules only (plus vqa.reason.nsm_data).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import DataError
from ..executor import TraceStep
from ..program import Program
from ..scene import SceneGraph
from .nsm_data import COMPARE_OPS, OPS, NSMOntology, Vocab, collate, encode_example, to_device

MAX_COUNT = 10
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "nsm_clevr.pt"


@dataclass
class NSMConfig:
    dim: int = 64
    steps: int = 8
    dropout: float = 0.0
    encoder: str = "lstm"  # "lstm" (BiLSTM) or "transformer" (one pre-norm layer, learned positions)
    max_words: int = 64  # positions of the transformer encoder
    # what the answer classifier reads besides the question and the counts: "values" (per
    # property type, the value distributions of the final set and of the register, and
    # the probability that they agree) or "mixture" (only the answer-type-weighted mixture of
    # concept embeddings, the first checkpoints; material questions stayed at chance)
    readout: str = "values"
    # objectness calibration: a predicted object's score s (the scene parser's heat-map peak,
    # about 0.5-0.9 for real objects) enters the initial state as sigmoid((s - threshold) /
    # temperature); None: the raw score (the first checkpoints, trained on gold scenes only,
    # where a real object's 0.75 counted as three quarters of an object). Gold objects (s = 1)
    # stay 1.
    score_threshold: float | None = None
    score_temperature: float = 0.05
    # edge relevance also reads the step's control state (the decoder state, which knows the
    # whole question), not only the instruction (a context-free mixture of word embeddings):
    # "the box to the left of the can" (from the can to its left) and "what is the box to the
    # left of?" (from the box to its right) attend to the same words but walk the edges in
    # opposite directions. Off in the CLEVR checkpoints (files without it load as before).
    edge_control: bool = False


class NSM(nn.Module):
    """In: a `collate` batch. Out: dict with logits (B, A), states (B, S, n) soft sets,
    dists (B, S, n) distributions, registers (B, S, n) register soft sets, op (B, S, 4),
    keep (B, S), rel (B, S) gate values, anstype (B, P) the answer's property type, att (B, S, T)
    each instruction's attention over the question words."""

    def __init__(self, config: NSMConfig, ontology: NSMOntology, vocab_size: int):
        super().__init__()
        d = config.dim
        self.config, self.ontology = config, ontology
        P = len(ontology.properties)
        R = len(ontology.relations)
        init = lambda *s: nn.Parameter(torch.randn(*s) * d ** -0.5)  # noqa: E731
        # concept vocabulary: one table per property type, relations, virtual relations
        self.concepts = nn.ParameterList([init(len(v), d) for v in ontology.properties.values()])
        self.rel_concepts = init(R, d)
        self.same_concepts = init(P, d)  # "same <property>" edges
        self.self_concept = init(1, d)
        self.default_tag = init(1, d)  # tag logit for "not a concept" (function words)
        # question
        self.embed = nn.Embedding(vocab_size, d, padding_idx=0)
        self.tag_proj = nn.Linear(d, d, bias=False)
        nn.init.eye_(self.tag_proj.weight)
        self.default_bias = nn.Parameter(torch.tensor(4.0))
        if config.encoder == "lstm":
            self.encoder = nn.LSTM(d, d // 2, batch_first=True, bidirectional=True)
        elif config.encoder == "transformer":
            self.encoder = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
            self.positions = init(config.max_words, d)
        else:
            raise ValueError(f"unknown encoder {config.encoder!r} (expected 'lstm' or 'transformer')")
        self.q_proj = nn.Linear(d, d)
        self.decoder = nn.GRUCell(d, d)
        self.step_embed = init(config.steps, d)
        self.att = nn.Linear(d, d)
        # reasoning
        self.prop_type = nn.Linear(2 * d, P + 1)  # r_i over node properties + relation
        self.W_node = nn.Parameter(torch.stack([torch.eye(d)] * P) + 0.02 * torch.randn(P, d, d))
        self.W_edge = nn.Linear(d, d)
        self.node_out = nn.Sequential(nn.Linear(d, d), nn.ELU(), nn.Linear(d, 1))
        self.match_scale = nn.Parameter(torch.tensor(4.0))  # node relevance starts as a dot product
        self.match_bias = nn.Parameter(torch.tensor(-2.0))
        sizes = [len(v) for v in ontology.properties.values()] + [R]
        types = torch.zeros(sum(sizes), P + 1)
        types[torch.arange(sum(sizes)), torch.repeat_interleave(torch.arange(P + 1), torch.tensor(sizes))] = 1
        self.register_buffer("concept_types", types, persistent=False)  # (C, P+1)
        self.edge_w = nn.Parameter(torch.ones(d))
        if config.edge_control:
            self.edge_ctl = nn.Linear(d, d)  # starts at zero: the instruction-only relevance
            nn.init.zeros_(self.edge_ctl.weight)
            nn.init.zeros_(self.edge_ctl.bias)
        self.edge_b = nn.Parameter(torch.zeros(1))
        self.gates = nn.Linear(2 * d, len(OPS) + 1)  # op weights + keep gate
        # answer
        self.ans_type = nn.Linear(d, P)
        n_count = MAX_COUNT + 1
        n_in = 5 * d + 2 * n_count + 3
        if config.readout == "values":
            n_in += 2 * sum(sizes[:-1]) + 2 * P + 1
        elif config.readout != "mixture":
            raise ValueError(f"unknown readout {config.readout!r} (expected 'values' or 'mixture')")
        if config.readout == "values":
            # count comparisons: which one the question asks (none, equal, greater, less)
            # and how strongly the counts' evidence moves the yes/no logits
            self.cmp_type = nn.Linear(d, len(COMPARE_OPS))
            self.cmp_scale = nn.Parameter(torch.tensor(4.0))
        self.classifier = nn.Sequential(
            nn.Linear(n_in, 2 * d), nn.ELU(), nn.Dropout(config.dropout),
            nn.Linear(2 * d, len(ontology.answers)))

    @torch.no_grad()
    def init_word_embeddings(self, vocab: Vocab) -> int:
        """Start each concept word (and synonym) at its concept's embedding, so that soft
        tagging works from the first step. Out: how many words were set."""
        ont, k = self.ontology, 0
        table = {v: c[i] for c, vals in zip(self.concepts, ont.properties.values()) for i, v in enumerate(vals)}
        table.update({r: self.rel_concepts[i] for i, r in enumerate(ont.relations)})
        for word, i in vocab.index.items():
            concept = table.get(ont.synonyms.get(word, word))
            if concept is not None:
                self.embed.weight[i] = concept
                k += 1
        return k

    # ---- pieces ------------------------------------------------------------------
    def encode_question(self, words, word_mask):
        """words (B, T) -> word states (B, T, d), question vector (B, d), tagged words
        (B, T, d), and each word's tag mass per property type (B, T, P+1)."""
        w = self.embed(words)  # (B, T, d)
        concepts = torch.cat(list(self.concepts) + [self.rel_concepts], 0)  # (C, d)
        keys = torch.cat([concepts, self.default_tag], 0)  # (C+1, d)
        logits = (self.tag_proj(w) @ keys.t()) * self.config.dim ** 0.5
        logits = torch.cat([logits[..., :-1], logits[..., -1:] + self.default_bias], -1)
        tag = torch.softmax(logits, -1)  # (B, T, C+1)
        tagged = tag[..., :-1] @ concepts + tag[..., -1:] * w  # (B, T, d)
        types = tag[..., :-1] @ self.concept_types  # (B, T, P+1)
        if self.config.encoder == "transformer":
            T = min(words.shape[1], self.config.max_words)
            out = self.encoder(tagged[:, :T] + self.positions[:T], src_key_padding_mask=~word_mask[:, :T])
            m = word_mask[:, :T, None].float()
            out = out * m
            q = torch.tanh(self.q_proj(out.sum(1) / m.sum(1).clamp(min=1)))
            return out, q, tagged[:, :T], types[:, :T]
        lengths = word_mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(tagged, lengths, batch_first=True, enforce_sorted=False)
        out, (h, _) = self.encoder(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=words.shape[1])
        q = torch.tanh(self.q_proj(torch.cat([h[0], h[1]], -1)))  # (B, d)
        return out, q, tagged, types

    def instructions(self, states, tagged, word_mask, q):
        """N instructions (B, S, d), each an attention over the tagged words (keys: the
        encoder states), the decoder's states (B, S, d), which also know the step (they
        drive the gates), and the attention weights (B, S, T)."""
        h, out, hs, att = q, [], [], []
        keys = self.att(states)  # (B, T, d)
        word_mask = word_mask[:, :states.shape[1]]
        for i in range(self.config.steps):
            h = self.decoder(q + self.step_embed[i], h)
            logits = (keys * h[:, None]).sum(-1).masked_fill(~word_mask, -1e9)  # (B, T)
            alpha = torch.softmax(logits, -1)
            out.append((alpha[..., None] * tagged).sum(1))
            hs.append(h)
            att.append(alpha)
        return torch.stack(out, 1), torch.stack(hs, 1), torch.stack(att, 1)

    def graph_features(self, batch):
        """Node features (B, n, P, d); edge weights (B, n, n, K) over the K = R + P + 1 edge
        concepts (relations, "same <property>", "self"), whose embeddings are `edge_concepts`."""
        nodes = torch.stack([p @ c for p, c in zip(batch["props"], self.concepts)], 2)
        same = torch.stack([p @ p.transpose(1, 2) for p in batch["props"]], -1)  # (B, n, n, P)
        n = nodes.shape[1]
        eye = torch.eye(n, device=nodes.device)[None, :, :, None].expand(nodes.shape[0], n, n, 1)
        return nodes, torch.cat([batch["rels"], same, eye], -1)

    @property
    def edge_concepts(self):
        return torch.cat([self.rel_concepts, self.same_concepts, self.self_concept], 0)  # (K, d)

    def object_mass(self, score):
        """Objectness scores (B, n) -> initial state mass in [0, 1] (see `score_threshold`)."""
        c = self.config
        if c.score_threshold is None:
            return score
        soft = torch.sigmoid((score - c.score_threshold) / max(c.score_temperature, 1e-4))
        return torch.where(score >= 1.0, torch.ones_like(score), soft)

    @staticmethod
    def normalise(a, mask):
        a = (a + 1e-6) * mask
        return a / a.sum(-1, keepdim=True)

    def read(self, a, mask, nodes, r_ans):
        """Aggregated node features (B, d) under the distribution of soft set a, and its count."""
        p = self.normalise(a, mask)
        m = torch.einsum("bn,bnpd,bp->bd", p, nodes, r_ans)
        return m, a.sum(-1)

    # ---- forward ----------------------------------------------------------------------
    def forward(self, batch):
        mask = batch["node_mask"].float()  # (B, n)
        a0 = self.object_mass(batch["score"]) * mask
        states, q, tagged, types = self.encode_question(batch["words"], batch["word_mask"])
        instr, control, att = self.instructions(states, tagged, batch["word_mask"], q)  # (B, S, d) each
        type_prior = torch.log(att @ types + 1e-2)  # (B, S, P+1): concept types the step attends to
        ctl = torch.cat([instr, control], -1)  # (B, S, 2d)
        nodes, edges = self.graph_features(batch)
        node_proj = torch.einsum("bnpd,pde->bnpe", nodes, self.W_node)  # (B, n, P, d)
        edge_proj = self.W_edge(self.edge_concepts)  # (K, d)
        # everything that depends on the instructions only, for all steps at once
        r = torch.softmax(self.prop_type(ctl) + type_prior, -1)  # (B, S, P+1)
        g = self.gates(ctl)
        op = torch.softmax(g[..., :len(OPS)], -1)  # (B, S, 4)
        keep = torch.sigmoid(g[..., -1])  # (B, S)
        # node relevance: sum_j r_i(j) (q_i * W_j s^j) -> (B, S, n)
        x = torch.einsum("bip,bnpd->bind", r[..., :-1], node_proj) * instr[:, :, None]
        node_rel = torch.sigmoid(self.node_out(x).squeeze(-1) + self.match_scale * x.sum(-1) + self.match_bias)
        # edge relevance sigma(w . (q_i * W_e e)) with e = sum_k edges_k c_k is linear in the edge
        # weights inside the sigmoid: one score per edge concept, then (B, S, n, n) for s' -> s
        e_instr = instr + self.edge_ctl(control) if self.config.edge_control else instr
        beta = torch.einsum("kd,bid->bik", edge_proj, e_instr * self.edge_w)
        edge_rel = torch.sigmoid(torch.einsum("bsnk,bik->bisn", edges, beta) + self.edge_b)
        w_rel = r[..., -1]  # (B, S): weight of the relation property
        push = op[..., 1] * (1 - w_rel) * (1 - keep)  # a restarting property shift saves the set
        per_step = [t.unbind(1) for t in (node_rel, edge_rel, keep[..., None], w_rel[..., None], push[..., None])]
        ops = [t.unbind(1) for t in op[..., None].unbind(-2)]  # 4 x S x (B, 1)
        a, reg, states, regs, props, rels = a0, a0, [], [], [], []
        for i in range(self.config.steps):
            nrel, erel, kp, wr, pu = (t[i] for t in per_step)
            skip, shift, and_, or_ = (o[i] for o in ops)
            a_prop = nrel * (kp * a + (1 - kp) * a0)  # property shift: filter or restart
            p = self.normalise(a, mask)
            a_rel = torch.bmm(p[:, None], erel).squeeze(1) * a0  # relation shift along edges
            shifted = wr * a_rel + (1 - wr) * a_prop
            new = (skip * a + shift * shifted + and_ * a * reg + or_ * (a + reg - a * reg)) * mask
            reg = reg + pu * (a - reg)
            a = new
            states.append(a)
            props.append(a_prop)
            rels.append(a_rel)
            regs.append(reg)
        states = torch.stack(states, 1)  # (B, S, n)
        r_ans = torch.softmax(self.ans_type(q), -1)  # (B, P): the property type the answer is about
        out = {"states": states, "dists": self.normalise(states, mask[:, None]), "op": op, "keep": keep,
               "prop_states": torch.stack(props, 1), "rel_states": torch.stack(rels, 1),
               "rel": w_rel, "ptype": r, "registers": torch.stack(regs, 1), "anstype": r_ans, "att": att}
        m_f, c_f = self.read(a, mask, nodes, r_ans)
        m_r, c_r = self.read(reg, mask, nodes, r_ans)
        ks = torch.arange(MAX_COUNT + 1, device=a.device, dtype=a.dtype)
        cf = lambda c: torch.exp(-2.0 * (c[:, None] - ks) ** 2)  # noqa: E731
        diff = c_f - c_r
        feats = torch.cat([q, m_f, m_r, m_f * m_r, (m_f - m_r).abs(), cf(c_f), cf(c_r),
                           torch.tanh(diff)[:, None], torch.exp(-4 * diff ** 2)[:, None],
                           (c_f / MAX_COUNT)[:, None]], -1)
        if self.config.readout == "values":
            # per property type: the value distribution of the final set and of the register
            # (what query_* answers), and the probability that the two agree (equal_*)
            p_f, p_r = self.normalise(a, mask), self.normalise(reg, mask)
            v_f = [torch.einsum("bn,bnv->bv", p_f, x) for x in batch["props"]]
            v_r = [torch.einsum("bn,bnv->bv", p_r, x) for x in batch["props"]]
            same = torch.stack([(x * y).sum(-1) for x, y in zip(v_f, v_r)], -1)  # (B, P)
            feats = torch.cat([feats] + v_f + v_r + [same, r_ans, (same * r_ans).sum(-1, keepdim=True)], -1)
        out["logits"] = self.classifier(feats)
        if self.config.readout == "values" and {"yes", "no"} <= set(self.ontology.answers):
            # first branch (register, count c_r) against the second (final set, c_f):
            # equal_integer: c_r = c_f, greater_than: c_r > c_f, less_than: c_r < c_f
            g = torch.softmax(self.cmp_type(q), -1)  # (B, 4)
            out["cmptype"] = g
            evidence = torch.stack([torch.exp(-4 * diff ** 2), torch.sigmoid(6 * (-diff - 0.5)),
                                    torch.sigmoid(6 * (diff - 0.5))], -1) * 2 - 1  # (B, 3) in [-1, 1]
            e = self.cmp_scale * (g[:, 1:] * evidence).sum(-1)
            yes, no = self.ontology.answers.index("yes"), self.ontology.answers.index("no")
            shift = torch.zeros_like(out["logits"])
            shift[:, yes], shift[:, no] = e, -e
            out["logits"] = out["logits"] + shift
        return out


# ---- reasoner API ------------------------------------------------------------------------
@dataclass
class NSMAnswer:
    answer: str
    confidence: float
    step_distributions: list[dict[str, float]]  # one {object id: probability} per reasoning step
    step_ops: list[str]  # the most weighted op of each step (skip, shift, and, or)
    # per reasoning step, the soft set itself: {object id: membership in [0, 1]} (the
    # distributions above are these normalised; their sum is the machine's soft count)
    step_sets: list[dict[str, float]] = field(default_factory=list)
    initial_set: dict[str, float] = field(default_factory=dict)  # the state before step 1 (object mass)

    def to_dict(self) -> dict:
        return asdict(self)


# ---- the machine's steps as program steps -------------------------------------------------
# The machine runs a fixed number of reasoning steps (NSMConfig.steps, 8 in the shipped
# checkpoints) and was trained to make one step per *macro step* of the program
# (`nsm_data.macro_steps`): a filter chain (with its `unique`) after `scene` is one property
# shift, `relate`/`same_*` one relation shift, `intersect`/`union` one and/or step, and the
# steps after the last are `skip` (keep the state). `scene`, `unique` after a relation,
# `count`, `exist`, `query_*`, `equal_*` and the count comparisons are not machine steps: the
# answer classifier reads the final state (and, for the two-branch questions, the register
# holding the first branch). `program_trace` lays the machine's steps out on the program.
def machine_step_spans(program: Program) -> list[tuple[str, list[int]]]:
    """Per machine step the program asks for: (op, the program step indices it carries out),
    in order; the structure of `nsm_data.macro_steps` without running the program."""
    steps, out, i, restart, pending = program.steps, [], 0, False, []
    while i < len(steps):
        op = steps[i].op
        if op == "scene":
            restart, pending, i = True, [i], i + 1
            continue
        if op.startswith("filter_") or (op == "unique" and restart):
            j = i
            while j < len(steps) and (steps[j].op.startswith("filter_") or steps[j].op == "unique"):
                j += 1
            out.append(("shift", pending + list(range(i, j))))
            restart, pending, i = False, [], j
            continue
        if restart:  # a branch that is the whole scene
            out.append(("shift", pending))
            restart, pending = False, []
        if op == "relate" or op.startswith("same_"):
            out.append(("shift", [i]))
        elif op in ("intersect", "union"):
            out.append(("and" if op == "intersect" else "or", [i]))
        i += 1
    return out


@dataclass
class NSMTraceStep(TraceStep):
    """A program step as the NSM carried it out. `machine_step` (0-based) is the machine step
    whose state `attention` shows; `carried` is True when that machine step carries out this
    program step (with the other steps in `together`), False when the step only reads it (the
    answer classifier, or a `unique` the machine has no step for). `machine_op`: that machine
    step's most weighted op (skip, shift, and, or)."""

    attention: dict | None = None
    machine_step: int | None = None
    machine_op: str | None = None
    carried: bool = False
    together: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(attention=None if self.attention is None else {k: round(float(p), 4)
                                                               for k, p in self.attention.items()},
                 nsm_step=self.machine_step, nsm_op=self.machine_op, carried=self.carried,
                 together=list(self.together))
        return d


def program_trace(program: Program | None, answer: "NSMAnswer") -> list[NSMTraceStep] | None:
    """One entry per program step: the soft set ({object id: membership in [0, 1]}; the
    normalised distribution where the answer carries no sets) of the machine step that
    carries it out (or whose state it reads); the last step holds the answer and reads the
    final state (after all machine steps, so a step the model did not leave as `skip`
    shows). None when the program asks for more machine steps than the model has (then show
    the machine steps themselves)."""
    if program is None or not program.steps:
        return None
    spans = machine_step_spans(program)
    dists, ops = answer.step_sets or answer.step_distributions, answer.step_ops
    if len(spans) > len(dists):
        return None
    carried = {i: k for k, (_, idx) in enumerate(spans) for i in idx}
    together = {i: tuple(idx) for _, idx in spans for i in idx}
    last = len(program.steps) - 1
    state: dict[int, int | None] = {}
    out = []
    for i, s in enumerate(program.steps):
        if s.op == "scene":  # the state before the machine steps: every object (its mass)
            state[i] = None
            att = dict(answer.initial_set) or ({o: 1.0 for o in dists[0]} if dists else None)
            out.append(NSMTraceStep(i, s.token, (), att, attention=att))
            continue
        if i in carried:
            k, done = carried[i], True
        else:
            k, done = (state.get(s.inputs[0]) if s.inputs else None), False
        if i == last:
            k = len(dists) - 1 if dists else None  # the classifier reads the final state
        state[i] = k
        att = None if k is None else dict(dists[k])
        value = answer.answer if i == last else (att if done else None)
        out.append(NSMTraceStep(i, s.token, tuple(s.inputs), value, attention=att, machine_step=k,
                                machine_op=None if k is None else ops[k], carried=done and i != last,
                                together=tuple(j for j in together.get(i, ()) if program.steps[j].op != "scene")))
    return out


class NSMReasoner:
    """A trained NSM with its vocabularies. `answer`/`answer_batch` take scene graphs and
    question texts; no program is needed."""

    def __init__(self, model: NSM, vocab: Vocab, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.vocab, self.ontology, self.device = vocab, model.ontology, torch.device(device)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str = "cpu") -> "NSMReasoner":
        """The model of a checkpoint file (default: the shipped one)."""
        model, vocab, _ = load_checkpoint(path or DEFAULT_CHECKPOINT, device)
        return cls(model, vocab, device)

    def answer(self, scene: SceneGraph, question: str) -> NSMAnswer:
        return self.answer_batch([scene], [question])[0]

    @torch.no_grad()
    def answer_batch(self, scenes: list[SceneGraph], questions: list[str], batch_size: int = 256) -> list[NSMAnswer]:
        if len(scenes) != len(questions):
            raise ValueError(f"{len(scenes)} scenes but {len(questions)} questions")
        results, cache = [], {}
        for s in range(0, len(scenes), batch_size):
            exs = [encode_example(self.ontology, self.vocab, sc, q, steps=self.model.config.steps, scene_cache=cache)
                   for sc, q in zip(scenes[s:s + batch_size], questions[s:s + batch_size])]
            batch = collate(exs)
            out = self.model(to_device(batch, self.device))
            probs = torch.softmax(out["logits"], -1).cpu()
            dists, ops, sets = out["dists"].cpu(), out["op"].argmax(-1).cpu(), out["states"].cpu()
            a0 = self.model.object_mass(batch["score"]).cpu()
            for b, ids in enumerate(batch["ids"]):
                conf, k = probs[b].max(0)
                steps = [{o: round(float(dists[b, i, j]), 6) for j, o in enumerate(ids)}
                         for i in range(dists.shape[1])]
                soft = [{o: round(float(sets[b, i, j]), 6) for j, o in enumerate(ids)} for i in range(sets.shape[1])]
                results.append(NSMAnswer(self.ontology.answers[int(k)], float(conf), steps,
                                         [OPS[int(o)] for o in ops[b]], soft,
                                         {o: round(float(a0[b, j]), 6) for j, o in enumerate(ids)}))
        return results


def save_checkpoint(path: str | Path, model: NSM, vocab: Vocab, extra: dict | None = None) -> None:
    """Config, ontology, vocabulary and weights in one file (plus `extra`, e.g. training state)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": "vqa-nsm-1", "config": asdict(model.config), "ontology": model.ontology.to_dict(),
            "vocab": vocab.words, "state_dict": model.state_dict(), **(extra or {})}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(data, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[NSM, Vocab, dict]:
    """(model, vocab, the whole checkpoint dict); the model is rebuilt from the file alone."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such checkpoint file", file=path)
    try:
        data = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a data error
        raise DataError(f"cannot read checkpoint: {e}", file=path) from None
    if not isinstance(data, dict) or data.get("format") != "vqa-nsm-1":
        raise DataError("not an NSM checkpoint (expected format 'vqa-nsm-1')", file=path)
    vocab = Vocab(data["vocab"])
    config = {"readout": "mixture", **data["config"]}  # files from before `readout` existed
    model = NSM(NSMConfig(**config), NSMOntology.from_dict(data["ontology"]), len(vocab))
    model.load_state_dict(data["state_dict"])
    return model.to(device).eval(), vocab, data
