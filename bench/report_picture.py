"""The README's picture of `cmrlib analyse`: one real patient's report with a run's Predictors, opened in the system
Chromium (Debian's `chromium`, through Playwright) and photographed as a person sees its first screens.

Usage: python bench/report_picture.py PATIENT_FOLDER [run_dir] [out_png]
(defaults runs/default and figures/analyse_report.png; the report itself goes to a temporary folder).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from cmrlib.analyse import analyse

WIDTH, HEIGHT = 1100, 1500  # px: the header, the input QC and the first method's checked numbers


def chromium() -> str:
    """The system Chromium (never a downloaded build)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise SystemExit("no system Chromium: apt-get install chromium")
    return path


def picture(patient: Path, run_dir: Path, png: Path) -> Path:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        files = analyse(patient, run_dir, Path(tmp) / "report", log=lambda *_: None)
        browser = pw.chromium.launch(executable_path=chromium())
        page = browser.new_page(viewport=dict(width=WIDTH, height=HEIGHT))
        page.goto(files["html"].resolve().as_uri())
        page.wait_for_load_state("load")
        png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(png), full_page=False)
        browser.close()
    record_caption(png, f"the first screen of `cmrlib analyse` on {patient.parent.name}/{patient.name} with the "
                        f"Predictors of run '{run_dir.name}', as Chromium shows it")
    return png


def record_caption(png: Path, caption: str) -> None:
    """The figure index's caption for a figure no notebook drew (`figures/captions.json`)."""
    from cmrlib.analysis.report import EXTRA_CAPTIONS
    from cmrlib.utils import atomic_write_json

    path = png.parent / EXTRA_CAPTIONS
    got = json.loads(path.read_text()) if path.is_file() else {}
    got[png.stem] = dict(caption=caption, notebook="analyse", file=png.name)
    atomic_write_json(path, got)


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    run = Path(args[1]) if len(args) > 1 else Path("runs/default")
    out = Path(args[2]) if len(args) > 2 else Path("figures/analyse_report.png")
    print(picture(Path(args[0]), run, out))
