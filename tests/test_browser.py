"""A real headless Chromium, offline: TensorBoard's TEXT dashboard shows a run's operator table,
its IMAGES dashboard the roofline, and report.html renders on its own.

Offline for real: the browser resolves no name but loopback (``--host-resolver-rules``), and
each page is checked to have requested nothing beyond 127.0.0.1 / data: URIs. Assertions
read the rendered DOM, shadow roots included (TensorBoard's dashboards are web components).
Screenshots are kept in ``artifacts/browser/`` (gitignored) to look at.

Needs Debian's ``chromium`` (``.ci/install-browser``); skips, saying so, where it is absent.
"""
from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest

from harness.core.units import si
from tbserver import PROFILER, Chromium, TensorBoardServer, find_chromium, harness_runs

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "browser"

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (CI installs it with .ci/install-browser: "
                             "apt-get install -y chromium); the real-browser checks need it")


def deep_has(*needles: str) -> str:
    """JS: the page's text, shadow roots included, holds every needle."""
    from tbserver import DEEP_TEXT_JS

    checks = " && ".join(f"t.includes({json.dumps(n)})" for n in needles)
    return f"(() => {{ const t = {DEEP_TEXT_JS.strip()}; return {checks}; }})()"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return harness_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def tb(runs):
    server = TensorBoardServer(runs.logdir, log_path=runs.base / "tensorboard-browser.log").start()
    try:
        names = {runs.name(r) for r in runs.runs}
        server.wait_for(lambda: names <= set(server.json("/data/runs")), timeout=60, what="TensorBoard runs")
        server.wait_for(lambda: names <= set(server.json("/data/plugin/text/tags")), timeout=60, what="text tags")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # a new, empty user data dir
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Chromium(CHROMIUM, profile, width=1400, height=1000, log_path=profile.parent / "chromium.log") as c:
        yield c


def offline_ok(browser: Chromium) -> None:
    external = browser.external_requests()
    assert external == [], f"the page reached beyond loopback: {external}"


def test_text_dashboard_shows_operator_table(runs, tb, browser):
    r = runs.runs[0]
    conv = r.ops[r.ops["name"] == "aten::conv2d"].iloc[0]
    flops = si(conv["flops"], "FLOP")
    browser.requests.clear()
    browser.open(f"{tb.url}/#text")
    # rendered: the header, the op, its counted work and the run's name
    browser.wait_until(deep_has("Self time / forward (s)", "Achieved (FLOP/s)", "aten::conv2d", "aten::linear", flops,
                                runs.name(r)), timeout=45)
    browser.screenshot(ARTIFACTS / "tensorboard_text.png")
    # the table is a real <table> in the rendered page, with the op in a cell
    cells = browser.evaluate("""(() => { const out = []; const walk = (n) => {
        if (n.nodeType === 1 && (n.tagName === 'TD' || n.tagName === 'TH')) out.push(n.textContent.trim());
        if (n.shadowRoot) walk(n.shadowRoot); for (const c of n.childNodes) walk(c); };
        walk(document); return out; })()""")
    assert "aten::conv2d" in cells and flops in cells and "Utilization (% of peak FLOP/s)" in cells
    offline_ok(browser)


def test_images_dashboard_shows_roofline(runs, tb, browser):
    sizes = {runs.name(r): struct.unpack(">II", (r.path / "roofline.png").read_bytes()[16:24]) for r in runs.runs}
    browser.requests.clear()
    browser.open(f"{tb.url}/#images")
    browser.wait_until(deep_has("roofline", "time_by_module"), timeout=45)

    def rooflines():
        out = []
        for img in browser.deep_images():
            if "blob_key=" not in img["src"]:
                continue
            key = img["src"].split("blob_key=")[1].split("&")[0]
            _, run, tag, *_ = json.loads(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)))
            if tag == "roofline" and img["w"] > 0:
                out.append((run, img["w"], img["h"]))
        return out

    import time

    deadline = time.monotonic() + 45
    while len(rooflines()) < len(runs.runs) and time.monotonic() < deadline:
        time.sleep(0.3)
    seen = rooflines()
    assert {run for run, _, _ in seen} == {runs.name(r) for r in runs.runs}, seen
    assert all((w, h) == sizes[run] for run, w, h in seen), (seen, sizes)  # decoded, each run's own picture
    browser.screenshot(ARTIFACTS / "tensorboard_images.png")
    offline_ok(browser)


def test_profiler_plugin_page_needs_the_network(runs, tb, browser):
    """What the issue reports, kept visible: the plugin's page asks a CDN for its charts
    (www.gstatic.com), which an offline machine cannot reach; its API still answers."""
    browser.requests.clear()
    browser.open(f"{tb.url}/#pytorch_profiler")
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not browser.external_requests():
        time.sleep(0.3)
    browser.screenshot(ARTIFACTS / "tensorboard_pytorch_profiler_offline.png")
    external = browser.external_requests()
    assert external and all(e.get("error") for e in external), external  # asked, and failed offline
    assert runs.name(runs.runs[0]) in tb.json(PROFILER + "/runs")["runs"]


def test_report_html_renders_offline(runs, browser):
    r = runs.runs[0]
    report = r.path / "report.html"
    browser.requests.clear()
    browser.open(report.as_uri())
    browser.wait_until(deep_has("Summary", "Operators", "Modules", "aten::conv2d",
                                si(r.summary["achieved_flop_per_s"], "FLOP/s")), timeout=30)
    imgs = browser.wait_until("""(() => { const i = [...document.images];
        return i.length >= 2 && i.every(x => x.complete && x.naturalWidth > 0) ? i.map(x => x.alt) : null; })()""")
    assert set(imgs) >= {"roofline", "time by module"}
    browser.screenshot(ARTIFACTS / "report_html.png", full_page=True)
    # requests made by this page (a previous page's late requests may still be reported after the navigation)
    mine = [req for req in browser.requests.values() if req.get("document") == report.as_uri()]
    assert mine, browser.requests
    urls = {req["url"].split(":", 1)[0] for req in mine}
    assert urls <= {"file", "data"}, mine
