"""Replicated official-layout GQA files for the scale bench (`vqa bench gqa-eval`)."""
import json
from pathlib import Path

from vqa.cli import main
from vqa.eval.gqa import evaluate_gqa
from vqa.eval.gqa_scale import replicate

FIX = Path(__file__).parent / "fixtures" / "gqa"


def test_replicate_sizes_ids_and_links(tmp_path):
    q, s = replicate(FIX / "val_balanced_questions.json", FIX / "val_sceneGraphs.json", tmp_path,
                     questions=25, images=10)
    data, graphs = json.loads(q.read_text()), json.loads(s.read_text())
    assert len(data) == 25 and len(graphs) == 10
    assert {r["imageId"] for r in data.values()} == set(graphs)
    assert all(e in data and data[e]["imageId"] == r["imageId"] for r in data.values() for e in r["entailed"])
    assert any(r["entailed"] for r in data.values())
    report = evaluate_gqa(q, s, all_questions=True, reasoner="reference")
    assert report["answered"] == 25 and report["images"] == 10


def test_bench_command_prints_a_row_per_size_and_reasoner(tmp_path, capsys):
    assert main(["bench", "gqa-eval", "--questions", str(FIX / "families_questions.json"), "--scenes",
                 str(FIX / "families_sceneGraphs.json"), "--sizes", "30/10,60/20", "--reasoners", "reference",
                 "--work", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [(r["questions"], r["images"]) for r in rows] == [(30, 10), (60, 20)]
    # progress: a line per step (replicate, then one evaluate per size and reasoner)
    assert "vqa bench gqa-eval: [1/4] 30/10: replicating the files" in captured.err
    assert "vqa bench gqa-eval: [4/4] 60_20: vqa evaluate --reasoner reference" in captured.err
    assert all(r["peak_rss_mib"] > 10 and r["seconds"] > 0 for r in rows)
    # one process here: its own RSS sampled, CPU seconds from the kernel, no worker figures
    assert all(r["main_rss_mib"] > 0 and r["cpu_seconds"] > 0 and r["processes"] == 1 and r["worker_rss_mib"] is None
               for r in rows)
    assert all((tmp_path / f"{q}_{i}" / "predictions_reference_w1.json").is_file() for q, i in ((30, 10), (60, 20)))
