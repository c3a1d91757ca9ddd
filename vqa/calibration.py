"""How far `confidence` can be trusted: reliability bins, expected calibration error, and a
calibration map fitted on a separate seed (issue 25).

    from vqa.calibration import confidence_records, reliability, expected_calibration_error
    recs = list(confidence_records("heldout/questions/CLEVR_test_questions.json", "heldout/images/test"))
    expected_calibration_error(recs)            # records carry `confidence`, `prediction`, `answer`

`confidence_records` answers a generated (or official) CLEVR split image by image through
`Pipeline.answer_many` (image + question text: scene parser, question parser, ASP), so the
`confidence` measured is the one a user gets, and yields prediction records in the format of
`vqa evaluate --predictions` (plus `confidence`), which `vqa report` scores (ECE in the
report) and draws as a reliability plot (`REPORT.reliability.png`).

The expected calibration error (ECE) uses equal-width bins over [0, 1] (default 10): the
sum over bins of (questions in the bin / all questions) x |accuracy - mean confidence|,
a question counting right when `prediction == answer`; questions with no answer count with
confidence 0 (never right). `Calibration` is a monotone step map fitted by isotonic
regression (pool adjacent violators) on one set of records (answered questions only) and
applied to another (`apply`), saved as a small JSON file: what a calibration would give
(rules/README.md, "Calibration"). The shipped models' confidence is not remapped: on the
project's world it meets ECE <= 0.03 as it is.
"""
from __future__ import annotations

import json
import math
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

DEFAULT_BINS = 10


def _pairs(records) -> list[tuple[float, int]]:
    out = []
    for r in records:
        if r.get("answer") is None:  # unscored
            continue
        c = r.get("confidence")
        if c is None:
            continue
        out.append((float(c), int(r.get("prediction") is not None and r.get("prediction") == r["answer"])))
    return out


def reliability(records, bins: int = DEFAULT_BINS) -> list[dict]:
    """Per equal-width confidence bin: lo, hi, n, mean confidence, accuracy (None when empty)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    cells = [[0, 0.0, 0] for _ in range(bins)]
    for c, ok in _pairs(records):
        k = min(bins - 1, max(0, int(c * bins)))
        cells[k][0] += 1
        cells[k][1] += c
        cells[k][2] += ok
    return [{"lo": k / bins, "hi": (k + 1) / bins, "n": n,
             "confidence": s / n if n else None, "accuracy": ok / n if n else None}
            for k, (n, s, ok) in enumerate(cells)]


def expected_calibration_error(records, bins: int = DEFAULT_BINS) -> float | None:
    """ECE of the records' `confidence` (None without scored records that carry one)."""
    table = reliability(records, bins)
    total = sum(b["n"] for b in table)
    if not total:
        return None
    return sum(b["n"] / total * abs(b["accuracy"] - b["confidence"]) for b in table if b["n"])


def calibration_summary(records, bins: int = DEFAULT_BINS) -> dict | None:
    """{"ece", "bins", "n", "mean_confidence", "accuracy"} for a report, or None when no record
    carries a confidence."""
    pairs = _pairs(records)
    if not pairs:
        return None
    return {"ece": expected_calibration_error(records, bins), "bins": reliability(records, bins), "n": len(pairs),
            "mean_confidence": sum(c for c, _ in pairs) / len(pairs),
            "accuracy": sum(ok for _, ok in pairs) / len(pairs)}


@dataclass
class Calibration:
    """A monotone map of raw confidence to calibrated confidence: `x` thresholds (sorted)
    and `y` values; raw c maps to y[k] for the last k with x[k] <= c (linear between the
    blocks' centres would smooth it; a step function is what isotonic regression gives)."""

    x: list[float]
    y: list[float]
    meta: dict

    def __call__(self, c: float) -> float:
        if not self.x:
            return c
        k = bisect_right(self.x, c) - 1
        return self.y[max(0, k)]

    @classmethod
    def fit(cls, records, meta: dict | None = None) -> "Calibration":
        """Isotonic regression (pool adjacent violators) of correctness on `raw_confidence`
        (or `confidence`) over the scored records that have an answer (a question with no
        answer keeps confidence 0)."""
        pairs = sorted((float(r.get("raw_confidence", r.get("confidence"))), int(r.get("prediction") == r["answer"]))
                       for r in records if r.get("answer") is not None and r.get("prediction") is not None
                       and r.get("raw_confidence", r.get("confidence")) is not None)
        if not pairs:
            raise ValueError("no scored records with a confidence to fit on")
        points: list[list[float]] = []  # [x, sum correct, count] per distinct confidence (ties pooled first)
        for c, ok in pairs:
            if points and points[-1][0] == c:
                points[-1][1] += ok
                points[-1][2] += 1
            else:
                points.append([c, ok, 1])
        blocks: list[list[float]] = []  # [start x, sum correct, count]
        for point in points:
            blocks.append(list(point))
            while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
                x, s, n = blocks.pop()
                blocks[-1][1] += s
                blocks[-1][2] += n
        xs = [0.0] + [b[0] for b in blocks[1:]]
        ys = [b[1] / b[2] for b in blocks]
        return cls(xs, ys, {**(meta or {}), "fitted_on": len(pairs),
                            "blocks": [{"from": x, "n": int(b[2]), "accuracy": y} for x, b, y in zip(xs, blocks, ys)]})

    def to_dict(self) -> dict:
        return {"format": "vqa-calibration/1", "x": self.x, "y": self.y, **self.meta}

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror}", file=path) from None
        except json.JSONDecodeError:
            raise DataError("not JSON", file=path) from None
        x, y = d.get("x"), d.get("y")
        if (not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y)
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in x + y)
                or any(b < a for a, b in zip(x, x[1:]))):
            raise DataError("expected sorted numeric lists x and y of one length", file=path, field="x")
        return cls([float(v) for v in x], [float(v) for v in y], {k: v for k, v in d.items() if k not in ("x", "y")})


def apply(records, calibration: Calibration) -> list[dict]:
    """Copies of `records` whose `confidence` is the calibrated `raw_confidence` (records
    with no answer keep theirs, 0)."""
    out = []
    for r in records:
        raw = r.get("raw_confidence", r.get("confidence"))
        calibrated = raw if raw is None or r.get("prediction") is None else calibration(raw)
        out.append({**r, "raw_confidence": raw, "confidence": calibrated})
    return out


def cross_fit(records, folds: int = 2) -> dict:
    """What an isotonic map fitted in the records' own domain gives on images it was not
    fitted on: the images (sorted ids) are dealt into `folds` groups by index; for each, a
    `Calibration` fitted on the other groups' questions is applied to its questions.
    Returns {"folds": [{"n", "ece_before", "ece_after"}], "ece_before", "ece_after"} (the
    pooled figures: the fold ECEs weighted by their questions)."""
    records = list(records)
    images = sorted({r["image"] for r in records})
    if folds < 2 or len(images) < folds:
        raise ValueError(f"cross_fit needs at least 2 folds and as many images (folds {folds}, images {len(images)})")
    fold = {im: i % folds for i, im in enumerate(images)}
    rows = []
    for k in range(folds):
        held = [r for r in records if fold[r["image"]] == k]
        cal = Calibration.fit([r for r in records if fold[r["image"]] != k])
        rows.append({"n": len(held), "ece_before": expected_calibration_error(held),
                     "ece_after": expected_calibration_error(apply(held, cal))})
    n = sum(r["n"] for r in rows)
    return {"folds": rows, "ece_before": sum(r["n"] * r["ece_before"] for r in rows) / n,
            "ece_after": sum(r["n"] * r["ece_after"] for r in rows) / n}


def confidence_records(questions: str | Path, images: str | Path, *, models: str = "synth", limit: int | None = None,
                       pipeline=None, progress=None, **pipeline_kw):
    """Prediction records (`vqa evaluate`'s format, with `confidence` and `raw_confidence`)
    of the questions of a CLEVR questions file, answered from its images by the pipeline
    (predicted scenes, parsed programs, ASP), image by image."""
    from .datasets import clevr
    from .eval.clevr import final_function, template_group
    from .pipeline import Pipeline

    pipe = pipeline or Pipeline.from_pretrained(models=models, **pipeline_kw)
    by: dict[str, list] = {}
    n = 0
    for q in clevr.iter_questions(questions):
        if limit is not None and n >= limit:
            break
        by.setdefault(q.image_id, []).append(q)
        n += 1
    folder = Path(images)
    bar = progress(total=n, desc="confidence") if progress else None
    for image_id, qs in by.items():
        path = folder / (qs[0].meta.get("image_filename") or f"{image_id}.png")
        answers = pipe.answer_many(path, [q.text for q in qs])
        for q, a in zip(qs, answers):
            rec = {"qid": q.qid, "image": image_id, "answer": q.answer, "prediction": a.answer,
                   "confidence": a.confidence,
                   "template": template_group(q), "function": final_function(q.program),
                   "family": q.meta.get("question_family_index"), "error": a.error}
            if a.presupposition:
                rec["refused"] = True
            if not a.understood:
                rec["not_understood"] = True
            yield rec
        if bar is not None:
            bar.update(len(qs))
    if bar is not None:
        bar.close()
