"""Progress of logged runs: when stderr is not a terminal, `vqa evaluate` prints a line at a
steady interval (done, rate, time left) instead of nothing."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from vqa.cli._util import LogProgress

ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
FIX = Path(__file__).parent / "fixtures"


def test_lines_at_the_interval_with_rate_and_time_left():
    now = [100.0]
    out = io.StringIO()
    bar = LogProgress(desc="questions", total=1000, interval=30, file=out, clock=lambda: now[0])
    for _ in range(10):  # 100 questions every 10 s: a line every third update
        now[0] += 10
        bar.update(100)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # at 30, 60, 90 s, and the final count at close
    assert lines[0] == "questions: 300/1000 (30.0%), 10.0/s, 30s elapsed, 1m10s left"
    assert lines[-1].startswith("questions: 1000/1000 (100.0%), 10.0/s, 1m40s elapsed, 0s left")
    quiet = io.StringIO()
    bar = LogProgress(range(5), desc="x", interval=30, file=quiet, clock=lambda: 0.0)
    assert list(bar) == [0, 1, 2, 3, 4] and quiet.getvalue() == ""  # short runs print nothing


def _logged(args):
    r = subprocess.run([sys.executable, "-m", "vqa", "evaluate", *args, "--json"], env=dict(ENV, VQA_PROGRESS_SECONDS="0"),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), [x for x in r.stderr.splitlines() if x.startswith("questions: ")]


def test_gqa_and_clevr_evaluation_log_progress_lines(tmp_path):
    report, lines = _logged(["--dataset", "gqa", "--questions", str(FIX / "gqa/families_questions.json"),
                             "--scenes", str(FIX / "gqa/families_sceneGraphs.json")])
    assert lines and lines[-1].startswith(f"questions: {report['answered']}/{report['answered']} (100.0%)"), lines
    assert "/s" in lines[-1] and "left" in lines[-1]
    q = next((FIX / "clevr/questions").glob("*.json"))
    s = next((FIX / "clevr/scenes").glob("*.json"))
    report, lines = _logged(["--dataset", "clevr", "--questions", str(q), "--scenes", str(s), "--scenes-per-call", "1"])
    n = report["total"] + report["unscored"]
    assert len(lines) >= 2 and lines[-1].startswith(f"questions: {n}/{n} (100.0%)"), lines
