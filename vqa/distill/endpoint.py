"""`vqa distill --check-endpoint`: one tiny request before a long run.

    report = check_endpoint(client)   # model, latency, tokens/s, whether the reply parses

The request asks for one textbook ASP rule in the format the loop asks for (one ```asp
block); the reply goes through the loop's own extraction (`<think>` blocks, prose, fences,
a cut at the token limit) and the sandbox's static check (a clean clingo parse, only
plain rules). The server's model list is read too, where it offers one.
"""
from __future__ import annotations

import time

from ..llm import LLMClient
from .prompts import extract_rules

CHECK_MESSAGES = [
    {"role": "system", "content": "You write Answer Set Programming rules for clingo. Reply with rules only, "
                                  "inside one ```asp code block."},
    {"role": "user", "content": "Write the rule that derives grandparent(X, Z) from parent(X, Y) and parent(Y, Z)."},
]


def check_endpoint(client: LLMClient, *, max_tokens: int | None = None) -> dict:
    """Send CHECK_MESSAGES once; raises LLMError when the endpoint gives no reply."""
    from ..reason.sandbox import check_rules

    cfg = client.config
    report: dict = {"endpoint": cfg.base_url or "https://api.openai.com/v1", "model": cfg.model,
                    "timeout_s": cfg.timeout, "served_models": _served_models(client)}
    kw = {"max_tokens": max_tokens} if max_tokens else {}
    t0 = time.perf_counter()
    reply = client.chat(CHECK_MESSAGES, **kw)
    latency = time.perf_counter() - t0
    text = reply.text
    rules = extract_rules(text, cut=reply.cut())
    parsed = check_rules(rules) if rules else None
    report.update({
        "reported_model": reply.model, "latency_s": round(latency, 3), "attempts": reply.attempts,
        "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
        "completion_tokens_per_second": round(reply.completion_tokens / latency, 2) if latency > 0 else None,
        "finish_reason": reply.finish_reasons[0] if reply.finish_reasons else "",
        "reply": text[:2000], "rules": rules[:2000],
        "parses": bool(parsed is not None and parsed.ok),
        "parse_message": ("the reply holds no rules" if parsed is None else
                          "" if parsed.ok else f"{parsed.kind or parsed.status}: {parsed.message}"[:500]),
    })
    return report


def _served_models(client: LLMClient) -> list[str] | None:
    """The ids of GET /models, or None where the endpoint has no such list (or it fails)."""
    try:
        page = client._client.with_options(timeout=min(10.0, client.config.timeout)).models.list()
        return [m.id for m in page.data][:20]
    except Exception:
        return None
