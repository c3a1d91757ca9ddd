"""Bad input through the CLI: one clear line naming the file, record and field, exit
status 2, no traceback. Images in odd formats are read correctly; huge ones are refused
before they are decoded."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqa.cli import main
from conftest import FIXTURES

SCENES = FIXTURES / "clevr/scenes/CLEVR_val_scenes.json"
QUESTIONS = FIXTURES / "clevr/questions/CLEVR_val_questions.json"
GQA_Q = FIXTURES / "gqa/val_balanced_questions.json"
GQA_S = FIXTURES / "gqa/val_sceneGraphs.json"


def _q():
    return json.loads(QUESTIONS.read_text())


def _s():
    return json.loads(SCENES.read_text())


def _edit(obj, fn):
    obj = copy.deepcopy(obj)
    fn(obj)
    return obj


def _del(d, key):
    del d[key]


# name -> (files to write {name: json object or text}, argv with {name} placeholders, pieces of the message)
CLEVR_EVAL = ["evaluate", "--dataset", "clevr", "--reasoner", "reference", "--no-progress"]
CASES = {
    "malformed_json": ({"q.json": '{"questions": [ {"question": }'},
                       CLEVR_EVAL + ["--questions", "{q.json}", "--scenes", str(SCENES)], ["q.json", "malformed JSON"]),
    "truncated_questions": ({"q.json": QUESTIONS.read_text()[:2000]},
                            CLEVR_EVAL + ["--questions", "{q.json}", "--scenes", str(SCENES)], ["q.json", "JSON"]),
    "truncated_scenes": ({"s.json": SCENES.read_text()[:700]},
                         CLEVR_EVAL + ["--questions", str(QUESTIONS), "--scenes", "{s.json}"], ["s.json", "JSON"]),
    "unknown_function": ({"q.json": _edit(_q(), lambda q: q["questions"][1]["program"][1].update(function="filter_colour"))},
                         CLEVR_EVAL + ["--questions", "{q.json}", "--scenes", str(SCENES)],
                         ["q.json", "record 1", "program[1].function", "unknown function 'filter_colour'"]),
    "forward_input": ({"q.json": _edit(_q(), lambda q: q["questions"][1]["program"][1].update(inputs=[2]))},
                      CLEVR_EVAL + ["--questions", "{q.json}", "--scenes", str(SCENES)],
                      ["q.json", "record 1", "program[1].inputs", "earlier steps"]),
    "missing_input": ({"q.json": _edit(_q(), lambda q: q["questions"][1]["program"][2].update(inputs=[7]))},
                      CLEVR_EVAL + ["--questions", "{q.json}", "--scenes", str(SCENES), "--reasoner", "asp"],
                      ["q.json", "record 1", "program[2].inputs", "earlier steps"]),
    "no_inputs_field": ({"q.json": _edit(_q(), lambda q: _del(q["questions"][1]["program"][2], "inputs"))},
                        CLEVR_EVAL + ["--questions", "{q.json}", "--scenes", str(SCENES)],
                        ["q.json", "record 1", "program[2].inputs", "takes 1 input"]),
    "scene_without_color": ({"s.json": _edit(_s(), lambda s: _del(s["scenes"][1]["objects"][0], "color"))},
                            CLEVR_EVAL + ["--questions", str(QUESTIONS), "--scenes", "{s.json}"],
                            ["s.json", "record CLEVR_val_000001", "objects[0].color", "missing"]),
    "scene_without_objects": ({"s.json": _edit(_s(), lambda s: _del(s["scenes"][1], "objects"))},
                              CLEVR_EVAL + ["--questions", str(QUESTIONS), "--scenes", "{s.json}", "--reasoner", "asp"],
                              ["s.json", "record CLEVR_val_000001", "'objects'", "missing"]),
    "answer_scene_without_color": ({"s.json": _edit(_s(), lambda s: _del(s["scenes"][1]["objects"][0], "color"))},
                                   ["answer", "--scene", "{s.json}", "--image-id", "CLEVR_val_000001",
                                    "--program", "count(filter_color[red](scene))"],
                                   ["s.json", "record 1", "objects[0].color", "missing"]),
    "scene_coords_not_numbers": ({"s.json": _edit(_s(), lambda s: s["scenes"][0]["objects"][0].update(
                                      {"3d_coords": ["a", "b", "c"]}))},
                                 CLEVR_EVAL + ["--questions", str(QUESTIONS), "--scenes", "{s.json}"],
                                 ["s.json", "record CLEVR_val_000000", "objects[0].3d_coords", "list of numbers"]),
    "empty_program": ({"q.json": _edit(_q(), lambda q: q["questions"][0].update(program=[]))},
                      CLEVR_EVAL + ["--questions", "{q.json}", "--scenes", str(SCENES)],
                      ["q.json", "record 0", "'program'", "empty"]),
    "not_utf8": ({"q.json": b"UTF"}, CLEVR_EVAL + ["--questions", "{q.json}", "--scenes", str(SCENES)],
                 ["q.json", "not UTF-8"]),
    "answer_deeply_nested_program": ({}, ["answer", "--scene", str(SCENES), "--program",
                                          "count(" + "unique(" * 3000 + "scene" + ")" * 3001], ["nested 3001 levels"]),
    "answer_unknown_function": ({}, ["answer", "--scene", str(SCENES), "--program", "count(frob[red](scene))"],
                                ["frob"]),
    "directory_as_questions": ({}, CLEVR_EVAL + ["--questions", "{DIR}", "--scenes", str(SCENES)],
                               ["{DIR}", "directory"]),
    "directory_as_scene": ({}, ["answer", "--scene", "{DIR}", "--program", "count(scene)"], ["{DIR}", "directory"]),
    "gqa_forward_dependency": ({"g.json": _edit(json.loads(GQA_Q.read_text()),
                                                lambda g: next(iter(g.values()))["semantic"][1].update(dependencies=[5]))},
                               ["evaluate", "--dataset", "gqa", "--questions", "{g.json}", "--scenes", str(GQA_S),
                                "--no-progress"],
                               ["g.json", "record 05515938", "semantic[1].dependencies", "earlier steps"]),
    "gqa_object_without_name": ({"s.json": _edit(json.loads(GQA_S.read_text()), lambda g: _del(
                                    next(iter(next(iter(g.values()))["objects"].values())), "name"))},
                                ["evaluate", "--dataset", "gqa", "--questions", str(GQA_Q), "--scenes", "{s.json}",
                                 "--no-progress"],
                                ["s.json", "record 2354786", "objects.1232.name", "missing"]),
    "distill_theory_does_not_parse": ({"bad.lp": "p(X :- q."},
                                      ["distill", "--theory", "{bad.lp}", "--questions", str(QUESTIONS), "--scenes",
                                       str(SCENES), "--out", "{DIR}/run", "--base-url", "http://127.0.0.1:9/v1",
                                       "--model", "x"],
                                      ["bad.lp", "theory does not parse", "syntax error"]),
    "gqa_truncated": ({"g.json": GQA_Q.read_text()[:900]},
                      ["evaluate", "--dataset", "gqa", "--questions", "{g.json}", "--scenes", str(GQA_S)],
                      ["g.json", "JSON"]),
    "not_an_image": ({"x.png": "hello, I am text"}, ["scene", "--image", "{x.png}"], ["x.png", "not a readable image"]),
    "truncated_png": ({"t.png": b"PNG"}, ["scene", "--image", "{t.png}"], ["t.png", "truncated"]),
    "directory_as_image": ({}, ["scene", "--image", "{DIR}"], ["{DIR}", "directory"]),
    "huge_image": ({"big.png": b"BIG"}, ["scene", "--image", "{big.png}"], ["big.png", "6000x6000", "downscale"]),
    "tall_strip_image": ({"tall.png": b"TALL"}, ["scene", "--image", "{tall.png}"], ["2x5000", "crop it first"]),
    "missing_image": ({}, ["scene", "--image", "{DIR}/nothing.png"], ["nothing.png", "no such file"]),
}


def _png_bytes(kind: str) -> bytes:
    import io

    buf = io.BytesIO()
    if kind == "q.json":
        return b'{"questions": [{"question": "\xff\xfe"}]}'
    if kind == "tall.png":  # would be read at 320 x 800,000 pixels: minutes and gigabytes
        Image.new("RGB", (2, 5000), (10, 20, 30)).save(buf, format="PNG")
        return buf.getvalue()
    if kind == "t.png":
        rgb = (np.random.RandomState(0).rand(120, 160, 3) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(buf, format="PNG")
        return buf.getvalue()[: len(buf.getvalue()) // 2]
    Image.new("RGB", (6000, 6000), (10, 20, 30)).save(buf, format="PNG")  # small on disk, 108 MB decoded
    return buf.getvalue()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_one_clear_line(name, tmp_path, capsys):
    files, argv, pieces = CASES[name]
    d = tmp_path / "data"
    d.mkdir()
    paths = {"DIR": str(d)}
    for fname, content in files.items():
        p = d / fname
        if isinstance(content, bytes):
            p.write_bytes(_png_bytes(fname))
        elif isinstance(content, str):
            p.write_text(content)
        else:
            p.write_text(json.dumps(content))
        paths[fname] = str(p)
    def fill(text):
        for k, v in paths.items():
            text = text.replace("{" + k + "}", v)
        return text

    argv = [fill(a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for piece in pieces:
        assert fill(piece) in err[0], err[0]


def test_no_traceback_from_the_command_line(tmp_path):
    """The same as a separate process: exit status 2, one line on stderr."""
    bad = tmp_path / "q.json"
    bad.write_text(json.dumps(_edit(_q(), lambda q: q["questions"][1]["program"][1].update(inputs=[5]))))
    r = subprocess.run([sys.executable, "-m", "vqa", *CLEVR_EVAL, "--questions", str(bad), "--scenes", str(SCENES)],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "program[1].inputs" in r.stderr


# ---- images read correctly -------------------------------------------------------------------
RGB = (np.random.RandomState(3).rand(24, 32, 3) * 255).astype(np.uint8)


def test_rgba_is_composited_over_gray(tmp_path):
    from vqa.vision.core import load_image

    alpha = (np.random.RandomState(4).rand(24, 32) * 255).astype(np.uint8)
    Image.fromarray(np.dstack([RGB, alpha])).save(tmp_path / "a.png")
    got = np.asarray(load_image(tmp_path / "a.png")).astype(int)
    a = alpha[..., None] / 255.0
    want = RGB * a + 128 * (1 - a)
    assert got.shape == (24, 32, 3) and np.abs(got - want).max() <= 1


def test_palette_png_reads_its_colours(tmp_path):
    from vqa.vision.core import load_image

    pal = Image.fromarray(RGB).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    idx = np.asarray(pal)
    table = np.array(pal.getpalette()[: 3 * 256]).reshape(-1, 3)
    assert np.array_equal(np.asarray(load_image(tmp_path / "p.png")), table[idx].astype(np.uint8))


def test_sixteen_bit_gray_keeps_its_levels(tmp_path):
    from vqa.vision.core import load_image

    g = (np.random.RandomState(5).rand(24, 32) * 65535).astype(np.uint16)
    g[0, 0], g[0, 1] = 30000, 30000  # a flat image must not be stretched either
    Image.fromarray(g).save(tmp_path / "g.png")
    got = np.asarray(load_image(tmp_path / "g.png"))
    assert got.shape == (24, 32, 3)
    assert np.abs(got[..., 0].astype(int) - np.round(g / 257.0)).max() == 0
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(tmp_path / "flat.png")
    assert np.asarray(load_image(tmp_path / "flat.png")).max() == 128  # mid-gray, not black


@pytest.mark.parametrize("kind", ["rgba", "palette", "gray16", "one_pixel"])
def test_odd_images_parse_through_the_cli(kind, tmp_path, capsys):
    path = tmp_path / f"{kind}.png"
    big = (np.random.RandomState(6).rand(240, 320, 3) * 255).astype(np.uint8)
    if kind == "rgba":
        Image.fromarray(np.dstack([big, np.full((240, 320), 255, np.uint8)])).save(path)
    elif kind == "palette":
        Image.fromarray(big).quantize(colors=64).save(path)
    elif kind == "gray16":
        Image.fromarray((big[..., 0].astype(np.uint16) * 257)).save(path)
    else:
        Image.fromarray(big[:1, :1]).save(path)
    assert main(["scene", "--image", str(path), "--json"]) == 0
    graph = json.loads(capsys.readouterr().out)
    assert (graph["width"], graph["height"]) == ((1, 1) if kind == "one_pixel" else (320, 240))


def test_huge_image_is_refused_before_decoding(tmp_path):
    from vqa.errors import DataError
    from vqa.vision.core import load_image

    (tmp_path / "big.png").write_bytes(_png_bytes("big.png"))
    if os.access("/proc/self/clear_refs", os.W_OK):
        Path("/proc/self/clear_refs").write_text("5")
    rss = _kb("VmRSS")
    with pytest.raises(DataError, match="6000x6000"):
        load_image(tmp_path / "big.png")
    if os.access("/proc/self/clear_refs", os.W_OK):
        assert (_kb("VmHWM") - rss) / 1024 < 20  # decoded, it would take 108 MB (RGB) or more


def _kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])


def test_gqa_unknown_operation_is_refused_in_one_line(tmp_path, capsys):
    """An operation outside GQA's (not one of its operation families) is bad input: `vqa
    evaluate` refuses the file before answering anything, and `vqa data check` names it too,
    with the file, record and field. (GQA's own forms the theory lacks are not errors: they
    are counted as unsupported steps; tests/test_gqa_eval.py.)"""
    g = json.loads(GQA_Q.read_text())
    next(iter(g.values()))["semantic"][1]["operation"] = "frobnicate"
    (tmp_path / "g.json").write_text(json.dumps(g))
    pred = tmp_path / "pred.json"
    assert main(["evaluate", "--dataset", "gqa", "--questions", str(tmp_path / "g.json"), "--scenes", str(GQA_S),
                 "--no-progress", "--json", "--predictions", str(pred)]) == 2
    out, err = capsys.readouterr()
    err = err.strip().splitlines()
    assert out == "" and len(err) == 1 and "error" in err[0], err
    for piece in (str(tmp_path / "g.json"), "record 05515938", "semantic[1].operation", "unknown operation 'frobnicate'"):
        assert piece in err[0], err[0]
    assert not pred.exists() and not Path(str(pred) + ".journal").exists()  # nothing answered, nothing written
    assert main(["data", "check", "--dataset", "gqa", "--questions", str(tmp_path / "g.json"),
                 "--scenes", str(GQA_S)]) != 0
    out, err = capsys.readouterr()
    assert "record 05515938" in out + err and "semantic[1].operation" in out + err and "frobnicate" in out + err
