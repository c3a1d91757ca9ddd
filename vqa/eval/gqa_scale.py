"""GQA evaluation at given sizes: replicated files in the official layout, and a side-by-side
measure of `vqa evaluate` on them (seconds, questions/s, peak RSS), ASP and reference.

    replicate(FIX / "families_questions.json", FIX / "families_sceneGraphs.json", "out/", questions=100_000,
              images=40_000)
    rows = run_scale_bench(["out/"], reasoners=("asp", "reference"))

Replication copies the source images' scene graphs under fresh image ids and deals their
questions out (cyclically, `questions / images` per image) under fresh question ids;
entailment links are kept within a copy. Files are written one record at a time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from ..datasets.jsonstream import stream_dict


def replicate(src_questions, src_scenes, out_dir, *, questions: int, images: int) -> tuple[Path, Path]:
    """Write `out_dir`/q.json and sg.json with `questions` questions over `images` images."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_image: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for qid, rec in stream_dict(src_questions):
        by_image[str(rec["imageId"])].append((qid, rec))
    graphs = {k: v for k, v in stream_dict(src_scenes) if k in by_image}
    sources = sorted(k for k in by_image if k in graphs)
    if not sources or images < 1 or questions < images:
        raise ValueError("need source images with scene graphs, images >= 1 and questions >= images")
    qpath, spath = out_dir / "q.json", out_dir / "sg.json"
    qtmp, stmp = out_dir / "q.json.tmp", out_dir / "sg.json.tmp"  # renamed when whole (q.json last)
    with open(qtmp, "w", encoding="utf-8") as fq, open(stmp, "w", encoding="utf-8") as fs:
        fq.write("{")
        fs.write("{")
        written = 0
        for k in range(images):
            src = sources[k % len(sources)]
            image = f"r{k}"
            fs.write(("," if k else "") + json.dumps(image) + ":" + json.dumps(graphs[src]))
            n = questions // images + (k < questions % images)
            pool = by_image[src]
            chosen = [pool[(k + j) % len(pool)] for j in range(n)]
            new_ids = {}
            for j, (qid, _) in enumerate(chosen):
                new_ids.setdefault(qid, f"{k:08d}{j:03d}")
            for j, (qid, rec) in enumerate(chosen):
                rec = dict(rec, imageId=image,
                           entailed=[new_ids[e] for e in rec.get("entailed") or [] if e in new_ids],
                           equivalent=[])
                fq.write(("," if written else "") + json.dumps(f"{k:08d}{j:03d}") + ":" + json.dumps(rec))
                written += 1
        fq.write("}\n")
        fs.write("}\n")
    os.replace(stmp, spath)
    os.replace(qtmp, qpath)
    return qpath, spath


def measure(cmd: list[str], *, interval: float = 0.5, timeout: float | None = None) -> dict:
    """Wall seconds and peak RSS (MiB) of a command: `peak_rss_mib` the largest of the process
    and every descendant (the kernel's maxrss over the waited-for tree, so nothing between two
    samples is missed), and from sampling every `interval` s, `main_rss_mib` (the command's
    own process) and `worker_rss_mib` (the largest of its descendants: forked workers), with
    `processes` the number of distinct processes seen; `cpu_seconds` of the whole tree (the
    kernel's) and `main_cpu_seconds` (last sample). Run it in a fresh process, so that the
    children's maxrss is that command's."""
    import resource

    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    main = psutil.Process(proc.pid)
    peaks: dict[int, int] = {}
    main_cpu = 0.0
    import threading

    out_err: dict = {}
    reader = threading.Thread(target=lambda: out_err.update(zip(("out", "err"), proc.communicate())), daemon=True)
    reader.start()
    while reader.is_alive():
        try:
            tree = [main] + main.children(recursive=True)
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)
                if p.pid == proc.pid:
                    t = p.cpu_times()
                    main_cpu = t.user + t.system
            except psutil.Error:
                pass
        reader.join(interval)
        if timeout is not None and time.perf_counter() - t0 > timeout and reader.is_alive():
            for p in reversed(tree):
                try:
                    p.kill()
                except psutil.Error:
                    pass
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss = usage.ru_maxrss / 1024  # KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime  # the whole tree's CPU seconds (main and workers)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {out_err.get('err', b'').decode()[-2000:]}")
    mib = 1 / (1024 * 1024)
    workers = [v for k, v in peaks.items() if k != proc.pid]
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(rss, 1),
            "main_rss_mib": round(peaks.get(proc.pid, 0) * mib, 1),
            "worker_rss_mib": round(max(workers) * mib, 1) if workers else None, "processes": len(peaks),
            "cpu_seconds": round(cpu, 2), "main_cpu_seconds": round(main_cpu, 2),
            "report": json.loads(out_err["out"])}


def run_scale_bench(dirs, *, reasoners=("asp", "reference"), workers: int = 1, timeout: float | None = None,
                    extra: tuple[str, ...] = ()) -> list[dict]:
    """`vqa evaluate --all` on each replicated folder with each reasoner, one fresh process
    each (measured in a fresh measuring process, so that peak RSS is that run's), writing
    its predictions file (`predictions_REASONER_wN.json` in the folder). Per row:
    wall seconds and questions/s of the whole command (loading included), questions/s of
    the answering alone (`answer_qps`, all workers together), peak RSS of the largest
    process (`peak_rss_mib`), of the main process and of the largest worker."""
    rows = []
    for d in dirs:
        d = Path(d)
        for reasoner in reasoners:
            pred = d / f"predictions_{reasoner}_w{workers}.json"  # written (journal included): measured too
            for old in (pred, Path(str(pred) + ".journal")):
                old.unlink(missing_ok=True)  # a fresh run, not a resumed one
            cmd = [sys.executable, "-m", "vqa", "evaluate", "--dataset", "gqa", "--questions", str(d / "q.json"),
                   "--scenes", str(d / "sg.json"), "--all", "--reasoner", reasoner, "--workers", str(workers),
                   "--predictions", str(pred), "--no-progress", "--json", *extra]
            probe = [sys.executable, "-c", "import json, sys; from vqa.eval.gqa_scale import measure; "
                     f"r = measure(sys.argv[1:], timeout={timeout!r}); print(json.dumps(r))", *cmd]
            r = subprocess.run(probe, capture_output=True, text=True, env=dict(os.environ))
            if r.returncode != 0:
                raise RuntimeError(r.stderr[-2000:])
            m = json.loads(r.stdout)
            rep = m["report"]
            rows.append({"folder": str(d), "questions": rep["answered"], "images": rep["images"], "reasoner": reasoner,
                         "workers": workers, "seconds": m["seconds"],
                         "questions_per_second": round(rep["answered"] / m["seconds"], 1),
                         "answer_seconds": rep.get("seconds"), "answer_qps": rep.get("questions_per_second"),
                         "peak_rss_mib": m["peak_rss_mib"], "main_rss_mib": m["main_rss_mib"],
                         "worker_rss_mib": m["worker_rss_mib"], "processes": m["processes"],
                         "cpu_seconds": m["cpu_seconds"], "main_cpu_seconds": m["main_cpu_seconds"],
                         "accuracy": rep["accuracy"], "failed": rep.get("failed")})
            if m["processes"] > 1:  # answered in forked workers: questions per second of their CPU time
                worker_cpu = m["cpu_seconds"] - m["main_cpu_seconds"]
                rows[-1]["questions_per_worker_cpu_second"] = round(rep["answered"] / worker_cpu, 1) if worker_cpu > 0 else None
    return rows


def format_rows(rows: list[dict]) -> str:
    """Markdown table of `run_scale_bench` rows."""
    lines = ["| questions / images | reasoner | workers | seconds | questions/s | answering q/s | "
             "q per worker CPU-s | peak RSS, largest process (MiB) | main / largest worker (MiB) | accuracy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        w = "-" if r.get("worker_rss_mib") is None else r["worker_rss_mib"]
        lines.append(f"| {r['questions']:,} / {r['images']:,} | {r['reasoner']} | {r['workers']} | {r['seconds']} | "
                     f"{r['questions_per_second']} | {r.get('answer_qps')} | "
                     f"{r.get('questions_per_worker_cpu_second') or '-'} | {r['peak_rss_mib']} | "
                     f"{r.get('main_rss_mib')} / {w} | {r['accuracy']:.2f} |")
    return "\n".join(lines)
