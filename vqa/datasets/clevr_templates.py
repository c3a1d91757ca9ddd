"""Question templates in the official CLEVR generator's JSON format, instantiated on scenes.

    ts = TemplateSet.load("clevr-official/templates")      # *.json + metadata.json + synonyms.json
    gen = TemplateQuestionGenerator(ts, numpy.random.default_rng(0))
    records = gen.generate(scene, k=10)                     # scene: a CLEVR scene record (dict)

The format (read from the files; this module is written from the format's meaning, not
from the official generator's code):

- a template file is a list of templates; a template has `text` (phrasing variants, where
  `<Z> <C> <M> <S> <R>`-style names are parameters and `[words]` are optional), `params`
  (`{"name", "type"}` with a type of `metadata.json`), `nodes` (the program: `{"type",
  "inputs", "side_inputs"}`) and `constraints` (`NULL`: the parameters stay empty;
  `OUT_NEQ`: the outputs of two nodes differ; `NOT_EQ`: two parameters differ);
- `metadata.json` gives the value types (`Color`: [...], ...) and the function signatures;
  functions marked `template_only` are macros made of the basic ones, read from their
  names: `relate_` (a `relate` step on the Relation side input), `filter` (one
  `filter_<type>` step per non-empty attribute side input), then the function after
  `filter_` (`unique`, `count`, `exist`). `filter_unique` is filter + `unique`,
  `relate_filter_count` is relate + filter + `count`;
- `synonyms.json` maps a value (and `thing`, the word of an empty shape) to its wordings.

Instantiation (what a template question means; the choices are random):
- parameters are filled node by node, following the program: a description that ends in
  `unique` names one object of its input set (it picks an object and a set of its
  attributes that singles it out); other descriptions are drawn from an object of the
  input set or at random (so that counts of 0 and `no` answers occur);
- degenerate instantiations are rejected: a `unique` must see exactly one object (a
  reference that fits no object or several), a step must get the kind of value it takes,
  and the constraints must hold. Like the released questions (measured on the official
  generator's questions: 8.6 % of their unique references and 16 % of their other
  descriptions change nothing), redundant words are allowed: a unique reference is drawn
  uniformly among the attribute sets of its object that single it out, another
  description names each attribute with probability 1/2, from an object of its input
  set (65 %) or at random. `style="minimal"` instead rejects every word that does not
  change its input set (the project's own families' rule);
- answers are balanced within a template: a few instantiations are drawn and the one
  whose answer is rarest so far in that template is kept, and an answer is refused when
  its count would exceed `max(floor, ratio * count of the most frequent other answer)`;
- the answer is computed on a bitmask index of the scene and (by default) re-derived by
  the reference executor (`vqa.executor`) from the expanded program; a mismatch raises.

Records come in the released format (`function`, `value_inputs`, answers as strings) or,
with `form="raw"`, in the generator's raw form (`type`, `value_inputs`, `_output` on every
step, answers as JSON booleans and integers). `question_family_index` is the template's
index within its file, `template_filename` its file.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .synth.questions import BalanceConfig, SceneIndex

CATEGORIES = ("size", "color", "material", "shape")  # SceneIndex's order
_ATTR_TYPES = {"Size": 0, "Color": 1, "Material": 2, "Shape": 3}
_MACRO_FINALS = ("unique", "count", "exist")
_PARAM = re.compile(r"<[A-Za-z0-9_]+>")
_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
# the released CLEVR files have no template_filename; their global family index counts the
# templates of the nine files in this (alphabetical) order
TEMPLATE_FILES = ("compare_integer.json", "comparison.json", "one_hop.json", "same_relate.json",
                  "single_and.json", "single_or.json", "three_hop.json", "two_hop.json", "zero_hop.json")


@dataclass
class Template:
    filename: str
    index: int  # within its file (the generator's question_family_index)
    texts: list[str]
    nodes: list[dict]
    params: dict[str, str]  # name -> type
    constraints: list[dict]

    @property
    def key(self) -> str:
        return f"{self.filename}:{self.index}"


@dataclass
class TemplateSet:
    templates: list[Template]
    types: dict[str, list | None]
    functions: dict[str, dict]
    synonyms: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | Path, files: list[str] | None = None) -> "TemplateSet":
        """Every template file of `folder` (all `*.json` but metadata.json and synonyms.json,
        sorted by name; or `files`), with the folder's metadata.json and synonyms.json."""
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError("not a folder of CLEVR template files", file=folder)
        meta_path = folder / "metadata.json"
        if not meta_path.exists():
            raise DataError("missing metadata.json (function signatures and value types)", file=meta_path)
        meta = _read_json(meta_path)
        if not isinstance(meta, dict) or not isinstance(meta.get("types"), dict) \
                or not isinstance(meta.get("functions"), list):
            raise DataError("expected an object with 'types' and 'functions'", file=meta_path)
        functions = {}
        for i, f in enumerate(meta["functions"]):
            if not isinstance(f, dict) or not isinstance(f.get("name"), str):
                raise DataError("expected a function object with a 'name'", file=meta_path, field=f"functions[{i}]")
            functions[f["name"]] = f
        syn_path = folder / "synonyms.json"
        synonyms = _read_json(syn_path) if syn_path.exists() else {}
        if not isinstance(synonyms, dict) or not all(
                isinstance(v, list) and v and all(isinstance(w, str) for w in v) for v in synonyms.values()):
            raise DataError("expected an object mapping a word to a list of wordings", file=syn_path)
        names = files if files is not None else sorted(
            p.name for p in folder.glob("*.json") if p.name not in ("metadata.json", "synonyms.json"))
        out = cls([], meta["types"], functions, synonyms)
        for name in names:
            path = folder / name
            data = _read_json(path)
            if not isinstance(data, list):
                raise DataError("expected a list of templates", file=path)
            for i, rec in enumerate(data):
                out.templates.append(out._template(rec, name, i, path))
        if not out.templates:
            raise DataError("no template files", file=folder)
        return out

    def _template(self, rec, name: str, i: int, path: Path) -> Template:
        def fail(msg, fld=None):
            return DataError(msg, file=path, record=i, field=fld)

        if not isinstance(rec, dict):
            raise fail("expected a template object")
        for key, typ in (("text", list), ("nodes", list), ("params", list)):
            if not isinstance(rec.get(key), typ) or not rec[key]:
                raise fail(f"expected a non-empty list", key)
        if not all(isinstance(t, str) for t in rec["text"]):
            raise fail("expected strings", "text")
        params = {}
        for k, p in enumerate(rec["params"]):
            if not isinstance(p, dict) or not isinstance(p.get("name"), str) or p.get("type") not in self.types:
                raise fail(f"expected {{'name', 'type'}} with a type of metadata.json ({', '.join(self.types)})",
                           f"params[{k}]")
            params[p["name"]] = p["type"]
        constraints = rec.get("constraints", [])
        if not isinstance(constraints, list):
            raise fail("expected a list", "constraints")
        nodes = rec["nodes"]
        for k, n in enumerate(nodes):
            fld = f"nodes[{k}]"
            if not isinstance(n, dict) or n.get("type") not in self.functions:
                raise fail(f"unknown function {n.get('type') if isinstance(n, dict) else n!r} "
                           "(not in metadata.json)", fld)
            spec = self.functions[n["type"]]
            ins = n.get("inputs", [])
            if not isinstance(ins, list) or len(ins) != len(spec.get("inputs", [])) \
                    or not all(isinstance(j, int) and 0 <= j < k for j in ins):
                raise fail(f"{n['type']} takes {len(spec.get('inputs', []))} input(s) from earlier nodes, "
                           f"got {ins!r}", f"{fld}.inputs")
            side = n.get("side_inputs", [])
            want = spec.get("side_inputs", [])
            if len(side) != len(want) or not all(s in params for s in side):
                raise fail(f"{n['type']} takes side inputs of types {want}, got {side!r} "
                           "(each must be a declared parameter)", f"{fld}.side_inputs")
            for s, t in zip(side, want):
                if params[s] != t:
                    raise fail(f"parameter {s} is a {params[s]}, {n['type']} expects a {t}", f"{fld}.side_inputs")
            if spec.get("template_only"):
                _macro_parts(n["type"], spec, self.functions, lambda m: fail(m, fld))
        for k, c in enumerate(constraints):
            fld = f"constraints[{k}]"
            if not isinstance(c, dict) or c.get("type") not in ("NULL", "OUT_NEQ", "NOT_EQ"):
                raise fail("expected a constraint of type NULL, OUT_NEQ or NOT_EQ", fld)
            ps = c.get("params")
            if c["type"] == "OUT_NEQ":
                if not (isinstance(ps, list) and len(ps) == 2 and all(isinstance(j, int) and 0 <= j < len(nodes)
                                                                      for j in ps)):
                    raise fail("OUT_NEQ takes two node indices", f"{fld}.params")
            elif not (isinstance(ps, list) and ps and all(p in params for p in ps)):
                raise fail(f"{c['type']} takes declared parameter names", f"{fld}.params")
        for t in rec["text"]:
            for p in _PARAM.findall(t):
                if p not in params:
                    raise fail(f"text names {p}, which is not a parameter", "text")
        return Template(name, i, list(rec["text"]), nodes, params, constraints)

    def word(self, value: str, rand: random.Random) -> str:
        return rand.choice(self.synonyms.get(value, [value]))


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", file=path) from None
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})", file=path) from None


def _macro_parts(name: str, spec: dict, functions: dict, fail) -> tuple[bool, str | None]:
    """(starts with relate, final basic function or None) of a template-only function."""
    parts = name.split("_")
    relate = parts[0] == "relate"
    if relate:
        parts = parts[1:]
    if not parts or parts[0] != "filter" or len(parts) > 2:
        raise fail(f"template-only function {name!r} is not of the form [relate_]filter[_FUNCTION]")
    final = parts[1] if len(parts) == 2 else None
    if final is not None and (final not in functions or functions[final].get("template_only")):
        raise fail(f"template-only function {name!r} ends in {final!r}, not a basic function")
    side = spec.get("side_inputs", [])
    if relate and (not side or side[0] != "Relation"):
        raise fail(f"{name!r} starts with relate but its first side input is not a Relation")
    return relate, final


def family_file(global_index: int) -> str | None:
    """The template file of a released CLEVR `question_family_index` (0..89), counting the
    official files' templates in TEMPLATE_FILES order (9, 16, 6, 28, 5, 8, 6, 6, 6)."""
    sizes = (9, 16, 6, 28, 5, 8, 6, 6, 6)
    if not isinstance(global_index, int) or global_index < 0:
        return None
    for name, n in zip(TEMPLATE_FILES, sizes):
        if global_index < n:
            return name
        global_index -= n
    return None


class _Reject(Exception):
    pass


def _popcount(m: int) -> int:
    return bin(m).count("1")


def _bits(m: int) -> list[int]:
    out, i = [], 0
    while m:
        if m & 1:
            out.append(i)
        m >>= 1
        i += 1
    return out


class _Instance:
    """One filling of a template on one scene: parameter values, node outputs, steps."""

    def __init__(self, ts: TemplateSet, t: Template, index: SceneIndex, rand: random.Random, free_p: float,
                 word_p: float = 0.5, minimal: bool = False):
        self.ts, self.t, self.index, self.rand, self.free_p = ts, t, index, rand, free_p
        self.word_p, self.minimal = word_p, minimal
        self.values: dict[str, str | None] = {}
        self.null = {p for c in t.constraints if c["type"] == "NULL" for p in c["params"]}
        self.outputs: list = []
        self.steps: list[dict] = []  # released-form steps, with "_output"
        self.node_step: list[int] = []

    def run(self):
        for k, node in enumerate(self.t.nodes):
            self._node(k, node)
        for c in self.t.constraints:
            if c["type"] == "OUT_NEQ":
                a, b = c["params"]
                if self.outputs[a] == self.outputs[b]:
                    raise _Reject
            elif c["type"] == "NOT_EQ":
                vals = [self.values.get(p) for p in c["params"]]
                if len(set(vals)) != len(vals):
                    raise _Reject
        return self.outputs[-1]

    def _emit(self, fn: str, inputs: list[int], args: list[str], out) -> int:
        self.steps.append({"function": fn, "inputs": inputs, "value_inputs": args, "_output": out})
        return len(self.steps) - 1

    def _node(self, k: int, node: dict) -> None:
        ix = self.index
        fn = node["type"]
        spec = self.ts.functions[fn]
        ins = [self.outputs[j] for j in node.get("inputs", [])]
        in_steps = [self.node_step[j] for j in node.get("inputs", [])]
        side = node.get("side_inputs", [])
        if spec.get("template_only") or (side and all(self.t.params[s] in _ATTR_TYPES for s in side)
                                         and fn.startswith("filter_")):
            relate, final = (_macro_parts(fn, spec, self.ts.functions, lambda m: DataError(m))
                             if spec.get("template_only") else (False, None))
            step = in_steps[0]
            base = ins[0]
            attr_side = list(side)
            if relate:
                rname = side[0]
                r = self._relation(rname)
                if not isinstance(base, tuple):
                    raise _Reject
                base = ix.rel[r][base[1]]
                step = self._emit("relate", [step], [r], base)
                attr_side = side[1:]
            if not isinstance(base, int):
                raise _Reject
            # a basic filter_<type> node always names its value; a macro's may stay empty
            desc = self._describe(attr_side, base, final == "unique", required=not spec.get("template_only"))
            cur = base
            for p, v in zip(attr_side, desc):
                if v is None:
                    continue
                cat = _ATTR_TYPES[self.t.params[p]]
                nxt = cur & ix.attr[cat][v]
                if nxt == cur and self.minimal:  # a word that changes nothing
                    raise _Reject
                cur = nxt
                step = self._emit(f"filter_{CATEGORIES[cat]}", [step], [v], cur)
            out = cur
            if final == "unique":
                if _popcount(cur) != 1:
                    raise _Reject
                out = ("obj", _bits(cur)[0])
                step = self._emit("unique", [step], [], out)
            elif final == "count":
                out = _popcount(cur)
                step = self._emit("count", [step], [], out)
            elif final == "exist":
                out = cur != 0
                step = self._emit("exist", [step], [], out)
            elif final is not None:
                raise DataError(f"unsupported macro ending {final!r}")
            self.outputs.append(out)
            self.node_step.append(step)
            return
        out = self._basic(fn, ins, side)
        args = [self._relation(side[0])] if fn == "relate" else []
        self.node_step.append(self._emit(fn, in_steps, args, out))
        self.outputs.append(out)

    def _relation(self, name: str) -> str:
        if name not in self.values:
            self.values[name] = self.rand.choice(self.ts.types["Relation"])
        return self.values[name]

    def _basic(self, fn: str, ins: list, side: list):
        ix = self.index
        if fn == "scene":
            return ix.full
        if fn == "relate":
            o = self._obj(ins[0])
            return ix.rel[self._relation(side[0])][o]
        if fn in ("union", "intersect"):
            a, b = (self._set(v) for v in ins)
            return a | b if fn == "union" else a & b
        if fn == "count":
            return _popcount(self._set(ins[0]))
        if fn == "exist":
            return self._set(ins[0]) != 0
        if fn == "unique":
            s = self._set(ins[0])
            if _popcount(s) != 1:
                raise _Reject
            return ("obj", _bits(s)[0])
        for k, cat in enumerate(CATEGORIES):
            if fn == f"query_{cat}":
                return ix.values[self._obj(ins[0])][k]
            if fn == f"same_{cat}":
                return ix.same[k][self._obj(ins[0])]
            if fn == f"equal_{cat}":
                return ins[0] == ins[1]
        if fn == "equal_integer":
            return ins[0] == ins[1]
        if fn == "less_than":
            return ins[0] < ins[1]
        if fn == "greater_than":
            return ins[0] > ins[1]
        if fn == "equal_object":
            return self._obj(ins[0]) == self._obj(ins[1])
        raise DataError(f"function {fn!r} of metadata.json has no meaning here")

    @staticmethod
    def _obj(v) -> int:
        if not isinstance(v, tuple):
            raise _Reject
        return v[1]

    @staticmethod
    def _set(v) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise _Reject
        return v

    def _describe(self, side: list[str], base: int, unique: bool, required: bool = False) -> list[str | None]:
        """Values for the attribute parameters `side` (None = empty) applied to `base`."""
        ix, rand = self.index, self.rand
        fixed = {p: self.values[p] for p in side if p in self.values}
        free = [p for p in side if p not in self.values and p not in self.null]
        for p in side:
            if p in self.null:
                self.values.setdefault(p, None)
        cats = {p: _ATTR_TYPES[self.t.params[p]] for p in side}
        members = _bits(base)
        if unique:
            if not members:
                raise _Reject
            target = rand.choice(members)
            options = []
            for sid in ([(1 << len(free)) - 1] if required else range(1 << len(free))):
                chosen = {p: ix.values[target][cats[p]] for b, p in enumerate(free) if sid >> b & 1}
                desc = [fixed.get(p, chosen.get(p)) for p in side]
                if self._valid(side, desc, base, unique):
                    options.append(desc)
            if not options:
                raise _Reject
            desc = rand.choice(options)
        else:
            target = rand.choice(members) if members and rand.random() >= self.free_p else None
            desc = []
            for p in side:
                if p not in free:
                    desc.append(fixed.get(p))
                elif required or rand.random() < self.word_p:
                    desc.append(ix.values[target][cats[p]] if target is not None
                                else rand.choice(self.ts.types[self.t.params[p]]))
                else:
                    desc.append(None)
            if not self._valid(side, desc, base, False):
                raise _Reject
        for p, v in zip(side, desc):
            self.values[p] = v
        return desc

    def _valid(self, side, desc, base: int, unique: bool) -> bool:
        """Every named attribute must narrow the set (minimal style only); a unique
        description must leave one object."""
        ix, cur = self.index, base
        for p, v in zip(side, desc):
            if v is None:
                continue
            nxt = cur & ix.attr[_ATTR_TYPES[self.t.params[p]]][v]
            if nxt == cur and self.minimal:
                return False
            cur = nxt
        return _popcount(cur) == 1 if unique else True

    def text(self) -> str:
        rand = self.rand
        t = rand.choice(self.t.texts)
        t = _OPTIONAL.sub(lambda m: m.group(1) if rand.random() < 0.5 else "", t)

        def fill(m):
            name = m.group(0)
            v = self.values.get(name)
            if v is None:
                return self.ts.word("thing", rand) if self.t.params[name] == "Shape" else ""
            return self.ts.word(v, rand)

        t = _PARAM.sub(fill, t)
        t = re.sub(r"\s+", " ", t).strip()
        t = re.sub(r"\s+([?;,.])", r"\1", t)
        return t[:1].upper() + t[1:]


def _answer_value(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    return v


def _release_answer(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


class TemplateQuestionGenerator:
    """Questions from official-format templates; the same interface as
    `synth.questions.QuestionGenerator` (`generate(scene, k, rng=None)`, `family_counts`,
    `answer_counts`, keyed by `Template.key`)."""

    def __init__(self, templates: TemplateSet, rng: np.random.Generator | None = None,
                 balance: BalanceConfig | None = None, verify: bool = True, form: str = "release",
                 attempts: int = 24, free_p: float = 0.35, style: str = "official"):
        if style not in ("official", "minimal"):
            raise ValueError(f"style must be 'official' or 'minimal', got {style!r}")
        self.minimal = style == "minimal"
        if form not in ("release", "raw"):
            raise ValueError(f"form must be 'release' or 'raw', got {form!r}")
        self.ts = templates
        self.rng = rng if rng is not None else np.random.default_rng()
        self.balance = balance or BalanceConfig()
        self.verify, self.form, self.attempts, self.free_p = verify, form, attempts, free_p
        self.answer_counts: dict[str, Counter] = {t.key: Counter() for t in templates.templates}
        self.family_counts: Counter = Counter()

    def allowed(self, t: Template, answer: str) -> bool:
        counts = self.answer_counts[t.key]
        others = max((c for a, c in counts.items() if a != answer), default=0)
        return counts[answer] + 1 <= max(self.balance.floor, self.balance.ratio * others)

    def instantiate(self, t: Template, index: SceneIndex, rand: random.Random):
        """The chosen `_Instance` of template `t` on a scene, or None."""
        counts = self.answer_counts[t.key]
        best, best_count, found = None, None, 0
        for _ in range(self.attempts):
            inst = _Instance(self.ts, t, index, rand, self.free_p, minimal=self.minimal)
            try:
                value = inst.run()
            except _Reject:
                continue
            answer = _release_answer(value)
            found += 1
            if self.allowed(t, answer) and (best is None or counts[answer] < best_count):
                best, best_count = (inst, value), counts[answer]
                if best_count == 0:
                    break
            if found >= self.balance.candidates:
                break
        return best

    def generate(self, scene: dict, k: int, rng: np.random.Generator | None = None) -> list[dict]:
        from ..scene import SceneGraph

        rand = random.Random(int((rng if rng is not None else self.rng).integers(0, 2 ** 63)))
        index = SceneIndex(scene)
        order = sorted(self.ts.templates, key=lambda t: (self.family_counts[t.key], rand.random()))
        graph = None
        if self.verify:
            graph = scene if isinstance(scene, SceneGraph) else SceneGraph.from_clevr(scene)
        out, seen = [], set()
        for t in order:
            if len(out) >= k:
                break
            chosen = self.instantiate(t, index, rand)
            if chosen is None:
                continue
            inst, value = chosen
            key = tuple((s["function"], tuple(s["inputs"]), tuple(s["value_inputs"])) for s in inst.steps)
            if key in seen:
                continue
            seen.add(key)
            answer = _release_answer(value)
            record = {"question": inst.text(), "program": self._program(inst.steps, index),
                      "answer": answer if self.form == "release" else _answer_value(value),
                      "template_filename": t.filename, "question_family_index": t.index}
            if self.verify:
                _check(record, graph, answer)
            self.answer_counts[t.key][answer] += 1
            self.family_counts[t.key] += 1
            out.append(record)
        return out

    def _program(self, steps: list[dict], index: SceneIndex) -> list[dict]:
        if self.form == "release":
            return [{"function": s["function"], "inputs": s["inputs"], "value_inputs": s["value_inputs"]}
                    for s in steps]
        out = []
        for s in steps:
            v = s["_output"]
            if isinstance(v, tuple):
                v = v[1]
            elif isinstance(v, int) and not isinstance(v, bool) and s["function"] not in ("count",):
                v = _bits(v)
            out.append({"type": s["function"], "inputs": s["inputs"], "_output": v,
                        "value_inputs": s["value_inputs"]})
        return out


def _check(record: dict, graph, answer: str) -> None:
    from ..executor import execute
    from ..program import Program

    result = execute(Program.from_clevr(record["program"]), graph)
    if result.answer != answer:
        raise RuntimeError(f"template answer {answer!r} but the reference executor says "
                           f"{result.answer!r} ({result.error}) for {record['question']!r}")
