"""Fine-tuning the scene parser on mixed folders (issue 19) and the box-centre metric."""
from __future__ import annotations

import pytest
import torch

from vqa.ontology import CLEVR_ATTRIBUTES


def test_centre_errors_are_measured_in_gold_pixels():
    from vqa.scene import SceneGraph, SceneObject
    from vqa.vision.metrics import SceneMetrics

    def graph(points):
        objs = [SceneObject(str(i), "cube", [x - 5, y - 5, 10, 10],
                            attributes={"color": {"red": 1.0}, "shape": {"cube": 1.0}, "size": {"small": 1.0},
                                        "material": {"rubber": 1.0}}) for i, (x, y) in enumerate(points)]
        return SceneGraph("s", 480, 320, objs)

    m = SceneMetrics()
    m.add(graph([(103, 104), (200, 200), (300, 300.0)]), graph([(100, 100), (200, 206), (300, 300)]))
    s = m.summary()
    # errors 5.0, 6.0, 0.0: two of three within 5 px
    assert s["centre_within_5px"] == pytest.approx(2 / 3) and s["centre_error_median"] == pytest.approx(5.0)


def test_mixed_data_repeats_the_first_folder_and_fine_tuning_starts_from_a_checkpoint(tmp_path):
    from vqa.datasets.synth.generate import generate_dataset
    from vqa.vision.data import MixedData, load_training_data
    from vqa.vision.scene_parser import load_scene_parser
    from vqa.vision.train import TrainConfig, train_scene_parser

    a, b = tmp_path / "a", tmp_path / "b"
    generate_dataset(a, num_scenes=2, questions_per_scene=0, seed=5, image_size=(96, 64))
    generate_dataset(a, num_scenes=2, questions_per_scene=2, seed=6, split="val", image_size=(96, 64))
    generate_dataset(b, num_scenes=3, questions_per_scene=0, seed=7, image_size=(96, 64))
    tiny = dict(dim=32, depth=1, n_heads=2, image_size=(64, 96))
    mixed = load_training_data(a, "train", image_size=(64, 96), attributes=CLEVR_ATTRIBUTES, repeat=3,
                               extra=(str(b),))
    assert isinstance(mixed, MixedData) and len(mixed) == 3 * 2 + 3
    assert torch.equal(mixed.images[0], mixed.images[2]) and torch.equal(mixed.images[6], mixed.parts[1].images[0])
    images, targets = mixed.batch([0, 7], flip=[False, True])
    assert images.shape == (2, 3, 64, 96) and targets["heat"].shape[0] == 2

    base = TrainConfig(data=str(a), out=str(tmp_path / "base"), epochs=1, batch_size=2, warmup_steps=1, model=tiny,
                       tune=False, val_limit=2)
    train_scene_parser(base, log=lambda *_: None)
    start = load_scene_parser(tmp_path / "base" / "scene_parser.pt")
    ft = TrainConfig(data=str(a), out=str(tmp_path / "ft"), epochs=1, batch_size=2, warmup_steps=1, lr=0.0,
                     init=str(tmp_path / "base" / "scene_parser.pt"), repeat=2, extra_data=(str(b),),
                     tune=False, val_limit=2)
    s = train_scene_parser(ft, log=lambda *_: None)
    assert s["steps"] == (2 * 2 + 3) // 2
    tuned = load_scene_parser(tmp_path / "ft" / "scene_parser.pt")
    assert tuned.cfg.dim == 32  # the checkpoint's architecture
    # learning rate 0: the weights are exactly those it started from
    for (n, p), q in zip(start.state_dict().items(), tuned.state_dict().values()):
        if p.dtype.is_floating_point and "running" not in n:
            assert torch.equal(p, q), n

    # another input size: only the position embedding changes (resampled to the new token grid),
    # and the resized parser sees what the original sees through its on-the-fly resampling
    logs = []
    big = TrainConfig(data=str(a), out=str(tmp_path / "big"), epochs=1, batch_size=2, warmup_steps=1, lr=0.0,
                      init=str(tmp_path / "base" / "scene_parser.pt"), model={"image_size": (96, 144)},
                      tune=False, val_limit=2)
    train_scene_parser(big, log=logs.append)
    resized = load_scene_parser(tmp_path / "big" / "scene_parser.pt")
    assert resized.cfg.image_size == (96, 144) and any("position embedding resampled" in str(m) for m in logs)
    assert resized.vit.pos_embed.shape[1] == start.vit.pos_embed.shape[1] // 4 * 9  # (4x6 -> 6x9 tokens)
    for (n, p), q in zip(start.state_dict().items(), resized.state_dict().values()):
        if p.dtype.is_floating_point and "running" not in n and n != "vit.pos_embed":
            assert torch.equal(p, q), n
    # (batch-norm statistics moved during the lr-0 epoch: give the original the same ones)
    start.load_state_dict({k: v for k, v in resized.state_dict().items() if k != "vit.pos_embed"}, strict=False)
    x = torch.randn(1, 3, 96, 144)
    assert torch.allclose(start.eval()(x)["heat"], resized.eval()(x)["heat"], atol=1e-5)
    with pytest.raises(Exception, match="only the input size may change"):
        train_scene_parser(TrainConfig(data=str(a), out=str(tmp_path / "bad"), epochs=1, batch_size=2,
                                       init=str(tmp_path / "base" / "scene_parser.pt"), model={"dim": 64},
                                       tune=False), log=lambda *_: None)


def test_bench_parsing_reports_both_modes(tmp_path):
    from pathlib import Path

    from vqa.datasets.synth.generate import generate_dataset
    from vqa.runtime.scene_parser import bench_parsing

    npz = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "scene_parser.npz"
    generate_dataset(tmp_path, num_scenes=2, questions_per_scene=0, seed=1, image_size=(192, 128), verify=False)
    images = sorted((tmp_path / "images" / "train").iterdir())
    rows = bench_parsing([npz, npz], images, repeats=1)
    assert len(rows) == 2 and all(r["images"] == 2 and r["single_images_per_s"] > 0 and r["batch_images_per_s"] > 0
                                  for r in rows)
