"""`vqa evaluate` and vqa.eval.clevr on the CLEVR fixture (and the GQA branch of the CLI)."""
import json
from collections import Counter

import pytest

from vqa.cli import main
from vqa.errors import VQAError
from vqa.eval.clevr import evaluate_clevr, final_function, format_report
from vqa import Program
from conftest import FIXTURES, dump_json, load_json


@pytest.fixture
def clevr_files(clevr_root):
    q = clevr_root / "questions/CLEVR_val_questions.json"
    s = clevr_root / "scenes/CLEVR_val_scenes.json"
    data = load_json(q)
    data["questions"][0]["template_filename"] = "zero_hop.json"
    data["questions"][1]["template_filename"] = "zero_hop.json"
    data["questions"][2]["template_filename"] = "one_hop.json"
    dump_json(data, q)
    return q, s, data["questions"]


@pytest.mark.parametrize("reasoner", ["asp", "reference"])
def test_report_and_predictions(clevr_files, tmp_path, reasoner):
    q, s, records = clevr_files
    report = evaluate_clevr(q, s, reasoner=reasoner, out=tmp_path / "r.json", predictions=tmp_path / "p.jsonl")
    n = len(records)
    assert report["total"] == n and report["correct"] == n and report["accuracy"] == 1.0
    from vqa.datasets.clevr_templates import family_file

    # without template_filename, the released global family index names the official file
    groups = Counter(r.get("template_filename", family_file(r.get("question_family_index", -1)) or "unknown.json")
                     .rsplit(".", 1)[0] for r in records)
    assert {k: v["total"] for k, v in report["by_template"].items()} == groups and groups["one_hop"] >= 1
    assert sum(c["total"] for c in report["by_function"].values()) == n
    assert json.loads((tmp_path / "r.json").read_text())["correct"] == n
    preds = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()][1:]
    assert [p["prediction"] for p in preds] == [r["answer"] for r in records]
    assert (tmp_path / "r.md").read_text().startswith("# CLEVR evaluation") and (tmp_path / "r.png").exists()
    assert "accuracy 100.00%" in format_report(report)


def test_wrong_gold_answers_lower_the_accuracy(clevr_files):
    q, s, records = clevr_files
    data = load_json(q)
    data["questions"][0]["answer"] = "7"
    data["questions"][1]["program"][1]["value_inputs"] = ["cube"]  # now a different question
    dump_json(data, q)
    report = evaluate_clevr(q, s, limit=5)
    assert report["total"] == 5 and report["correct"] <= 3 and report["accuracy"] == report["correct"] / 5


def test_failed_questions_count_as_no_answer(clevr_files):
    q, s, _ = clevr_files
    data = load_json(q)
    # "What color is the red thing?" on a scene with two red things: unique fails
    data["questions"][1]["program"][1] = {"function": "filter_color", "inputs": [0], "value_inputs": ["red"]}
    dump_json(data, q)
    report = evaluate_clevr(q, s)
    assert report["failed"] >= 1 and report["correct"] == report["total"] - 1


def test_final_function_groups():
    assert final_function(Program.parse("count(scene)")) == "count"
    assert final_function(Program.parse("less_than(count(scene), count(scene))")) == "compare_integer"
    assert final_function(Program.parse("query_color(unique(scene))")) == "query_attribute"
    assert final_function(Program.parse("equal_shape(query_shape(unique(scene)), query_shape(unique(scene)))")) \
        == "compare_attribute"


def test_unavailable_scene_source_and_reasoner(clevr_files):
    q, s, _ = clevr_files
    with pytest.raises(VQAError, match="needs --images"):
        evaluate_clevr(q, s, scene_source="predicted")
    with pytest.raises(VQAError):
        evaluate_clevr(q, s, reasoner="nsm-not-here")


def test_cli_clevr(clevr_files, tmp_path, capsys):
    q, s, records = clevr_files
    out = tmp_path / "report.json"
    assert main(["evaluate", "--dataset", "clevr", "--questions", str(q), "--scenes", str(s), "--reasoner", "asp",
                 "--scene-source", "gold", "--limit", "4", "--out", str(out), "--predictions",
                 str(tmp_path / "pred.jsonl"), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "by final function" in text and "by template" in text
    assert json.loads(out.read_text())["total"] == 4
    assert len((tmp_path / "pred.jsonl").read_text().splitlines()) == 5  # settings + 4 questions


def test_cli_gqa_branch(gqa_dir, capsys):
    assert main(["evaluate", "--dataset", "gqa", "--questions", str(gqa_dir / "val_balanced_questions.json"),
                 "--scenes", str(gqa_dir / "val_sceneGraphs.json"), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip()


def test_cli_rejects_gqa_flags_for_clevr(clevr_files, capsys):
    q, s, _ = clevr_files
    assert main(["evaluate", "--dataset", "clevr", "--questions", str(q), "--scenes", str(s), "--all"]) == 2
    assert "gqa only" in capsys.readouterr().err


def test_cli_bench_asp_small(capsys):
    assert main(["bench", "asp", "--scenes", "3", "--questions-per-scene", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["methods"]) == {"batched", "batched_many", "per_question", "reference"}
    assert all(m["mismatches"] == 0 for m in report["methods"].values())
    t = report["targets"]  # (a) is the batched solving of vqa evaluate: 32 scenes per call
    assert report["scenes_per_call"] == 32 and t["a_over_b"] == report["batched_many_over_per_question"]
    assert t["a_meets_5000"] == (report["methods"]["batched_many"]["questions_per_cpu_second"] >= 5000)


def _generated(tmp_path, scenes=12, per_scene=5):
    from vqa.datasets.synth.generate import generate_dataset

    root = tmp_path / "gen"
    generate_dataset(root, num_scenes=scenes, questions_per_scene=per_scene, seed=5, split="val", images=False)
    return root / "questions/CLEVR_val_questions.json", root / "scenes/CLEVR_val_scenes.json"


def test_workers_shards_and_merge_agree(tmp_path, capsys):
    q, s = _generated(tmp_path)
    one = evaluate_clevr(q, s, predictions=tmp_path / "one.jsonl")
    two = evaluate_clevr(q, s, workers=2, predictions=tmp_path / "two.jsonl")
    assert one["accuracy"] == 1.0 and one["total"] == 60
    assert {k: two[k] for k in ("total", "correct", "by_template", "by_function")} == \
        {k: one[k] for k in ("total", "correct", "by_template", "by_function")}
    shards = [tmp_path / f"s{i}.jsonl" for i in range(3)]
    totals = [evaluate_clevr(q, s, shard=(i, 3), predictions=shards[i])["total"] for i in range(3)]
    assert sum(totals) == 60 and all(t > 0 for t in totals)
    assert main(["report", "--predictions", *map(str, shards), "--out", str(tmp_path / "merged.json"), "--json"]) == 0
    captured = capsys.readouterr()
    merged = json.loads(captured.out)
    assert merged["total"] == 60 and merged["by_function"] == one["by_function"]
    # progress: one line per step on stderr, numbered, the last one writing the report
    steps = [x for x in captured.err.splitlines() if x.startswith("vqa report: [")]
    assert [x.split("]")[0] for x in steps] == ["vqa report: [1/2", "vqa report: [2/2"] and "merged.json" in steps[-1]
    assert main(["report", "--predictions", str(shards[0]), "--out", str(tmp_path / "m2.json"), "--no-progress"]) == 0
    assert "vqa report: [" not in capsys.readouterr().err
    assert (tmp_path / "merged.png").exists()


def test_resume_skips_answered_questions(tmp_path):
    q, s = _generated(tmp_path, scenes=6)
    pred = tmp_path / "p.jsonl"
    first = evaluate_clevr(q, s, limit=10, predictions=pred)
    assert first["answered_now"] == 10
    with open(pred, "a") as f:
        f.write('{"qid": "cut sho')  # a kill in the middle of a line
    again = evaluate_clevr(q, s, predictions=pred)
    assert again["resumed"] == 10 and again["answered_now"] == again["total"] - 10 and again["accuracy"] == 1.0
    with pytest.raises(VQAError, match="other settings"):
        evaluate_clevr(q, s, reasoner="reference", predictions=pred)


def test_predicted_scenes_and_parsed_programs_with_forked_workers(tmp_path):
    """The numpy runtime lets the scene and question parsers run in forked workers; the
    predictions must not depend on the number of workers."""
    from vqa.datasets.synth.generate import generate_dataset

    root = tmp_path / "img"
    generate_dataset(root, num_scenes=4, questions_per_scene=3, seed=7, split="val", image_size=(192, 128))
    q, s = root / "questions/CLEVR_val_questions.json", root / "scenes/CLEVR_val_scenes.json"
    kw = dict(scene_source="predicted", program_source="parsed", images=root / "images/val")
    one = evaluate_clevr(q, s, predictions=tmp_path / "one.jsonl", **kw)
    two = evaluate_clevr(q, s, workers=2, predictions=tmp_path / "two.jsonl", **kw)
    assert one["total"] == two["total"] == 12

    def preds(p):
        return sorted((r["qid"], r["prediction"], r.get("program_match")) for r in map(json.loads, p.read_text().splitlines()[1:]))

    assert preds(tmp_path / "one.jsonl") == preds(tmp_path / "two.jsonl")
    assert one["correct"] >= 6  # the shipped models on easy generated scenes


def test_program_match_ignores_the_order_of_independent_steps(tmp_path):
    """Released programs order the steps of two branches in other ways (CLEVR's comparison
    templates put both `query_*` steps after both objects); the parsed program matches when
    it is the same tree."""
    q, s = _generated(tmp_path, scenes=3, per_scene=5)
    data = load_json(q)

    def branches_reversed(steps):  # another valid order: each node's later inputs emitted first
        out, new_index = [], {}

        def emit(i):
            if i in new_index:
                return new_index[i]
            ins = {k: emit(k) for k in reversed(steps[i]["inputs"])}
            out.append({**steps[i], "inputs": [ins[k] for k in steps[i]["inputs"]]})
            new_index[i] = len(out) - 1
            return new_index[i]

        emit(len(steps) - 1)
        return out

    changed = 0
    for rec in data["questions"]:
        new = branches_reversed(rec["program"])
        changed += new != rec["program"]
        rec["program"] = new
    assert changed >= 1
    dump_json(data, tmp_path / "reordered.json")
    a = evaluate_clevr(q, s, program_source="parsed", predictions=tmp_path / "a.jsonl")
    b = evaluate_clevr(tmp_path / "reordered.json", s, program_source="parsed", predictions=tmp_path / "b.jsonl")

    def matches(p):
        return [r["program_match"] for r in map(json.loads, p.read_text().splitlines()[1:])]

    assert matches(tmp_path / "a.jsonl") == matches(tmp_path / "b.jsonl")
    assert a["program_exact_match"] == b["program_exact_match"] >= 0.9


@pytest.mark.parametrize("workers", [1, 2])
def test_missing_scene_is_named_and_earlier_predictions_are_kept(tmp_path, workers):
    from vqa.errors import DataError

    q, s = _generated(tmp_path, scenes=20)
    data = load_json(q)
    data["questions"][-1]["image_filename"] = "CLEVR_val_999999.png"
    data["questions"][-1]["image_index"] = 999999
    dump_json(data, q)
    pred = tmp_path / "p.jsonl"
    with pytest.raises(DataError, match="CLEVR_val_999999"):
        evaluate_clevr(q, s, workers=workers, predictions=pred, scenes_per_call=2)
    kept = pred.read_text().splitlines()[1:]
    assert len(kept) == len(data["questions"]) - 1  # every question before the bad record was answered


def test_questions_in_any_order(tmp_path):
    """Questions about one image need not be consecutive: same scores, shards still partition."""
    import random

    q, s = _generated(tmp_path, scenes=8)
    ref = evaluate_clevr(q, s)
    data = load_json(q)
    random.Random(0).shuffle(data["questions"])
    dump_json(data, q)
    from tqdm import tqdm

    got = evaluate_clevr(q, s, workers=2, progress=tqdm)  # a real progress bar (its total counted first)
    assert {k: got[k] for k in ("total", "correct", "by_function")} == {k: ref[k] for k in ("total", "correct", "by_function")}
    totals = [evaluate_clevr(q, s, shard=(i, 3))["total"] for i in range(3)]
    assert sum(totals) == ref["total"]


@pytest.mark.parametrize("workers", [1, 2])
def test_malformed_program_is_reported_from_any_worker(tmp_path, workers):
    from vqa.errors import DataError

    q, s = _generated(tmp_path, scenes=6)
    data = load_json(q)
    data["questions"][7]["program"][0] = {"inputs": []}  # neither 'function' nor 'type'
    dump_json(data, q)
    with pytest.raises(DataError, match="neither 'function'"):
        evaluate_clevr(q, s, workers=workers)


class _Bar:
    """A progress factory that records the total it was given and the updates."""

    def __init__(self):
        self.totals, self.counted = [], 0

    def __call__(self, iterable=None, desc="", total=None, **kw):
        self.totals.append(total)
        return self

    def update(self, n):
        self.counted += n

    def close(self):
        pass


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_bar_total_is_what_will_be_answered(tmp_path, workers):
    q, s = _generated(tmp_path, scenes=9)
    pred = tmp_path / "p.jsonl"
    bar = _Bar()
    first = evaluate_clevr(q, s, limit=17, predictions=pred, progress=bar, workers=workers)
    assert bar.totals == [17] and bar.counted == first["answered_now"] == 17
    bar = _Bar()
    rest = evaluate_clevr(q, s, predictions=pred, progress=bar, workers=workers)  # resumed: the 17 are skipped
    assert bar.totals == [45 - 17] and bar.counted == rest["answered_now"] == 28
    bar = _Bar()
    one_shard = evaluate_clevr(q, s, shard=(1, 3), progress=bar, workers=workers)
    assert bar.totals == [one_shard["answered_now"]] == [15]
