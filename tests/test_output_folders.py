"""Output paths in a missing folder (issue 25): the folder is created, never "no such file"."""
import argparse
import json

from vqa.cli import build_parser, main
from conftest import FIXTURES

Q = FIXTURES / "clevr/questions/CLEVR_val_questions.json"
S = FIXTURES / "clevr/scenes/CLEVR_val_scenes.json"


def _parsers(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from _parsers(sub, path + (name,))


def test_every_marked_output_is_an_argument_of_its_command():
    marked = 0
    for path, p in _parsers(build_parser()):
        names = p.get_default("output_paths") or ()
        dests = {a.dest for a in p._actions}
        for n in names:
            assert n in dests, f"vqa {' '.join(path)}: output {n!r} is not an argument"
            marked += 1
    assert marked >= 15


def test_evaluate_and_report_write_into_missing_folders(tmp_path, capsys):
    preds = tmp_path / "gold" / "deeper" / "preds.jsonl"
    out = tmp_path / "reports" / "r.json"
    assert main(["evaluate", "--dataset", "clevr", "--questions", str(Q), "--scenes", str(S),
                 "--reasoner", "reference", "--predictions", str(preds), "--out", str(out)]) == 0
    assert preds.is_file() and out.is_file()
    report = tmp_path / "again" / "report.json"
    assert main(["report", "--predictions", str(preds), "--out", str(report)]) == 0
    assert json.loads(report.read_text())["total"] == json.loads(out.read_text())["total"]


def test_answer_explain_into_a_missing_folder(tmp_path, capsys):
    why = tmp_path / "pictures" / "why.png"
    assert main(["answer", "--scene", str(S), "--question", "How many things are there?",
                 "--explain", str(why)]) == 0
    assert why.is_file()


def test_an_output_folder_that_cannot_be_made_is_one_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["evaluate", "--dataset", "clevr", "--questions", str(Q), "--scenes", str(S),
                 "--reasoner", "reference", "--predictions", str(blocker / "p.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "--predictions" in err and "cannot create the folder" in err and "Traceback" not in err
