import json

from PIL import Image

from vqa.cli import main
from vqa.datasets.check import check_clevr, check_gqa
from conftest import FIXTURES, dump_json, load_json


def _clevr_paths(root):
    return root / "questions/CLEVR_val_questions.json", root / "scenes/CLEVR_val_scenes.json"


def test_valid_fixtures_have_correct_counts(clevr_root, capsys):
    q, s = _clevr_paths(clevr_root)
    rep = check_clevr(q, s)
    assert rep.ok, rep.format()
    assert (rep.counts["scenes"], rep.counts["objects"], rep.counts["questions"]) == (2, 7, 8)
    assert main(["data", "check", "--dataset", "clevr", "--questions", str(q), "--scenes", str(s), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["counts"]["questions"] == 8
    g = check_gqa(FIXTURES / "gqa/val_balanced_questions.json", FIXTURES / "gqa/val_sceneGraphs.json")
    assert g.ok, g.format()
    assert (g.counts["questions"], g.counts["balanced questions"], g.counts["scene graphs"], g.counts["objects"],
            g.counts["relations"]) == (5, 4, 2, 6, 6)


def test_clevr_injected_defects_are_each_reported(clevr_root, capsys):
    q, s = _clevr_paths(clevr_root)
    qd, sd = load_json(q), load_json(s)
    qd["questions"][0]["program"][2]["inputs"] = [5]                 # forward reference
    qd["questions"][1]["program"][1]["function"] = "filter_shapes"    # unknown function
    qd["questions"][2]["program"][1]["value_inputs"] = ["cone"]       # value outside vocabulary
    qd["questions"][3]["image_filename"] = "CLEVR_val_000042.png"    # no such scene
    qd["questions"][5]["answer"] = "maybe"                            # not a CLEVR answer
    del qd["questions"][6]["question"]                                # missing field
    sd["scenes"][1]["relationships"]["left"][0] = [9]                 # relation target missing
    dump_json(qd, q)
    dump_json(sd, s)
    images = clevr_root / "images/val"
    images.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(images / "CLEVR_val_000000.png")   # 000001.png missing
    rep = check_clevr(q, s, images)
    found = {(p.record, p.field) for p in rep.problems}
    expected = {("0", "program[2].inputs"), ("1", "program[1].function"), ("2", "program[1].value_inputs"),
                ("3", "image_filename"), ("5", "answer"), ("6", "question"),
                ("CLEVR_val_000001.png", "relationships.left[0]")}
    assert expected <= found, rep.format()
    assert all(p.file for p in rep.problems)
    assert rep.counts["missing images"] == 2  # CLEVR_val_000001 and the injected 000042
    code = main(["data", "check", "--dataset", "clevr", "--questions", str(q), "--scenes", str(s),
                 "--images", str(images)])
    out = capsys.readouterr().out
    assert code == 1 and "program[1].function" in out and "unknown function 'filter_shapes'" in out


def test_gqa_injected_defects_are_each_reported(gqa_dir, tmp_path):
    qp, sp = gqa_dir / "val_balanced_questions.json", gqa_dir / "val_sceneGraphs.json"
    qd, sd = load_json(qp), load_json(sp)
    qd["05515938"]["semantic"][2]["dependencies"] = [2]
    qd["05515939"]["semantic"][1]["operation"] = "verfy color"
    qd["05515940"]["imageId"] = "1"
    del qd["201640211"]["question"]
    sd["2375429"]["objects"]["502"]["relations"][0]["object"] = "777"
    sd["2354786"]["objects"]["1234"]["w"] = "wide"
    dump_json(qd, qp)
    dump_json(sd, sp)
    rep = check_gqa(qp, sp, images=tmp_path)  # no images there at all
    found = {(p.record, p.field) for p in rep.problems}
    expected = {("05515938", "semantic[2].dependencies"), ("05515939", "semantic[1].operation"),
                ("05515940", "imageId"), ("201640211", "question"),
                ("2375429", "objects.502.relations[0].object"), ("2354786", "objects.1234.w")}
    assert expected <= found, rep.format()
    assert sum(1 for p in rep.problems if "image file" in p.message) == 4  # the 4 readable questions


def test_check_survives_malformed_file(tmp_path, capsys):
    q = tmp_path / "q.json"
    q.write_text('{"questions": [{"question": "x"')
    s = FIXTURES / "clevr/scenes/CLEVR_val_scenes.json"
    assert main(["data", "check", "--dataset", "clevr", "--questions", str(q), "--scenes", str(s)]) == 1
    assert "malformed JSON" in capsys.readouterr().out
