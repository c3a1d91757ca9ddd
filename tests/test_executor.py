from vqa import Program
from vqa.datasets.clevr import load_scenes
from vqa.executor import execute
from conftest import FIXTURES

SCENE = load_scenes(FIXTURES / "clevr/scenes/CLEVR_val_scenes.json")["CLEVR_val_000000"]


def run(expr):
    return execute(Program.parse(expr), SCENE)


def test_each_function_on_the_fixture_scene():
    # objects: 0 large red rubber cube, 1 small blue metal sphere, 2 large red metal cylinder
    assert run("count(scene)").answer == "3"
    assert run("exist(filter_color[green](scene))").answer == "no"
    assert run("query_shape(unique(filter_size[small](scene)))").answer == "sphere"
    assert run("count(intersect(filter_color[red](scene), filter_material[metal](scene)))").answer == "1"
    assert run("count(union(filter_shape[cube](scene), filter_shape[sphere](scene)))").answer == "2"
    assert run("count(relate[right](unique(filter_shape[cube](scene))))").answer == "2"
    assert run("count(same_color(unique(filter_shape[cube](scene))))").answer == "1"
    assert run("equal_size(query_size(unique(filter_shape[cube](scene))), query_size(unique(filter_shape[cylinder](scene))))").answer == "yes"
    assert run("less_than(count(filter_color[red](scene)), count(filter_color[blue](scene)))").answer == "no"
    assert run("equal_integer(count(filter_material[metal](scene)), count(filter_color[red](scene)))").answer == "yes"


def test_errors_are_values_with_a_trace():
    r = run("query_color(unique(filter_color[red](scene)))")
    assert r.answer is None and r.error_step == 2 and "got 2" in r.error
    assert r.trace[1].value == ("0", "2") and r.trace[2].error
    r = run("query_color(unique(filter_color[green](scene)))")
    assert r.error_step == 2 and "got 0" in r.error
    assert run("count(unique(scene))").error_step == 1  # also: unique over 3
    assert "expects objects" in run("count(query_color(unique(filter_shape[cube](scene))))").error
    assert "not an answer" in run("filter_color[red](scene)").error
    assert "unknown function" in run("count(filter_colour[red](scene))").error
