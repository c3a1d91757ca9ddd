"""Unit tests of the distillation loop's parts: theory ablation, rule extraction, transcript."""
import json

import pytest

from vqa import DataError
from vqa.distill.prompts import extract_rules
from vqa.distill.theory import (DISTILLED_BEGIN, ablate_fraction, ablate_predicate, statements, strip_distilled,
                                with_distilled)
from vqa.distill.transcript import Transcript, TranscriptError
from vqa.llm import LLMReply

THEORY = """% ---- section
p(X) :- q(X), not r(X).
q(1..3).
#show p/1.
s(X) :- q(X),
   X > 1.
r(2) :- s(2).
t(X) :- s(X), p(X).
"""


def test_statements_keep_exact_source_and_predicates():
    st = statements(THEORY)
    assert [s.kind for s in st] == ["Rule", "Rule", "ShowSignature", "Rule", "Rule", "Rule"]
    assert st[3].text == "s(X) :- q(X),\n   X > 1."
    assert st[0].predicates == {"p", "q", "r"} and st[0].head_predicates == {"p"}
    with pytest.raises(DataError, match="does not parse"):
        statements("p(X) :- q(X); .")


def test_ablate_predicate_drops_every_rule_mentioning_it():
    text, dropped = ablate_predicate(THEORY, "s")
    assert len(dropped) == 3 and "s(" not in text
    assert "% ---- section" in text and "#show p/1." in text and "p(X) :- q(X), not r(X)." in text
    with pytest.raises(DataError, match="no rule mentions"):
        ablate_predicate(THEORY, "zzz")


def test_ablate_fraction_is_seeded_and_keeps_facts():
    a, da = ablate_fraction(THEORY, 0.5, seed=3)
    b, db = ablate_fraction(THEORY, 0.5, seed=3)
    assert a == b and len(da) == 2  # 4 rules with bodies, half dropped
    assert "q(1..3)." in a
    assert ablate_fraction(THEORY, 0.0, 1)[0] == THEORY


def test_distilled_section_round_trip():
    t = with_distilled(THEORY, ["u(X) :- p(X).", "v :- u(1)."])
    assert DISTILLED_BEGIN in t and t.index("u(X)") > t.index(DISTILLED_BEGIN)
    assert strip_distilled(t).strip() == THEORY.strip()
    assert with_distilled(t, ["w."]).count(DISTILLED_BEGIN) == 1


def test_extract_rules():
    assert extract_rules("Here:\n```asp\na(X) :- b(X).\n```\nThanks") == "a(X) :- b(X)."
    assert extract_rules("a(X) :- b(X).") == "a(X) :- b(X)."
    # a fence after other text on its line (opening and closing)
    assert extract_rules("Sure! ```asp\na(X) :- b(X).\nc(X) :- a(X).```\nDone.") == "a(X) :- b(X).\nc(X) :- a(X)."


class FakeClient:
    def __init__(self, texts):
        self.texts = list(texts)
        self.calls = 0

    def chat(self, messages, n=1):
        self.calls += 1
        return LLMReply([self.texts.pop(0)], 3, 2, 0.01)


def test_transcript_replays_recorded_calls_and_appends_new_ones(tmp_path):
    path = tmp_path / "t.jsonl"
    msgs = [{"role": "user", "content": "hi"}]
    t = Transcript(path)
    c = FakeClient(["one", "two"])
    assert t.chat(c, msgs).text == "one"
    t.log("check", status="ok")
    t.close()
    # a kill in the middle of writing the next line
    with open(path, "a") as f:
        f.write('{"seq": 3, "kind": "ll')
    t2 = Transcript(path)
    c2 = FakeClient(["two"])
    assert t2.chat(c2, msgs).text == "one" and c2.calls == 0  # replayed, not asked again
    assert t2.log("check", status="ok")["seq"] == 2  # recomputed, not written twice
    assert t2.chat(c2, msgs + [{"role": "user", "content": "more"}]).text == "two" and c2.calls == 1
    t2.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3]
    # a different prompt at a recorded step is refused
    t3 = Transcript(path)
    with pytest.raises(TranscriptError, match="differs"):
        t3.chat(FakeClient(["x"]), [{"role": "user", "content": "other"}])
    # replay only: runs out with a clear error
    t4 = Transcript(path, replay_only=True)
    t4.chat(None, msgs)
    t4.log("check")
    t4.chat(None, msgs + [{"role": "user", "content": "more"}])
    with pytest.raises(TranscriptError, match="ran out"):
        t4.chat(None, msgs)
