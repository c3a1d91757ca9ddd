import pytest

from vqa.language.llm_parser import LLMQuestionParser, ParseError, system_prompt
from vqa.llm import LLMClient, LLMConfig
from fake_openai import FakeOpenAI


def parser(url, samples=1):
    return LLMQuestionParser(LLMClient(LLMConfig(base_url=url, model="fake", timeout=5, max_retries=0)),
                             samples=samples)


def test_prompt_lists_every_function():
    text = system_prompt()
    assert "filter_color[color](objects) -> objects" in text and "equal_integer(integer, integer) -> bool" in text


def test_valid_reply_is_parsed():
    with FakeOpenAI(["P: count(filter_color[red](scene))"]) as s:
        r = parser(s.url).parse("How many red things?")
    assert r.program.to_expr() == "count(filter_color[red](scene()))" and r.confidence == 1.0
    assert s.requests[0]["messages"][1]["content"] == "Q: How many red things?"


def test_invalid_reply_is_retried_once_with_the_error():
    with FakeOpenAI(["P: count(filter_color[pink](scene))", "P: count(filter_color[purple](scene))"]) as s:
        r = parser(s.url).parse("How many pink things?")
    assert r.program.to_expr() == "count(filter_color[purple](scene()))" and r.confidence == 0.5
    assert "'pink' is not a color" in s.requests[1]["messages"][-1]["content"]
    with FakeOpenAI(["P: query_color(scene)", "P: unique(scene)"]) as s:
        with pytest.raises(ParseError, match="no valid program"):
            parser(s.url).parse("What color?")


def test_self_consistency_confidence():
    with FakeOpenAI(["P: count(scene)", "P: count(scene)", "P: exist(scene)"]) as s:
        r = parser(s.url, samples=3).parse("How many things?")
    assert r.program.to_expr() == "count(scene())" and abs(r.confidence - 2 / 3) < 1e-9
