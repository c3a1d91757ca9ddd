"""vqa.vision.nms against torchvision.ops.nms on random boxes."""
import pytest
import torch

from vqa.vision.nms import nms


@pytest.mark.parametrize("seed", range(20))
def test_nms_matches_torchvision(seed):
    tv = pytest.importorskip("torchvision.ops")
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(0, 60, (1,), generator=g))
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 30 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(n, generator=g)
    for thr in (0.1, 0.3, 0.5, 0.7):
        assert nms(boxes, scores, thr).tolist() == tv.nms(boxes, scores, thr).tolist()


def test_nms_keeps_best_of_overlapping_pair():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    assert nms(boxes, torch.tensor([0.5, 0.9, 0.1]), 0.5).tolist() == [1, 2]
    assert nms(boxes, torch.tensor([0.5, 0.9, 0.1]), 0.9).tolist() == [1, 0, 2]


def test_nms_holds_weak_boxes_to_the_stricter_iou():
    """A box scoring below low_score is suppressed by a kept box it overlaps with IoU > low_iou;
    a strong box with the same overlap is not (IoU of the pair: 3/15 = 0.2)."""
    boxes = torch.tensor([[0.0, 0, 3, 3], [2, 0, 5, 3], [50, 50, 53, 53]])
    weak = torch.tensor([0.9, 0.35, 0.3])
    assert nms(boxes, weak, 0.5).tolist() == [0, 1, 2]
    assert nms(boxes, weak, 0.5, low_score=0.5, low_iou=0.1).tolist() == [0, 2]
    assert nms(boxes, weak, 0.5, low_score=0.5, low_iou=0.25).tolist() == [0, 1, 2]
    assert nms(boxes, torch.tensor([0.9, 0.6, 0.3]), 0.5, low_score=0.5, low_iou=0.1).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        nms(boxes, weak, 0.5, low_score=0.5)


def test_nms_containment_rule_drops_weak_parts_of_kept_boxes():
    """A weak box lying inside a strong one (IoU 0.09, all its area inside) is a part of the
    strong object found again: low_ios 0.9 drops it, IoU alone keeps it; a strong box inside
    another is not held to the rule."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 2, 5, 5], [50, 50, 53, 53]])
    assert nms(boxes, torch.tensor([0.9, 0.35, 0.3]), 0.5, low_score=0.5, low_iou=0.5).tolist() == [0, 1, 2]
    assert nms(boxes, torch.tensor([0.9, 0.35, 0.3]), 0.5, low_score=0.5, low_iou=0.5,
               low_ios=0.9).tolist() == [0, 2]
    assert nms(boxes, torch.tensor([0.9, 0.6, 0.3]), 0.5, low_score=0.5, low_iou=0.5,
               low_ios=0.9).tolist() == [0, 1, 2]
    half = torch.tensor([[0.0, 0, 10, 10], [8, 0, 12, 10]])  # half of the weak box inside
    assert nms(half, torch.tensor([0.9, 0.35]), 0.5, low_score=0.5, low_iou=0.5, low_ios=0.9).tolist() == [0, 1]
    with pytest.raises(ValueError):
        nms(boxes, torch.tensor([0.9, 0.35, 0.3]), 0.5, low_ios=0.9)
