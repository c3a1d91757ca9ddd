"""Byte spans of a JSON object's values (per-record reading by seeking), and the scene-graph
index built on them, agree with reading the file whole."""
import json
import random
from pathlib import Path

import pytest

from vqa.datasets import jsonstream
from vqa.datasets.gqa import SceneGraphIndex, SceneGraphs
from vqa.datasets.jsonstream import read_span, stream_spans

FIX = Path(__file__).parent / "fixtures" / "gqa"


@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("indent", [None, 1])
def test_spans_read_back_every_value(tmp_path, monkeypatch, bom, indent):
    monkeypatch.setattr(jsonstream._WindowReader, "CHUNK", 1000)  # values cut by the window many times
    rng = random.Random(1)
    d = {f"k{i}": {"name": rng.choice(["é", "猫", "a", "\U0001F600x", '"\\']) * rng.randint(1, 3000), "n": i}
         for i in range(300)}
    p = tmp_path / "d.json"
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + json.dumps(d, ensure_ascii=False, indent=indent).encode())
    spans = list(stream_spans(p))
    assert [k for k, _, _ in spans] == list(d)
    with open(p, "rb") as f:
        assert {k: read_span(f, a, b) for k, a, b in spans} == d


def test_scene_graph_index_equals_the_loaded_graphs():
    whole, index = SceneGraphs(FIX / "val_sceneGraphs.json"), SceneGraphIndex(FIX / "val_sceneGraphs.json")
    assert list(index) == list(whole) and len(index) == len(whole)
    for image_id in whole:
        assert index.record(image_id) == whole.record(image_id)
        assert index[image_id] == whole[image_id]
    kept = SceneGraphIndex(FIX / "val_sceneGraphs.json", keep=[next(iter(whole))])
    assert len(kept) == 1
