"""`stream_list` (a window over the file decoded with the json module) against ijson,
with windows small enough that values are cut at every position."""
import json
import random

import ijson
import pytest

from vqa.datasets import jsonstream
from vqa.datasets.jsonstream import stream_list
from vqa.errors import DataError


def _ijson_items(path, key):
    with open(path, "rb") as f:
        return list(ijson.items(f, f"{key}.item", use_float=True))


def _random_value(rng, depth=0):
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.randint(-10**6, 10**6)
    if kind == 1:
        return rng.choice([1.5, -0.25, 1e-3, 12345.678])
    if kind == 2:
        return rng.choice(["", "a b", 'quo"te', "back\\slash", "é ü ∑", "{[,:]}", "line\nbreak"])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind in (4, 5):
        return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randrange(4))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
@pytest.mark.parametrize("seed", range(4))
def test_items_equal_ijson_for_any_window(tmp_path, monkeypatch, chunk, seed):
    rng = random.Random(seed)
    monkeypatch.setattr(jsonstream._WindowReader, "CHUNK", chunk)
    records = [{"question": f"q{i}", "n": rng.randint(0, 10**9), "x": _random_value(rng)} for i in range(25)]
    doc = {"info": {"version": "1.0", "deep": [_random_value(rng) for _ in range(3)]}, "questions": records,
           "after": [1, 2, 3]}
    path = tmp_path / "q.json"
    indent = rng.choice([None, 1, 2])
    path.write_text(json.dumps(doc, indent=indent, ensure_ascii=bool(seed % 2)), encoding="utf-8")
    assert list(stream_list(path, "questions")) == _ijson_items(path, "questions") == records
    assert list(stream_list(path, "after")) == [1, 2, 3]
    with pytest.raises(DataError, match="expected a list"):
        list(stream_list(path, "info"))


@pytest.mark.parametrize("text, message", [
    ("", "empty file|malformed JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"info": {}}', "missing top-level 'questions'"),
    ('{"questions": {"a": 1}}', "expected a list"),
    ('{"questions": [{"a": 1}, {"a": 2}', "malformed JSON"),
    ('{"questions": [{"a": 1} {"a": 2}]}', "malformed JSON"),
    ('{"questions": [{"a": 1}, {"a": tru}]}', "malformed JSON"),
    ('{"questions": []}', "missing|empty|expected"),
])
def test_bad_files_are_explained(tmp_path, monkeypatch, text, message):
    monkeypatch.setattr(jsonstream._WindowReader, "CHUNK", 5)
    path = tmp_path / "q.json"
    path.write_text(text, encoding="utf-8")
    if text == '{"questions": []}':
        # an empty list is valid: no items, no error
        assert list(stream_list(path, "questions")) == []
        return
    with pytest.raises(DataError, match=message) as err:
        list(stream_list(path, "questions"))
    assert str(path) in str(err.value)


def test_items_before_a_malformed_record_are_yielded(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream._WindowReader, "CHUNK", 8)
    path = tmp_path / "q.json"
    path.write_text('{"questions": [{"a": 1}, {"a": 2}, {"a": }]}', encoding="utf-8")
    got = []
    with pytest.raises(DataError, match=r"malformed JSON: .* at character 41"):
        for item in stream_list(path, "questions"):
            got.append(item)
    assert got == [{"a": 1}, {"a": 2}]


def test_byte_order_mark_and_non_utf8(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"questions": [{"a": "\u00e9"}]}).encode())
    assert list(stream_list(path, "questions")) == [{"a": "\u00e9"}]
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"questions": [{"a": "\xe9"}]}')
    with pytest.raises(DataError, match="UTF-8"):
        list(stream_list(bad, "questions"))
