"""A local HTTP server that speaks OpenAI's chat-completions protocol, for tests.

    with FakeOpenAI(["first reply", Status(429), "second reply"]) as server:
        client = LLMClient(LLMConfig(base_url=server.url, model="fake"))

Each request to /v1/chat/completions takes the next scripted item: a string (one
completion; with n > 1 the next n strings), `Status(code)` (an HTTP error), `Raw(body)`
(a malformed body) or a callable `(request_json) -> str`. Requests are recorded.

`hold_after=N`: once N requests are answered, the next one is held (not recorded, no item
taken) and `held` is set; `release()` drops the held request unanswered and stops holding.
A test can so stop a client at a point where no request is half done (a request in flight
when a client is killed is legitimately sent again).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Status:
    code: int


@dataclass
class Raw:
    body: str


class FakeOpenAI:
    def __init__(self, script=None, *, hold_after: int | None = None):
        self.script = list(script or [])
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self.hold_after = hold_after
        self.held = threading.Event()
        self._released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body: str):
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

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
                    n = int(req.get("n", 1) or 1)
                    items = []
                    while len(items) < n:
                        if not server.script:
                            items.append("")
                            break
                        item = server.script.pop(0)
                        if isinstance(item, (Status, Raw)):
                            if items:
                                server.script.insert(0, item)
                                break
                            items = [item]
                            break
                        items.append(item(req) if callable(item) else item)
                if items and isinstance(items[0], Status):
                    return self._send(items[0].code, json.dumps({"error": {"message": f"scripted {items[0].code}"}}))
                if items and isinstance(items[0], Raw):
                    return self._send(200, items[0].body)
                prompt = sum(len(str(m.get("content", "")).split()) for m in req.get("messages", []))
                choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                           for i, t in enumerate(items)]
                done = sum(len(t.split()) for t in items)
                self._send(200, json.dumps({
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": req.get("model", "fake"), "choices": choices,
                    "usage": {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}}))

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
        self._released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
