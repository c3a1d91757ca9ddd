import json

import pytest

from vqa import DataError, SceneGraph
from vqa.datasets.clevr import load_scenes
from vqa.scene import clevr_relations, clevr_relationships
from conftest import FIXTURES, load_json

CLEVR_SCENES = FIXTURES / "clevr/scenes/CLEVR_val_scenes.json"


def test_clevr_scene_to_gold_graph():
    scenes = load_scenes(CLEVR_SCENES)
    sg = scenes["CLEVR_val_000000"]
    assert [o.name for o in sg.objects] == ["cube", "sphere", "cylinder"]
    assert sg.object("1").value("color") == "blue"
    assert sg.is_gold
    # relationships["right"][0] == [1, 2]: objects 1 and 2 are right of object 0
    assert sorted(sg.related("0", "right")) == ["1", "2"]
    assert sg.related("2", "right") == []


def test_relationships_follow_clevrs_rule():
    """j is r of i when dot(c_j - c_i, direction_r) > 0.2, on hand-made coordinates."""
    d = {"left": [-1, 0, 0], "right": [1, 0, 0], "front": [0, -1, 0], "behind": [0, 1, 0]}
    coords = [[0, 0, 0], [0.5, 0.1, 0], [0.15, 3, 0]]
    rel = clevr_relationships(clevr_relations(coords, d), 3)
    assert rel["right"] == [[1], [], [1]]  # 0.15 - 0 is inside the margin: 2 is not right of 0
    assert rel["left"] == [[], [0, 2], []]
    assert rel["behind"] == [[2], [2], []]
    assert rel["front"] == [[], [], [0, 1]]


def test_fixture_relationships_agree_with_coordinates():
    for rec in load_json(CLEVR_SCENES)["scenes"]:
        computed = clevr_relationships(
            clevr_relations([o["3d_coords"] for o in rec["objects"]], rec["directions"]), len(rec["objects"]))
        assert computed == rec["relationships"]


def test_readme_relations_key_and_computed_relations_are_accepted():
    rec = load_json(CLEVR_SCENES)["scenes"][0]
    a = SceneGraph.from_clevr(rec)
    rec2 = dict(rec)
    rec2["relations"] = rec2.pop("relationships")
    b = SceneGraph.from_clevr(rec2)
    rec3 = {k: v for k, v in rec.items() if k != "relationships"}
    c = SceneGraph.from_clevr(rec3)
    key = lambda g: sorted((r.subject, r.predicate, r.object) for r in g.relations)
    assert key(a) == key(b) == key(c)
    assert len(a.relations) > 0


def test_json_round_trip_keeps_distributions():
    sg = load_scenes(CLEVR_SCENES)["CLEVR_val_000001"]
    sg.objects[0].attributes["color"] = {"green": 0.7, "blue": 0.3}
    sg.objects[0].score = 0.9
    again = SceneGraph.from_json(sg.to_json())
    assert again.to_dict() == sg.to_dict()
    assert again.objects[0].value("color") == "green"
    assert not again.is_gold


def test_gqa_scene_graph():
    rec = load_json(FIXTURES / "gqa/val_sceneGraphs.json")["2354786"]
    sg = SceneGraph.from_gqa("2354786", rec)
    man = sg.object("1232")
    assert man.name == "man" and man.bbox == [120, 60, 80, 220]
    assert set(man.attributes["attribute"]) == {"standing", "young"}
    assert ("1232", "holding", "1233") in {(r.subject, r.predicate, r.object) for r in sg.relations}
    assert sg.info == {"location": "park", "weather": "sunny"}
    assert SceneGraph.from_dict(sg.to_dict()).to_dict() == sg.to_dict()


@pytest.mark.parametrize("mutate, field", [
    (lambda s: s["objects"][1].pop("color"), "objects[1].color"),
    (lambda s: s["objects"][0].update(color="pink"), "objects[0].color"),
    (lambda s: s["relationships"]["left"][2].append(7), "relationships.left[2]"),
    (lambda s: s.update(objects="none"), "objects"),
])
def test_malformed_clevr_scene_names_field(mutate, field):
    rec = json.loads(json.dumps(load_json(CLEVR_SCENES)["scenes"][0]))
    mutate(rec)
    with pytest.raises(DataError) as e:
        SceneGraph.from_clevr(rec, file="scenes.json")
    assert e.value.problem.field == field
    assert "scenes.json" in str(e.value) and "CLEVR_val_000000.png" in str(e.value)


def test_malformed_gqa_relation_target():
    rec = load_json(FIXTURES / "gqa/val_sceneGraphs.json")["2354786"]
    rec["objects"]["1234"]["relations"][0]["object"] = "999"
    with pytest.raises(DataError, match="unknown object '999'") as e:
        SceneGraph.from_gqa("2354786", rec, file="sg.json")
    assert e.value.problem.field == "objects.1234.relations[0].object"


def test_gqa_graph_with_only_some_predicates():
    """`predicates`: the other relations are left out but still checked."""
    rec = load_json(FIXTURES / "gqa/val_sceneGraphs.json")["2354786"]
    full = SceneGraph.from_gqa("2354786", rec)
    some = SceneGraph.from_gqa("2354786", rec, predicates={"holding"})
    assert some.relations == [r for r in full.relations if r.predicate == "holding"] != []
    assert len(full.relations) > len(some.relations)
    assert some.objects == full.objects
    rec["objects"]["1234"]["relations"][0]["object"] = "999"
    with pytest.raises(DataError, match="unknown object '999'"):
        SceneGraph.from_gqa("2354786", rec, predicates=set())


def test_scene_graph_json_errors(tmp_path):
    p = tmp_path / "s.json"
    p.write_text('{"image_id": "a", "width": 10, "height": 10, "objects": [{"id": 1, "bbox": [0, 0, 1, 1]}]}')
    with pytest.raises(DataError) as e:
        SceneGraph.load(p)
    assert e.value.problem.field == "objects[0].name" and str(p) in str(e.value)
    p.write_text('{"image_id": ')
    with pytest.raises(DataError, match="malformed JSON"):
        SceneGraph.load(p)


@pytest.mark.parametrize("mutate, field", [
    (lambda o: o.pop("w"), "objects.1234.w"),
    (lambda o: o.update(x=True), "objects.1234.x"),
    (lambda o: o.update(name=3), "objects.1234.name"),
    (lambda o: o.update(attributes="red"), "objects.1234.attributes"),
])
def test_malformed_gqa_object_names_field(mutate, field):
    rec = load_json(FIXTURES / "gqa/val_sceneGraphs.json")["2354786"]
    mutate(rec["objects"]["1234"])
    with pytest.raises(DataError) as e:
        SceneGraph.from_gqa("2354786", rec, file="sg.json")
    assert e.value.problem.field == field and "sg.json" in str(e.value)
