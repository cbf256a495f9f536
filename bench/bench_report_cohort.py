"""`cmrlib analyse` on real cohorts with a run's Predictors (loaded once, 2 CPU threads):
- the 65 real SAX cine folders of `acdc-cine/`: minutes for the batch (target <= 10), the share of subjects with a
  withheld or uncertain number in the main table (target <= 30 %), beside the published automatic QC (26-32 % of
  subjects flagged) and clinicians' (11-15 %); numbers per tier;
- which checks put the cropped cines' numbers in a tier, and how often the segmenter is less sure than on 95 % of
  its validation cines;
- the same patients' full-field folders in `acdc/training/` (the cines are crops: their volumes are partial): the
  report's abnormal flag on the LV (LVEDV, LVESV, LVEF, sex and size unknown) against the same rule on the
  reference volumes: sensitivity, specificity, every reference LVEF < 40 % flagged, the NOR patients flagged
  (target <= 2 of 13), by diagnosis, over every patient and over those the segmenter never trained on;
  the report's LVEDV, LVESV and LVEF against `acdc-cine/reference.csv` (MAE, bias, limits of agreement) over the
  patients the run's segmenter neither trained on nor chose anything with; the segmenter's 90 % intervals with
  their out-of-fold coverage; and each check scored against the real error of the patients it never trained on
  (validation and held-out): its hit rate (|dLVEF| > 10 points or |dLVEDV| > 20 mL) and false-alarm rate
  (|dLVEF| < 5 and |dLVEDV| < 10 mL).

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

from cmrlib.analyse_batch import analyse_cohort, suspect
from cmrlib.analysis.agreement import never_trained_on
from cmrlib.io.acdc import acdc_subject
from cmrlib.io.real import segmenter_split
from cmrlib.plausible import TIER_KEYS, abnormal, grade, reference
from cmrlib.predictor import run_predictors
from cmrlib.stats import agreement

TARGET_MIN = 10.0
PUBLISHED_QC = "automatic QC flags 26-32 % of subjects, clinicians 11-15 % (Ruijsink et al., JACC CVI 2019)"
MEASURES = ("LVEDV", "LVESV", "LVEF")


def batch(cohort: Path, run_dir: Path, out: Path) -> tuple[pd.DataFrame, float]:
    """The batch's summary (subjects in sorted folder order) and its minutes."""
    t0 = time.perf_counter()
    files = analyse_cohort(cohort, run_dir, out, log=lambda *_: None, progress=False)
    return pd.read_csv(files["csv"]), (time.perf_counter() - t0) / 60


def tier_rows(summary: pd.DataFrame, what: str) -> list[dict]:
    """The share of subjects with a withheld or uncertain number in the main table, and the numbers per tier."""
    done = summary[summary.status == "reported"]
    n = max(int(done.numbers.sum()), 1)
    return [dict(figure=f"{what}: subjects with a withheld or uncertain number", value=f"{suspect(done).mean():.0%}",
                 target=f"<= 30 %; {PUBLISHED_QC}"),
            dict(figure=f"{what}: main-table numbers withheld / uncertain / abnormal / not measurable",
                 value=" / ".join(f"{done[t].sum() / n:.0%}" for t in TIER_KEYS), target=""),
            dict(figure=f"{what}: numbers in the main table per subject", value=f"{done.numbers.mean():.1f}",
                 target="")]


def _rules_of(tab: pd.DataFrame) -> set[str]:
    """The checks that put one report's counted numbers in a tier, by method and tier (frame numbers and
    intervals' values masked)."""
    tab = tab[tab.tier.isin(("withheld", "uncertain"))]
    return {f"{r.method}: {r.tier}: {re.sub(r'[0-9.]+-[0-9.]+', 'A-B', re.sub(r'frame [0-9]+', 'frame N', rule))}"
            for r in tab.itertuples() for rule in r.flag.split("; ")}


def rule_scores(reports: Path, error: pd.DataFrame, what: str) -> list[dict]:
    """Each check (and any of them) against the real error of the subject's segmentation: hit rate on subjects
    with a real error, false-alarm rate on those without (`error`: subject -> dLVEF, dLVEDV)."""
    fired = {}
    for folder in sorted(p.parent for p in reports.glob("*/report.json")):
        rep = json.loads((folder / "report.json").read_text())
        counted = {m["method"] for m in rep["methods"] if m.get("real_checked")}
        tab = pd.read_csv(folder / "measures.csv", dtype=dict(flag=str, tier=str)).fillna(dict(flag="", tier=""))
        fired[folder.name] = _rules_of(tab[tab.method.isin(counted)]) | (
            {"segmentation: less sure than on 95 % of its validation cines"} if any(rep.get("unfamiliar", {}).values())
            else set())
    e = error[error.index.isin(list(fired))]
    bad = (e.dLVEF.abs() > 10) | (e.dLVEDV.abs() > 20)
    good = (e.dLVEF.abs() < 5) & (e.dLVEDV.abs() < 10)
    rules = sorted(set().union(*fired.values()))
    out = []
    tiered = {s: {r for r in fired[s] if ": withheld: " in r or ": uncertain: " in r} for s in fired}
    for rule in ["any withheld or uncertain", *rules]:
        hit = pd.Series({s: bool(tiered[s]) if rule.startswith("any") else rule in fired[s] for s in e.index})
        out.append(dict(figure=f"{what}: '{rule}' against real error ({int(bad.sum())} with error, "
                        f"{int(good.sum())} without)", value=f"hit rate {hit[bad].mean():.2f}, false alarms "
                        f"{hit[good].mean():.2f}", target="hit >= 0.7 at false alarms <= 0.1"))
    return out


def interval_rows(run: Path) -> list[dict]:
    """The run segmenter's 90 % intervals as its Predictor carries them: half-width, patients, coverage leaving
    each patient out and with each split calibrated on the other."""
    seg = run_predictors(run)[0].get("segmentation")
    cal = (seg.provenance.get("intervals") or {}) if seg is not None else {}
    return [dict(figure=f"{m} 90 % interval (calibrated on {c['n']} patients the segmenter never trained on)",
                 value=f"+- {c['half_width']:.1f}; coverage leaving each patient out {c['coverage']:.0%}, each split "
                       f"calibrated on the other {c.get('coverage_across', float('nan')):.0%}", target="85-95 %")
            for m, c in cal.items() if m in (*MEASURES, "LVM")]


def check_rows(reports: Path, what: str) -> list[dict]:
    """From each subject's report: the subjects each check puts in a tier per method (counted or research), most
    frequent first, and those whose segmenter is less sure than on 95 % of its validation cines, by structure."""
    rules, odd = Counter(), []
    for folder in sorted(p.parent for p in reports.glob("*/report.json")):
        tab = pd.read_csv(folder / "measures.csv", dtype=dict(flag=str, tier=str)).fillna(dict(flag="", tier=""))
        rules.update(_rules_of(tab))
        odd.append(json.loads((folder / "report.json").read_text()).get("unfamiliar", {}))
    per = Counter(f"{view} {k}" for o in odd for view, ks in o.items() for k in ks)
    return [*(dict(figure=f"{what}: subjects with '{rule}'", value=n, target="")
              for rule, n in rules.most_common()),
            dict(figure=f"{what}: subjects with the segmenter less sure than on 95 % of its validation cines",
                 value=f"{sum(map(bool, odd))} of {len(odd)} ({', '.join(f'{k} {n}' for k, n in per.most_common())})",
                 target="")]


LV = ("LVEDV", "LVESV", "LVEF")


def lv_abnormal(values: dict[str, float]) -> bool:
    """The report's rule with sex and size unknown: any LV measure outside both sexes' range or graded below
    normal."""
    return any(abnormal(reference(m, v, None)[2], grade(m, v)) for m, v in values.items())


def flagged(folder: Path) -> bool:
    """Whether a report's main table calls the LV abnormal (its LVEDV, LVESV or LVEF counted abnormal)."""
    tab = pd.read_csv(folder / "measures.csv", dtype=str, keep_default_na=False)
    return bool((tab.measure.isin(LV) & tab.research.eq("") & tab.abnormal.eq("True")).any())


def grading_rows(reports: Path, summary: pd.DataFrame, ref: pd.DataFrame, what: str) -> list[dict]:
    """The report's abnormal LV flag against the same rule on the reference volumes: sensitivity, specificity,
    reference LVEF < 40 % flagged, NOR patients flagged, and by diagnosis."""
    got = summary[summary.status == "reported"].merge(ref, on="patient")
    got = got.assign(flag=[flagged(reports / s) for s in got.subject],
                     truth=[lv_abnormal({m: float(r[m]) for m in LV}) for _, r in got.iterrows()])
    pos, neg, low, nor = got[got.truth], got[~got.truth], got[got.LVEF < 40], got[got.group == "NOR"]
    by = got.groupby("group").agg(flagged=("flag", "sum"), reference=("truth", "sum"), n=("flag", "size"))
    return [dict(figure=f"{what}: abnormal LV flag against the reference volumes' own grading ({len(pos)} abnormal, "
                        f"{len(neg)} not)", value=f"sensitivity {pos.flag.mean():.2f}, specificity "
                        f"{(~neg.flag).mean():.2f}", target=""),
            dict(figure=f"{what}: reference LVEF < 40 % reported abnormal", value=f"{int(low.flag.sum())} of "
                        f"{len(low)}", target="all"),
            dict(figure=f"{what}: NOR patients with an abnormal LV measure", value=f"{int(nor.flag.sum())} of "
                        f"{len(nor)} (reference volumes: {int(nor.truth.sum())})", target="<= 2 of 13"),
            dict(figure=f"{what}: flagged / reference-abnormal / patients by diagnosis",
                 value="; ".join(f"{g} {r.flagged}/{r.reference}/{r.n}" for g, r in by.iterrows()), target="")]


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
        out += tier_rows(cines, "acdc-cine") + check_rows(tmp / "cines", "acdc-cine")
        if (data / "acdc" / "training").is_dir():
            full, minutes = batch(full_field_cohort(data, patients, tmp), run, tmp / "full")
            out += tier_rows(full, "ACDC full field")
            full["patient"] = patients
            held = never_trained_on(run)
            mine = full[full.patient.map(acdc_subject).isin(held)].merge(ref, on="patient")
            untrained = {s for s, split in segmenter_split(run).items() if split in ("valid", "test")}
            scored = full[full.patient.map(acdc_subject).isin(untrained)].merge(ref, on="patient")
            error = pd.DataFrame(dict(dLVEF=scored["segmentation: LVEF"] - scored.LVEF,
                                      dLVEDV=scored["segmentation: LVEDV"] - scored.LVEDV)).set_index(scored.subject)
            out += grading_rows(tmp / "full", full, ref, "ACDC full field, every patient")
            cines = set(ref.patient[ref.included == 1])
            out += grading_rows(tmp / "full", full[full.patient.isin(cines)], ref,
                                f"ACDC full field, the {len(cines)} patients of acdc-cine")
            out += grading_rows(tmp / "full", full[full.patient.map(acdc_subject).isin(held)], ref,
                                "ACDC full field, patients the segmenter never trained on")
            out += interval_rows(run)
            out += rule_scores(tmp / "full", error, "ACDC full field, validation and held-out patients")
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
