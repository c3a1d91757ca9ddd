"""The distillation loop: examples -> prompt -> candidate rules -> solver checks -> mend or accept.

For each batch of b training examples the current theory gets wrong: up to r tries; each
try asks for n candidates; each candidate is checked (sandboxed syntax/safety/grounding,
answers on the batch, regression on every example passed so far) and mended with the
solver's feedback up to m times. Of the candidates that pass, the best on the validation
examples is accepted; the held-out test split is scored after every accepted extension.
Everything goes through the transcript, which makes the run resumable (see transcript.py).

The loop only knows the `Checker` protocol, so CLEVR and GQA plug in the same way.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from . import prompts
from ..llm import LLMError
from .prompts import Example
from .theory import with_distilled
from .transcript import Transcript, write_atomic


MAX_REPLY_CHARS = 100_000  # a longer LLM reply is refused unread (the rules in it: RulePolicy.max_chars)


@dataclass
class CheckResult:
    """Outcome of running a theory on examples in the sandbox."""

    status: str  # "ok" (it ran; answers below), "syntax", "unsafe", "forbidden", "limit"
    message: str = ""
    kind: str = ""  # finer than status (the sandbox's kind: too_deep, time_limit, ...)
    answers: dict[str, list[str]] = field(default_factory=dict)  # qid -> derived answers
    diagnosis: dict[str, dict] = field(default_factory=dict)  # qid -> first differing step

    def correct(self, ex: Example) -> bool:
        return self.status == "ok" and self.answers.get(ex.qid) == [ex.expected]

    @classmethod
    def merged(cls, parts: list["CheckResult"]) -> "CheckResult":
        """The result of checking several chunks of examples: the first that is not ok, or
        all their answers and diagnoses together."""
        bad = next((p for p in parts if p.status != "ok"), None)
        if bad:
            return bad
        out = cls("ok")
        for p in parts:
            out.answers.update(p.answers)
            out.diagnosis.update(p.diagnosis)
        return out


class Checker(Protocol):
    def run(self, base: str, rules: list[str], examples: list[Example]) -> CheckResult:
        """Ground and solve the trusted `base` theory with the untrusted `rules` and the
        examples' facts in the sandbox."""

    def prompt_facts(self, examples: list[Example]) -> str:
        """The facts of `examples` as the prompt shows them (example k = question k)."""


@dataclass
class DistillConfig:
    batch: int = 1  # b: examples per prompt
    retries: int = 3  # r: prompts per batch
    mends: int = 3  # m: mend rounds per candidate
    candidates: int = 1  # n: completions per prompt
    order: str = "length"  # "length" (short programs first), "relevance" or "random"
    seed: int = 0
    max_batches: int | None = None
    max_llm_calls: int | None = None  # the run's budget: no LLM call is started once this many were made
    max_llm_tokens: int | None = None  # ... or once prompt + completion tokens reached this (one call may pass it)


class BudgetSpent(Exception):
    """The run's LLM call or token budget is used up (the run ends, scored, as final)."""


@dataclass
class Split:
    train: list[Example]
    val: list[Example]
    test: list[Example]


def order_examples(examples: list[Example], how: str, seed: int, failing_ops: dict[str, int] | None = None):
    ex = list(examples)
    if how == "random":
        random.Random(seed).shuffle(ex)
    elif how == "length":
        ex.sort(key=lambda e: (e.meta.get("length", 0), e.qid))
    elif how == "relevance":  # examples whose failing operation is most common first
        counts = failing_ops or {}
        ex.sort(key=lambda e: (-counts.get(e.meta.get("op", ""), 0), e.meta.get("length", 0), e.qid))
    else:
        raise ValueError(f"unknown order {how!r} (expected length, relevance or random)")
    return ex


def accuracy(result: CheckResult, examples: list[Example]) -> dict:
    """Overall and per-operation accuracy of one check over `examples`."""
    by_op: dict[str, list[int]] = {}
    for ex in examples:
        c = by_op.setdefault(ex.meta.get("op", "?"), [0, 0])
        c[0] += result.correct(ex)
        c[1] += 1
    total = sum(v[1] for v in by_op.values())
    correct = sum(v[0] for v in by_op.values())
    return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total,
            "by_operation": {op: {"accuracy": c / t, "correct": c, "total": t} for op, (c, t) in sorted(by_op.items())}}


class Distiller:
    def __init__(self, base_theory: str, split: Split, checker: Checker, client, run_dir: str | Path,
                 config: DistillConfig, *, encoding_doc: str, example_facts: str, replay: str | Path | None = None, progress=None):
        self.base = base_theory
        self.split = split
        self.checker = checker
        self.client = client
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.encoding_doc = encoding_doc
        self.example_facts = example_facts
        self.progress = progress
        self.transcript = Transcript(replay or self.run_dir / "transcript.jsonl", replay_only=replay is not None)
        self.accepted: list[str] = []
        self.seen: list[Example] = []
        self.history: list[dict] = []
        self.started = time.time()
        self.llm_calls = 0  # calls and tokens so far (replayed ones too), for the budget
        self.llm_tokens = 0
        self.stopped: dict | None = None

    # ---- helpers ----------------------------------------------------------------
    @property
    def theory(self) -> str:
        return with_distilled(self.base, self.accepted)

    def _check(self, rules: list[str], examples: list[Example], label: str) -> CheckResult:
        t0 = time.perf_counter()
        res = self.checker.run(self.base, rules, examples)
        self.transcript.log("check", label=label, status=res.status, detail=res.kind or res.status,
                            message=res.message[:2000],
                            correct=sum(res.correct(e) for e in examples), total=len(examples),
                            duration_s=round(time.perf_counter() - t0, 3))
        return res

    def _score(self, label: str) -> dict:
        out = {}
        for name, exs in (("train", self.split.train), ("test", self.split.test)):
            out[name] = accuracy(self._check(self.accepted, exs, f"score {name} {label}"), exs) if exs else None
        self.transcript.log("score", label=label, train=out["train"] and out["train"]["accuracy"],
                            test=out["test"] and out["test"]["accuracy"], rules=len(self.accepted))
        return out

    @staticmethod
    def _failures(res: CheckResult, examples: list[Example], in_prompt: bool) -> list[dict]:
        return [{"name": f"question {k}" if in_prompt else f"the earlier question {e.question!r} (program: "
                 f"{e.meta['program'].to_expr() if 'program' in e.meta else e.program_text})",
                 "expected": e.expected, "got": res.answers.get(e.qid, []), "diagnosis": res.diagnosis.get(e.qid)}
                for k, e in enumerate(examples) if not res.correct(e)]

    def _evaluate_candidate(self, reply: str, batch: list[Example], cut: bool = False) -> tuple[str | None, str | None]:
        """(the rules if they pass, else None; mend prompt if not). Whatever the reply's
        bytes, the outcome is a verdict, logged in the transcript as a "verdict" event:
        accepted, or refused with its kind (syntax, unsafe, forbidden kinds, caps,
        wrong_answer, regression) and the message the model gets. `cut`: the reply stopped
        at the token limit (its unfinished last statement is dropped)."""
        try:
            rules, kind, message, mend = self._judge(reply, batch, cut)
        except Exception as e:  # a bug of the checker: recorded as such (tests require there are none)
            import traceback

            rules, kind, mend = None, "checker_error", None
            message = f"internal error of the rule checker: {type(e).__name__}: {str(e)[:300]}"
            self.transcript.log("checker_error", traceback=traceback.format_exc()[-4000:])
        self.transcript.log("verdict", verdict="accepted" if rules is not None else kind,
                            message=(message or "")[:2000])
        if rules is None and mend is None:
            mend = prompts.mend_refused(message)
        return rules, mend

    def _judge(self, reply: str, batch: list[Example], cut: bool = False) -> tuple[str | None, str, str, str | None]:
        """(rules or None, verdict kind, message, mend prompt)."""
        if len(reply) > MAX_REPLY_CHARS:
            msg = f"the reply is {len(reply):,} characters long; at most {MAX_REPLY_CHARS:,} are read"
            return None, "too_long", msg, prompts.mend_refused(msg)
        rules = prompts.extract_rules(reply, cut=cut)
        if not rules.strip():
            if cut:
                return None, "truncated", "the reply was cut at the token limit before a complete rule", \
                    prompts.mend_truncated(None)
            msg = ("the reply is empty; it holds no rules" if not reply.strip() else
                   "the reply holds no rules outside its <think> block" if not prompts.strip_thinking(reply).strip()
                   else "the reply holds no rules")
            return None, "empty", msg, (prompts.mend_empty if not reply.strip() else prompts.mend_refused)(msg)
        res = self._check(self.accepted + [rules], batch + self.seen, "candidate")
        if res.status != "ok":
            mend = {"syntax": prompts.mend_syntax, "unsafe": prompts.mend_unsafe,
                    "forbidden": prompts.mend_forbidden, "limit": prompts.mend_limit}.get(res.status,
                                                                                          prompts.mend_refused)
            if res.status == "limit" and res.kind not in ("time_limit", "memory_limit", "crashed"):
                mend = prompts.mend_refused
            return None, res.kind or res.status, res.message, mend(res.message)
        wrong = self._failures(res, batch, True)
        if wrong:
            return None, "wrong_answer", f"{len(wrong)} of {len(batch)} questions wrong", prompts.mend_wrong(wrong)
        broken = self._failures(res, self.seen, False)
        if broken:
            return None, "regression", f"{len(broken)} earlier questions broken", prompts.mend_regression(broken)
        return rules, "accepted", "", None

    def _val_score(self, rules: str) -> float:
        if not self.split.val:
            return 0.0
        return accuracy(self._check(self.accepted + [rules], self.split.val, "validation"), self.split.val)["accuracy"]

    def _solve_batch(self, batch: list[Example], derived: list[list[str]]) -> bool:
        cfg = self.config
        facts = self.checker.prompt_facts(batch)
        for attempt in range(cfg.retries):
            messages = [{"role": "system", "content": prompts.preprompt(self.theory, self.encoding_doc, self.example_facts)},
                        {"role": "user", "content": prompts.task_prompt(batch, facts, derived)}]
            reply = self._chat(messages, cfg.candidates, f"try {attempt + 1}")
            passing = []
            for i, text in enumerate(reply.texts):
                cut = reply.cut(i)
                conv = messages + [{"role": "assistant", "content": prompts.strip_thinking(text).strip()}]
                for mend in range(cfg.mends + 1):
                    rules, feedback = self._evaluate_candidate(text, batch, cut)
                    if rules is not None:
                        passing.append(rules)
                        break
                    if mend == cfg.mends:
                        break
                    conv.append({"role": "user", "content": feedback})
                    again = self._chat(conv, 1, f"mend {mend + 1}")
                    text, cut = again.text, again.cut()
                    conv.append({"role": "assistant", "content": prompts.strip_thinking(text).strip()})
            if passing:
                scored = [(self._val_score(r), -len(r), i, r) for i, r in enumerate(passing)]
                best = max(scored)[3]
                self.accepted.append(best)
                self.transcript.log("accept", rules=best, examples=[e.qid for e in batch])
                return True
        return False

    def _chat(self, messages: list[dict], n: int, label: str):
        """One LLM call through the transcript, within the run's budget."""
        cfg = self.config
        if cfg.max_llm_calls is not None and self.llm_calls >= cfg.max_llm_calls:
            raise BudgetSpent(f"LLM call budget spent ({self.llm_calls} calls, --max-llm-calls {cfg.max_llm_calls})")
        if cfg.max_llm_tokens is not None and self.llm_tokens >= cfg.max_llm_tokens:
            raise BudgetSpent(f"LLM token budget spent ({self.llm_tokens:,} tokens, "
                              f"--max-llm-tokens {cfg.max_llm_tokens:,})")
        reply = self.transcript.chat(self.client, messages, n=n, label=label)
        self.llm_calls += 1
        self.llm_tokens += reply.prompt_tokens + reply.completion_tokens
        return reply

    # ---- the run -----------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.config
        before = self._score("before")
        self.history.append({"rules": 0, **{k: v and v["accuracy"] for k, v in before.items()}})
        first = self._check(self.accepted, self.split.train, "initial train")
        failing_ops: dict[str, int] = {}
        for e in self.split.train:
            if not first.correct(e):
                failing_ops[e.meta.get("op", "")] = failing_ops.get(e.meta.get("op", ""), 0) + 1
        train = order_examples(self.split.train, cfg.order, cfg.seed, failing_ops)
        batches = [train[i:i + cfg.batch] for i in range(0, len(train), cfg.batch)]
        self.batch_counts = {"total": len(batches), "max_batches": cfg.max_batches, "run": 0, "already_right": 0}
        if cfg.max_batches is not None:
            batches = batches[: cfg.max_batches]
        unsolved = []
        latest, done = before, 0
        it = self.progress(batches, desc="distilling") if self.progress else batches
        try:
            for done, batch in enumerate(it):
                self.batch_counts["run"] += 1
                res = self._check(self.accepted, batch, "batch")
                if res.status == "ok" and all(res.correct(e) for e in batch):
                    self.batch_counts["already_right"] += 1
                    self.seen += batch
                    continue
                if self._solve_batch(batch, [res.answers.get(e.qid, []) for e in batch]):
                    self.seen += batch
                    latest = self._score(f"after rule {len(self.accepted)}")
                    self.history.append({"rules": len(self.accepted),
                                         **{k: v and v["accuracy"] for k, v in latest.items()}})
                    self._write(before, latest, unsolved, final=False)
                else:
                    unsolved.extend(e.qid for e in batch)
                    self.transcript.log("unsolved", examples=[e.qid for e in batch])
        except BudgetSpent as e:  # deterministic: a rerun stops at the same call, so it resumes as final
            self.stopped = {"reason": str(e), "batch": done + 1, "batches": len(batches)}
        except LLMError as e:  # the endpoint failed: nothing more is logged, so a rerun resumes here
            self.stopped = {"reason": f"endpoint error: {e}", "batch": done + 1, "batches": len(batches)}
            self._write(before, latest, unsolved, final=False)
            self.transcript.close()
            raise
        finally:
            if hasattr(it, "close"):
                it.close()
        after = self._score("after")
        summary = self._write(before, after, unsolved, final=True)
        self.transcript.close()
        return summary

    def _write(self, before: dict, after: dict, unsolved: list[str], final: bool) -> dict:
        llm = [e for e in self.transcript.events if e.get("kind") == "llm"]
        summary = {
            "final": final, "config": asdict(self.config),
            "examples": {"train": len(self.split.train), "val": len(self.split.val), "test": len(self.split.test)},
            "before": before, "after": after, "accepted_rules": len(self.accepted), "unsolved": unsolved,
            "history": self.history,
            "verdicts": _count(e["verdict"] for e in self.transcript.events if e.get("kind") == "verdict"),
            "batches": dict(getattr(self, "batch_counts", {})),  # training batches: total, run, already right
            "llm_calls": len(llm), "prompt_tokens": sum(e.get("prompt_tokens", 0) for e in llm),
            "completion_tokens": sum(e.get("completion_tokens", 0) for e in llm),
            "llm_seconds": round(sum(e.get("duration_s", 0.0) for e in llm), 3),
            "wall_seconds": round(time.time() - self.started, 3),
        }
        summary.update(llm_stats(llm))
        summary["budget"] = {"max_llm_calls": self.config.max_llm_calls, "max_llm_tokens": self.config.max_llm_tokens,
                             "llm_calls": len(llm), "llm_tokens": summary["prompt_tokens"] + summary["completion_tokens"]}
        summary["stopped"] = self.stopped
        write_atomic(self.run_dir / "theory.lp", self.theory)
        write_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=1))
        return summary


def llm_stats(llm: list[dict]) -> dict:
    """Figures of the recorded LLM calls: HTTP requests (with retries), finish reasons,
    seconds per call and completion tokens per second (over the calls' whole duration,
    prompt processing included), the model names the server gave."""
    secs = sum(e.get("duration_s", 0.0) for e in llm)
    done = sum(e.get("completion_tokens", 0) for e in llm)
    return {"llm_requests": sum(e.get("attempts", 1) for e in llm),
            "finish_reasons": _count(r for e in llm for r in (e.get("finish_reasons") or [])),
            "seconds_per_call": round(secs / len(llm), 3) if llm else None,
            "completion_tokens_per_second": round(done / secs, 2) if secs > 0 else None,
            "models": sorted({e["model"] for e in llm if e.get("model")})}


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items()))
