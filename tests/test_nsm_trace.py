"""The NSM's trace laid out on the program (issue 25): one entry per program step, each
naming the machine step that carried it out or whose state it reads."""
import random

import pytest

from vqa.executor import execute
from vqa.program import Program
from vqa.reason.nsm import NSMAnswer, NSMReasoner, machine_step_spans, program_trace
from vqa.reason.nsm_data import macro_steps
from vqa.reason.random_programs import random_program, random_scene
from vqa.scene import SceneGraph


def test_spans_have_the_structure_of_the_training_macro_steps():
    """Differential: `machine_step_spans` (structure only) against `macro_steps` (which runs
    the program, what training used): same number of machine steps, same ops, and each
    span's last program step holds the macro step's target set."""
    rng = random.Random(5)
    checked = 0
    for _ in range(300):
        scene = random_scene(rng)
        prog = random_program(rng, scene, p_broken=0.0)
        macros = macro_steps(prog, scene)
        if macros is None:
            continue
        spans = machine_step_spans(prog)
        assert [op for op, _ in spans] == [m.op for m in macros], prog.to_expr()
        result = execute(prog, scene)
        index = {o: k for k, o in enumerate(scene.ids)}
        for (_, idx), m in zip(spans, macros):
            v = result.trace[idx[-1]].value
            assert sorted(index[o] for o in ((v,) if isinstance(v, str) else v)) == m.target
        covered = sorted(i for _, idx in spans for i in idx)
        assert len(covered) == len(set(covered))  # a program step is in one machine step at most
        checked += 1
    assert checked > 100


def _fake_answer(n_steps: int, ids: list[str]) -> NSMAnswer:
    sets = [{o: float((k + j) % 2) for j, o in enumerate(ids)} for k in range(n_steps)]
    dists = [{o: v / max(1e-9, sum(s.values())) for o, v in s.items()} for s in sets]
    ops = ["shift"] * 3 + ["skip"] * (n_steps - 3)
    return NSMAnswer("yes", 0.9, dists, ops, sets, {o: 1.0 for o in ids})


def test_program_trace_has_one_entry_per_program_step():
    prog = Program.parse("greater_than(count(filter_shape[cube](filter_color[red](scene))), "
                         "count(relate[left](unique(filter_shape[sphere](scene)))))")
    ans = _fake_answer(8, ["0", "1", "2"])
    trace = program_trace(prog, ans)
    assert [t.index for t in trace] == list(range(len(prog.steps)))
    assert [t.token for t in trace] == [s.token for s in prog.steps]
    by = {t.index: t for t in trace}
    # scene(0), filter_color(1), filter_shape(2): machine step 0 carries the chain
    assert by[0].machine_step is None and by[0].attention == {"0": 1.0, "1": 1.0, "2": 1.0}
    assert by[1].carried and by[1].machine_step == 0 and by[1].together == (1, 2)
    assert by[2].attention == ans.step_sets[0]
    assert not by[3].carried and by[3].machine_step == 0  # count reads the first branch
    # scene(4), filter_shape[sphere](5), unique(6): machine step 1; relate(7): machine step 2
    assert by[5].machine_step == 1 and by[6].machine_step == 1 and by[7].machine_step == 2
    assert not by[8].carried and by[8].machine_step == 2  # the second count reads the relate
    last = trace[-1]
    assert last.value == "yes" and last.machine_step == 7 and last.machine_op == "skip"
    assert last.to_dict()["nsm_step"] == 7


def test_a_program_longer_than_the_machine_gives_no_program_trace():
    prog = Program.parse("count(" + "relate[left](unique(" * 8 + "filter_color[red](scene)" + "))" * 8 + ")")
    assert len(machine_step_spans(prog)) == 9
    assert program_trace(prog, _fake_answer(8, ["0", "1"])) is None


def test_shipped_nsm_trace_follows_the_program_on_a_gold_scene():
    """The shipped model on gold scenes: each filter chain's machine step holds the
    executor's objects (membership > 0.5), step by step."""
    reasoner = NSMReasoner.from_checkpoint()
    rng = random.Random(11)
    agree = total = 0
    for _ in range(12):
        scene = random_scene(rng, (4, 8))
        o = scene.objects[0]
        text = f"How many {o.value('size')} {o.value('shape')}s are left of the {o.value('color')} {o.value('shape')}?"
        prog = Program.parse(f"count(filter_shape[{o.value('shape')}](filter_size[{o.value('size')}](relate[left]("
                             f"unique(filter_shape[{o.value('shape')}](filter_color[{o.value('color')}](scene)))))))")
        result = execute(prog, scene)
        if not result.ok:
            continue
        trace = program_trace(prog, reasoner.answer(scene, text))
        assert len(trace) == len(prog.steps)
        for t in trace:
            if t.carried and t.index == t.together[-1]:
                v = result.trace[t.index].value
                want = {v} if isinstance(v, str) else set(v)
                got = {k for k, p in t.attention.items() if p > 0.5}
                agree += got == want
                total += 1
    assert total >= 20 and agree / total >= 0.8, (agree, total)


def test_pipeline_nsm_trace_and_explanation_show_every_program_step(tmp_path):
    from vqa.explain import explain_image
    from vqa.pipeline import Pipeline

    scene = random_scene(random.Random(3), (5, 5))
    pipe = Pipeline.from_pretrained(reasoner="nsm")
    r = pipe.answer(scene, "What color is the large cube left of the small sphere?")
    assert [t.token for t in r.trace] == [s.token for s in r.program.steps]
    assert r.to_dict()["trace"][-1]["value"] == r.answer
    one = explain_image(None, r, columns=1)
    # one panel per program step (9 here), stacked in one column
    panel = explain_image(None, Pipeline.from_pretrained(reasoner="nsm").answer(scene, "How many cubes are there?"),
                          columns=1)
    assert len(r.program.steps) == 9
    assert one.height > 2.5 * panel.height
