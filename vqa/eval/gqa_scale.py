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


def measure(cmd: list[str]) -> dict:
    """Wall seconds and peak RSS (MiB, the largest of the process and its children) of a command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    # the children's rusage (the largest maxrss of the waited-for process tree)
    import resource

    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err.decode()[-2000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(rss, 1), "report": json.loads(out)}


def run_scale_bench(dirs, *, reasoners=("asp", "reference"), workers: int = 1) -> list[dict]:
    """`vqa evaluate --all` on each replicated folder with each reasoner, one fresh process
    each (measured in a fresh measuring process, so that peak RSS is that run's)."""
    rows = []
    for d in dirs:
        d = Path(d)
        for reasoner in reasoners:
            cmd = [sys.executable, "-m", "vqa", "evaluate", "--dataset", "gqa", "--questions", str(d / "q.json"),
                   "--scenes", str(d / "sg.json"), "--all", "--reasoner", reasoner, "--workers", str(workers),
                   "--no-progress", "--json"]
            probe = [sys.executable, "-c", "import json, sys; from vqa.eval.gqa_scale import measure; "
                     "r = measure(sys.argv[1:]); print(json.dumps(r))", *cmd]
            r = subprocess.run(probe, capture_output=True, text=True, env=dict(os.environ))
            if r.returncode != 0:
                raise RuntimeError(r.stderr[-2000:])
            m = json.loads(r.stdout)
            rep = m["report"]
            rows.append({"folder": str(d), "questions": rep["answered"], "images": rep["images"], "reasoner": reasoner,
                         "workers": workers, "seconds": m["seconds"],
                         "questions_per_second": round(rep["answered"] / m["seconds"], 1),
                         "peak_rss_mib": m["peak_rss_mib"], "accuracy": rep["accuracy"]})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| questions / images | reasoner | workers | seconds | questions/s | peak RSS (MiB) | accuracy |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['questions']:,} / {r['images']:,} | {r['reasoner']} | {r['workers']} | {r['seconds']} | "
                     f"{r['questions_per_second']} | {r['peak_rss_mib']} | {r['accuracy']:.2f} |")
    return "\n".join(lines)
