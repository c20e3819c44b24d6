"""Regenerate the README's report screenshots (docs/img/report-participant.png, report-model.png,
report-group.png).

    python docs/screenshots.py                 # builds the example, runs both levels, shoots
    python docs/screenshots.py --out prismflow_out   # reuse outputs of the README's command

Runs the bundled synthetic example through ``prismflow … participant`` and ``… group`` (unless
``--out`` names existing outputs), opens ``sub-01.html`` and ``group/report.html`` in headless
Chromium and writes small PNGs (top of each page, and the participant report's "PRISM model"
section alone under the page header; 1280 CSS px wide, scaled to 900 px, 128-colour palette,
< 300 KB each). Needs Chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def shrink(src: Path, dest: Path, width: int = 900, colours: int = 128) -> Path:
    """Scale ``src`` to ``width`` px and store it with an adaptive palette (small PNG)."""
    from PIL import Image

    im = Image.open(src).convert("RGB")
    im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    im.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="existing prismflow output folder (skip the run)")
    ap.add_argument("--dest", type=Path, default=HERE / "img", help="folder for the PNGs")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from prismflow.reports.browser import find_chromium, screenshot

    if find_chromium() is None:
        print("screenshots: chromium not found (apt-get install chromium)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="prismflow-shots-"))
    out = args.out
    if out is None:
        data, out = tmp / "data", tmp / "prismflow_out"
        subprocess.run([sys.executable, str(REPO / "bids_examples" / "make_examples.py"),
                        "--out", str(data)], check=True)
        for level in ("participant", "group"):
            subprocess.run(["prismflow", str(data / "synthetic"), str(out), level, "-q",
                            "-w", str(tmp / "work")], check=True)
    missing = [p for p in (out / "sub-01.html", out / "group" / "report.html") if not p.is_file()]
    if missing:
        print(f"screenshots: {missing[0]} not found (run the participant and group levels into "
              f"{out} first, or leave out --out)", file=sys.stderr)
        return 1
    args.dest.mkdir(parents=True, exist_ok=True)
    for page, name, height, section in ((out / "sub-01.html", "report-participant.png", 1500, None),
                                        (out / "sub-01.html", "report-model.png", 560, "model"),
                                        (out / "group" / "report.html", "report-group.png", 1300, None)):
        raw = screenshot(page, tmp / name, width=1280, height=height, section=section)
        dest = shrink(raw, args.dest / name)
        print(f"{dest} ({dest.stat().st_size / 1024:.0f} KB) from {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
