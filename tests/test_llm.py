import socket

import pytest

from vqa.llm import LLMClient, LLMConfig, LLMError
from fake_openai import FakeOpenAI, Raw, Status


def client(url, **kw):
    return LLMClient(LLMConfig(base_url=url, model="fake", timeout=5, backoff_s=0.01, **kw))


def test_chat_round_trip_with_usage_and_n():
    with FakeOpenAI(["rule one.", "a.", "b."]) as s:
        c = client(s.url)
        r = c.chat([{"role": "user", "content": "extend the theory"}])
        assert r.text == "rule one." and r.prompt_tokens == 3 and r.completion_tokens == 2
        r2 = c.chat([{"role": "user", "content": "two please"}], n=2)
        assert r2.texts == ["a.", "b."]
        assert s.requests[0]["model"] == "fake" and s.requests[1]["n"] == 2


def test_retries_429_5xx_empty_and_malformed_then_succeeds():
    with FakeOpenAI([Status(429), Status(500), "ok."]) as s:
        assert client(s.url, max_retries=2).chat([{"role": "user", "content": "x"}]).text == "ok."
    with FakeOpenAI(["", Raw("{not json"), "fine."]) as s:
        r = client(s.url, max_retries=2).chat([{"role": "user", "content": "x"}])
        assert r.text == "fine." and r.attempts == 3


def test_bounded_retries_give_clear_errors():
    with FakeOpenAI([Status(429)] * 5) as s:
        with pytest.raises(LLMError, match="rate limited"):
            client(s.url, max_retries=1).chat([{"role": "user", "content": "x"}])
    with FakeOpenAI([""] * 5) as s:
        with pytest.raises(LLMError, match="empty reply after 2 attempts"):
            client(s.url, max_retries=1).chat([{"role": "user", "content": "x"}])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(LLMError, match="cannot connect"):
        client(f"http://127.0.0.1:{port}/v1", max_retries=0).chat([{"role": "user", "content": "x"}])


def test_config_resolution_prefers_flags_then_env():
    env = {"OPENAI_BASE_URL": "http://h:1/v1", "OPENAI_API_KEY": "k", "OPENAI_MODEL": "m"}
    c = LLMConfig.resolve(env=env)
    assert (c.base_url, c.api_key, c.model) == ("http://h:1/v1", "k", "m")
    c = LLMConfig.resolve(base_url="http://x/v1", model="y", env=env)
    assert (c.base_url, c.model) == ("http://x/v1", "y")
    with pytest.raises(LLMError, match="no API key"):
        LLMClient(LLMConfig())
