from pathlib import Path

import pytest

from vqa.distill.clevr_checker import CLEVRChecker, example_from_question
from vqa.distill.loop import accuracy
from vqa.distill.theory import STARTING_THEORIES, starting_theory_text
from vqa.datasets.clevr import CLEVRDataset
from vqa.reason.solver import load_theory
from conftest import FIXTURES

RULES = Path(__file__).parents[1] / "rules" / "clevr"


@pytest.mark.parametrize("dataset, name", [(d, n) for d in STARTING_THEORIES for n in STARTING_THEORIES[d]])
def test_shipped_starting_theories_are_current(dataset, name):
    """Regenerate with vqa.distill.theory.starting_theory_text when the complete theory changes."""
    rules = RULES.parent / dataset
    complete = load_theory(rules, exclude=[p.name for p in rules.glob("example*.lp")])
    assert (rules / "incomplete" / f"{name}.lp").read_text() == starting_theory_text(name, complete, dataset)


def test_light_theory_loses_exactly_the_comparisons():
    ds = CLEVRDataset(FIXTURES / "clevr", "val")
    examples = [example_from_question(q, sg) for q, sg in ds.iter_with_scenes()]
    checker = CLEVRChecker()
    full = accuracy(checker.run(load_theory(RULES), [], examples), examples)
    light = accuracy(checker.run((RULES / "incomplete/light.lp").read_text(), [], examples), examples)
    assert full["accuracy"] == 1.0
    by_op = light["by_operation"]
    assert by_op["count"]["accuracy"] == 1.0 and by_op["query"]["accuracy"] == 1.0
    assert by_op["greater_than"]["accuracy"] == 0.0 and by_op["equal"]["accuracy"] == 0.0
