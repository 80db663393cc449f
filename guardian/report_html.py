"""A spend report as one self-contained HTML page with charts (plotly; ``pip install 'guardian-supervisor[report]'``).

Three charts: spend per UTC day by agent, cost per successful run by group, and what caches and routing saved
against what loops wasted by group; then the report's table, halts by reason and the costliest runs. plotly.js is
inlined once, so the file opens anywhere, offline.
"""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Any

from guardian.amounts import MICRO_USD, usd
from guardian.report import Report, cell_text, minute_utc, shown_columns

__all__ = ["CHART_IDS", "as_html"]

CHART_IDS = ("chart-spend", "chart-success", "chart-savings")


def _dollars(micro: int) -> float:
    return float(Decimal(micro) / MICRO_USD)


def _figures(report: Report) -> list[Any]:
    try:
        import plotly.graph_objects as go
    except ImportError as exc:  # pragma: no cover - plotly is a dev dependency here
        raise ImportError("the HTML report needs plotly: pip install 'guardian-supervisor[report]'") from exc

    days = list(report.daily)
    agents = sorted({a for per_agent in report.daily.values() for a in per_agent})
    spend = go.Figure(
        [go.Bar(name=a, x=days, y=[_dollars(report.daily[d].get(a, 0)) for d in days]) for a in agents],
        layout={
            "barmode": "stack",
            "title": "Spend per day (UTC) by agent",
            "yaxis": {"title": "USD"},
            "xaxis": {"type": "category"},
        },
    )
    judged = [r for r in report.rows if r.successful_runs]
    success = go.Figure(
        [
            go.Bar(
                name="cost per successful run",
                x=[r.key for r in judged],
                y=[_dollars(r.cost_per_success_micro_usd or 0) for r in judged],
            )
        ],
        layout={"title": f"Cost per successful run by {report.by}", "yaxis": {"title": "USD"}},
    )
    if not judged:
        success.add_annotation(text="no outcomes recorded (Guardian.record_outcome)", showarrow=False)
    keys = [r.key for r in report.rows]
    savings = go.Figure(
        [
            go.Bar(name="saved by caches", x=keys, y=[_dollars(r.cache_saved_micro_usd) for r in report.rows]),
            go.Bar(name="saved by routing", x=keys, y=[_dollars(r.routing_saved_micro_usd) for r in report.rows]),
            go.Bar(name="wasted in loops", x=keys, y=[_dollars(r.loop_waste_micro_usd) for r in report.rows]),
        ],
        layout={"barmode": "group", "title": f"Saved and wasted by {report.by}", "yaxis": {"title": "USD"}},
    )
    return [spend, success, savings]


def as_html(report: Report) -> str:
    figures = _figures(report)
    charts = [
        figure.to_html(
            full_html=False,
            include_plotlyjs=(i == 0),
            div_id=CHART_IDS[i],
            default_height="420px",
            default_width="100%",
            config={"responsive": True, "displaylogo": False},
        )
        for i, figure in enumerate(figures)
    ]
    e = html.escape
    columns = shown_columns(report)
    head = "".join(f"<th>{e(t)}</th>" for t in [report.by, *(title for title, _ in columns)])
    body = "".join(
        "<tr>"
        + f"<td>{e(row.key)}</td>"
        + "".join(f"<td>{e(cell_text(row, name))}</td>" for _, name in columns)
        + "</tr>"
        for row in [*report.rows, report.total]
    )
    halts = "".join(f"<li>{n} × {e(reason)}</li>" for reason, n in report.halts.items()) or "<li>none</li>"
    runs = "".join(
        f"<tr><td>{e(usd(r.cost_micro_usd))}</td><td>{r.calls}</td><td>{e(r.run)}</td><td>{e(r.agent)}</td>"
        f"<td>{e(r.user)}</td><td>{e(r.tenant)}</td><td>{e(r.halted or '')}</td>"
        f"<td>{e({True: 'succeeded', False: 'failed', None: ''}[r.success])}</td></tr>"
        for r in report.top_runs
    )
    title = f"Guardian spend report, {minute_utc(report.since)} to {minute_utc(report.until)} UTC"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.chart {{ max-width: 1100px; margin-bottom: 1rem; }}
</style></head>
<body>
<h1>{e(title)}</h1>
<p>Total spend {e(usd(report.total.cost_micro_usd))} over {report.total.calls:,} model calls and
{report.total.runs:,} runs; caches saved {e(usd(report.total.cache_saved_micro_usd))}; loops wasted
{e(usd(report.total.loop_waste_micro_usd))}.</p>
<div class="charts">{"".join(f'<div class="chart">{c}</div>' for c in charts)}</div>
<h2>By {e(report.by)}</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>Halts by reason</h2><ul>{halts}</ul>
<h2>Costliest runs</h2>
<table><thead><tr><th>cost</th><th>calls</th><th>run</th><th>agent</th><th>user</th><th>tenant</th><th>halted</th>
<th>outcome</th></tr></thead><tbody>{runs}</tbody></table>
</body></html>
"""
