"""NSM warm start on questions with new words (--extend-vocab), e.g. official-template ones."""
import json

import torch

from vqa.reason.nsm_train import load_checkpoint


def test_init_with_extended_vocabulary_keeps_old_rows(tmp_path):
    from vqa.cli import main
    from vqa.datasets.synth.generate import generate_dataset

    from test_clevr_templates import write_templates

    own, off = tmp_path / "own", tmp_path / "off"
    generate_dataset(own, num_scenes=8, questions_per_scene=4, seed=1, split="train", images=False)
    generate_dataset(off, num_scenes=8, questions_per_scene=4, seed=2, split="train", images=False,
                     templates=write_templates(tmp_path / "t"))
    first = tmp_path / "first.pt"
    assert main(["train", "nsm", "--data", str(own), "--val-split", "", "--epochs", "1", "--dim", "16",
                 "--batch-size", "16", "--out", str(first)]) == 0
    old_words = load_checkpoint(first)[1].words
    words = {w for q in json.loads((off / "questions/CLEVR_train_questions.json").read_text())["questions"]
             for w in q["question"].lower().replace("?", " ").replace(";", " ").split()}
    assert words - set(old_words)  # the template questions bring words the first run never saw
    second = tmp_path / "second.pt"
    assert main(["train", "nsm", "--data", str(off), "--val-split", "", "--epochs", "1", "--dim", "16",
                 "--batch-size", "16", "--lr", "0", "--init", str(first), "--extend-vocab",
                 "--out", str(second)]) == 0
    model1, vocab1, _ = load_checkpoint(first)
    model2, vocab2, _ = load_checkpoint(second)
    assert vocab2.words[:len(vocab1.words)] == vocab1.words and len(vocab2.words) > len(vocab1.words)
    # lr 0: the old rows are the first run's weights
    assert torch.equal(model2.embed.weight[:len(vocab1.words)], model1.embed.weight)
