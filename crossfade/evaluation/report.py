"""Offline evaluation report: one self-contained HTML page (plots embedded as base64 PNG data
URIs) that can be attached to an MLflow run as a single artifact. Every section degrades to a
short "not available" note when its input is missing, so a partial evaluation still yields a
readable page."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from crossfade.data.lake import atomic_write_text

REPORT_FILE = "index.html"
DEFAULT_SLICE_METRIC = "ndcg"

SECTION_METRICS = "Metrics"
SECTION_SLICES = "Metrics by slice"
SECTION_TRADEOFF = "Accuracy vs diversity trade-off"
SECTION_POPULARITY = "Popularity bias curve"
SECTION_CHAMPION = "Champion vs challenger"
SECTION_NOTES = "Notes"

SLICE_COLUMNS = ("slice", "value", "metric", "mean", "ci_low", "ci_high", "n_users")
TRADEOFF_COLUMNS = ("setting", "ndcg", "diversity", "long_tail_share")
POPULARITY_COLUMNS = ("popularity_decile", "share_of_recommendations", "share_of_plays")

# substrings of metric names where a smaller value is the better one
_LOWER_IS_BETTER = ("latency", "popularity", "error", "loss", "rmse", "mae", "skip")
# reason fragments written by crossfade.evaluation.gate.decide when a check fails
_FAIL_MARKERS = ("fail closed", "breached", "not better than champion")

_DPI = 80
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
h1{margin-bottom:.2em}.meta{color:#666}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.better{background:#d9f2d9}.worse{background:#f8d7d7}
.pass{color:#1a7f1a;font-weight:bold}.fail{color:#b00020;font-weight:bold}
.na{color:#888;font-style:italic}img{max-width:100%}
"""


def write_evaluation_report(
    folder: Path,
    title: str,
    metrics: dict[str, float],
    baseline: dict[str, float] | None,
    champion: dict[str, float] | None,
    slices: pd.DataFrame | None,
    tradeoff: pd.DataFrame | None,
    popularity_curve: pd.DataFrame | None,
    gate_reasons: list[str],
    notes: dict[str, str] | None = None,
    *,
    passed: bool | None = None,
    slice_metric: str = DEFAULT_SLICE_METRIC,
    extra_sections: Mapping[str, str] | None = None,
) -> Path:
    """Write `folder/index.html` atomically and return its path. `passed` is the gate verdict
    (`GateDecision.passed`); when None it is inferred from `gate_reasons` (failure phrases of
    `gate.decide`). `slice_metric` picks the metric plotted per slice (ndcg by default)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_FILE
    page = render_evaluation_report(
        title,
        metrics,
        baseline,
        champion,
        slices,
        tradeoff,
        popularity_curve,
        gate_reasons,
        notes,
        passed=passed,
        slice_metric=slice_metric,
        extra_sections=extra_sections,
    )
    atomic_write_text(path, page)
    return path


def render_evaluation_report(
    title: str,
    metrics: Mapping[str, float],
    baseline: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    slices: pd.DataFrame | None,
    tradeoff: pd.DataFrame | None,
    popularity_curve: pd.DataFrame | None,
    gate_reasons: Sequence[str],
    notes: Mapping[str, str] | None = None,
    *,
    passed: bool | None = None,
    slice_metric: str = DEFAULT_SLICE_METRIC,
    extra_sections: Mapping[str, str] | None = None,
) -> str:
    """The report page as an HTML string (see `write_evaluation_report`). `extra_sections`
    maps a heading to a trusted HTML body (e.g. the bias audit of crossfade.safety)."""
    sections = [
        _header(title, gate_reasons, passed),
        _section(SECTION_METRICS, _metrics_table(metrics, baseline, champion)),
        _section(SECTION_SLICES, _figure_or_note(_slices_figure, slices, slice_metric)),
        _section(SECTION_TRADEOFF, _figure_or_note(_tradeoff_figure, tradeoff)),
        _section(SECTION_POPULARITY, _figure_or_note(_popularity_figure, popularity_curve)),
        _section(SECTION_CHAMPION, _champion_block(metrics, champion)),
    ]
    for name, body in (extra_sections or {}).items():
        sections.append(_section(name, body))
    if notes:
        items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in notes.items())
        sections.append(_section(SECTION_NOTES, f"<dl>{items}</dl>"))
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


# --- html helpers ----------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _na(what: str) -> str:
    return f"<p class='na'>Not available: {_e(what)}.</p>"


def _section(name: str, body: str) -> str:
    return f"<section>\n<h2>{_e(name)}</h2>\n{body}\n</section>"


def _fmt(value: float | None) -> str:
    if value is None:
        return "&mdash;"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return _e(value)
    return "NaN" if math.isnan(v) else _e(f"{v:.4g}")


def _infer_passed(reasons: Sequence[str]) -> bool | None:
    if not reasons:
        return None
    return not any(m in r.lower() for r in reasons for m in _FAIL_MARKERS)


def _header(title: str, reasons: Sequence[str], passed: bool | None) -> str:
    verdict = passed if passed is not None else _infer_passed(reasons)
    if verdict is None:
        badge = "<span class='na'>not evaluated</span>"
    else:
        badge = (
            "<span class='pass'>PASSED</span>" if verdict else "<span class='fail'>FAILED</span>"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    items = "".join(f"<li>{_e(r)}</li>" for r in reasons)
    listing = f"<ul>{items}</ul>" if items else _na("no gate reasons were given")
    return (
        f"<header>\n<h1>{_e(title)}</h1>\n<p class='meta'>Generated {_e(stamp)}</p>\n"
        f"<p>Gate verdict: {badge}</p>\n{listing}\n</header>"
    )


def _lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return any(s in name for s in _LOWER_IS_BETTER)


def _diff_cell(metric: str, value: float | None, other: float | None) -> str:
    if value is None or other is None:
        return "<td>&mdash;</td>"
    try:
        diff = float(value) - float(other)
    except (TypeError, ValueError):
        return "<td>&mdash;</td>"
    if not math.isfinite(diff):
        return "<td>&mdash;</td>"
    good = diff < 0 if _lower_is_better(metric) else diff > 0
    css = "" if diff == 0 else (" class='better'" if good else " class='worse'")
    return f"<td{css}>{_e(f'{diff:+.4g}')}</td>"


def _metrics_table(
    metrics: Mapping[str, float],
    baseline: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
) -> str:
    if not metrics:
        return _na("no metrics were computed for this model")
    head = "<tr><th>metric</th><th>this model</th>"
    if baseline is not None:
        head += "<th>baseline (candidate-score order)</th><th>&Delta; baseline</th>"
    if champion is not None:
        head += "<th>champion</th><th>&Delta; champion</th>"
    rows = [head + "</tr>"]
    for name, value in metrics.items():
        row = f"<tr><td>{_e(name)}</td><td>{_fmt(value)}</td>"
        for ref in (baseline, champion):
            if ref is not None:
                other = ref.get(name)
                row += f"<td>{_fmt(other)}</td>{_diff_cell(name, value, other)}"
        rows.append(row + "</tr>")
    notes = []
    if baseline is None:
        notes.append(_na("baseline metrics"))
    if champion is None:
        notes.append(_na("champion metrics (no champion registered)"))
    return "<table>\n" + "\n".join(rows) + "\n</table>" + "".join(notes)


# --- plots -----------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot state, no global backend switch, nothing
    to leak (it is garbage once `_png` has rendered it)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    finally:
        fig.clear()
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="plot">'


def _missing_columns(frame: pd.DataFrame, required: Sequence[str]) -> list[str]:
    return [c for c in required if c not in frame.columns]


def _figure_or_note(
    builder: Callable[..., Figure | str], frame: pd.DataFrame | None, *args: str
) -> str:
    """Run a `_*_figure` builder: it returns a Figure, or a string saying what is missing."""
    if frame is None:
        return _na("no input was provided")
    if frame.empty:
        return _na("the input table is empty")
    result = builder(frame, *args)
    if isinstance(result, str):
        return _na(result)
    return _png(result)


def _slices_figure(slices: pd.DataFrame, metric: str) -> Figure | str:
    missing = _missing_columns(slices, SLICE_COLUMNS)
    if missing:
        return f"slice table lacks columns {', '.join(missing)}"
    available = [str(m) for m in slices["metric"].unique()]
    if metric not in available:
        prefixed = [m for m in available if m.startswith(metric)]
        if not prefixed:
            return f"metric {metric!r} not in slice table (has {', '.join(available)})"
        metric = prefixed[0]
    data = slices[slices["metric"] == metric]
    columns = list(dict.fromkeys(data["slice"].astype(str)))
    fig = _new_figure(3.2 * len(columns) + 1, 3.2)
    axes = fig.subplots(1, len(columns), squeeze=False, sharey=True)
    for ax, column in zip(axes[0], columns, strict=True):
        part = data[data["slice"].astype(str) == column]
        x = np.arange(len(part))
        mean = part["mean"].to_numpy(dtype=float)
        err = np.vstack(
            [
                np.clip(mean - part["ci_low"].to_numpy(dtype=float), 0, None),
                np.clip(part["ci_high"].to_numpy(dtype=float) - mean, 0, None),
            ]
        )
        ax.bar(x, mean, yerr=np.nan_to_num(err), capsize=3, color="#4c78a8")
        labels = [f"{v}\n(n={n})" for v, n in zip(part["value"], part["n_users"], strict=True)]
        ax.set_xticks(x, labels, fontsize=7, rotation=30 if len(part) > 4 else 0)
        ax.set_title(column, fontsize=9)
    axes[0][0].set_ylabel(metric)
    fig.suptitle(f"{metric} by slice (bootstrap CI)", fontsize=10)
    return fig


def _tradeoff_figure(tradeoff: pd.DataFrame) -> Figure | str:
    missing = _missing_columns(tradeoff, ("setting", "ndcg", "diversity"))
    if missing:
        return f"trade-off table lacks columns {', '.join(missing)}"
    fig = _new_figure(5.5, 3.8)
    ax = fig.subplots()
    color = (
        tradeoff["long_tail_share"].to_numpy(dtype=float)
        if "long_tail_share" in tradeoff.columns
        else None
    )
    points = ax.scatter(
        tradeoff["diversity"].to_numpy(dtype=float),
        tradeoff["ndcg"].to_numpy(dtype=float),
        c=color,
        cmap="viridis" if color is not None else None,
        s=40,
    )
    if color is not None:
        fig.colorbar(points, ax=ax, label="long-tail share")
    for _, row in tradeoff.iterrows():
        ax.annotate(
            str(row["setting"]),
            (float(row["diversity"]), float(row["ndcg"])),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.margins(0.2)  # room for the labels of the outermost points
    ax.set_xlabel("diversity")
    ax.set_ylabel("ndcg")
    ax.set_title("accuracy vs diversity", fontsize=10)
    return fig


def _popularity_figure(curve: pd.DataFrame) -> Figure | str:
    missing = _missing_columns(curve, POPULARITY_COLUMNS)
    if missing:
        return f"popularity curve lacks columns {', '.join(missing)}"
    data = curve.sort_values("popularity_decile")
    x = data["popularity_decile"].to_numpy(dtype=float)
    fig = _new_figure(5.5, 3.5)
    ax = fig.subplots()
    ax.plot(x, data["share_of_recommendations"].to_numpy(dtype=float), "o-", label="recommended")
    ax.plot(x, data["share_of_plays"].to_numpy(dtype=float), "s--", label="played")
    ax.set_xlabel("item popularity decile")
    ax.set_ylabel("share")
    ax.set_title("popularity bias", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _champion_block(metrics: Mapping[str, float], champion: Mapping[str, float] | None) -> str:
    if champion is None:
        return _na("no champion is registered, so there is nothing to compare against")
    shared = [m for m in metrics if m in champion]
    if not shared:
        return _na("the champion shares no metric with this model")
    fig = _new_figure(6, 0.45 * len(shared) + 1.2)
    ax = fig.subplots()
    y = np.arange(len(shared))
    height = 0.4
    challenger = [_as_float(metrics[m]) for m in shared]
    champ = [_as_float(champion[m]) for m in shared]
    ax.barh(y - height / 2, champ, height, label="champion", color="#9d9d9d")
    ax.barh(y + height / 2, challenger, height, label="challenger", color="#f58518")
    ax.set_yticks(y, shared, fontsize=7)
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    ax.set_title("champion vs challenger", fontsize=10)
    return _png(fig)


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
