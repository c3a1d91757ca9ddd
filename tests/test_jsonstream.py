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


@pytest.mark.parametrize("chunk", [1, 3, 64, 1 << 20])
def test_stream_dict_equals_ijson(tmp_path, monkeypatch, chunk):
    from vqa.datasets.jsonstream import stream_dict

    rng = random.Random(chunk)
    monkeypatch.setattr(jsonstream._WindowReader, "CHUNK", chunk)
    doc = {f"q{i}": {"question": f"what {i}?", "x": _random_value(rng)} for i in range(30)}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc, indent=rng.choice([None, 2])), encoding="utf-8")
    with open(path, "rb") as f:
        expected = list(ijson.kvitems(f, "", use_float=True))
    assert list(stream_dict(path)) == expected == list(doc.items())
    for text, message in (("[1]", "expected a JSON object"), ("{}", "expected a JSON object|empty"),
                          ('{"a": {"b": 1}, "c": {', "malformed JSON")):
        path.write_text(text, encoding="utf-8")
        if text == "{}":
            assert list(stream_dict(path)) == []
            continue
        with pytest.raises(DataError, match=message):
            list(stream_dict(path))


def test_a_large_value_is_read_in_growing_pieces(tmp_path, monkeypatch):
    """Decoding restarts from the value's start after each read: the pieces double, so a value
    of n characters takes about log2(n) reads, not n / CHUNK."""
    monkeypatch.setattr(jsonstream._WindowReader, "CHUNK", 16)
    reads = []
    more = jsonstream._WindowReader._more

    def counting(self, size=None):
        reads.append(size)
        return more(self, size)

    monkeypatch.setattr(jsonstream._WindowReader, "_more", counting)
    path = tmp_path / "big.json"
    record = {"question": "x" * 200_000, "nested": [[i, {"k": "v" * 50}] for i in range(2000)]}
    path.write_text(json.dumps({"questions": [record, {"a": 1}]}), encoding="utf-8")
    assert list(stream_list(path, "questions")) == [record, {"a": 1}]
    assert len(reads) < 40
