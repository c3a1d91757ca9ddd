"""More bad input, written apart from test_bad_input.py (issue 23: "re-measured
independently with other inputs"): each command ends with exit status 2 and one line naming
the file (and where it applies the record and field), without a traceback, in bounded time
and memory. Each case runs as its own process, so that a hang, a crash or a memory blow-up
shows (`run_case` also returns the process's peak memory, which the re-measurement reports)."""
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).parents[1]
FIX = Path(__file__).parent / "fixtures"
SCENES = FIX / "clevr/scenes/CLEVR_val_scenes.json"
QUESTIONS = FIX / "clevr/questions/CLEVR_val_questions.json"
GQA_Q = FIX / "gqa/val_balanced_questions.json"
GQA_S = FIX / "gqa/val_sceneGraphs.json"
EVAL = ["evaluate", "--dataset", "clevr", "--reasoner", "reference", "--no-progress", "--questions"]
GQA_EVAL = ["evaluate", "--dataset", "gqa", "--no-progress", "--questions"]


def _q(fn):
    d = json.loads(QUESTIONS.read_text())
    fn(d)
    return json.dumps(d)


def _s(fn):
    d = json.loads(SCENES.read_text())
    fn(d)
    return json.dumps(d)


def _gq(fn):
    d = json.loads(GQA_Q.read_text())
    fn(next(iter(d.values())))
    return json.dumps(d)


def _gs(fn):
    d = json.loads(GQA_S.read_text())
    fn(next(iter(d.values())))
    return json.dumps(d)


def _png(mode: str) -> bytes:
    buf = io.BytesIO()
    rgb = (np.random.RandomState(1).rand(60, 80, 3) * 255).astype(np.uint8)
    if mode == "bomb_header":  # a PNG whose header claims 40000 x 40000 pixels (4.8 GB as RGB)
        return _hand_png(40000, 40000)
    elif mode == "truncated_jpeg":
        Image.fromarray(rgb).save(buf, format="JPEG")
        return buf.getvalue()[:300]
    elif mode == "empty":
        return b""
    elif mode == "svg":
        return b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    elif mode == "png_signature_only":
        return b"\x89PNG\r\n\x1a\n"
    elif mode == "zero_height":  # a PNG header with height 0 (no encoder writes one)
        return _hand_png(16, 0)
    return buf.getvalue()


def _hand_png(width: int, height: int) -> bytes:
    """A PNG made by hand: a header claiming width x height (8-bit RGB), no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# name -> (files {name: text or bytes}, argv with {name}/{DIR} placeholders, pieces of the one line)
CASES = {
    # JSON that parses but has the wrong shape
    "questions_top_level_list": ({"q.json": "[1, 2, 3]"}, EVAL + ["{q.json}", "--scenes", str(SCENES)],
                                 ["q.json"]),
    "questions_empty_file": ({"q.json": ""}, EVAL + ["{q.json}", "--scenes", str(SCENES)], ["q.json"]),
    "questions_only_whitespace": ({"q.json": " \n\t "}, EVAL + ["{q.json}", "--scenes", str(SCENES)], ["q.json"]),
    "program_is_a_string": ({"q.json": _q(lambda d: d["questions"][2].update(program="count(scene)"))},
                            EVAL + ["{q.json}", "--scenes", str(SCENES)], ["q.json", "record 2", "program"]),
    "inputs_is_a_string": ({"q.json": _q(lambda d: d["questions"][1]["program"][1].update(inputs="0"))},
                           EVAL + ["{q.json}", "--scenes", str(SCENES)], ["q.json", "record 1", "program[1].inputs"]),
    "value_is_a_number": ({"q.json": _q(lambda d: d["questions"][1]["program"][1].update(value_inputs=[5]))},
                          EVAL + ["{q.json}", "--scenes", str(SCENES)], ["q.json", "record 1", "program[1]"]),
    "value_outside_vocabulary": ({"q.json": _q(lambda d: d["questions"][1]["program"][1].update(
                                      value_inputs=["dodecahedron"]))},
                                 EVAL + ["{q.json}", "--scenes", str(SCENES)],
                                 ["q.json", "record 1", "program[1]", "dodecahedron"]),
    "question_for_a_missing_image": ({"q.json": _q(lambda d: d["questions"][1].update(
                                          image_index=999, image_filename="CLEVR_val_000999.png"))},
                                     EVAL + ["{q.json}", "--scenes", str(SCENES)], ["q.json", "record 1", "999"]),
    "scenes_is_a_dict": ({"s.json": _s(lambda d: d.update(scenes={"a": 1}))},
                         EVAL + [str(QUESTIONS), "--scenes", "{s.json}"], ["s.json", "scenes"]),
    "object_colour_outside_vocabulary": ({"s.json": _s(lambda d: d["scenes"][0]["objects"][0].update(
                                              color="chartreuse"))},
                                         EVAL + [str(QUESTIONS), "--scenes", "{s.json}"],
                                         ["s.json", "record CLEVR_val_000000", "objects[0].color", "chartreuse"]),
    "coordinate_is_nan": ({"s.json": SCENES.read_text().replace('"3d_coords": [', '"3d_coords": [NaN, ', 1)},
                          EVAL + [str(QUESTIONS), "--scenes", "{s.json}"], ["s.json", "objects[0].3d_coords"]),
    "relation_index_out_of_range": ({"s.json": _s(lambda d: d["scenes"][0]["relationships"]["left"].__setitem__(
                                         0, [42]))},
                                    EVAL + [str(QUESTIONS), "--scenes", "{s.json}"],
                                    ["s.json", "record CLEVR_val_000000", "relationships"]),
    "questions_from_dev_zero": ({}, EVAL + ["/dev/zero", "--scenes", str(SCENES)], ["/dev/zero"]),
    "questions_from_dev_null": ({}, EVAL + ["/dev/null", "--scenes", str(SCENES)], ["/dev/null"]),
    "symlink_loop": ({"loop.json": "LOOP"}, EVAL + ["{loop.json}", "--scenes", str(SCENES)], ["loop.json"]),
    # GQA
    "gqa_dependencies_a_string": ({"g.json": _gq(lambda r: r["semantic"][1].update(dependencies="0"))},
                                  GQA_EVAL + ["{g.json}", "--scenes", str(GQA_S)],
                                  ["g.json", "record 05515938", "semantic"]),
    "gqa_record_is_a_list": ({"g.json": json.dumps({"1": [1, 2]})}, GQA_EVAL + ["{g.json}", "--scenes", str(GQA_S)],
                             ["g.json", "record 1"]),
    "gqa_image_without_scene_graph": ({"g.json": _gq(lambda r: r.update(imageId="nope"))},
                                      GQA_EVAL + ["{g.json}", "--scenes", str(GQA_S)],
                                      ["record 05515938", "imageId", "nope"]),
    "gqa_relation_to_a_missing_object": ({"s.json": _gs(lambda g: next(iter(g["objects"].values()))[
                                              "relations"].append({"name": "near", "object": "404404"}))},
                                         GQA_EVAL + [str(GQA_Q), "--scenes", "{s.json}"],
                                         ["s.json", "record 2354786", "404404"]),
    "gqa_typed_operation_unknown": ({"g.json": _gq(lambda r: r["semantic"][0].update(operation="teleport color"))},
                                    GQA_EVAL + ["{g.json}", "--scenes", str(GQA_S)],
                                    ["g.json", "record 05515938", "semantic[0].operation", "teleport color"]),
    # programs on the command line
    "answer_program_unbalanced": ({}, ["answer", "--scene", str(SCENES), "--program", "count(filter_color[red](scene)"],
                                  ["')'"]),
    "answer_program_empty": ({}, ["answer", "--scene", str(SCENES), "--program", ""], ["program"]),
    # images
    "image_header_claims_40000x40000": ({"bomb.png": b"bomb_header"}, ["scene", "--image", "{bomb.png}"],
                                        ["bomb.png", "40000x40000"]),
    "truncated_jpeg": ({"t.jpg": b"truncated_jpeg"}, ["scene", "--image", "{t.jpg}"], ["t.jpg"]),
    "empty_image_file": ({"e.png": b"empty"}, ["scene", "--image", "{e.png}"], ["e.png"]),
    "svg_image": ({"i.svg": b"svg"}, ["scene", "--image", "{i.svg}"], ["i.svg", "not a readable image"]),
    "png_signature_only": ({"s.png": b"png_signature_only"}, ["scene", "--image", "{s.png}"], ["s.png"]),
    "png_zero_height": ({"z.png": b"zero_height"}, ["scene", "--image", "{z.png}"], ["z.png"]),
    # training data
    "train_questions_without_programs": ({"q.json": _q(lambda d: [q.pop("program") for q in d["questions"]])},
                                         ["train", "question-parser", "--train", "{q.json}", "--val", str(QUESTIONS),
                                          "--out", "{DIR}/qp.pt", "--steps", "2"], ["q.json"]),
    "train_nsm_on_a_file_not_a_folder": ({}, ["train", "nsm", "--data", str(QUESTIONS), "--out", "{DIR}/n.pt",
                                              "--epochs", "1"], [str(QUESTIONS)]),
}


def write_case(name: str, d: Path) -> list[str]:
    files, argv, _ = CASES[name]
    paths = {"DIR": str(d)}
    for fname, content in files.items():
        p = d / fname
        if content == "LOOP":
            os.symlink(p, p)
        elif isinstance(content, bytes):
            p.write_bytes(_png(content.decode()))
        else:
            p.write_text(content)
        paths[fname] = str(p)
    out = []
    for a in argv:
        for k, v in paths.items():
            a = a.replace("{" + k + "}", v)
        out.append(a)
    return out


def run_case(name: str, d: Path, timeout: float = 300) -> dict:
    """Runs the case's command in a process of its own: exit status ("killed" past
    `timeout`), stderr, seconds and the process's peak resident memory (MB). The peak comes
    from /usr/bin/time where there is one (from wait4 otherwise, where it is only an upper
    bound: a child's peak counts the forking process's resident size)."""
    import signal
    import tempfile
    import threading

    argv = write_case(name, d)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    peak_file = d / ".peak_kb"
    prefix = ["/usr/bin/time", "-f", "%M", "-o", str(peak_file)] if Path("/usr/bin/time").exists() else []
    t = time.monotonic()
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "vqa", *argv], env=env, stdout=fo, stderr=fe,
                                start_new_session=True)
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode("utf-8", "replace"), fe.read().decode("utf-8", "replace")
    peak_mb = usage.ru_maxrss / 1024
    if prefix:
        try:
            peak_mb = int(peak_file.read_text().split()[-1]) / 1024
            peak_file.unlink()
        except (OSError, ValueError, IndexError):  # killed: time wrote no figure
            peak_mb = float("nan")
        if rc == 128 + signal.SIGKILL or "Command terminated by signal" in err:
            rc = -9
    return {"name": name, "rc": "killed" if rc == -9 else rc, "stdout": out, "stderr": err,
            "seconds": round(time.monotonic() - t, 2), "peak_mb": round(peak_mb, 1), "argv": argv}


def check(res: dict, pieces: list[str], d: Path) -> list[str]:
    """The problems with a case's outcome (empty: as required)."""
    bad = []
    err = res["stderr"].strip().splitlines()
    if res["rc"] != 2:
        bad.append(f"exit status {res['rc']}")
    if "Traceback" in res["stderr"]:
        bad.append("traceback")
    errors = [x for x in err if "error" in x]
    if len(errors) != 1 or not err or err[-1] != errors[0]:
        bad.append(f"{len(errors)} error lines (last line: {err[-1:]})")
    for p in pieces:
        p = p.replace("{DIR}", str(d))
        if not err or p not in err[-1]:
            bad.append(f"{p!r} not in the line")
    return bad


# the cases whose command reads its input only after importing torch (~650 MB resident here):
# none (`vqa train question-parser` reads its files first)
NEEDS_TORCH: set[str] = set()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_more_bad_input_gives_one_clear_line(name, tmp_path):
    res = run_case(name, tmp_path)
    problems = check(res, CASES[name][2], tmp_path)
    assert not problems, (problems, res["stderr"][-1500:])
    # refused before anything large is loaded (memory, unlike seconds, does not depend on the load)
    if name not in NEEDS_TORCH and res["peak_mb"] == res["peak_mb"]:
        assert res["peak_mb"] < 150, f"{name}: peak {res['peak_mb']} MB before the one line"


@pytest.mark.parametrize("name", sorted(CASES))
def test_more_bad_input_in_process(name, tmp_path, capsys):
    """The same cases through `vqa.cli.main` in this process (fast; the separate-process
    run above, marked slow, also shows that nothing hangs, crashes or blows up memory)."""
    from vqa.cli import main

    argv = write_case(name, tmp_path)
    t = time.process_time()  # CPU time: how busy the machine is does not decide
    rc = main(argv)
    seconds = time.process_time() - t
    out, err = capsys.readouterr()
    res = {"rc": rc, "stderr": err, "stdout": out}
    problems = check(res, CASES[name][2], tmp_path)
    assert not problems, (problems, err[-1500:])
    assert seconds < 30, f"{name}: {seconds:.1f} s of CPU time"


if __name__ == "__main__":  # `PYTHONPATH=. python tests/test_bad_input_more.py`: each case's cost, one process each
    import tempfile

    print(f"{'case':36} {'rc':>3} {'seconds':>8} {'peak MB':>8}  outcome")
    rows = []
    for case in sorted(CASES):
        with tempfile.TemporaryDirectory() as tmp:
            res = run_case(case, Path(tmp))
            problems = check(res, CASES[case][2], Path(tmp))
        rows.append(res)
        print(f"{case:36} {res['rc']!s:>3} {res['seconds']:8.2f} {res['peak_mb']:8.1f}  "
              f"{'; '.join(problems) or 'one line, as required'}", flush=True)
    print(f"{len(rows)} cases: median {sorted(r['seconds'] for r in rows)[len(rows) // 2]:.2f} s, "
          f"max {max(r['seconds'] for r in rows):.2f} s, max peak {max(r['peak_mb'] for r in rows):.1f} MB")
