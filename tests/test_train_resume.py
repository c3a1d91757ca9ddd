"""`vqa train ...` killed -9 midway, then the same command: it continues the saved run and
ends with the weights and held-out figures of an uninterrupted run. A saved run with other
settings is refused with one line naming the setting; --restart starts over; --resume still
continues (to a new length).

The kill is a real SIGKILL of the training process, sent from inside it at a chosen step
(the command runs with `vqa.cli._util.progress` replaced by a bar that counts the training
steps), so the point of the kill does not depend on the machine's speed."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
FIX = Path(__file__).parent / "fixtures"

# runs `vqa ARGS...`; the training bar whose description starts with KILL_DESC kills the
# process with SIGKILL at its (KILL_AT + 1)-th step
KILLER = r'''
import os, signal, sys
import vqa.cli._util as util
prefix, at, count = os.environ["KILL_DESC"], int(os.environ["KILL_AT"]), [0]

class Bar:
    def __init__(self, iterable=None, desc="", total=None, **kw):
        self.iterable, self.mine = iterable, desc.startswith(prefix)
    def _tick(self):
        if self.mine:
            count[0] += 1
            if count[0] > at:
                os.kill(os.getpid(), signal.SIGKILL)
    def __iter__(self):
        for x in self.iterable:
            self._tick()
            yield x
    def __len__(self):
        return len(self.iterable)
    def update(self, n=1):
        self._tick()
    def set_postfix(self, *a, **k):
        pass
    def set_description(self, *a, **k):
        pass
    def close(self):
        pass

util.progress = Bar
from vqa.cli import main
sys.exit(main(sys.argv[1:]))
'''


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def vqa(args, **kw):
    return subprocess.run([sys.executable, "-m", "vqa", *map(str, args)], env=_env(), capture_output=True,
                          text=True, timeout=900, **kw)


def killed_at(args, desc: str, at: int):
    env = dict(_env(), KILL_DESC=desc, KILL_AT=str(at))
    r = subprocess.run([sys.executable, "-c", KILLER, *map(str, args)], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])  # killed, not finished
    return r


def error_lines(r) -> list[str]:
    """The error lines of a failed command (stderr's other lines are its progress log); the
    error is the last line."""
    lines = r.stderr.strip().splitlines()
    errors = [x for x in lines if "error:" in x]
    assert lines and lines[-1] in errors, r.stderr[-2000:]
    return errors


def weights(path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt["state_dict"]


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"weights differ from the uninterrupted run's: {differ[:5]}"


def kill_resume_compare(tmp_path, args_for, desc: str, at: int, result_file):
    """args_for(out): the command for output `out`. Runs it uninterrupted (out "a"), killed
    at step `at` (out "b"), then the same command for "b" again. Returns both runs' outputs."""
    full = vqa(args_for(tmp_path / "a"))
    assert full.returncode == 0, full.stderr[-3000:]
    killed_at(args_for(tmp_path / "b"), desc, at)
    again = vqa(args_for(tmp_path / "b"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert_same_weights(result_file(tmp_path / "a"), result_file(tmp_path / "b"))
    return full, again


# ---- the question parser (default suite: seconds) --------------------------------------------------
@pytest.fixture(scope="module")
def clevr_questions(tmp_path_factory):
    from vqa.datasets.synth.generate import generate_dataset

    tmp = tmp_path_factory.mktemp("qp")
    generate_dataset(tmp / "tr", num_scenes=6, questions_per_scene=5, seed=11, images=False)
    generate_dataset(tmp / "va", num_scenes=2, questions_per_scene=5, seed=12, split="val", images=False)
    return tmp / "tr/questions/CLEVR_train_questions.json", tmp / "va/questions/CLEVR_val_questions.json"


def qp_args(tr, va, out, *more):
    return ["train", "question-parser", "--train", tr, "--val", va, "--out", out, "--steps", "16",
            "--batch-size", "8", "--ckpt-every", "4", "--eval-every", "8", "--eval-size", "4", "--dim", "32",
            "--enc-layers", "1", "--dec-layers", "1", "--threads", "1", "--json", *more]


def test_question_parser_killed_midway_continues_with_the_same_command(clevr_questions, tmp_path):
    tr, va = clevr_questions
    full, again = kill_resume_compare(tmp_path, lambda d: qp_args(tr, va, d / "qp.pt"), "training", 10,
                                      lambda d: d / "qp.pt")
    assert "resumed at step 8" in again.stderr  # the last checkpoint before the kill (step 10 of 16)
    a, b = json.loads(full.stdout), json.loads(again.stdout)
    assert a["steps"] == b["steps"] == 16 and a["held_out"] == b["held_out"]
    # the finished run, run again: nothing more to train, the same model and figures
    before = weights(tmp_path / "b/qp.pt")
    third = vqa(qp_args(tr, va, tmp_path / "b/qp.pt"))
    assert third.returncode == 0 and "resumed at step 16" in third.stderr
    assert json.loads(third.stdout)["held_out"] == a["held_out"]
    assert all(torch.equal(before[k], v) for k, v in weights(tmp_path / "b/qp.pt").items())
    history = torch.load(tmp_path / "b/qp.pt", weights_only=False)["meta"]["history"]
    assert [h["step"] for h in history] == [8, 16]


def test_other_settings_are_refused_in_one_line_and_restart_starts_over(clevr_questions, tmp_path, capsys):
    from vqa.cli import main

    tr, va = clevr_questions
    out = tmp_path / "qp.pt"

    def run(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        return rc, capsys.readouterr()

    assert run(*qp_args(tr, va, out, "--steps", "4"))[0] == 0  # a run saved at step 4 of 4
    for more, setting, old, new in ((["--lr", "0.002"], "--lr", "0.001", "0.002"),
                                    (["--kv-heads", "4"], "--kv-heads", "2", "4"),
                                    (["--steps", "6"], "--steps", "4", "6")):
        rc, cap = run(*qp_args(tr, va, out, "--steps", "4"), *more)
        err = [x for x in cap.err.splitlines() if "error" in x]
        assert rc == 2 and cap.out == "" and len(err) == 1 and cap.err.strip().endswith(err[0]), cap.err
        for piece in (f"{out}.state", f"holds a run trained with {setting} {old}, this command has {new}",
                      "--restart"):
            assert piece in err[0], err[0]
        assert ("--resume to train it on to the new length" in err[0]) == (setting == "--steps")
    # other training data at the same path: refused too
    fewer = tmp_path / "fewer.json"
    data = json.loads(Path(tr).read_text())
    data["questions"] = data["questions"][:20]
    fewer.write_text(json.dumps(data))
    rc, cap = run(*qp_args(fewer, va, out, "--steps", "4"))
    assert rc == 2 and "question pairs in --train 30, this command has 20" in cap.err and "--restart" in cap.err
    # --resume continues to a new length (as it always did); --restart starts over
    rc, cap = run(*qp_args(tr, va, out, "--resume", "--steps", "6"))
    assert rc == 0 and "resumed at step 4" in cap.err and json.loads(cap.out)["steps"] == 6
    rc, cap = run(*qp_args(tr, va, out, "--restart", "--lr", "0.002", "--steps", "2"))
    assert rc == 0 and "resumed" not in cap.err and json.loads(cap.out)["steps"] == 2
    with pytest.raises(SystemExit):  # one or the other
        main([str(a) for a in qp_args(tr, va, out, "--resume", "--restart")])
    # a state file cut short (a full disk): one line
    state = Path(f"{out}.state")
    state.write_bytes(state.read_bytes()[:1000])
    rc, cap = run(*qp_args(tr, va, out, "--steps", "2", "--lr", "0.002"))
    assert rc == 2 and "cannot read the saved run" in cap.err.strip().splitlines()[-1]


# ---- the other trainers (slow: tens of seconds to minutes each) ------------------------------------
@pytest.mark.slow
def test_gqa_question_parser_killed_midway_continues(tmp_path):
    from vqa.datasets.gqa_synth.generate import generate_gqa_dataset

    tr = generate_gqa_dataset(tmp_path / "tr", num_scenes=8, questions_per_scene=6, seed=1, split="train",
                              images=False)
    va = generate_gqa_dataset(tmp_path / "va", num_scenes=2, questions_per_scene=5, seed=2, split="val", images=False)

    def args(d):
        return ["train", "gqa-question-parser", "--train", tr["questions_file"], FIX / "gqa/families_questions.json",
                "--val", va["questions_file"], "--out", d / "g.pt", "--steps", "12", "--batch-size", "8",
                "--ckpt-every", "3", "--eval-every", "6", "--eval-size", "4", "--dim", "32", "--enc-layers", "1",
                "--dec-layers", "1", "--json"]

    full, again = kill_resume_compare(tmp_path, args, "training", 7, lambda d: d / "g.pt")
    assert "resumed at step 6" in again.stderr
    assert json.loads(full.stdout)["held_out"] == json.loads(again.stdout)["held_out"]


@pytest.mark.slow
def test_nsm_killed_midway_continues(tmp_path):
    from vqa.datasets.synth.generate import generate_dataset

    data = tmp_path / "synth"
    generate_dataset(data, num_scenes=12, questions_per_scene=5, seed=1, split="train", images=False)
    generate_dataset(data, num_scenes=4, questions_per_scene=5, seed=2, split="val", images=False)

    def args(d):
        return ["train", "nsm", "--data", data, "--epochs", "3", "--dim", "16", "--steps", "7", "--batch-size", "16",
                "--threads", "1", "--out", d / "nsm.pt", "--report", d / "report.json"]

    # 60 questions, 4 batches an epoch: killed in the second epoch, resumed from the first's checkpoint
    full, again = kill_resume_compare(tmp_path, args, "epoch", 6, lambda d: d / "nsm.pt")
    assert "resuming from" in again.stdout + again.stderr
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in "ab")
    assert a["epochs"] == b["epochs"] == 3 and a["val"] == b["val"]
    assert [h.get("val_accuracy") for h in a["history"]] == [h.get("val_accuracy") for h in b["history"]]
    r = vqa(args(tmp_path / "b")[:-4] + ["--dim", "32", "--out", tmp_path / "b/nsm.pt"])
    assert r.returncode == 2 and "field 'model.dim'" in r.stderr and "--dim 16, this command has 32" in r.stderr
    # a shipped model (no optimizer state) at --out is not overwritten unasked
    ship = tmp_path / "ship.pt"
    from vqa.reason.nsm_train import strip_checkpoint

    strip_checkpoint(tmp_path / "b/nsm.pt", ship)
    r = vqa(args(tmp_path / "b")[:-4] + ["--out", ship])
    assert r.returncode == 2 and "without training state" in r.stderr and len(error_lines(r)) == 1


@pytest.mark.slow
def test_gqa_nsm_killed_midway_continues(tmp_path):
    from vqa.datasets.gqa_synth.generate import generate_gqa_dataset

    tr = generate_gqa_dataset(tmp_path / "tr", num_scenes=10, questions_per_scene=8, seed=4, split="train",
                              images=False)
    va = generate_gqa_dataset(tmp_path / "va", num_scenes=3, questions_per_scene=6, seed=5, split="val", images=False)

    def args(d):
        return ["train", "nsm", "--dataset", "gqa", "--questions", tr["questions_file"], "--scenes", tr["scenes_file"],
                "--val-questions", va["questions_file"], "--val-scenes", va["scenes_file"], "--epochs", "3",
                "--dim", "16", "--batch-size", "16", "--threads", "1", "--out", d / "n.pt", "--report",
                d / "report.json"]

    # 80 questions, 5 batches an epoch: killed in the third epoch
    kill_resume_compare(tmp_path, args, "epoch", 12, lambda d: d / "n.pt")
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in "ab")
    assert a["epochs"] == b["epochs"] == 3 and a["val"] == b["val"]


@pytest.mark.slow
def test_scene_parser_killed_midway_continues(tmp_path):
    from vqa.datasets.synth.generate import generate_dataset

    data = tmp_path / "synth"
    generate_dataset(data, num_scenes=8, questions_per_scene=0, seed=5, image_size=(96, 64))
    generate_dataset(data, num_scenes=2, questions_per_scene=2, seed=6, split="val", image_size=(96, 64))

    def args(d):
        return ["train", "scene-parser", "--data", data, "--out", d / "run", "--epochs", "2", "--batch-size", "2",
                "--warmup-steps", "1", "--dim", "32", "--depth", "1", "--heads", "2", "--kv-heads", "1",
                "--image-size", "96x64", "--checkpoint-every", "3", "--threads", "1", "--no-tune", "--json"]

    # 4 steps an epoch, 8 in all: killed after step 6 (before its checkpoint: step 4's is the last)
    kill_resume_compare(tmp_path, args, "train", 5, lambda d: d / "run/scene_parser.pt")
    ea, eb = ([json.loads(x) for x in (tmp_path / d / "run/log.jsonl").read_text().splitlines() if "eval_epoch" in x]
              for d in "ab")
    assert [e["eval_epoch"] for e in eb] == [1, 2]  # continued in epoch 2, not started again
    assert ea == eb  # the same held-out figures after each epoch
