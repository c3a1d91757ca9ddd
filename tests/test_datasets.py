import pytest

from vqa import DataError
from vqa.datasets import clevr, gqa
from vqa.executor import execute
from conftest import FIXTURES, dump_json, load_json


def test_clevr_dataset_layout_and_join(clevr_root):
    ds = clevr.CLEVRDataset(clevr_root, "val")
    pairs = list(ds.iter_with_scenes())
    assert len(pairs) == 8
    q, sg = pairs[0]
    assert q.qid == "0" and q.image_id == "CLEVR_val_000000" and q.family == 0 and q.answer == "2"
    assert ds.image_path(q.image_id) == clevr_root / "images/val/CLEVR_val_000000.png"
    # every fixture answer is re-derived by the reference executor
    for q, sg in pairs:
        assert execute(q.program, sg).answer == q.answer, q.qid


def test_clevr_answers_normalised(clevr_root):
    path = clevr_root / "questions/CLEVR_val_questions.json"
    data = load_json(path)
    data["questions"][0]["answer"] = 2
    data["questions"][2]["answer"] = False
    del data["questions"][1]["answer"], data["questions"][1]["program"]  # test-split style
    dump_json(data, path)
    qs = list(clevr.iter_questions(path))
    assert (qs[0].answer, qs[1].answer, qs[1].program, qs[2].answer) == ("2", None, None, "no")


@pytest.mark.parametrize("text, fragment", [
    ('{"questions": [{"question": "a", "image_index": 0}, ', "malformed JSON"),
    ('[1, 2]', "found a JSON array"),
    ('{"info": {}}', "missing top-level 'questions'"),
    ('{"questions": {}}', "expected a list"),
    ('', "premature EOF"),
])
def test_malformed_clevr_files(tmp_path, text, fragment):
    p = tmp_path / "q.json"
    p.write_text(text)
    with pytest.raises(DataError, match=fragment) as e:
        list(clevr.iter_questions(p))
    assert str(p) in str(e.value)


def test_clevr_question_missing_field(tmp_path):
    p = tmp_path / "q.json"
    dump_json({"questions": [{"question_index": 5, "image_index": 0, "program": []}]}, p)
    with pytest.raises(DataError) as e:
        list(clevr.iter_questions(p))
    assert (e.value.problem.record, e.value.problem.field) == ("5", "question")


def test_missing_scene_is_named(clevr_root):
    path = clevr_root / "questions/CLEVR_val_questions.json"
    data = load_json(path)
    data["questions"][3]["image_filename"] = "CLEVR_val_000009.png"
    dump_json(data, path)
    with pytest.raises(DataError, match="no scene for image 'CLEVR_val_000009'"):
        list(clevr.CLEVRDataset(clevr_root, "val").iter_with_scenes())


def test_gqa_questions_stream_and_join():
    qs = list(gqa.iter_questions(FIXTURES / "gqa/val_balanced_questions.json"))
    assert [q.qid for q in qs][:2] == ["05515938", "05515939"]  # ids stay strings with leading zeros
    assert qs[0].meta["types"]["detailed"] == "relS" and qs[0].meta["entailed"] == ["05515939"]
    pairs = list(gqa.iter_with_scenes(FIXTURES / "gqa/val_balanced_questions.json", FIXTURES / "gqa/val_sceneGraphs.json"))
    assert len(pairs) == 5 and pairs[3][1].image_id == "2375429"


def test_gqa_folder_of_parts(tmp_path):
    data = load_json(FIXTURES / "gqa/val_balanced_questions.json")
    items = list(data.items())
    (tmp_path / "train_all_questions").mkdir()
    dump_json(dict(items[:2]), tmp_path / "train_all_questions/train_all_questions_0.json")
    dump_json(dict(items[2:]), tmp_path / "train_all_questions/train_all_questions_1.json")
    qs = list(gqa.iter_questions(tmp_path / "train_all_questions"))
    assert [q.qid for q in qs] == list(data)


def test_gqa_scene_graphs_are_lazy_and_filtered():
    sgs = gqa.SceneGraphs(FIXTURES / "gqa/val_sceneGraphs.json", keep={"2375429"})
    assert sgs._records is None
    assert list(sgs) == ["2375429"] and "2354786" not in sgs
    assert sgs["2375429"].object("502").name == "cup"


def test_gqa_bad_records(tmp_path):
    p = tmp_path / "q.json"
    dump_json({"1": {"question": "x?", "answer": "no"}}, p)
    with pytest.raises(DataError) as e:
        list(gqa.iter_questions(p))
    assert (e.value.problem.record, e.value.problem.field) == ("1", "imageId")
    p.write_text('{"1": {"imageId": "3", "question": ')
    with pytest.raises(DataError, match="malformed JSON"):
        list(gqa.iter_questions(p))
