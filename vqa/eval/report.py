"""Scoring CLEVR predictions and writing reports: JSON, Markdown and a plot.

`score_records` works on prediction records alone (`qid`, `prediction`, `answer`,
`template`, `function`, optional `program_match`), so shards scored apart or together
give the same numbers: `merge_predictions` + `score_records` is what `vqa report` does.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError

FINAL_FUNCTION_GROUPS = {
    "exist": "exist", "count": "count",
    "equal_integer": "compare_integer", "less_than": "compare_integer", "greater_than": "compare_integer",
    **{f"query_{c}": "query_attribute" for c in ("color", "size", "material", "shape")},
    **{f"equal_{c}": "compare_attribute" for c in ("color", "size", "material", "shape")},
}
TEMPLATE_GROUPS = ("zero_hop", "one_hop", "two_hop", "three_hop", "single_and", "single_or", "same_relate",
                   "comparison", "compare_integer")
FUNCTIONS = ("exist", "count", "compare_integer", "query_attribute", "compare_attribute")


def score_records(records: list[dict]) -> dict:
    total = correct = failed = unscored = not_proven = refused = wrong = unscored_no_answer = 0
    matched = parsed = 0
    by_template: dict[str, list[int]] = {}
    by_function: dict[str, list[int]] = {}
    by_family: dict[str, list[int]] = {}
    match_by_template: dict[str, list[int]] = {}
    for r in records:
        if r.get("prediction") is None:
            failed += 1
        if r.get("proven") is False:  # ASP: the best reading not proven within the search budget
            not_proven += 1
        if r.get("refused"):  # ASP: no answer, the reading the question needs too improbable
            refused += 1
        if "program_match" in r:
            parsed += 1
            matched += bool(r["program_match"])
            cell = match_by_template.setdefault(r.get("template", "unknown"), [0, 0])
            cell[0] += 1
            cell[1] += bool(r["program_match"])
        if r.get("answer") is None:  # no gold answer (e.g. generated ill-posed questions)
            unscored += 1
            unscored_no_answer += r.get("prediction") is None
            continue
        ok = int(r.get("prediction") == r["answer"])
        wrong += r.get("prediction") is not None and not ok
        total += 1
        correct += ok
        keys = [(by_template, r.get("template", "unknown")), (by_function, r.get("function", "other"))]
        if r.get("family") is not None:
            keys.append((by_family, f"{r.get('template', 'unknown')}:{r['family']}"))
        for table, key in keys:
            cell = table.setdefault(key, [0, 0])
            cell[0] += 1
            cell[1] += ok
    report = {"accuracy": correct / total if total else None, "total": total, "correct": correct, "failed": failed,
              "unscored": unscored, "not_proven": not_proven, "answered": len(records) - failed,
              "refused": refused, "wrong": wrong, "unscored_no_answer": unscored_no_answer,
              "by_template": _table(by_template, TEMPLATE_GROUPS),
              "by_function": _table(by_function, FUNCTIONS)}
    if by_family:
        report["by_family"] = _table(by_family, tuple(sorted(by_family, key=_family_order)))
    from vqa.calibration import calibration_summary  # absolute: report.py may move into vqa/eval/

    calibration = calibration_summary(records)  # records that carry `confidence`
    if calibration is not None:
        report["calibration"] = calibration
    if parsed:
        report["program_exact_match"] = matched / parsed
        report["program_match_by_template"] = _table(match_by_template, TEMPLATE_GROUPS)
    return report


def _family_order(key: str):
    template, _, family = key.rpartition(":")
    rank = TEMPLATE_GROUPS.index(template) if template in TEMPLATE_GROUPS else len(TEMPLATE_GROUPS)
    return (rank, template, int(family) if family.lstrip("-").isdigit() else 0, family)


def _table(cells: dict[str, list[int]], order: tuple[str, ...]) -> dict:
    keys = [k for k in order if k in cells] + sorted(k for k in cells if k not in order)
    return {k: {"total": cells[k][0], "correct": cells[k][1], "accuracy": cells[k][1] / cells[k][0]} for k in keys}


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _unscored_line(report: dict) -> str:
    """What happened to the questions without a gold answer (a file of ill-posed questions:
    the share without an answer is the share refused or failed, as it should be)."""
    n, none = report["unscored"], report.get("unscored_no_answer")
    if none is None:
        return f"questions without a gold answer: {n}"
    return (f"questions without a gold answer (e.g. ill-posed): {n}; no answer {none} ({100 * none / n:.2f}%), "
            f"answered {n - none}")


def format_report(report: dict) -> str:
    """A few readable lines: overall accuracy, then each breakdown."""
    lines = [f"CLEVR ({report.get('reasoner')}, {report.get('scene_source', 'gold')} scenes, "
             f"{report.get('program_source', 'gold')} programs): accuracy {_pct(report['accuracy'])} "
             f"({report['correct']}/{report['total']}); no answer {report['failed']}; unscored {report['unscored']}"
             f"; not proven {report.get('not_proven', 0)}"]
    if "answered" in report:
        lines.append(f"answered {report['answered']}; refused (presupposition fails on the most probable reading) "
                     f"{report.get('refused', 0)}; wrong {report.get('wrong', 0)}")
    if report.get("unscored"):
        lines.append(_unscored_line(report))
    if "program_exact_match" in report:
        lines.append(f"program exact match: {_pct(report['program_exact_match'])}")
    if report.get("calibration"):
        c = report["calibration"]
        lines.append(f"calibration: ECE {c['ece']:.4f} over {c['n']} questions ({len(c['bins'])} bins; mean "
                     f"confidence {c['mean_confidence']:.4f}, accuracy {c['accuracy']:.4f})")
    for title, key in (("by template", "by_template"), ("by final function", "by_function"),
                       ("program match by template", "program_match_by_template"),
                       ("by template:family", "by_family")):
        if key not in report:
            continue
        lines.append(f"{title}:")
        for name, cell in report[key].items():
            lines.append(f"  {name:<18} {_pct(cell['accuracy']):>8}  ({cell['correct']}/{cell['total']})")
    if report.get("questions_per_second"):
        lines.append(f"{report['questions_per_second']} questions/s ({report['seconds']} s, "
                     f"{report.get('workers', 1)} worker(s))")
    return "\n".join(lines)


def markdown_report(report: dict, compare: dict | None = None) -> str:
    """The report as Markdown tables; with `compare`, a second column (e.g. predicted scenes)."""
    from vqa.plots import run_labels  # absolute: this module may move into vqa/eval/

    a, b = run_labels(report, compare)
    head = f"| | {a} |" + (f" {b} |" if compare else "")
    rule = "|---|---:|" + ("---:|" if compare else "")
    lines = [f"# CLEVR evaluation ({report.get('reasoner')})", "",
             f"Accuracy **{_pct(report['accuracy'])}** ({report['correct']}/{report['total']}); "
             f"no answer: {report['failed']}; unscored: {report['unscored']}; "
             f"not proven within the search budget: {report.get('not_proven', 0)}."
             + (f" Answered: {report['answered']}; refused (the question's presupposition fails on the scene's "
                f"most probable reading): {report.get('refused', 0)}; wrong: {report.get('wrong', 0)}."
                if "answered" in report else "")
             + (f" {_unscored_line(report)[0].upper()}{_unscored_line(report)[1:]}." if report.get("unscored") else ""),
             ""]
    for title, key in (("By template group", "by_template"), ("By final function", "by_function"),
                       ("By template and family", "by_family")):
        if key not in report:
            continue
        lines += [f"## {title}", "", head, rule]
        for name, cell in report[key].items():
            row = f"| {name} | {_pct(cell['accuracy'])} ({cell['total']}) |"
            if compare:
                other = compare.get(key, {}).get(name)
                row += f" {_pct(other['accuracy']) if other else 'n/a'} |"
            lines.append(row)
        lines.append("")
    if report.get("calibration"):
        c = report["calibration"]
        lines += ["## Calibration of `confidence`", "",
                  f"Expected calibration error **{c['ece']:.4f}** over {c['n']} questions ({len(c['bins'])} equal-width "
                  f"bins; a question with no answer counts with confidence 0); mean confidence "
                  f"{c['mean_confidence']:.4f}, accuracy {c['accuracy']:.4f}.", "",
                  "| confidence | questions | mean confidence | accuracy |", "|---|---:|---:|---:|"]
        for bin_ in c["bins"]:
            if bin_["n"]:
                lines.append(f"| {bin_['lo']:.1f}-{bin_['hi']:.1f} | {bin_['n']} | {bin_['confidence']:.4f} | "
                             f"{bin_['accuracy']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def plot_report(report: dict, path: str | Path, compare: dict | None = None) -> None:
    """Accuracy by template group, final function and question family, side by side with
    `compare` when given (`vqa.plots.plot_clevr_report`)."""
    from vqa.plots import plot_clevr_report  # absolute: this module may move into vqa/eval/

    plot_clevr_report(report, path, compare)


def write_reports(report: dict, out: str | Path, compare: dict | None = None) -> None:
    """`out` (JSON), plus `out` with .md and .png suffixes (and .reliability.png when the
    predictions carry `confidence`)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown_report(report, compare))
    if report["total"]:
        plot_report(report, out.with_suffix(".png"), compare)
    if report.get("calibration"):  # the reliability diagram of `confidence`
        from vqa.plots import plot_reliability  # absolute: this module may move into vqa/eval/

        plot_reliability(report["calibration"], out.with_suffix(".reliability.png"))


def merge_predictions(paths: list[str | Path]) -> tuple[list[dict], dict | None]:
    """Records of several prediction files (shards of one run); their settings must agree."""
    records: dict[str, dict] = {}
    settings = None
    for p in paths:
        p = Path(p)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror}", file=p) from None
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    break
                raise DataError(f"line {i + 1} is not JSON", file=p) from None
            if "settings" in rec:
                s = {k: v for k, v in rec["settings"].items() if k != "images"}
                if settings is not None and s != settings:
                    raise DataError("predictions made with other settings than the first file", file=p)
                settings = s
                continue
            records[rec["qid"]] = rec
    return list(records.values()), settings
