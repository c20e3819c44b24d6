"""Open a report in headless Chromium: screenshot it and check what actually rendered.

Used by the browser test and by ``docs/screenshots.py``. Chromium runs with a fresh profile
and no network, background services or GPU. The check injects a small script into a copy of
the page that, after the load event, records for every ``<img>`` whether it decoded and how
many distinct colours a downscaled copy has (a blank image has one), the height of every
section, and every JavaScript error or ``console.error``; ``--dump-dom`` returns the result.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Flags for a quiet, isolated headless run (``--user-data-dir`` is added per call).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio"]

_CHECK = """<script>
window.__pf_errors = [];
window.addEventListener('error', function (e) {
  __pf_errors.push(String(e.message || (e.target && (e.target.src || '').slice(0, 60)) || e));
}, true);
(function () { var ce = console.error; console.error = function () {
  __pf_errors.push(Array.prototype.join.call(arguments, ' ')); ce.apply(console, arguments); }; })();
window.addEventListener('load', function () {
  var imgs = Array.prototype.map.call(document.images, function (im) {
    var w = Math.min(im.naturalWidth, 160), h = Math.min(im.naturalHeight, 160), colours = 0;
    if (w > 0 && h > 0) {
      var c = document.createElement('canvas'); c.width = w; c.height = h;
      var g = c.getContext('2d'); g.drawImage(im, 0, 0, w, h);
      var d = g.getImageData(0, 0, w, h).data, seen = {};
      for (var i = 0; i < d.length; i += 4) { seen[(d[i] >> 4) + ',' + (d[i+1] >> 4) + ',' + (d[i+2] >> 4)] = 1; }
      colours = Object.keys(seen).length;
    }
    var sec = im.closest('section');
    return {alt: im.alt, section: sec ? sec.dataset.section : null, complete: im.complete,
            width: im.naturalWidth, height: im.naturalHeight, shown_width: im.width, colours: colours};
  });
  var secs = Array.prototype.map.call(document.querySelectorAll('section.report-section'),
    function (s) { return {id: s.dataset.section, height: s.getBoundingClientRect().height,
                           caption: (s.querySelector('p.caption') || {}).textContent || '',
                           images: s.querySelectorAll('img').length}; });
  var pre = document.createElement('pre'); pre.id = 'prismflow-check';
  pre.textContent = JSON.stringify({images: imgs, sections: secs, errors: __pf_errors});
  document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


def _run(exe: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="prismflow-chromium-") as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def only_section(text: str, section_id: str) -> str:
    """A report page's HTML with every ``<section>`` but ``section_id`` hidden (header and
    navigation stay), so that a screenshot of the top of the page shows that section."""
    if f'<section id="{section_id}"' not in text:
        raise ValueError(f"the page has no section {section_id!r}")
    style = f"<style>section:not(#{section_id}){{display:none !important}}</style>"
    return text.replace("</head>", style + "</head>", 1)


def screenshot(page: str | Path, png: str | Path, *, width: int = 1280, height: int = 900,
               section: str | None = None, exe: str | None = None, timeout: float = 120) -> Path:
    """Screenshot of the top ``width`` × ``height`` CSS pixels of ``page``; with ``section``
    (a section id, e.g. ``"model"``) of the page showing only that section under its header."""
    exe = exe or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found on PATH")
    png = Path(png).absolute()
    shown = Path(page)
    if section is not None:
        shown = shown.with_name(f".shot-{section}-{shown.name}")
        shown.write_text(only_section(Path(page).read_text(encoding="utf-8"), section), encoding="utf-8")
    try:
        proc = _run(exe, [f"--screenshot={png}", f"--window-size={width},{height}",
                          "--virtual-time-budget=10000", shown.absolute().as_uri()], timeout)
    finally:
        if section is not None:
            shown.unlink(missing_ok=True)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot ({proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return png


def check_page(page: str | Path, *, exe: str | None = None, timeout: float = 120) -> dict:
    """What rendered: ``{"images": [...], "sections": [...], "errors": [...]}`` (see above).

    ``errors`` also holds the console messages Chromium logged at error level.
    """
    exe = exe or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found on PATH")
    text = Path(page).read_text(encoding="utf-8")
    probe = Path(page).with_name(f".check-{Path(page).name}")
    probe.write_text(text.replace("<head>", "<head>\n" + _CHECK, 1), encoding="utf-8")
    try:
        proc = _run(exe, ["--dump-dom", "--virtual-time-budget=10000", "--enable-logging=stderr",
                          "--v=0", probe.absolute().as_uri()], timeout)
    finally:
        probe.unlink(missing_ok=True)
    m = re.search(r'<pre id="prismflow-check">(.*?)</pre>', proc.stdout, flags=re.S)
    if not m:
        raise RuntimeError(f"the page's check did not run (chromium exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    result = json.loads(html.unescape(m.group(1)))
    result["errors"] += [line for line in proc.stderr.splitlines()
                         if "CONSOLE" in line and ("Uncaught" in line or "ERROR" in line)]
    return result
