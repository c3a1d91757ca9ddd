"""LLM access through the `openai` client, pointed at any OpenAI-compatible endpoint.

    client = LLMClient(LLMConfig(base_url="http://localhost:8000/v1", model="qwen2.5-7b"))
    reply = client.chat([{"role": "user", "content": "..."}], n=2)
    reply.texts, reply.prompt_tokens, reply.completion_tokens, reply.duration_s

Works with OpenAI, vLLM (`:8000/v1`), llama.cpp server (`:8080/v1`), Ollama
(`:11434/v1`), LM Studio (`:1234/v1`). The timeout is explicit (the client's default of
600 s would let a dead endpoint hang for many minutes), transport errors, 429 and 5xx
are retried by the client with back-off, empty or malformed replies are retried here,
and when retries run out an `LLMError` says which endpoint failed and how.

The library never reads the environment: the CLI resolves `OPENAI_BASE_URL` /
`OPENAI_API_KEY` (see `LLMConfig.resolve`) and passes them in.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .errors import VQAError

PLACEHOLDER_KEY = "sk-local-placeholder"  # local servers accept any key; the client insists on one


class LLMError(VQAError):
    """The endpoint could not give a usable reply within the retry budget."""


@dataclass
class LLMConfig:
    base_url: str | None = None  # None: OpenAI's own endpoint
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    timeout: float = 60.0  # seconds per request
    max_retries: int = 2  # transport errors, 429, 5xx (by the client) and empty replies (here)
    temperature: float = 0.2
    max_tokens: int = 1024
    max_reply_chars: int = 200_000  # a longer completion is cut here (the loop refuses it anyway)
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
    duration_s: float = 0.0
    attempts: int = 1

    @property
    def text(self) -> str:
        return self.texts[0]


class LLMClient:
    def __init__(self, config: LLMConfig):
        from openai import OpenAI

        self.config = config
        key = config.api_key
        if not key and config.base_url is None:
            raise LLMError("no API key for api.openai.com: pass --api-key or set OPENAI_API_KEY "
                           "(or point --base-url at a local server, which needs no key)")
        self._client = OpenAI(base_url=config.base_url, api_key=key or PLACEHOLDER_KEY,
                              timeout=config.timeout, max_retries=config.max_retries)

    def chat(self, messages: list[dict], *, n: int = 1, **kw) -> LLMReply:
        """`n` completions of a chat; raises LLMError once retries are spent."""
        import openai

        cfg = self.config
        args = dict(model=cfg.model, messages=_sendable(messages), temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                    **cfg.extra, **kw)
        if n > 1:
            args["n"] = n
        start = time.perf_counter()
        last = "no reply"
        for attempt in range(1, cfg.max_retries + 2):
            try:
                resp = self._client.chat.completions.create(**args)
            except openai.APITimeoutError:
                raise LLMError(f"{cfg.describe()}: no reply within {cfg.timeout:g} s "
                               f"({cfg.max_retries} retries)") from None
            except openai.APIConnectionError as e:
                raise LLMError(f"{cfg.describe()}: cannot connect ({e.__cause__ or e}); is the server running?") from None
            except openai.RateLimitError:
                raise LLMError(f"{cfg.describe()}: rate limited (HTTP 429) after {cfg.max_retries} retries") from None
            except openai.APIStatusError as e:
                raise LLMError(f"{cfg.describe()}: HTTP {e.status_code}: {_short(e.message)}") from None
            except (openai.APIError, ValueError) as e:  # malformed body (invalid JSON) and the like
                last = f"malformed reply: {_short(str(e))}"
                continue
            texts = [(c.message.content or "").strip()[: cfg.max_reply_chars + 1]
                     for c in (resp.choices or []) if c.message is not None]
            texts = [t for t in texts if t]
            if texts:
                usage = resp.usage
                return LLMReply(texts, getattr(usage, "prompt_tokens", 0) or 0,
                                getattr(usage, "completion_tokens", 0) or 0, time.perf_counter() - start, attempt)
            last = "empty reply"
        raise LLMError(f"{cfg.describe()}: {last} after {cfg.max_retries + 1} attempts")


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
