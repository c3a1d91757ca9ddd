"""Report plots a researcher can keep (matplotlib, Agg backend; issue 25).

    from vqa.plots import plot_clevr_report, plot_reliability, run_labels
    plot_clevr_report(report, "report.png", compare=other)   # report dicts of vqa.eval.report.score_records

- accuracy bars on a zoomed y axis (from a little below the lowest bar to 100 %, stated in
  the axis label when it does not start at 0), each bar labelled with its number of
  questions (`n=`), the legend above the panels, outside the bars;
- `--compare`: the two runs are labelled by what differs between their settings (scenes,
  programs, reasoner, ...), not by a fixed "predicted"/"gold";
- a panel by question family (template:family) when the predictions carry families;
- a reliability diagram of `confidence` (accuracy against mean confidence per bin, the
  number of questions per bin, the expected calibration error in the title).
"""
from __future__ import annotations

import math
from pathlib import Path

# the settings that tell two CLEVR runs apart, and how a label names each value
_SETTINGS = (("scene_source", "{} scenes"), ("program_source", "{} programs"), ("reasoner", "{}"),
             ("models", "{} models"), ("min_reading", "min-reading {}"), ("budget", "budget {} s"),
             ("scene_checkpoint", "scene parser {}"), ("parser_checkpoint", "question parser {}"),
             ("nsm_checkpoint", "NSM {}"), ("theory_dir", "theory {}"), ("questions", "questions {}"))


def _value(run: dict, key: str):
    v = run.get(key)
    if v is None and key in ("scene_source", "program_source"):
        return "gold"
    if isinstance(v, str) and ("/" in v or "\\" in v):
        return Path(v).name
    return v


def run_labels(a: dict, b: dict | None = None) -> tuple[str, str | None]:
    """Labels for a run (and a second one to compare): the settings that differ between
    them, e.g. ("predicted scenes, parsed programs", "gold scenes, gold programs"); one run
    alone is named by its scenes and programs. Runs whose settings agree are "run 1"/"run 2"."""
    if b is None:
        return ", ".join(fmt.format(_value(a, k)) for k, fmt in _SETTINGS[:2]), None
    differ = [(k, fmt) for k, fmt in _SETTINGS if _value(a, k) != _value(b, k)]
    if not differ:
        return "run 1", "run 2"
    return tuple(", ".join(fmt.format(_value(r, k) if _value(r, k) is not None else "default") for k, fmt in differ)
                 for r in (a, b))


def _zoomed_floor(values: list[float]) -> float:
    """A y-axis floor (in %) a little below the lowest value, on a step of 5 (0 when the
    values reach that low)."""
    lo = min(values) if values else 0.0
    floor = 5 * math.floor((lo - 2) / 5)
    return max(0.0, float(floor))


def bar_panel(ax, runs: list[tuple[str, dict]], title: str, *, rotate: int = 30, fontsize: float = 7,
              show_n: bool = True) -> None:
    """Grouped bars of accuracy (%) per row name, one colour per run; `runs`: [(label,
    {name: {"accuracy": fraction, "total": n}})]; names in the first run's order. The axis
    starts a little below the lowest bar; each bar carries its n."""
    names = list(runs[0][1])
    for _, table in runs[1:]:
        names += [n for n in table if n not in names]
    width = 0.8 / len(runs)
    values = []
    for k, (label, table) in enumerate(runs):
        xs, ys, ns = [], [], []
        for i, n in enumerate(names):
            cell = table.get(n)
            if not cell or cell.get("accuracy") is None:
                continue
            xs.append(i + (k - (len(runs) - 1) / 2) * width)
            ys.append(100 * cell["accuracy"])
            ns.append(cell.get("total", cell.get("n")))
        values += ys
        bars = ax.bar(xs, ys, width, label=label)
        if show_n:
            for bar, y, n in zip(bars, ys, ns):
                if n is not None:
                    ax.annotate(f"{n}", (bar.get_x() + bar.get_width() / 2, y), xytext=(0, 1),
                                textcoords="offset points", ha="center", va="bottom", fontsize=fontsize,
                                rotation=90 if len(names) * len(runs) > 24 else 0)
    floor = _zoomed_floor(values)
    ax.set_ylim(floor, 100 + (100 - floor) * 0.12)  # head room for the n labels
    ax.set_yticks([t for t in ax.get_yticks() if floor <= t <= 100])
    ax.set_xticks(range(len(names)), names, rotation=rotate, ha="right" if rotate else "center", fontsize=fontsize + 1)
    ax.set_ylabel("accuracy (%)" + (f", axis from {floor:g}" if floor > 0 else ""))
    ax.set_title(title + (" (bar labels: questions)" if show_n else ""), fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def plot_clevr_report(report: dict, path: str | Path, compare: dict | None = None) -> None:
    """Accuracy by template group and by final function (and by template:family when the
    report has it), side by side with `compare`; the legend above the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    la, lb = run_labels(report, compare)
    runs = [(report, la)] + ([(compare, lb)] if compare else [])
    family = "by_family" in report
    fig = plt.figure(figsize=(13, 8.5 if family else 4.6))
    grid = fig.add_gridspec(2 if family else 1, 2, width_ratios=[3, 2], height_ratios=[1, 1.1] if family else [1])
    axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])]
    panels = [("by_template", "CLEVR accuracy by template group"), ("by_function", "by final function")]
    if family:
        axes.append(fig.add_subplot(grid[1, :]))
        panels.append(("by_family", "by question family (template:family)"))
    for ax, (key, title) in zip(axes, panels):
        bar_panel(ax, [(label, rep.get(key) or {}) for rep, label in runs], title,
                  rotate=90 if key == "by_family" else 30, fontsize=6 if key == "by_family" else 7)
    handles, labels = axes[0].get_legend_handles_labels()
    head = f"{report.get('reasoner', '')}: " + "; ".join(
        f"{label} {100 * rep['accuracy']:.2f}% of {rep['total']}" for rep, label in runs if rep.get("accuracy") is not None)
    fig.suptitle(head, fontsize=10, y=0.995)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.965), ncol=len(runs), frameon=False,
               fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93 if not family else 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(calibration: dict, path: str | Path, title: str = "confidence") -> None:
    """Reliability diagram: per confidence bin, accuracy (bars) against the diagonal, each
    bar labelled with its number of questions; a lower panel with the counts (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = calibration["bins"]
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5.6, 6.4), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    width = bins[0]["hi"] - bins[0]["lo"]
    full = [b for b in bins if b["n"]]
    ax.bar([b["lo"] for b in full], [b["accuracy"] for b in full], width, align="edge", edgecolor="black",
           color="#4c72b0", label="accuracy")
    ax.plot([b["confidence"] for b in full], [b["confidence"] for b in full], "o", color="#dd8452",
            label="mean confidence", markersize=4)
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
    for b in full:
        ax.annotate(f"{b['n']}", (b["lo"] + width / 2, b["accuracy"]), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy in the bin")
    ece = calibration.get("ece")
    ax.set_title(f"reliability of {title}: ECE {ece:.4f} over {calibration['n']} questions\n"
                 f"(mean confidence {calibration['mean_confidence']:.3f}, accuracy {calibration['accuracy']:.3f}; "
                 "bar labels: questions)", fontsize=9)
    axn.bar([b["lo"] for b in bins], [b["n"] for b in bins], width, align="edge", color="#8c8c8c", edgecolor="black")
    axn.set_yscale("log")
    axn.set_ylabel("questions")
    axn.set_xlabel("confidence")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_gqa_report(report: dict, path: str | Path) -> None:
    """GQA accuracy per structural and semantic type (zoomed axis, n per bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key in zip(axes, ("per_structural", "per_semantic")):
        rows = {}
        for k, v in (report.get(key) or {}).items():  # GQA's accuracies are percentages
            acc = v.get("accuracy")
            rows[k] = {"accuracy": None if acc is None else acc / 100, "total": v.get("n")}
        if rows:
            bar_panel(ax, [("", rows)], key.replace("per_", "GQA accuracy by ").replace("_", " ") + " type")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
