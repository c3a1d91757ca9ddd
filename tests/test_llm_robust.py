"""What real servers send, through the real openai client against the scripted server:
back-off and Retry-After on 429/5xx, a deadline on every attempt (also against a server
that trickles bytes), no retry of a 4xx that cannot succeed, finish reasons and empty replies."""
import time

import pytest

from vqa.llm import LLMClient, LLMConfig, LLMError, retry_after
from fake_openai import FakeOpenAI, Reply, Slow, Status

MSG = [{"role": "user", "content": "x"}]


def client(url, **kw):
    kw = {"timeout": 5, "backoff_s": 0.01, **kw}
    return LLMClient(LLMConfig(base_url=url, model="fake", **kw))


def test_retry_after_is_honoured_and_capped():
    with FakeOpenAI([Status(429, {"Retry-After": "1"}), "ok."]) as s:
        r = client(s.url, max_retries=1).chat(MSG)
        gap = s.times[1] - s.times[0]
    assert r.text == "ok." and r.attempts == 2 and r.waited_s == 1.0
    assert 0.95 <= gap < 3.0, gap  # waited what the server asked, not the 0.01 s back-off
    slept = []
    with FakeOpenAI([Status(503, {"Retry-After": "3600"}), Status(500), "ok."]) as s:
        r = LLMClient(LLMConfig(base_url=s.url, model="fake", timeout=5, backoff_s=0.25, max_wait_s=2.0),
                      sleep=slept.append).chat(MSG)
    assert r.text == "ok." and slept == [2.0, 0.5]  # capped; then doubled back-off (0.25, 0.5)


def test_backoff_doubles_and_attempts_are_bounded():
    slept = []
    with FakeOpenAI([Status(500)] * 4) as s:
        c = LLMClient(LLMConfig(base_url=s.url, model="fake", timeout=5, max_retries=3, backoff_s=0.5,
                                max_wait_s=1.5), sleep=slept.append)
        with pytest.raises(LLMError, match=r"HTTP 500: .*scripted 500 after 4 attempts"):
            c.chat(MSG)
        assert len(s.requests) == 4
    assert slept == [0.5, 1.0, 1.5]


def test_client_errors_are_not_retried():
    with FakeOpenAI([Status(400), "never"]) as s:
        with pytest.raises(LLMError, match="HTTP 400"):
            client(s.url, max_retries=3).chat(MSG)
        assert len(s.requests) == 1


def test_every_attempt_has_a_deadline():
    with FakeOpenAI([Slow(30, "late"), "ok."]) as s:
        t0 = time.monotonic()
        r = client(s.url, timeout=1, max_retries=1).chat(MSG)
        assert r.text == "ok." and r.attempts == 2 and time.monotonic() - t0 < 6
    with FakeOpenAI([Slow(30, "late")] * 2) as s:
        t0 = time.monotonic()
        with pytest.raises(LLMError, match=r"no reply within 1 s after 2 attempts"):
            client(s.url, timeout=1, max_retries=1).chat(MSG)
        assert time.monotonic() - t0 < 8


def test_a_trickling_server_cannot_hold_a_call():
    """Headers at once, then a byte every 0.3 s: the HTTP read timeout never fires; the
    whole-request deadline does."""
    with FakeOpenAI([Slow(0.3, "x" * 200, trickle=True), "ok."]) as s:
        t0 = time.monotonic()
        r = client(s.url, timeout=1.5, max_retries=1).chat(MSG)
        took = time.monotonic() - t0
    assert r.text == "ok." and r.attempts == 2 and took < 8, took


def test_finish_reason_and_empty_replies():
    with FakeOpenAI([Reply("```asp\na(X) :- b(", "length"), "fine."]) as s:
        c = client(s.url)
        r = c.chat(MSG)
        assert r.cut() and r.finish_reasons == ["length"] and r.model == "fake"
        assert not c.chat(MSG).cut()
    with FakeOpenAI(["", "a."]) as s:  # the distillation loop wants the empty reply itself
        r = client(s.url, retry_empty=False).chat(MSG)
        assert r.texts == [""] and r.attempts == 1 and len(s.requests) == 1


def test_retry_after_forms():
    assert retry_after({"retry-after": "2.5"}) == 2.5
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "soon"}) is None and retry_after(None) is None
    d = retry_after({"retry-after": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 100))})
    assert 90 < d <= 101
