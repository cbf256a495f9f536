"""`cmrlib validate` as a site would use it: the run's segmenter calibrated on 20 real patients, checked on the
others. The site is `acdc-cine/` (65 real SAX cines cropped around the heart, every frame; reference volumes from
the full manual labels in `reference.csv`): a field of view unlike the full-field frames the run's intervals were
calibrated on, so its errors differ. The first 20 folders (sorted) calibrate; the other 45 are held out.

Per measure: the run's and the site's 90 % half-widths, and how often each holds the held-out patients' reference
(target: the site's interval moves coverage toward 90 %). The segmenter saw the full-field ED and ES frames of the
patients in notebook 01's training split; the crop, not the patient, drives the errors measured here.

Usage: python bench/bench_validate.py [run_dir] [data_dir]   (defaults runs/default, $CMRLIB_DATA or ../shared/data)
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from cmrlib.predictor import run_predictors
from cmrlib.validate import measure_cohort, read_reference, validate

CALIBRATE = 20
SHOWN = ("LVEDV", "LVESV", "LVEF", "LVM")


def link_cohort(folders: list[Path], dest: Path) -> Path:
    """A cohort folder of links to patient folders (the data stays where it is)."""
    dest.mkdir()
    for f in folders:
        (dest / f.name).symlink_to(f.resolve(), target_is_directory=True)
    return dest


def rows(run_dir: str | None = None, data_dir: str | None = None) -> list[dict]:
    run = Path(run_dir or "runs/default")
    data = Path(data_dir or os.environ.get("CMRLIB_DATA") or "../shared/data")
    cines = data / "acdc-cine"
    if not (run / "predictors").is_dir() or not (cines / "reference.csv").is_file():
        return [dict(figure="cmrlib validate", value=f"not measured: needs {run}/predictors and {cines}", target="")]
    torch.set_num_threads(2)
    ref = read_reference(cines / "reference.csv")
    folders = sorted(p for p in cines.iterdir() if p.is_dir() and p.name in ref)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        site = link_cohort(folders[:CALIBRATE], tmp / "site")
        files = validate(site, run, tmp / "validated", cines / "reference.csv", log=lambda *_: None, progress=False)
        cal = pd.read_csv(files["intervals"], index_col=0)
        seg = run_predictors(files["run"])[0]["segmentation"]
        held = measure_cohort(folders[CALIBRATE:], seg, ref, log=lambda *_: None, progress=False)
    held = held[held.status == "measured"]
    for m in SHOWN:
        if m not in cal.index:
            continue
        err = (held[f"{m}_auto"] - held[f"{m}_ref"]).abs().dropna()
        run_hw, site_hw = cal.loc[m, "run_half_width"], cal.loc[m, "half_width"]
        out.append(dict(figure=f"{m}: 90 % half-width, run (ACDC full field) -> site ({CALIBRATE} acdc-cine patients)",
                        value=f"{run_hw:.1f} -> {site_hw:.1f}", target=""))
        out.append(dict(figure=f"{m}: coverage of the {len(err)} held-out acdc-cine patients, run -> site",
                        value=f"{(err <= run_hw).mean():.0%} -> {(err <= site_hw).mean():.0%}", target="toward 90 %"))
    return out


if __name__ == "__main__":
    for r in rows(*sys.argv[1:3]):
        print(f"{r['figure']} | {r['value']} | {r['target']}")
