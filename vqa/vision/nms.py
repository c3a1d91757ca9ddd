"""Greedy non-maximum suppression in numpy.

`torchvision.ops` imports most of torchvision (and torch._dynamo with it): seconds at start-up,
for a few dozen candidate boxes per image. This is the same greedy rule as
`torchvision.ops.nms` (checked against it by the tests): boxes by descending score, each kept
unless its IoU with an already kept box exceeds `iou_threshold`.

With `low_score`, a box scoring below it is held to a stricter `low_iou`: a weak peak survives
only where it stands apart from the boxes already kept (hysteresis). A faint but isolated
object is kept; a faint second peak on an object already found is not. `low_ios` adds a
containment rule for weak boxes: suppressed when more than that share of the weak box's own
area lies inside a kept box (a part of a larger object found again).
"""
from __future__ import annotations

import numpy as np


def pairwise(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection areas (N, N) of every pair of boxes (N, 4) given as x1, y1, x2, y2, and the
    boxes' areas (N,)."""
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    return wh[..., 0] * wh[..., 1], area


def nms(boxes, scores, iou_threshold: float, *, low_score: float | None = None,
        low_iou: float | None = None, low_ios: float | None = None) -> np.ndarray:
    """Indices (int64) of the kept boxes, by descending score (as `torchvision.ops.nms`).
    boxes (N, 4) and scores (N,): numpy arrays or CPU tensors. A box with a score below
    `low_score` is suppressed by a kept box it overlaps with IoU above `low_iou` (both or neither),
    or (with `low_ios`) that holds more than `low_ios` of its area."""
    if (low_score is None) != (low_iou is None) or (low_ios is not None and low_score is None):
        raise ValueError("nms: low_score and low_iou go together (low_ios needs both)")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    limit = np.full(len(order), iou_threshold, dtype=np.float64)
    if low_score is not None:
        limit[scores[order] < low_score] = low_iou
    inter, area = pairwise(boxes[order])
    union = area[:, None] + area[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    over = iou > limit[None, :]  # column: the box that may be suppressed
    if low_ios is not None:
        weak = scores[order] < low_score
        over |= weak[None, :] & (inter > low_ios * np.maximum(area, 1e-12)[None, :])
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[np.asarray(keep, dtype=np.int64)]
