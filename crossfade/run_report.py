"""The lifecycle run report: one self-contained HTML page per run that a release manager reads
to see what happened, stage by stage (data, features, models, gate, rollout, experiment).

Each stage is a `StageReport`: a status, one sentence, a few facts, links to the detailed
reports (Data Docs, evaluation report, experiment report) and optional plots. The page embeds
its plots (base64 PNG), so it can be attached to an MLflow run or a Prefect artifact as one
file. Stages that did not run still appear, with the reason, so a short run reads as clearly
as a full one.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from crossfade.data.lake import atomic_write_text

REPORT_FILE = "index.html"
STATUS_CLASS = {
    "ok": "pass",
    "passed": "pass",
    "promoted": "pass",
    "published": "pass",
    "live": "pass",
    "ship": "pass",
    "skipped": "na",
    "not run": "na",
    "continue": "na",
    "inconclusive": "na",
    "refused": "fail",
    "failed": "fail",
    "rolled_back": "fail",
    "quarantined": "fail",
    "abort": "fail",
}
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
h1{margin-bottom:.2em}.meta{color:#666}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
.pass{color:#1a7f1a;font-weight:bold}.fail{color:#b00020;font-weight:bold}
.na{color:#888;font-weight:bold}img{max-width:100%}
section{border-top:1px solid #ddd;margin-top:1.2em}
"""


@dataclass
class StageReport:
    """What one lifecycle stage did, in the words and numbers a release manager needs."""

    name: str
    status: str
    summary: str
    facts: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    figures: list[bytes] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """Render a matplotlib figure (made without pyplot) to PNG bytes."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def rollout_timeline(
    transitions: Sequence[Mapping[str, Any]], windows: Sequence[Mapping[str, Any]]
) -> bytes | None:
    """Plot the green traffic share over time with the phase changes, and each guardrail
    window's verdict; `transitions` have `at` (datetime), `phase`, `split`; `windows` have
    `at`, `verdict` (PASS/BREACH/INCONCLUSIVE). Returns None with nothing to plot."""
    if not transitions:
        return None
    fig = Figure(figsize=(9, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    start = min(t["at"] for t in transitions)
    xs = [(t["at"] - start).total_seconds() for t in transitions]
    ys = [float(t.get("split", 0.0)) for t in transitions]
    ax.step(xs, ys, where="post", color="#2b6cb0", label="green traffic %")
    for x, t in zip(xs, transitions, strict=True):
        ax.annotate(str(t["phase"]), (x, 0), rotation=90, fontsize=7, va="bottom", color="#555")
    colours = {"PASS": "#1a7f1a", "BREACH": "#b00020", "INCONCLUSIVE": "#999999"}
    for w in windows:
        x = (w["at"] - start).total_seconds()
        ax.scatter([x], [102], color=colours.get(str(w["verdict"]), "#999999"), s=18)
    ax.set_ylim(-2, 108)
    ax.set_xlabel("seconds since the rollout started")
    ax.set_ylabel("green share (%)")
    ax.set_title("Rollout timeline (dots: guardrail windows; green pass, red breach, grey pause)")
    ax.legend(loc="center right", fontsize=8)
    return figure_png(fig)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    return str(value)


def _link(target: str, folder: Path) -> str:
    """Relative link for files under the report's data root, absolute URL otherwise."""
    if "://" in target:
        return target
    try:
        return os.path.relpath(Path(target), folder)
    except ValueError:
        return Path(target).as_uri()


def _stage_html(stage: StageReport, folder: Path) -> str:
    css = STATUS_CLASS.get(stage.status.lower(), "na")
    out = [
        f"<section><h2>{html.escape(stage.name)} "
        f"<span class='{css}'>{html.escape(stage.status)}</span></h2>",
        f"<p>{html.escape(stage.summary)}</p>",
    ]
    if stage.facts:
        out.append("<table>")
        for key, value in stage.facts.items():
            out.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_value(value))}</td>")
        out.append("</table>")
    if stage.rows:
        columns = list(dict.fromkeys(k for row in stage.rows for k in row))
        out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns))
        for row in stage.rows:
            cells = "".join(f"<td>{html.escape(_value(row.get(c, '')))}</td>" for c in columns)
            out.append(f"<tr>{cells}</tr>")
        out.append("</table>")
    if stage.links:
        items = "".join(
            f"<li><a href='{html.escape(_link(target, folder))}'>{html.escape(label)}</a></li>"
            for label, target in stage.links.items()
        )
        out.append(f"<ul>{items}</ul>")
    for png in stage.figures:
        data = base64.b64encode(png).decode()
        out.append(f"<img alt='{html.escape(stage.name)} plot' src='data:image/png;base64,{data}'>")
    out.append("</section>")
    return "\n".join(out)


def render_run_report(
    title: str, stages: Sequence[StageReport], meta: Mapping[str, Any], folder: Path
) -> str:
    """The report page as an HTML string (links relative to `folder`)."""
    overview = "".join(
        f"<tr><td>{html.escape(s.name)}</td>"
        f"<td class='{STATUS_CLASS.get(s.status.lower(), 'na')}'>{html.escape(s.status)}</td>"
        f"<td>{html.escape(s.summary)}</td></tr>"
        for s in stages
    )
    meta_line = " · ".join(f"{html.escape(k)}: {html.escape(_value(v))}" for k, v in meta.items())
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(title)}</h1><p class='meta'>{meta_line}</p>",
            "<h2>At a glance</h2><table><tr><th>stage</th><th>status</th><th>what happened</th>",
            overview,
            "</table>",
            *(_stage_html(stage, folder) for stage in stages),
            "</body></html>",
        ]
    )


def write_run_report(
    folder: Path, title: str, stages: Sequence[StageReport], meta: Mapping[str, Any]
) -> Path:
    """Write `folder/index.html` atomically and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = {"written": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), **meta}
    path = folder / REPORT_FILE
    atomic_write_text(path, render_run_report(title, stages, stamp, folder))
    return path
