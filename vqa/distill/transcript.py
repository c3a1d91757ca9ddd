"""The run's JSONL transcript, which is also what makes a run resumable.

Every event (LLM call, solver check, accepted rules, score) is one line with a sequence
number. The loop is deterministic given the LLM's replies, so resuming is replaying:
a rerun walks the same steps, takes each LLM reply already in the transcript instead of
calling the endpoint again (its prompt must match, or the run is refused), recomputes
the solver checks, and only appends events past the end of the file. A line cut short by
a kill is dropped on open. `--replay` runs from a recorded transcript with no endpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from ..errors import VQAError
from ..llm import LLMReply


class TranscriptError(VQAError):
    pass


def prompt_key(messages: list[dict], n: int) -> str:
    return hashlib.sha256(json.dumps([messages, n], sort_keys=True).encode()).hexdigest()[:16]


class Transcript:
    def __init__(self, path: str | Path, *, replay_only: bool = False):
        self.path = Path(path)
        self.replay_only = replay_only
        self.events: list[dict] = []
        if self.path.exists():
            self.events = self._read_complete_lines()
        self.recorded = len(self.events)
        self.seq = 0
        self.replayed_calls = 0
        self.live_calls = 0
        self._fh = None if replay_only else open(self.path, "a", encoding="utf-8")

    def _read_complete_lines(self) -> list[dict]:
        raw = self.path.read_bytes()
        events, keep = [], 0
        for line in raw[: raw.rfind(b"\n") + 1].split(b"\n")[:-1]:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                break
            keep += len(line) + 1
        if keep < len(raw) and not self.replay_only:  # a line cut short by a kill
            with open(self.path, "r+b") as f:
                f.truncate(keep)
        return events

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None

    # ---- events ---------------------------------------------------------------
    def log(self, kind: str, **data) -> dict:
        """Record an event, unless this step was already recorded (then return that record)."""
        self.seq += 1
        if self.seq <= self.recorded:
            old = self.events[self.seq - 1]
            if old.get("kind") != kind:
                raise TranscriptError(f"{self.path}: event {self.seq} was {old.get('kind')!r}, now {kind!r}; "
                                      "the run directory was made with other settings or data")
            return old
        event = {"seq": self.seq, "kind": kind, "time": time.time(), **data}
        if self._fh is None:
            raise TranscriptError(f"{self.path}: replay ran past the end of the transcript at event {self.seq}")
        self._fh.write(json.dumps(event) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.events.append(event)
        return event

    def chat(self, client, messages: list[dict], *, n: int = 1, label: str = "") -> LLMReply:
        """An LLM call: the recorded reply when this step was recorded, else a live call."""
        key = prompt_key(messages, n)
        if self.seq < self.recorded:
            old = self.events[self.seq]
            if old.get("kind") == "llm" and old.get("key") != key:
                raise TranscriptError(
                    f"{self.path}: the prompt of LLM call at event {self.seq + 1} differs from the recorded one; "
                    "resume only with the same command and data (or start a new run directory)")
            event = self.log("llm")
            self.replayed_calls += 1
            return LLMReply(event["texts"], event.get("prompt_tokens", 0), event.get("completion_tokens", 0),
                            event.get("duration_s", 0.0), event.get("attempts", 1),
                            event.get("finish_reasons") or [], event.get("model", ""), event.get("waited_s", 0.0))
        if client is None:
            raise TranscriptError(f"{self.path}: replay ran out of recorded LLM replies at event {self.seq + 1}")
        reply = client.chat(messages, n=n)
        self.live_calls += 1
        self.log("llm", label=label, key=key, messages=messages, n=n, texts=reply.texts,
                 prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                 duration_s=round(reply.duration_s, 3), attempts=getattr(reply, "attempts", 1),
                 finish_reasons=list(getattr(reply, "finish_reasons", None) or []),
                 model=getattr(reply, "model", ""), waited_s=round(getattr(reply, "waited_s", 0.0), 3))
        return reply


def write_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
