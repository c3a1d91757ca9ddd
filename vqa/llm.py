"""LLM access through the `openai` client, pointed at any OpenAI-compatible endpoint.

    client = LLMClient(LLMConfig(base_url="http://localhost:8080/v1", model="local"))
    reply = client.chat([{"role": "user", "content": "..."}], n=2)
    reply.texts, reply.finish_reasons, reply.prompt_tokens, reply.completion_tokens, reply.duration_s

Works with OpenAI, vLLM (`:8000/v1`), llama.cpp server (`:8080/v1`), Ollama
(`:11434/v1`), LM Studio (`:1234/v1`).

No call can hang: every attempt has a wall-clock limit (`timeout`, enforced here as a
whole-request deadline, not only between bytes as the HTTP client does), and the attempts
are bounded (`max_retries`). Transport errors, timeouts, HTTP 408/409/429/5xx and malformed
bodies are retried here (the openai client's own retries are off) after a back-off of
`backoff_s`, doubled each time, or the server's `Retry-After` when it sends one, capped
at `max_wait_s`. Other 4xx (a prompt over the context, an unknown model, a bad key) are
not retried. Empty replies are retried too unless `retry_empty` is off (the distillation
loop answers them with feedback instead). When the attempts run out an `LLMError` says
which endpoint failed and how.

The library never reads the environment: the CLI resolves `OPENAI_BASE_URL` /
`OPENAI_API_KEY` (see `LLMConfig.resolve`) and passes them in.
"""
from __future__ import annotations

import email.utils
import threading
import time
from dataclasses import dataclass, field

from .errors import VQAError

PLACEHOLDER_KEY = "sk-local-placeholder"  # local servers accept any key; the client insists on one
RETRY_STATUS = (408, 409, 429)  # and every 5xx


class LLMError(VQAError):
    """The endpoint could not give a usable reply within the retry budget."""


@dataclass
class LLMConfig:
    base_url: str | None = None  # None: OpenAI's own endpoint
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    timeout: float = 60.0  # seconds per attempt (the whole request)
    max_retries: int = 2  # further attempts after transport errors, timeouts, 408/409/429/5xx, bad bodies
    temperature: float = 0.2
    max_tokens: int = 1024
    max_reply_chars: int = 200_000  # a longer completion is cut here (the loop refuses it anyway)
    backoff_s: float = 1.0  # wait before the first retry; doubled for each further one
    max_wait_s: float = 30.0  # the longest wait between attempts (a longer Retry-After is capped)
    retry_empty: bool = True  # False: an empty completion is returned as "" (not retried)
    extra: dict = field(default_factory=dict)  # passed to chat.completions.create

    @classmethod
    def resolve(cls, *, base_url=None, model=None, api_key=None, env=None, **kw) -> "LLMConfig":
        """Flags first, then `OPENAI_BASE_URL` / `OPENAI_API_KEY` / `OPENAI_MODEL` from `env`."""
        env = env or {}
        return cls(base_url=base_url or env.get("OPENAI_BASE_URL") or None,
                   model=model or env.get("OPENAI_MODEL") or cls.model,
                   api_key=api_key or env.get("OPENAI_API_KEY") or None, **kw)

    def describe(self) -> str:
        return f"{self.model} at {self.base_url or 'api.openai.com'}"


@dataclass
class LLMReply:
    texts: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_s: float = 0.0  # the whole call: every attempt and wait
    attempts: int = 1  # HTTP requests sent
    finish_reasons: list[str] = field(default_factory=list)  # per text: "stop", "length" (cut at max_tokens), ...
    model: str = ""  # as the server names it
    waited_s: float = 0.0  # back-off between attempts (part of duration_s)

    @property
    def text(self) -> str:
        return self.texts[0]

    def cut(self, i: int = 0) -> bool:
        """Whether completion `i` stopped at the token limit (finish_reason "length")."""
        return i < len(self.finish_reasons) and self.finish_reasons[i] == "length"


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.reason, self.wait = reason, wait


class LLMClient:
    def __init__(self, config: LLMConfig, *, sleep=time.sleep):
        self.config = config
        key = config.api_key
        if not key and config.base_url is None:
            raise LLMError("no API key for api.openai.com: pass --api-key or set OPENAI_API_KEY "
                           "(or point --base-url at a local server, which needs no key)")
        self._key = key or PLACEHOLDER_KEY
        self._sleep = sleep
        self._client = self._new_client()

    def _new_client(self):
        from openai import OpenAI

        return OpenAI(base_url=self.config.base_url, api_key=self._key, timeout=self.config.timeout, max_retries=0)

    def chat(self, messages: list[dict], *, n: int = 1, **kw) -> LLMReply:
        """`n` completions of a chat; raises LLMError once the attempts are spent."""
        cfg = self.config
        args = dict(model=cfg.model, messages=_sendable(messages), temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                    **cfg.extra, **kw)
        if n > 1:
            args["n"] = n
        start = time.perf_counter()
        waited = 0.0
        attempts = cfg.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                resp = self._attempt(args)
                texts, reasons = [], []
                for c in resp.choices or []:
                    if c.message is None:
                        continue
                    t = (c.message.content or "").strip()[: cfg.max_reply_chars + 1]
                    if t or not cfg.retry_empty:
                        texts.append(t)
                        reasons.append(str(c.finish_reason or ""))
                if not texts:
                    raise _Retry("empty reply")
            except _Retry as r:
                if attempt == attempts:
                    raise LLMError(f"{cfg.describe()}: {r.reason} after {attempts} attempt{'s' * (attempts > 1)}") from None
                wait = min(cfg.max_wait_s, cfg.backoff_s * 2 ** (attempt - 1) if r.wait is None else r.wait)
                if wait > 0:
                    self._sleep(wait)
                    waited += wait
                continue
            usage = resp.usage
            return LLMReply(texts, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0,
                            time.perf_counter() - start, attempt, reasons, str(getattr(resp, "model", "") or ""), waited)
        raise AssertionError("unreachable")

    def _attempt(self, args: dict):
        """One request, within the deadline, or `_Retry` (retryable failure) / LLMError."""
        import openai

        cfg = self.config
        box: dict = {}
        client = self._client

        def call():
            try:
                box["resp"] = client.chat.completions.create(**args)
            except BaseException as e:  # handed to the caller's thread
                box["error"] = e

        worker = threading.Thread(target=call, daemon=True, name="llm-request")
        worker.start()
        worker.join(cfg.timeout + 1.0)  # the HTTP client's own timeout normally fires first
        if worker.is_alive():  # a server that trickles bytes keeps the HTTP read timeout from firing
            self._client = self._new_client()  # the stuck request is abandoned with its connection pool
            try:
                client.close()
            except Exception:
                pass
            raise _Retry(f"no reply within {cfg.timeout:g} s")
        e = box.get("error")
        if e is None:
            return box["resp"]
        if isinstance(e, openai.APITimeoutError):
            raise _Retry(f"no reply within {cfg.timeout:g} s")
        if isinstance(e, openai.APIConnectionError):
            raise _Retry(f"cannot connect ({_short(str(e.__cause__ or e))}); is the server running?")
        if isinstance(e, openai.APIStatusError):
            code = e.status_code
            what = "rate limited (HTTP 429)" if code == 429 else f"HTTP {code}: {_short(e.message)}"
            if code in RETRY_STATUS or code >= 500:
                raise _Retry(what, retry_after(e.response.headers if e.response is not None else None))
            raise LLMError(f"{cfg.describe()}: {what}")
        if isinstance(e, (openai.APIError, ValueError)):  # a malformed body (invalid JSON) and the like
            raise _Retry(f"malformed reply: {_short(str(e))}")
        raise e

    def close(self) -> None:
        self._client.close()


def retry_after(headers) -> float | None:
    """Seconds the server asks to wait (`Retry-After`: seconds or an HTTP date;
    `retry-after-ms`), or None."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    try:
        if ms is not None:
            return max(0.0, float(ms) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _sendable(messages: list[dict]) -> list[dict]:
    """The messages with lone surrogates (which a hostile reply may carry back into the
    conversation, and which UTF-8 cannot encode) replaced by U+FFFD."""
    out = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            try:
                c.encode("utf-8")
            except UnicodeEncodeError:
                m = {**m, "content": c.encode("utf-8", "surrogatepass").decode("utf-8", "replace")}
        out.append(m)
    return out


def _short(text: str, n: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."
