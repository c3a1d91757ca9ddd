"""A local HTTP server that speaks OpenAI's chat-completions protocol, for tests.

    with FakeOpenAI(["first reply", Status(429), "second reply"]) as server:
        client = LLMClient(LLMConfig(base_url=server.url, model="fake"))

Each request to /v1/chat/completions takes the next scripted item: a string (one
completion; with n > 1 the next n strings), `Reply(text, finish_reason)` (a completion that
ends otherwise than "stop", e.g. "length": cut at max_tokens), `Status(code, headers)` (an
HTTP error, e.g. 429 with Retry-After), `Raw(body)` (a malformed body), `Slow(seconds, item)`
(the item after a pause, or `trickle=True`: response headers at once, then one body byte
every `seconds`, which keeps an HTTP read timeout from firing) or a callable
`(request_json) -> str`. Requests are recorded, with the time each arrived (`times`).

`hold_after=N`: once N requests are answered, the next one is held (not recorded, no item
taken) and `held` is set; `release()` drops the held request unanswered and stops holding.
A test can so stop a client at a point where no request is half done (a request in flight
when a client is killed is legitimately sent again).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Status:
    code: int
    headers: dict | None = None


@dataclass
class Reply:
    text: str
    finish_reason: str = "stop"


@dataclass
class Slow:
    seconds: float
    item: object = "ok."
    trickle: bool = False


@dataclass
class Raw:
    body: str


class FakeOpenAI:
    def __init__(self, script=None, *, hold_after: int | None = None):
        self.script = list(script or [])
        self.requests: list[dict] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        self.hold_after = hold_after
        self.held = threading.Event()
        self._released = threading.Event()
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body: str, headers=None, trickle: float = 0.0):
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if not trickle:
                    self.wfile.write(data)
                    return
                try:
                    for i in range(len(data)):
                        if server._closing.wait(trickle):
                            return
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                except OSError:
                    return  # the client gave up

            def do_GET(self):
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}))

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                req = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, json.dumps({"error": {"message": "not found"}}))
                with server._lock:
                    hold = server.hold_after is not None and len(server.requests) >= server.hold_after
                if hold:
                    server.held.set()
                    server._released.wait(120)
                    return  # dropped: its client is gone
                with server._lock:
                    server.requests.append(req)
                    server.times.append(time.monotonic())
                    n = int(req.get("n", 1) or 1)
                    items = []
                    while len(items) < n:
                        if not server.script:
                            items.append("")
                            break
                        item = server.script.pop(0)
                        if isinstance(item, (Status, Raw, Slow)):
                            if items:
                                server.script.insert(0, item)
                                break
                            items = [item]
                            break
                        items.append(item(req) if callable(item) else item)
                trickle = 0.0
                if items and isinstance(items[0], Slow):
                    slow = items[0]
                    items = [slow.item(req) if callable(slow.item) else slow.item]
                    if slow.trickle:
                        trickle = slow.seconds
                    elif server._closing.wait(slow.seconds):
                        return
                if items and isinstance(items[0], Status):
                    return self._send(items[0].code, json.dumps({"error": {"message": f"scripted {items[0].code}"}}),
                                      items[0].headers)
                if items and isinstance(items[0], Raw):
                    return self._send(200, items[0].body)
                items = [t if isinstance(t, Reply) else Reply(t) for t in items]
                prompt = sum(len(str(m.get("content", "")).split()) for m in req.get("messages", []))
                choices = [{"index": i, "message": {"role": "assistant", "content": t.text},
                            "finish_reason": t.finish_reason} for i, t in enumerate(items)]
                done = sum(len(t.text.split()) for t in items)
                self._send(200, json.dumps({
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": req.get("model", "fake"), "choices": choices,
                    "usage": {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}}),
                    trickle=trickle)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def release(self) -> None:
        """Drop the held request (if any) and stop holding."""
        with self._lock:
            self.hold_after = None
        self._released.set()

    def __exit__(self, *exc):
        self._closing.set()
        self._released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
