"""The HTML report opened in headless Chromium (Debian's `chromium`, installed by scripts/test when absent): the
page is self-contained and its three charts draw their bars."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from guardian.history import UsageRecord
from guardian.report import build_report
from guardian.report_html import CHART_IDS, as_html

T0 = 1_795_000_000.0


def chromium() -> str:
    found = os.environ.get("GUARDIAN_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("no chromium: run the tests with scripts/test, which installs Debian's chromium package")
    return found


def rendered_dom(page: Path) -> str:
    """The page's DOM after its scripts ran (plotly draws the charts as SVG)."""
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout


def test_the_html_report_draws_its_charts_in_a_browser(tmp_path: Path) -> None:
    records = [
        UsageRecord(
            "call", T0 + i * 40_000, f"r{i}", "ab"[i % 2], "u", "t", model="m", cost_micro_usd=100_000 * (i + 1)
        )
        for i in range(6)
    ]
    records += [
        UsageRecord("outcome", T0 + 1, "r0", success=True, value_micro_usd=500_000),
        UsageRecord("cache_hit", T0 + 2, "r0", "a", "u", "t", model="m", saved_micro_usd=70_000),
        UsageRecord("halt", T0 + 3, "r1", "b", "u", "t", reason="LoopDetected", detail="cycle"),
    ]
    page = tmp_path / "report.html"
    page.write_text(as_html(build_report(records, since=T0, until=T0 + 300_000)))
    assert "<script src=" not in page.read_text()  # nothing fetched: plotly.js is inside the page
    dom = rendered_dom(page)
    starts = [dom.index(f'id="{chart}"') for chart in CHART_IDS]
    sections = [dom[a:b] for a, b in zip(starts, [*starts[1:], len(dom)], strict=True)]
    bars = [len(re.findall(r'<g class="point"', section)) for section in sections]
    assert all('class="main-svg"' in section for section in sections)
    assert bars[0] == 6  # three days, two agents each
    assert bars[1] == 1  # one agent with a successful run
    assert bars[2] == 6  # saved by caches and by routing, and wasted, for two agents
    assert "LoopDetected: cycle" in dom
