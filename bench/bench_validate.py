"""`cmrlib validate` as a site would use it: the run's segmenter calibrated on 20 real patients, checked on the
others. The site is `acdc-cine/` (65 real SAX cines cropped around the heart, every frame; reference volumes from
the full manual labels in `reference.csv`): a field of view unlike the full-field frames the run's intervals were
calibrated on, so its errors differ. The first 20 folders (sorted) calibrate; the other 45 are held out. ACDC
numbers its patients by diagnosis, so the site's 20 are 13 DCM and 7 HCM patients and the held-out 45 mostly MINF,
NOR and RV: a site that calibrates on a sample unlike the patients it then reports.

Per measure: the run's and the site's 90 % half-widths, and how often each holds the held-out patients' reference
(target: the site's interval moves coverage toward 90 %), and how many held-out patients the report's entropy check
("less sure than on 95 % of its validation cines") flags with the run's yardstick and with the site's. The
segmenter saw the full-field ED and ES frames of the patients in notebook 01's training split; the crop, not the
patient, drives the errors measured here.

With fine-tuning (the default; --no-fine-tune leaves it out), the same 20 patients' ED and ES masks adapt the SAX
segmenter (`validate --fine-tune`): its 5-fold CV inside the site, and the held-out 45 patients' MAE before and
after with a paired bootstrap interval.

With --stratified the site is instead the first 4 patients of each of ACDC's five diagnoses (20), the held-out 45
the rest: a site whose sample looks like the patients it then reports.

Usage: python bench/bench_validate.py [run_dir] [data_dir] [--no-fine-tune] [--stratified]
       (defaults runs/default, $CMRLIB_DATA or ../shared/data)
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from cmrlib.predictor import run_predictors
from cmrlib.stats import paired_bootstrap
from cmrlib.validate import measure_cohort, read_reference, validate

CALIBRATE = 20
PER_GROUP = 4  # --stratified: site patients per diagnosis (5 x 4 = CALIBRATE)
SHOWN = ("LVEDV", "LVESV", "LVEF", "LVM")


def link_cohort(folders: list[Path], dest: Path) -> Path:
    """A cohort folder of links to patient folders (the data stays where it is)."""
    dest.mkdir()
    for f in folders:
        (dest / f.name).symlink_to(f.resolve(), target_is_directory=True)
    return dest


def held_out_table(run: Path, folders: list[Path], ref: dict) -> pd.DataFrame:
    """The held-out patients measured by a run's segmenter."""
    seg = run_predictors(run)[0]["segmentation"]
    held = measure_cohort(folders, seg, ref, log=lambda *_: None, progress=False)
    return held[held.status == "measured"]


def site_split(folders: list[Path], reference: Path, stratified: bool) -> tuple[list[Path], list[Path]]:
    """(site, held out): the first CALIBRATE folders, or with `stratified` the first PER_GROUP of each diagnosis."""
    if not stratified:
        return folders[:CALIBRATE], folders[CALIBRATE:]
    group = pd.read_csv(reference).set_index("patient")["group"].dropna()
    site = [f for g in sorted(group.unique()) for f in [f for f in folders if group.get(f.name) == g][:PER_GROUP]]
    return site, [f for f in folders if f not in site]


def rows(run_dir: str | None = None, data_dir: str | None = None, fine_tune: bool = True,
         stratified: bool = False) -> list[dict]:
    run = Path(run_dir or "runs/default")
    data = Path(data_dir or os.environ.get("CMRLIB_DATA") or "../shared/data")
    cines = data / "acdc-cine"
    if not (run / "predictors").is_dir() or not (cines / "reference.csv").is_file():
        return [dict(figure="cmrlib validate", value=f"not measured: needs {run}/predictors and {cines}", target="")]
    torch.set_num_threads(2)
    ref = read_reference(cines / "reference.csv")
    folders = sorted(p for p in cines.iterdir() if p.is_dir() and p.name in ref)
    site_folders, held_folders = site_split(folders, cines / "reference.csv", stratified)
    quiet = dict(log=lambda *_: None, progress=False)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        site = link_cohort(site_folders, tmp / "site")
        files = validate(site, run, tmp / "validated", cines / "reference.csv", **quiet)
        cal = pd.read_csv(files["intervals"], index_col=0)
        qc = pd.read_csv(files["qc"], index_col=0)
        held = held_out_table(run, held_folders, ref)
        if fine_tune:
            t0 = time.perf_counter()
            tuned = validate(site, run, tmp / "tuned", cines / "reference.csv", fine_tune=True, **quiet)
            seconds = time.perf_counter() - t0
            cv = pd.read_csv(tuned["fine_tune"], index_col=0)
            cal_ft = pd.read_csv(tuned["intervals"], index_col=0)
            held_ft = held_out_table(tuned["run"], held_folders, ref)
    for m in SHOWN:
        if m not in cal.index:
            continue
        err = (held[f"{m}_auto"] - held[f"{m}_ref"]).abs().dropna()
        run_hw, site_hw = cal.loc[m, "run_half_width"], cal.loc[m, "half_width"]
        out.append(dict(figure=f"{m}: 90 % half-width, run (ACDC full field) -> site ({CALIBRATE} acdc-cine patients)",
                        value=f"{run_hw:.1f} -> {site_hw:.1f}", target=""))
        out.append(dict(figure=f"{m}: coverage of the {len(err)} held-out acdc-cine patients, run -> site",
                        value=f"{(err <= run_hw).mean():.0%} -> {(err <= site_hw).mean():.0%}", target="toward 90 %"))
        if fine_tune and m in cv.index:
            e_ft = (held_ft[f"{m}_auto"] - held_ft[f"{m}_ref"]).abs().dropna()
            d, lo, hi = paired_bootstrap(e_ft.reindex(err.index), err)
            out.append(dict(figure=f"{m}: MAE inside the site, 5-fold CV ({int(cv.loc[m, 'n'])} patients), "
                                   "run -> fine-tuned", value=f"{cv.loc[m, 'mae_run']:.1f} -> "
                            f"{cv.loc[m, 'mae_fine_tuned']:.1f} ({cv.loc[m, 'difference']:+.1f} "
                            f"[{cv.loc[m, 'ci_low']:.1f}, {cv.loc[m, 'ci_high']:.1f}])", target="lower"))
            out.append(dict(figure=f"{m}: MAE of the {len(err)} held-out patients, run -> fine-tuned on the site",
                            value=f"{err.mean():.1f} -> {e_ft.mean():.1f} ({d:+.1f} [{lo:.1f}, {hi:.1f}])",
                            target="lower"))
            hw = cal_ft.loc[m, "half_width"]
            out.append(dict(figure=f"{m}: held-out coverage of the fine-tuned model's site interval",
                            value=f"+-{hw:.1f}: {(e_ft <= hw).mean():.0%}", target="toward 90 %"))
    for k, r in qc.iterrows():
        e = held[f"entropy_{k}"].dropna()
        out.append(dict(figure=f"{k} entropy check: held-out patients flagged, run yardstick {r.run_p95:.3f} -> site "
                               f"{r.site_p95:.3f}", target="toward 5 %",
                        value=f"{(e > r.run_p95).mean():.0%} -> {(e > r.site_p95).mean():.0%}"))
    if fine_tune:
        out.append(dict(figure=f"validate --fine-tune on {CALIBRATE} patients (seconds)", value=f"{seconds:.0f}",
                        target=""))
    return out


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    for r in rows(*args[:2], fine_tune="--no-fine-tune" not in sys.argv, stratified="--stratified" in sys.argv):
        print(f"{r['figure']} | {r['value']} | {r['target']}")
