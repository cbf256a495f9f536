"""`cmrlib analyse` on real cohorts with a run's Predictors (loaded once, 2 CPU threads):
- the 65 real SAX cine folders of `acdc-cine/`: minutes for the batch (target <= 10), how many numbers and subjects
  are flagged, beside the published automatic QC (26-32 % of subjects flagged) and clinicians' (11-15 %);
- which checks flag the cropped cines' subjects, and how often the segmenter is less sure than on 95 % of its
  validation cines;
- the same patients' full-field folders in `acdc/training/` (the cines are crops: their volumes are partial): the
  report's LVEDV, LVESV and LVEF against `acdc-cine/reference.csv` (MAE, bias, limits of agreement) over the
  patients the run's segmenter never trained on.

Usage: python bench/bench_report_cohort.py [run_dir] [data_dir]   (defaults runs/default, $CMRLIB_DATA or
../shared/data). The reports go to a temporary folder.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import torch

from cmrlib.analyse_batch import analyse_cohort
from cmrlib.analysis.agreement import never_trained_on
from cmrlib.io.acdc import acdc_subject
from cmrlib.stats import agreement

TARGET_MIN = 10.0
PUBLISHED_QC = "automatic QC flags 26-32 % of subjects, clinicians 11-15 % (Ruijsink et al., JACC CVI 2019)"
MEASURES = ("LVEDV", "LVESV", "LVEF")


def batch(cohort: Path, run_dir: Path, out: Path) -> tuple[pd.DataFrame, float]:
    """The batch's summary (subjects in sorted folder order) and its minutes."""
    t0 = time.perf_counter()
    files = analyse_cohort(cohort, run_dir, out, log=lambda *_: None, progress=False)
    return pd.read_csv(files["csv"]), (time.perf_counter() - t0) / 60


def flag_rows(summary: pd.DataFrame, what: str) -> list[dict]:
    done = summary[summary.status == "reported"]
    return [dict(figure=f"{what}: subjects with a flagged number", value=f"{(done.flagged > 0).mean():.0%}",
                 target=PUBLISHED_QC),
            dict(figure=f"{what}: numbers flagged", value=f"{done.flagged.sum() / done.numbers.sum():.0%}",
                 target="")]


def check_rows(reports: Path, what: str) -> list[dict]:
    """From each subject's report: the subjects each check flags per method (whatever frame it names), most
    frequent first, and those whose segmenter is less sure than on 95 % of its validation cines, by structure."""
    rules, odd = Counter(), []
    for folder in sorted(p.parent for p in reports.glob("*/report.json")):
        tab = pd.read_csv(folder / "measures.csv").fillna(dict(flag=""))
        rules.update({f"{r.method}: {re.sub(r'frame [0-9]+', 'frame N', rule)}"
                      for r in tab.itertuples() if r.flag for rule in r.flag.split("; ")})
        odd.append(json.loads((folder / "report.json").read_text()).get("unfamiliar", {}))
    per = Counter(f"{view} {k}" for o in odd for view, ks in o.items() for k in ks)
    return [*(dict(figure=f"{what}: subjects flagged by '{rule}'", value=n, target="")
              for rule, n in rules.most_common()),
            dict(figure=f"{what}: subjects with the segmenter less sure than on 95 % of its validation cines",
                 value=f"{sum(map(bool, odd))} of {len(odd)} ({', '.join(f'{k} {n}' for k, n in per.most_common())})",
                 target="")]


def full_field_cohort(data: Path, patients: list[str], tmp: Path) -> Path:
    """A cohort folder of links to ACDC's full-field patient folders (the data stays where it is)."""
    folder = tmp / "acdc-full-field"
    folder.mkdir()
    for p in patients:
        (folder / p).symlink_to((data / "acdc" / "training" / p).resolve(), target_is_directory=True)
    return folder


def rows(run_dir: str | None = None, data_dir: str | None = None) -> list[dict]:
    run = Path(run_dir or "runs/default")
    data = Path(data_dir or os.environ.get("CMRLIB_DATA") or "../shared/data")
    if not (run / "predictors").is_dir() or not (data / "acdc-cine").is_dir():
        return [dict(figure="cmrlib analyse on real cohorts", value=f"not measured: needs {run}/predictors and "
                     f"{data}/acdc-cine", target="")]
    torch.set_num_threads(2)
    ref = pd.read_csv(data / "acdc-cine" / "reference.csv")
    patients = sorted(ref.patient)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cines, minutes = batch(data / "acdc-cine", run, tmp / "cines")
        out.append(dict(figure=f"batch over the {len(cines)} acdc-cine folders, minutes", value=round(minutes, 2),
                        target=f"<= {TARGET_MIN}"))
        out += flag_rows(cines, "acdc-cine") + check_rows(tmp / "cines", "acdc-cine")
        if (data / "acdc" / "training").is_dir():
            full, minutes = batch(full_field_cohort(data, patients, tmp), run, tmp / "full")
            out += flag_rows(full, "ACDC full field")
            full["patient"] = patients
            held = never_trained_on(run)
            mine = full[full.patient.map(acdc_subject).isin(held)].merge(ref, on="patient")
            for m in MEASURES:
                a = agreement(mine[f"segmentation: {m}"], mine[m])
                out.append(dict(figure=f"report {m} vs reference.csv, {a['n']} patients the segmenter never trained "
                                f"on (full-field ED/ES)", value=f"MAE {a['mae']:.1f}, bias {a['bias']:+.1f}, LoA "
                                f"{a['loa_low']:.1f} to {a['loa_high']:.1f}", target="LVEF MAE <= 6" if m == "LVEF"
                                else ""))
    return out


if __name__ == "__main__":
    for r in rows(*sys.argv[1:3]):
        print(f"{r['figure']} | {r['value']} | {r['target']}")
