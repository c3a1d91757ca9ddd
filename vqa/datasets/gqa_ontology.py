"""GQA attribute -> type ontology, name hierarchy and comparatives.

GQA scene graphs list attributes as bare strings ("red", "standing"); questions use typed
operations ("filter color: red", "query color"). A `GQAOntology` holds

    types:        type -> [values]       (a value may belong to several types)
    hypernyms:    name -> [names below]  ("animal" -> ["dog", ...]; one level, closed
                                          transitively by the reasoner)
    plurals:      plural -> singular     ("people" -> "person")
    comparatives: "younger" -> (positive attribute, negative attribute, box measure)
    common_types: the types `common` answers with (GQA's eval: color, material, shape)

`default_ontology()` reads the shipped `data/gqa_ontology.json`; `learn_types` learns
types from question programs (streamed), `learn_hypernyms` names from `select` steps
whose annotated object has another name in the scene graph.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import DataError
from .gqa_program import GQAStep, parse_step

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "data" / "gqa_ontology.json"
# operation types that are not attribute types
NON_ATTRIBUTE_TYPES = {"rel", "name"}


@dataclass
class GQAOntology:
    types: dict[str, list[str]] = field(default_factory=dict)
    hypernyms: dict[str, list[str]] = field(default_factory=dict)
    plurals: dict[str, str] = field(default_factory=dict)
    comparatives: dict[str, tuple[str | None, str | None, str | None]] = field(default_factory=dict)
    common_types: list[str] = field(default_factory=lambda: ["color", "material", "shape"])

    def types_of(self, value: str) -> list[str]:
        """Every type listing `value` (empty when unknown)."""
        index = self.__dict__.get("_index")
        if index is None or index[0] is not self.types:
            inv = defaultdict(list)
            for t, values in self.types.items():
                for v in values:
                    inv[v].append(t)
            index = (self.types, dict(inv))
            self.__dict__["_index"] = index
        return index[1].get(value, [])

    def merge(self, other: "GQAOntology") -> "GQAOntology":
        """A new ontology with `other`'s entries added to this one's."""
        types = {t: list(v) for t, v in self.types.items()}
        for t, values in other.types.items():
            types.setdefault(t, [])
            types[t] += [v for v in values if v not in types[t]]
        hyp = {h: list(v) for h, v in self.hypernyms.items()}
        for h, names in other.hypernyms.items():
            hyp.setdefault(h, [])
            hyp[h] += [n for n in names if n not in hyp[h]]
        return GQAOntology(types, hyp, {**self.plurals, **other.plurals},
                           {**self.comparatives, **other.comparatives},
                           list(dict.fromkeys(self.common_types + other.common_types)))

    def to_dict(self) -> dict:
        return {"types": self.types, "hypernyms": self.hypernyms, "plurals": self.plurals,
                "comparatives": {k: list(v) for k, v in self.comparatives.items()},
                "common_types": self.common_types}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d: dict, *, file=None) -> "GQAOntology":
        if not isinstance(d, dict):
            raise DataError("expected a JSON object", file=file)
        for key, typ in (("types", dict), ("hypernyms", dict), ("plurals", dict), ("comparatives", dict),
                         ("common_types", list)):
            if key in d and not isinstance(d[key], typ):
                raise DataError(f"expected {typ.__name__}", file=file, field=key)
        for t, values in d.get("types", {}).items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise DataError("expected a list of attribute strings", file=file, field=f"types.{t}")
        comps = {}
        for k, v in d.get("comparatives", {}).items():
            if not isinstance(v, list) or len(v) != 3:
                raise DataError("expected [positive, negative, measure]", file=file, field=f"comparatives.{k}")
            comps[k] = tuple(v)
        return cls(types={t: list(v) for t, v in d.get("types", {}).items()},
                   hypernyms={h: list(v) for h, v in d.get("hypernyms", {}).items()},
                   plurals=dict(d.get("plurals", {})), comparatives=comps,
                   common_types=list(d.get("common_types", ["color", "material", "shape"])))

    @classmethod
    def load(cls, path: str | Path) -> "GQAOntology":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror}", file=path) from None
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON at line {e.lineno}: {e.msg}", file=path) from None
        return cls.from_dict(data, file=path)


_DEFAULT: GQAOntology | None = None


def default_ontology() -> GQAOntology:
    """The shipped ontology (data/gqa_ontology.json), read once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = GQAOntology.load(DEFAULT_PATH)
    return _DEFAULT


def typed_values(steps: list[GQAStep], answer: str | None = None) -> list[tuple[str, str]]:
    """(value, type) pairs a program states: `filter color: red`, `verify color: red`,
    `choose color: red|blue`, and a final `query color` with its answer."""
    out = []
    for k, s in enumerate(steps):
        if s.unparsed is not None or s.type in NON_ATTRIBUTE_TYPES or s.is_comparative:
            continue
        if s.family in ("filter", "verify", "choose") and s.type:
            out += [(v, s.type) for v in s.values if v]
        elif s.family == "query" and s.values and s.values[0] not in NON_ATTRIBUTE_TYPES \
                and k == len(steps) - 1 and answer:
            out.append((answer, s.values[0]))
    return out


def learn_types(records: Iterable[tuple[str, dict]], *, min_count: int = 1, progress=None) -> tuple[GQAOntology, dict]:
    """Learn type -> values from GQA question records `(qid, record)` (streamed).

    A value seen with several types is listed under each type seen at least `min_count`
    times. Returns (ontology, stats) where stats counts questions and pairs.
    """
    counts: dict[str, Counter] = defaultdict(Counter)
    n = 0
    it = records if progress is None else progress(records, desc="questions")
    for qid, rec in it:
        sem = rec.get("semantic") if isinstance(rec, dict) else None
        if not isinstance(sem, list):
            continue
        n += 1
        try:
            steps = [parse_step(r["operation"], r["argument"], r.get("dependencies", [])) for r in sem]
        except (KeyError, TypeError):
            raise DataError("expected operation/argument/dependencies steps", record=qid, field="semantic") from None
        for v, t in typed_values(steps, rec.get("answer")):
            counts[v][t] += 1
    types: dict[str, list[str]] = defaultdict(list)
    for v in sorted(counts):
        for t, c in counts[v].most_common():
            if c >= min_count:
                types[t].append(v)
    onto = GQAOntology(types={t: sorted(vs) for t, vs in sorted(types.items())}, common_types=[])
    return onto, {"questions": n, "values": len(counts), "types": len(types),
                  "ambiguous": sorted(v for v, c in counts.items() if len(c) > 1)}


def learn_hypernyms(records: Iterable[tuple[str, dict]], scene_names: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """name -> [scene names] from `select: NAME (ids)` steps whose annotated objects carry
    another name in the scene graph (`scene_names`: image id -> object id -> name)."""
    hyp: dict[str, set] = defaultdict(set)
    for qid, rec in records:
        names = scene_names.get(str(rec.get("imageId")))
        if not names:
            continue
        for r in rec.get("semantic", []):
            s = parse_step(r["operation"], r["argument"], r.get("dependencies", []))
            if s.family in ("select", "relate") and s.object_ids and s.name not in (None, "_"):
                for oid in s.object_ids:
                    if oid in names and names[oid] != s.name:
                        hyp[s.name].add(names[oid])
    return {h: sorted(v) for h, v in sorted(hyp.items())}
