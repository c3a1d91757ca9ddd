"""`vqa distill` against a real model server: llama.cpp's OpenAI-compatible server
(llama-cpp-python) with a small GGUF model. Slow, and installs nothing: it runs where

    VQA_LLAMA_PYTHON  a python whose environment has `llama-cpp-python[server]`
    VQA_LLAMA_GGUF    a .gguf chat model (e.g. Gemma 3 270M, Q4_K_M, from PyPI)

are set (README, "A real local model"), and skips with the reason otherwise. The server
runs on 127.0.0.1 at a free port, at the test's own niceness, with VQA_LLAMA_THREADS threads
(default 1: on a busy 2-core machine two threads wait on each other at every layer, 1.1
tokens/s against 10.4 with one, measured); VQA_LLAMA_CTX sets its context
(default 16384: the CLEVR preprompt is about 9,000 tokens). VQA_LLAMA_CHAT sets its chat
template: a HuggingFace-style tokenizer_config.json (default: the repository's
data/llama/gemma3_tokenizer_config.json, Gemma's turns with the system message at the head
of the first user turn; the PyPI GGUF carries no template, and llama-cpp-python's own
"gemma" format drops system messages), or a llama-cpp-python chat format name."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vqa.distill.theory import statements
from conftest import FIXTURES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # the first call alone evaluates ~7,900 prompt tokens
ROOT = Path(__file__).resolve().parents[1]
CALLS = 4  # the run's budget of LLM calls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chat_format() -> list[str]:
    chat = os.environ.get("VQA_LLAMA_CHAT", str(ROOT / "data/llama/gemma3_tokenizer_config.json"))
    if chat.endswith(".json"):
        return ["--chat_format", "hf-tokenizer-config", "--hf_tokenizer_config_path", chat]
    return ["--chat_format", chat]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    py, gguf = os.environ.get("VQA_LLAMA_PYTHON"), os.environ.get("VQA_LLAMA_GGUF")
    if not py or not gguf:
        pytest.skip("no real model server: set VQA_LLAMA_PYTHON (a python with llama-cpp-python[server]) and "
                    "VQA_LLAMA_GGUF (a .gguf model); see the README")
    for what, path in (("VQA_LLAMA_PYTHON", py), ("VQA_LLAMA_GGUF", gguf)):
        if not Path(path).is_file():
            pytest.skip(f"{what}={path}: no such file")
    probe = subprocess.run([py, "-c", "import llama_cpp.server"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"{py} cannot import llama_cpp.server: {probe.stderr.strip().splitlines()[-1:]}")
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    threads = os.environ.get("VQA_LLAMA_THREADS", "1")
    cmd = [py, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", "local",
           "--host", "127.0.0.1", "--port", str(port), "--n_threads", threads, "--n_threads_batch", threads,
           "--n_ctx", os.environ.get("VQA_LLAMA_CTX", "16384"), *_chat_format()]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited ({proc.returncode}): {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/models", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within 300 s: {log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _complete_events(path: Path) -> list[dict]:
    """The transcript's events on whole lines (the last line may be half written)."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    return [json.loads(x) for x in raw[: raw.rfind(b"\n") + 1].splitlines() if x.strip()]


def _vqa(args, **kw):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return [sys.executable, "-m", "vqa", *args], env


def test_check_endpoint_reports_model_latency_and_parse(llama_server):
    cmd, env = _vqa(["distill", "--check-endpoint", "--base-url", llama_server, "--model", "local",
                     "--max-tokens", "128", "--timeout", "300", "--json"])
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 1), r.stderr[-2000:]  # 1: the reply does not parse (a 270M model may say anything)
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["served_models"] == ["local"] and report["latency_s"] > 0
    assert report["completion_tokens"] > 0 and report["finish_reason"] in ("stop", "length")
    assert report["parses"] == (r.returncode == 0)


def test_bounded_distillation_killed_and_resumed(llama_server, tmp_path):
    """The single-predicate protocol on the fixture questions (every rule that mentions
    `compare` removed), bounded to CALLS calls; kill -9 once the first reply is recorded;
    the same command resumes and ends within the budget."""
    out = tmp_path / "run"
    args = ["distill", "--dataset", "clevr", "--ablate-predicate", "compare",
            "--questions", str(FIXTURES / "clevr/questions/CLEVR_val_questions.json"),
            "--scenes", str(FIXTURES / "clevr/scenes/CLEVR_val_scenes.json"), "--out", str(out),
            "--base-url", llama_server, "--model", "local", "--timeout", "600", "--llm-retries", "1",
            "--max-tokens", "256", "--batch", "1", "--retries", "2", "--mends", "1", "--order", "relevance",
            "--test-fraction", "0.25", "--val-fraction", "0", "--max-batches", "2", "--max-llm-calls", str(CALLS),
            "--check-seconds", "60"]
    cmd, env = _vqa(args)
    transcript = out / "transcript.jsonl"
    err = tmp_path / "first.stderr"
    with open(err, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=fh)
    deadline = time.monotonic() + 1200
    while not any(e["kind"] == "llm" for e in _complete_events(transcript)):
        assert proc.poll() is None, f"the run ended before its first reply: {err.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "no reply within 20 minutes"
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before_kill = _complete_events(transcript)  # a line cut by the kill is dropped on resume
    first = next(e for e in before_kill if e["kind"] == "llm")
    assert not (out / "summary.json").exists() or not json.loads((out / "summary.json").read_text())["final"]

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(x) for x in transcript.read_text().splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[: len(before_kill)] == before_kill  # nothing recorded before the kill was lost or changed
    llm = [e for e in events if e["kind"] == "llm"]
    assert 1 <= len(llm) <= CALLS and llm[0] == first
    assert all(e["model"] and e["finish_reasons"] and e["duration_s"] > 0 for e in llm)
    assert sum(e["completion_tokens"] for e in llm) > 0  # the server reports its usage
    verdicts = [e for e in events if e["kind"] == "verdict"]
    assert len(verdicts) == len(llm)  # every reply was judged (batch 1, one candidate per prompt)
    s = json.loads((out / "summary.json").read_text())
    assert s["final"] is True and s["llm_calls"] == len(llm) == s["budget"]["llm_calls"]
    assert s["prompt_tokens"] == sum(e["prompt_tokens"] for e in llm) > 1000  # the theory is in the prompt
    assert sum(s["verdicts"].values()) == len(verdicts) and s["seconds_per_call"] > 0
    assert s["before"]["test"]["total"] == s["after"]["test"]["total"] == 2
    theory = (out / "theory.lp").read_text()
    initial = (out / "initial_theory.lp").read_text()
    assert len(statements(theory)) >= len(statements(initial))
    assert len(json.loads((out / "ablation.json").read_text())["ablated"]) == 9  # the compare rules
    assert s["accepted_rules"] == len([e for e in events if e["kind"] == "accept"])
    print(json.dumps({k: s[k] for k in ("llm_calls", "llm_requests", "prompt_tokens", "completion_tokens",
                                        "seconds_per_call", "completion_tokens_per_second", "verdicts",
                                        "accepted_rules", "stopped")}))
