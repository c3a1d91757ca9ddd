"""`vqa bench pipeline`: the user-facing targets measured side by side in one run.

- cold start: wall time of a fresh `vqa answer --image ... --question ...` process with the
  numpy runtime (the default on the CPU) and with `--backend torch`, and of a bare
  `python -c "import torch"` beside them (the floor any torch-based command pays);
- warm: questions/s of `Pipeline.answer` one question at a time (both backends) and of
  `answer_many`, all about one image (scene parsed once, then cached);
- workers: `vqa evaluate` (ASP, gold scenes and programs) on a generated split with
  `--workers 1` and `--workers N`, alternating, and the ratio of their medians; beside it,
  what the machine gives N processes of a pure CPU loop (a shared VM may give less than N).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "sample.png"
WARM_QUESTIONS = ["How many cyan things are there?", "Is there a red sphere?", "What material is the red cube?",
                  "How many things are left of the gray cylinder?", "Are there more cubes than cylinders?",
                  "What color is the large sphere?", "Is the red cube the same size as the gray cylinder?",
                  "How many rubber things are in front of the red sphere?"]


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="cold start, warm questions/s and evaluation workers speed-up")
    p.add_argument("--image", default=str(SAMPLE), help="image for the cold-start and warm runs")
    p.add_argument("--cold-repeats", type=int, default=3, help="fresh processes timed (median reported)")
    p.add_argument("--warm-questions", type=int, default=200, help="questions answered warm")
    p.add_argument("--scenes", type=int, default=1000, help="generated scenes for the workers run")
    p.add_argument("--questions-per-scene", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--workers-repeats", type=int, default=3,
                   help="runs with 1 and with N workers, alternating (medians compared)")
    p.add_argument("--skip", nargs="*", default=[], choices=["cold", "warm", "workers"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _timed_process(argv: list[str]) -> float:
    import os

    # bytecode caches as a user's installation has them (some environments turn writing them off)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if r.returncode not in (0, 1):
        from ..errors import VQAError

        raise VQAError(f"{' '.join(argv)} failed: {r.stderr.strip()[-500:]}")
    return time.perf_counter() - t


def bench_cold(image: str, repeats: int) -> dict:
    answer = [sys.executable, "-m", "vqa", "answer", "--image", image, "--question", WARM_QUESTIONS[0]]
    runs = {"numpy": [], "torch": [], "import_torch": []}
    _timed_process(answer)  # not timed: writes the bytecode caches
    for _ in range(repeats):  # interleaved, so that load changes hit all three alike
        runs["numpy"].append(_timed_process(answer + ["--backend", "numpy"]))
        runs["torch"].append(_timed_process(answer + ["--backend", "torch"]))
        runs["import_torch"].append(_timed_process([sys.executable, "-c", "import torch"]))
    return {"answer_s": round(statistics.median(runs["numpy"]), 3),
            "answer_all_s": [round(x, 3) for x in runs["numpy"]],
            "answer_torch_s": round(statistics.median(runs["torch"]), 3),
            "import_torch_s": round(statistics.median(runs["import_torch"]), 3)}


def _qps(fn, n: int) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def bench_warm(image: str, n: int) -> dict:
    from ..pipeline import Pipeline

    qs = [WARM_QUESTIONS[i % len(WARM_QUESTIONS)] for i in range(n)]
    out: dict = {"questions": n}
    pipes = {b: Pipeline.from_pretrained(backend=b) for b in ("numpy", "torch")}
    for pipe in pipes.values():
        pipe.answer(image, qs[0])  # loads the models and parses the image
    for b, pipe in pipes.items():
        key = "answer_qps" if b == "numpy" else "answer_torch_qps"
        out[key] = round(_qps(lambda: [pipe.answer(image, q) for q in qs], n), 1)
        parse = round(_qps(lambda: [pipe.programs([q]) for q in qs], n), 1)
        out["parse_qps" if b == "numpy" else "parse_torch_qps"] = parse
    pipe = pipes["numpy"]
    programs = {q: pipe.programs([q])[0][0] for q in WARM_QUESTIONS}
    out["reason_qps"] = round(_qps(lambda: [pipe.answer(image, q, program=programs[q]) for q in qs], n), 1)
    out["answer_many_qps"] = round(_qps(lambda: pipe.answer_many(image, qs), n), 1)
    out["answer_many_nsm_qps"] = round(_qps(lambda: pipe.answer_many(image, qs, reasoner="nsm"), n), 1)
    return out


def _burn(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def _machine_speedup(workers: int, n: int = 3_000_000) -> float:
    """What this machine gives `workers` processes: the same pure-Python loop run `workers`
    times in one process and once in each of `workers` forked processes (wall-time ratio)."""
    import multiprocessing as mp

    t = time.perf_counter()
    for _ in range(workers):
        _burn(n)
    serial = time.perf_counter() - t
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    procs = [ctx.Process(target=_burn, args=(n,)) for _ in range(workers)]
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return serial / (time.perf_counter() - t)


def bench_workers(scenes: int, per_scene: int, workers: int, repeats: int = 3) -> dict:
    """`evaluate_clevr` with 1 and with `workers` workers, `repeats` times each in alternating
    order (1, N, N, 1, 1, N, ...), so that a change of load hits both alike; the speed-up is
    the ratio of the medians. Beside it, the machine's own speed-up on a pure CPU loop."""
    from ..datasets.synth.generate import generate_dataset
    from ..eval.clevr import evaluate_clevr

    with tempfile.TemporaryDirectory(prefix="vqa_bench_") as d:
        generate_dataset(d, num_scenes=scenes, questions_per_scene=per_scene, seed=4242, split="val",
                         images=False, verify=False)
        qf, sf = Path(d) / "questions/CLEVR_val_questions.json", Path(d) / "scenes/CLEVR_val_scenes.json"
        out: dict = {}
        machine = []
        for r in range(max(1, repeats)):
            for w in ((1, workers) if r % 2 == 0 else (workers, 1)):
                t = time.perf_counter()
                rep = evaluate_clevr(qf, sf, reasoner="asp", workers=w)
                run = out.setdefault(w, {"questions": rep["total"], "accuracy": rep["accuracy"], "all_seconds": []})
                run["all_seconds"].append(round(time.perf_counter() - t, 3))
            machine.append(round(_machine_speedup(workers), 2))
    for run in out.values():
        run["seconds"] = round(statistics.median(run["all_seconds"]), 3)
    return {"runs": out, "speedup": round(out[1]["seconds"] / out[workers]["seconds"], 2), "workers": workers,
            "machine_speedup": statistics.median(machine), "machine_all": machine}


def run(args) -> int:
    import os

    from ..errors import VQAError

    if not Path(args.image).is_file():
        raise VQAError(f"{args.image}: no such image")
    from ._util import Stages

    report: dict = {"cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2)}
    stage = Stages("vqa bench pipeline", sum(k not in args.skip for k in ("cold", "warm", "workers")))
    if "cold" not in args.skip:
        stage(f"cold start: {args.cold_repeats} x 3 fresh processes")
        report["cold"] = bench_cold(args.image, args.cold_repeats)
    if "warm" not in args.skip:
        stage(f"warm: {args.warm_questions} questions per variant")
        report["warm"] = bench_warm(args.image, args.warm_questions)
    if "workers" not in args.skip:
        stage(f"workers: evaluate {args.scenes} scenes with 1 and {args.workers} workers, {args.workers_repeats} x")
        report["workers"] = bench_workers(args.scenes, args.questions_per_scene, args.workers, args.workers_repeats)
    report["load_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{report['cpus']} CPUs, load {report['load_before']} -> {report['load_after']}")
    if "cold" in report:
        c = report["cold"]
        print(f"cold start: `vqa answer --image --question` {c['answer_s']:.2f} s (numpy runtime, median of "
              f"{len(c['answer_all_s'])}; all {c['answer_all_s']}); with --backend torch {c['answer_torch_s']:.2f} s; "
              f"`python -c 'import torch'` alone {c['import_torch_s']:.2f} s")
    if "warm" in report:
        w = report["warm"]
        print(f"warm, {w['questions']} questions about one image: answer() {w['answer_qps']} q/s "
              f"(torch backend {w['answer_torch_qps']}); of which parsing alone {w['parse_qps']} q/s "
              f"(torch {w['parse_torch_qps']}), answering given programs {w['reason_qps']} q/s; "
              f"answer_many() {w['answer_many_qps']} q/s (ASP), {w['answer_many_nsm_qps']} q/s (NSM)")
    if "workers" in report:
        r = report["workers"]
        one, many = r["runs"][1], r["runs"][r["workers"]]
        print(f"evaluate (ASP, gold scenes, {one['questions']} questions, medians of {len(one['all_seconds'])}): "
              f"1 worker {one['seconds']:.2f} s {one['all_seconds']}, {r['workers']} workers {many['seconds']:.2f} s "
              f"{many['all_seconds']} -> {r['speedup']}x; the machine itself, a pure CPU loop in {r['workers']} "
              f"processes: {r['machine_speedup']}x {r['machine_all']}")
    return 0
