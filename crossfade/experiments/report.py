"""The experiment report: one self-contained HTML page (plots as base64 PNG data URIs).

Sections: the decision and its reasons; SRM status; effects with confidence intervals per
metric and segment (forest plot); the sequential boundary with the observed z path of each
success metric; novelty; the metric table. Same house style as the evaluation report.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from crossfade.data.lake import atomic_write_text
from crossfade.experiments.analysis import Analysis

REPORT_FILE = "index.html"
RESULT_FILE = "analysis.json"
_DPI = 80
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
h1{margin-bottom:.2em}.meta{color:#666}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.SHIP{color:#1a7f1a}.ABORT,.INVALID{color:#b00020}.CONTINUE,.INCONCLUSIVE{color:#8a6d00}
.better{background:#d9f2d9}.worse{background:#f8d7d7}img{max-width:100%}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    finally:
        fig.clear()
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _forest(analysis: Analysis) -> str:
    """Relative effect (%) with 95% CI per metric (overall) and per segment value."""
    rows: list[tuple[str, float, float, float]] = []
    means = {}
    for m in analysis.metrics:
        base = m.comparison.control.mean
        means[m.metric] = base
        if base:
            c = m.comparison
            rows.append(
                (f"{m.metric} (all)", c.difference / base, c.ci_low / base, c.ci_high / base)
            )
    for s in analysis.segments:
        base = means.get(s.metric, 0.0)
        if base:
            rows.append(
                (
                    f"{s.metric} | {s.segment}={s.value}",
                    s.difference / base,
                    s.ci_low / base,
                    s.ci_high / base,
                )
            )
    if not rows:
        return "<p>no effects to plot</p>"
    rows = rows[:60]
    fig = _figure(8, 0.25 * len(rows) + 1)
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    est = np.array([r[1] for r in rows]) * 100
    lo = np.array([r[2] for r in rows]) * 100
    hi = np.array([r[3] for r in rows]) * 100
    ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="o", ms=3, capsize=2)
    ax.axvline(0, color="#888", lw=1)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=7)
    ax.set_xlabel("relative effect, % of control (95% CI)")
    return _png(fig)


def _boundary(analysis: Analysis) -> str:
    """Sequential bounds against the information fraction, with each success metric's z."""
    t = np.array(analysis.fractions)
    b = np.minimum(analysis.boundary.bounds, 8)
    fig = _figure(7, 3.5)
    ax = fig.add_subplot()
    ax.plot(t, b, "k--", label="efficacy bound")
    ax.plot(t, -b, "k--")
    for m in analysis.metrics:
        if m.role == "success" and m.z_path:
            ax.plot(t[: len(m.z_path)], m.z_path, "o-", ms=3, label=f"z {m.metric}")
    ax.axhline(1.96, color="#c66", lw=0.8, ls=":", label="naive 1.96")
    ax.axhline(-1.96, color="#c66", lw=0.8, ls=":")
    ax.set_xlabel("information fraction")
    ax.set_ylabel("z")
    ax.legend(fontsize=7)
    return _png(fig)


def render_report(analysis: Analysis, title: str) -> str:
    """The report's HTML."""
    d = analysis.decision
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='meta'>treatment {_e(analysis.treatment)}; look "
        f"{analysis.deciding_look + 1} of {len(analysis.look_days)} (day "
        f"{analysis.look_days[analysis.deciding_look]}, information fraction "
        f"{analysis.fractions[analysis.deciding_look]:.2f})</p>",
        f"<h2>Decision: <span class='{d.decision.value}'>{d.decision.value}</span></h2><ul>",
        *(f"<li>{_e(r)}</li>" for r in d.reasons),
        "</ul><h2>Sample-ratio mismatch</h2>",
        f"<p>{'<b class=ABORT>MISMATCH</b>' if analysis.srm.flagged else 'ok'}: observed "
        f"{_e(analysis.srm.observed)}, expected "
        f"{_e({k: round(v, 1) for k, v in analysis.srm.expected.items()})}, chi-square "
        f"{analysis.srm.statistic:.3f}, p = {analysis.srm.p_value:.4g}</p>",
        "<h2>Metrics</h2><table><tr><th>metric</th><th>role</th><th>control</th>"
        "<th>treatment</th><th>difference</th><th>95% CI</th><th>p</th><th>p adj.</th>"
        "<th>bound |z|</th><th>CUPED var. red.</th><th>NI p</th></tr>",
    ]
    for m in analysis.metrics:
        c = m.comparison
        cls = "better" if m.verdict.better else "worse" if m.verdict.worse else ""
        vr = f"{m.variance_reduction:.1%}" if m.variance_reduction is not None else ""
        ni = f"{m.non_inferiority.p_value:.3g}" if m.non_inferiority else ""
        parts.append(
            f"<tr class='{cls}'><td>{_e(m.metric)}</td><td>{m.role}</td><td>{c.control.mean:.4g}"
            f"</td><td>{c.treatment.mean:.4g}</td><td>{c.difference:+.4g}</td>"
            f"<td>[{c.ci_low:.4g}, {c.ci_high:.4g}]</td><td>{c.p_value:.3g}</td>"
            f"<td>{m.p_adjusted:.3g}</td><td>{m.bound:.3f}</td><td>{vr}</td><td>{ni}</td></tr>"
        )
    parts.append("</table><h2>Sequential boundary and observed z</h2>")
    parts.append(_boundary(analysis))
    parts.append(
        "<p>Decisions by look: " + ", ".join(_e(x) for x in analysis.decisions_by_look) + "</p>"
    )
    parts.append("<h2>Effects by metric and segment</h2>")
    parts.append(_forest(analysis))
    parts.append(
        "<h3>Interaction tests (Cochran's Q)</h3><table><tr><th>metric</th>"
        "<th>segment</th><th>Q</th><th>dof</th><th>p</th></tr>"
    )
    for items in analysis.interactions.values():
        for i in items:
            parts.append(
                f"<tr><td>{_e(i.metric)}</td><td>{_e(i.segment)}</td><td>{i.q:.2f}</td>"
                f"<td>{i.dof}</td><td>{i.p_value:.3g}</td></tr>"
            )
    parts.append(
        "</table><h2>Novelty (effect by days since first exposure)</h2><table>"
        "<tr><th>metric</th><th>effects by day</th><th>slope</th><th>p</th>"
        "<th>flagged</th></tr>"
    )
    for name, n in analysis.novelty.items():
        effects = ", ".join(f"{v:+.3g}" for v in n.differences)
        parts.append(
            f"<tr><td>{_e(name)}</td><td>{effects}</td><td>{n.slope:+.3g}</td>"
            f"<td>{n.p_value:.3g}</td><td>{'yes' if n.flagged else 'no'}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)


def write_report(folder: Path, analysis: Analysis, title: str) -> Path:
    """Write index.html and analysis.json into `folder` atomically; returns the HTML path."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / RESULT_FILE, json.dumps(analysis.to_dict(), indent=2, default=str))
    path = folder / REPORT_FILE
    atomic_write_text(path, render_report(analysis, title))
    return path
