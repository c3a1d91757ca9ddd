"""The LLM parser offered as a fallback for questions the question parser does not
understand (issue 25), through the fake OpenAI-compatible endpoint."""
import json

import pytest

from vqa.cli import main
from vqa.executor import execute
from vqa.language.llm_parser import LLMQuestionParser
from vqa.llm import LLMClient, LLMConfig
from vqa.pipeline import Pipeline, load_scene
from vqa.program import Program
from conftest import FIXTURES
from fake_openai import FakeOpenAI

SCENES = FIXTURES / "clevr/scenes/CLEVR_val_scenes.json"
ODD = "Please tally every crimson thingamajig for me"  # 7 of 7 words outside the vocabulary
RED = "P: count(filter_color[red](scene))"


def _pipe(url):
    client = LLMClient(LLMConfig(base_url=url, model="fake", timeout=5, max_retries=0))
    return Pipeline.from_pretrained(fallback=LLMQuestionParser(client))


def test_fallback_parses_what_the_question_parser_does_not_understand():
    scene = load_scene(SCENES)
    with FakeOpenAI([RED]) as server:
        pipe = _pipe(server.url)
        r_odd, r_plain = pipe.answer_many(scene, [ODD, "How many red things are there?"])
    assert len(server.requests) == 1  # only the not-understood question went to the LLM
    assert ODD in server.requests[0]["messages"][-1]["content"]
    assert r_odd.understood and r_odd.parser == "llm" and r_odd.fallback == "used"
    assert r_odd.program.to_expr() == "count(filter_color[red](scene()))"
    assert r_odd.answer == execute(Program.parse("count(filter_color[red](scene))"), scene).answer
    assert r_plain.parser == "seq2seq" and r_plain.fallback is None
    assert r_odd.to_dict()["parser"] == "llm"


def test_a_declined_or_failed_fallback_leaves_the_question_not_understood():
    scene = load_scene(SCENES)
    with FakeOpenAI(["P: none"]) as server:
        r = _pipe(server.url).answer(scene, "What is the meaning of life?")
    assert not r.understood and r.answer is None
    assert "the LLM parser gave no program either" in r.error and "not about the objects" in r.fallback
    with FakeOpenAI(["P: query_color(scene)", "P: unique(scene)"]) as server:  # invalid twice
        r = _pipe(server.url).answer(scene, ODD)
    assert not r.understood and "no valid program" in r.fallback
    r = _pipe("http://127.0.0.1:9/v1").answer(scene, ODD)  # no endpoint there
    assert not r.understood and r.fallback and r.fallback != "used"


def test_cli_answer_fallback_and_counts(tmp_path, capsys):
    with FakeOpenAI([RED]) as server:
        assert main(["answer", "--scene", str(SCENES), "--question", ODD, "--fallback", "llm",
                     "--base-url", server.url, "--model", "fake"]) == 0
    out = capsys.readouterr().out
    assert "program by the LLM parser (the fallback)" in out and "answer: 2" in out
    # without the fallback: not understood, and the fallback is offered
    assert main(["answer", "--scene", str(SCENES), "--question", ODD]) == 1
    assert "--fallback llm" in capsys.readouterr().out
    # many questions: the summary counts what the fallback did
    from PIL import Image

    Image.new("RGB", (480, 320), (128, 128, 128)).save(tmp_path / "img.png")
    qfile = tmp_path / "q.json"
    qfile.write_text(json.dumps([{"image": "img.png", "question": q}
                                 for q in (ODD, "What is the meaning of life?", "How many things are there?")]))
    with FakeOpenAI([RED, "P: none"]) as server:
        assert main(["answer", "--questions", str(qfile), "--fallback", "llm", "--base-url", server.url,
                     "--model", "fake"]) == 0
    err = capsys.readouterr().err
    assert "2 not understood by the question parser: the LLM fallback parsed 1, gave no program for 1" in err


def test_fallback_flags_are_checked(capsys):
    assert main(["answer", "--scene", str(SCENES), "--question", ODD, "--model", "x"]) == 2
    assert "are for --fallback llm" in capsys.readouterr().err
    assert main(["answer", "--scene", str(SCENES), "--question", ODD, "--fallback", "llm", "--reasoner", "nsm"]) == 2
