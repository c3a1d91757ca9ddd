"""Records the shipped distillation demo (vqa/data/distill_demo/): an incomplete CLEVR theory
(the exist rules removed), exist/count questions on two scenes, and the transcript of a run
against the test suite's scripted endpoint (tests/fake_openai.py, the replies of
tests/test_distill.py: a syntax error, an unsafe rule, a wrong rule, two hostile replies,
then the right rule)."""
import json, shutil, sys
from pathlib import Path
# usage: python tests/make_distill_demo.py REPO_ROOT SCRATCH_RUN_DIR
repo = Path(sys.argv[1])
sys.path[:0] = [str(repo / "tests"), str(repo)]
from vqa import Program
from vqa.cli import main
from vqa.datasets.clevr import load_scenes
from vqa.executor import execute
from vqa.reason.solver import load_theory
from fake_openai import FakeOpenAI
from test_distill import EXIST_RULES, SCRIPT

demo = repo / "vqa" / "data" / "distill_demo"
theory = load_theory(repo / "rules" / "clevr")
for rule in EXIST_RULES:
    assert rule in theory
    theory = theory.replace(rule, "")
(demo / "incomplete.lp").write_text(theory)
shutil.copy(repo / "tests/fixtures/clevr/scenes/CLEVR_val_scenes.json", demo / "scenes.json")
scenes = load_scenes(demo / "scenes.json")
questions = []
for sg in scenes.values():
    for c in ("red", "blue", "green", "yellow", "gray", "purple"):
        for fn in ("exist", "count"):
            p = Program.parse(f"{fn}(filter_color[{c}](scene))")
            questions.append({"question_index": len(questions), "image_filename": sg.image_id + ".png",
                              "question": f"{'Is there a' if fn == 'exist' else 'How many'} {c} thing"
                                          f"{'?' if fn == 'exist' else 's are there?'}",
                              "answer": execute(p, sg).answer, "program": p.to_clevr("function")})
(demo / "questions.json").write_text(json.dumps({"questions": questions}, indent=1))
settings = json.loads((demo / "settings.json").read_text())
out = Path(sys.argv[2])
shutil.rmtree(out, ignore_errors=True)
with FakeOpenAI(SCRIPT) as server:
    argv = ["distill", "--dataset", "clevr", "--theory", str(demo / "incomplete.lp"), "--questions",
            str(demo / "questions.json"), "--scenes", str(demo / "scenes.json"), "--out", str(out),
            "--base-url", server.url, "--model", "scripted", "--timeout", "10", "--llm-retries", "0"]
    for k, v in settings.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    assert main(argv) == 0
events = [json.loads(x) for x in (out / "transcript.jsonl").read_text().splitlines()]
for e in events:  # no machine-specific values in the shipped file
    e.pop("time", None)
(demo / "transcript.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
print(json.loads((out / "summary.json").read_text())["after"])
