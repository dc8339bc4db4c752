"""A version's evaluation report as one self-contained HTML file.

No scripts, fonts or stylesheets from anywhere: the charts are inline SVG drawn from the
report's own numbers, so the file opens offline and can be attached to a review. Long
curves are drawn from an evenly spaced subset of their points (the JSON has them all).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

# Okabe-Ito, readable by colour-blind reviewers; cycled past eight series.
COLOURS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000"]
MAX_CURVE_POINTS = 300
MAX_SCATTER_POINTS = 1000
WIDTH, HEIGHT, PAD = 380, 300, 56
SCALARS = ("accuracy", "f1", "precision", "recall", "specificity", "roc_auc", "log_loss")
REGRESSION_SCALARS = ("mae", "rmse", "mse", "r2")

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px}
table{border-collapse:collapse;margin:6px 0 14px}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{font-weight:600}
.note{color:#555}.training{background:#fff4d6;padding:6px 10px;border-left:4px solid #e69f00}
svg text{font:11px system-ui,sans-serif}details{margin:6px 0}summary{cursor:pointer}
"""


def render(report: dict[str, Any]) -> str:
    """The report (services.api.report_schemas.EvaluationReport, as a dict) as HTML."""
    sections = report["sections"]
    title = f"{report['model_name']} version {report['version']}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Evaluation report: {escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Evaluation report: {escape(title)}</h1>",
        f"<p class='note'>Task {escape(report['task'])}"
        + (
            f"; a row is labelled positive at P(positive) ≥ {report['threshold']:g}, "
            "in these figures and by the predictor alike"
            if report["threshold"] is not None
            else ""
        )
        + ". Every figure is scikit-learn's on the rows each section names.</p>",
    ]
    if any(s["source"] == "training" for s in sections):
        parts.append(
            "<p class='training'>A section marked <b>training rows</b> scores the model on "
            "the rows it was trained on: it says the model fits them, not how it does on "
            "new rows.</p>"
        )
    regression = report["class_labels"] is None
    parts.append(_summary(sections, REGRESSION_SCALARS if regression else SCALARS))
    parts.append(_regression_charts(sections) if regression else _classification_charts(report))
    for section in sections:
        # The version's own model's rows open; the folds' a click away.
        parts.append(_section_details(report, section, open_=section["source"] != "fold"))
    parts.append("</body></html>")
    return "".join(parts)


def _name(section: dict[str, Any]) -> str:
    if section["source"] == "fold":
        return f"fold {section['fold']}"
    return "test rows" if section["source"] == "test" else "training rows"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return escape(str(value))


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _summary(sections: list[dict[str, Any]], names: Sequence[str]) -> str:
    rows = [[_name(s), s["n_rows"], *(s["metrics"].get(n) for n in names)] for s in sections]
    return "<h2>Scores</h2>" + _table(["rows", "n", *names], rows)


def _classification_charts(report: dict[str, Any]) -> str:
    labels = report["class_labels"]
    multiclass = len(labels) > 2
    roc, pr, calibration = [], [], []
    for section in report["sections"]:
        for curves in section["curves"]:
            name = _name(section) + (f" · {labels[curves['class']]}" if multiclass else "")
            if curves["roc"] is not None:
                r = curves["roc"]
                roc.append((f"{name} (AUC {r['auc']:.3f})", r["fpr"], r["tpr"]))
            if curves["pr"] is not None:
                p = curves["pr"]
                pr.append(
                    (f"{name} (AP {p['average_precision']:.3f})", p["recall"], p["precision"])
                )
            if curves["calibration"] is not None:
                c = curves["calibration"]
                calibration.append(
                    (
                        f"{name} (Brier {c['brier']:.3f})",
                        c["mean_predicted"],
                        c["fraction_positive"],
                    )
                )
    return (
        "<h2>Curves</h2><div class='charts'>"
        + _chart("ROC", roc, "false positive rate", "true positive rate", diagonal=True)
        + _chart("Precision–recall", pr, "recall", "precision")
        + _chart(
            "Calibration (reliability)",
            calibration,
            "mean predicted probability",
            "fraction positive",
            diagonal=True,
            markers=True,
        )
        + "</div>"
    )


def _regression_charts(sections: list[dict[str, Any]]) -> str:
    points = [(_name(s), s["points"]["actual"], s["points"]["predicted"]) for s in sections]
    charts = [_scatter("Predicted against actual", points)]
    for s in sections:
        hist = s["residuals"]["histogram"]
        charts.append(
            _bars(f"Residuals (actual − predicted), {_name(s)}", hist["edges"], hist["counts"])
        )
    return "<h2>Charts</h2><div class='charts'>" + "".join(charts) + "</div>"


def _section_details(report: dict[str, Any], section: dict[str, Any], *, open_: bool) -> str:
    parts = [
        f"<details{' open' if open_ else ''}><summary>{escape(_name(section))}: {section['n_rows']} rows</summary>"
    ]
    metrics = section["metrics"]
    parts.append(
        _table(
            ["metric", "value"],
            [(k, v) for k, v in metrics.items() if not isinstance(v, list)],
        )
    )
    if section.get("confusion_matrix") is not None:
        labels = report["class_labels"]
        parts.append("<h3>Confusion matrix (rows: actual, columns: predicted)</h3>")
        parts.append(
            _table(
                ["", *labels],
                [[labels[i], *row] for i, row in enumerate(section["confusion_matrix"])],
            )
        )
        parts.append("<h3>Per class</h3>")
        parts.append(
            _table(
                ["class", "precision", "recall", "f1", "support"],
                [
                    [labels[c["class"]], c["precision"], c["recall"], c["f1"], c["support"]]
                    for c in section["per_class"]
                ],
            )
        )
        parts.append(f"<p>Brier score {_fmt(section['brier'])}</p>")
    if section.get("threshold_table"):
        parts.append("<h3>At each threshold</h3>")
        parts.append(
            _table(
                ["threshold", "precision", "recall", "f1", "specificity"],
                [
                    [r["threshold"], r["precision"], r["recall"], r["f1"], r["specificity"]]
                    for r in section["threshold_table"]
                ],
            )
        )
    if section.get("deciles") is not None:
        parts.append("<h3>Error by decile of the actual value</h3>")
        parts.append(
            _table(
                ["decile", "from", "to", "n", "mae", "rmse", "bias"],
                [
                    [d["decile"], d["low"], d["high"], d["n"], d["mae"], d["rmse"], d["bias"]]
                    for d in section["deciles"]
                ],
            )
        )
    parts.append("</details>")
    return "".join(parts)


def _thin(
    xs: Sequence[float | None], ys: Sequence[float | None], most: int
) -> list[tuple[float, float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
    if len(pairs) <= most:
        return pairs
    step = (len(pairs) - 1) / (most - 1)
    return [pairs[round(i * step)] for i in range(most)]


class _Frame:
    """Maps data coordinates into the plot area of one chart."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float) -> None:
        self.x0, self.x1 = x0, x1 if x1 > x0 else x0 + 1
        self.y0, self.y1 = y0, y1 if y1 > y0 else y0 + 1

    def x(self, v: float) -> float:
        return PAD + (v - self.x0) / (self.x1 - self.x0) * (WIDTH - PAD - 10)

    def y(self, v: float) -> float:
        return HEIGHT - PAD - (v - self.y0) / (self.y1 - self.y0) * (HEIGHT - PAD - 10)

    def axes(self, x_label: str, y_label: str) -> str:
        left, bottom = PAD, HEIGHT - PAD
        ticks = []
        for i in range(5):
            fx = self.x0 + (self.x1 - self.x0) * i / 4
            fy = self.y0 + (self.y1 - self.y0) * i / 4
            ticks.append(
                f"<text x='{self.x(fx):.1f}' y='{bottom + 14}' text-anchor='middle'>{fx:.3g}</text>"
                f"<text x='{left - 4}' y='{self.y(fy) + 4:.1f}' text-anchor='end'>{fy:.3g}</text>"
            )
        return (
            f"<line x1='{left}' y1='{bottom}' x2='{WIDTH - 10}' y2='{bottom}' stroke='#888'/>"
            f"<line x1='{left}' y1='10' x2='{left}' y2='{bottom}' stroke='#888'/>"
            + "".join(ticks)
            + f"<text x='{(WIDTH + PAD) / 2}' y='{HEIGHT - 6}' text-anchor='middle'>"
            f"{escape(x_label)}</text><text transform='translate(11 {(HEIGHT - PAD) / 2}) "
            f"rotate(-90)' text-anchor='middle'>{escape(y_label)}</text>"
        )


def _figure(title: str, svg: str, legend: Sequence[str]) -> str:
    keys = "".join(
        f"<div><span style='color:{COLOURS[i % len(COLOURS)]}'>■</span> {escape(name)}</div>"
        for i, name in enumerate(legend)
    )
    return (
        f"<figure><figcaption>{escape(title)}</figcaption><svg width='{WIDTH}' "
        f"height='{HEIGHT}' viewBox='0 0 {WIDTH} {HEIGHT}' role='img' "
        f"aria-label='{escape(title)}'>{svg}</svg>{keys}</figure>"
    )


def _chart(
    title: str,
    series: list[tuple[str, Sequence[float | None], Sequence[float | None]]],
    x_label: str,
    y_label: str,
    *,
    diagonal: bool = False,
    markers: bool = False,
) -> str:
    frame = _Frame(0.0, 1.0, 0.0, 1.0)
    svg = [frame.axes(x_label, y_label)]
    if diagonal:
        svg.append(
            f"<line x1='{frame.x(0)}' y1='{frame.y(0)}' x2='{frame.x(1)}' y2='{frame.y(1)}' "
            "stroke='#bbb' stroke-dasharray='4 3'/>"
        )
    for i, (_, xs, ys) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        pairs = _thin(xs, ys, MAX_CURVE_POINTS)
        path = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in pairs)
        svg.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{path}'/>")
        if markers:
            svg.extend(
                f"<circle cx='{frame.x(x):.1f}' cy='{frame.y(y):.1f}' r='2.5' fill='{colour}'/>"
                for x, y in pairs
            )
    return _figure(title, "".join(svg), [name for name, _, _ in series])


def _scatter(
    title: str, series: list[tuple[str, Sequence[float | None], Sequence[float | None]]]
) -> str:
    thinned = [(name, _thin(xs, ys, MAX_SCATTER_POINTS)) for name, xs, ys in series]
    values = [v for _, pairs in thinned for pair in pairs for v in pair]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    frame = _Frame(low, high, low, high)
    svg = [
        frame.axes("actual", "predicted"),
        f"<line x1='{frame.x(low)}' y1='{frame.y(low)}' x2='{frame.x(high)}' "
        f"y2='{frame.y(high)}' stroke='#bbb' stroke-dasharray='4 3'/>",
    ]
    for i, (_, pairs) in enumerate(thinned):
        colour = COLOURS[i % len(COLOURS)]
        svg.extend(
            f"<circle cx='{frame.x(x):.1f}' cy='{frame.y(y):.1f}' r='1.8' fill='{colour}' "
            "fill-opacity='0.6'/>"
            for x, y in pairs
        )
    return _figure(title, "".join(svg), [name for name, _ in thinned])


def _bars(title: str, edges: Sequence[float | None], counts: Sequence[int]) -> str:
    finite = [e for e in edges if e is not None]
    if not finite or not counts:
        return ""
    frame = _Frame(min(finite), max(finite), 0.0, float(max(counts)))
    svg = [frame.axes("residual", "rows")]
    for left, right, count in zip(edges, edges[1:], counts, strict=False):
        if left is None or right is None:
            continue
        x, w = frame.x(left), max(frame.x(right) - frame.x(left) - 1, 1)
        svg.append(
            f"<rect x='{x:.1f}' y='{frame.y(count):.1f}' width='{w:.1f}' "
            f"height='{frame.y(0) - frame.y(count):.1f}' fill='{COLOURS[0]}'/>"
        )
    return _figure(title, "".join(svg), [])
