"""The HTML report in headless Chromium: every image loads, has plain axis titles, and the page logs no errors."""
import json
import re
import shutil
import subprocess

import pytest

from analyses.reporting import ReportSettings, build_report
from tests.report_fixtures import report_inputs
from tests.test_report_readability import CODE

# Installed before the page's own content so it sees every error, including
# images that fail to decode (error events on elements do not bubble, hence capture).
PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener("error", function (event) {
  var target = event.target || {};
  window.__errors.push(target.tagName ? "resource failed: " + target.tagName + " " + String(target.src).slice(0, 60)
                                      : "script error: " + event.message);
}, true);
var __consoleError = console.error;
console.error = function () { window.__errors.push("console.error: " + Array.from(arguments).join(" ")); __consoleError.apply(console, arguments); };
</script>"""
PROBE_BODY = """<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images).map(function (img) {
    return {alt: img.alt.slice(0, 40), loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth,
            titles: img.dataset.axisTitles || "", ticks: img.dataset.tickLabels || ""};
  });
  var out = document.createElement("pre");
  out.id = "probe-result";
  out.textContent = JSON.stringify({images: images, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium not installed: `apt-get install chromium` (.ci/run does this before `make test`)")


@pytest.mark.browser
def test_every_image_loads_without_console_errors(tmp_path):
    chromium = _chromium()
    inputs = report_inputs(tmp_path)
    result = build_report(**inputs, output_dir=tmp_path / "out", settings=ReportSettings(formats=("html",)))
    html = result.html_path.read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_BODY + "</body>", 1),
                      encoding="utf-8")
    completed = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r'<pre id="probe-result">(.*?)</pre>', completed.stdout, re.S)
    assert match, f"probe did not run; chromium exit {completed.returncode}: {completed.stderr[-2000:]}"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                       .replace("&gt;", ">"))
    assert len(probe["images"]) == html.count("<img ")
    assert len(probe["images"]) == 34  # 18 + a sensitivity figure per service and outcome + 4 of "How support works"
    not_loaded = [image["alt"] for image in probe["images"] if not image["loaded"]]
    assert not_loaded == []
    # every figure has an axis title, and axis words are plain names, never code names
    untitled = [image["alt"] for image in probe["images"] if not image["titles"].strip(" |")]
    assert untitled == []
    coded = {image["alt"]: CODE.findall(image["titles"] + " " + image["ticks"]) for image in probe["images"]}
    assert not any(coded.values()), coded
    assert probe["errors"] == []
    console_errors = [line for line in completed.stderr.splitlines()
                      if "CONSOLE" in line and ("Uncaught" in line or ":ERROR:" in line)]
    assert console_errors == []
