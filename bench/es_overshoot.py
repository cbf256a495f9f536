"""The ES overshoot rule (`plausible.ES_OVERSHOOT`) out of fold, on both of a run's real pathways, each patient read
by notebook 01's cross-fitted model of its fold (which never saw it):
- ACDC's 99 exams at their annotated ED and ES (two-frame stacks), as notebook 01 measures them: the manual masks'
  largest overshoot, whose ES numbers the rule withholds, and the LVEF MAE with and without them;
- every frame of the real SAX cines (acdc-cine), ED and ES from the LV curve, as `cmrlib analyse` reads a patient:
  whose ES numbers the rule withholds, and where their LVEF errors rank among all. These cines are crops
  (acdc-cine's README): their volumes are partial while the reference LVEF comes from ACDC's full manual labels, so
  the error is the crop's as well as the segmenter's.

Run: `CMRLIB_DATA=../shared/data .venv/bin/python bench/es_overshoot.py --run runs/default [--out bench/out]`
after notebook 01 (its cross-fitted models; `01/acdc/` or the cohort holding ACDC, and `real_sax/`). Writes
`es_overshoot_acdc.csv` and `es_overshoot_cines.csv` into --out. Beside the rule it reads two other consistency
checks: how far the myocardium's volume at ES departs from its ED volume on ACDC's exams, manual and out of fold
(printed), and each cine's LV volume curve turning against its phase (`curve_reversal`, the cines' `reversal_ml`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmrlib.labels import LV, MYO  # noqa: E402
from cmrlib.measure import ES_OVERSHOOT_ML, simpson_volume, volume_curve  # noqa: E402
from cmrlib.methods.segmentation.crossfit import fold_cines  # noqa: E402
from cmrlib.methods.segmentation.predict import predict_store  # noqa: E402
from cmrlib.methods.segmentation.real import (acdc_measures, acdc_store, overshoot_line,  # noqa: E402
                                              withheld_measures)
from cmrlib.plausible import ES_OVERSHOOT, overshoot_reason  # noqa: E402
from cmrlib.predictor import load  # noqa: E402
from cmrlib.store import CohortStore  # noqa: E402


def cross_fitted(run: Path):
    """The run's cross-fitted segmenters (`crossfit.CrossFitted`)."""
    cross = load(run / "predictors" / "segmentation.predictor").cross_fitted(run)
    if cross is None:
        raise SystemExit(f"{run.name}: no cross-fitted SAX models (run notebook 01 with its ACDC sections)")
    return cross


def acdc_stacks(run: Path, cross) -> tuple[CohortStore, dict, pd.DataFrame]:
    """ACDC's exams at their annotated ED and ES, each segmented by its fold's model as notebook 01 does (its label
    store reused): the store, the out-of-fold labels, and notebook 01's measures table with the overshoot columns."""
    def no_store(_):
        raise SystemExit(f"{run.name}: no ACDC store in 01/acdc or the cohort")

    here = run / "01" / "acdc"
    store = acdc_store(here if here.is_dir() else None, CohortStore(run / "cohort"), None, no_store)
    k = max(cross.folds.values()) + 1
    pred = {}
    for fold, (_, _, test) in fold_cines(store.manifest(), cross.folds, store.splits(), k).items():
        pred |= predict_store(cross.fold_nets[fold], store, test, progress=False, folder=run / "labels")
    return store, pred, acdc_measures(store, pred, cross.folds)


def es_over_ed(labels, spacing) -> float:
    """The myocardial volume of an ED and an ES label map (in that order) at ES over its volume at ED, minus 1 (NaN
    without a myocardium at ED)."""
    lab = np.asarray(labels)
    ed = simpson_volume(lab[0], spacing, MYO)
    return simpson_volume(lab[1], spacing, MYO) / ed - 1 if ed else float("nan")


def myocardium_change(store: CohortStore, pred: dict) -> pd.DataFrame:
    """Per exam: `es_over_ed` in the manual masks at the recorded ED and ES and in the out-of-fold ones (predicted
    at those two frames)."""
    rows = []
    for cid, lab in pred.items():
        a = store.attrs(cid)
        c = store.read(cid, (a["ed"], a["es"]))
        rows.append(dict(subject=str(a["subject"]), manual=es_over_ed(c.labels, c.spacing),
                         auto=es_over_ed(lab, c.spacing)))
    return pd.DataFrame(rows)


def curve_reversal(curve, ed: int, es: int) -> float:
    """The LV volume curve's largest turn against its phase, in mL: a rise while it ejects (ED to ES) or a fall
    while it fills (ES to the next ED), the cycle read round from frame to frame."""
    v, n = np.asarray(curve, float), len(curve)
    eject = v[[(ed + i) % n for i in range((es - ed) % n + 1)]]
    fill = v[[(es + i) % n for i in range((ed - es) % n + 1)]]
    return float(max((eject - np.minimum.accumulate(eject)).max(), (np.maximum.accumulate(fill) - fill).max()))


def read_out_of_fold(run: Path, cross) -> pd.DataFrame:
    """One row per real SAX cine: its fold, the LV's ES overshoot (mL), LVESV and LVEF read out of fold, and the
    reference LVEF."""
    from tqdm.auto import tqdm

    store = CohortStore(run / "real_sax")
    man = store.manifest()
    rows = []
    for cid, subject, group in zip(tqdm(man.cine_id, desc="cines"), man.subject, man.group):
        cine = store.read(cid)
        got = cross.for_subject(subject).predict([cine])
        lab, (ed, es) = got.detail["labels"][cine.cine_id], got.detail["ed_es"][cine.cine_id]
        rows.append(dict(subject=subject, group=group, fold=cross.fold(subject),
                         reversal_ml=curve_reversal(volume_curve(lab, cine.spacing, LV), ed, es),
                         LVSV=got.measures.get("LVSV", np.nan),
                         overshoot_ml=got.detail.get("es_overshoot", np.nan), LVESV=got.measures.get("LVESV", np.nan),
                         LVEF=got.measures.get("LVEF", np.nan), LVEF_ref=cine.meta.get("LVEF", np.nan)))
    d = pd.DataFrame(rows)
    d["share"] = d.overshoot_ml / d.LVESV
    d["withheld"] = [bool(overshoot_reason(g, e)) for g, e in zip(d.overshoot_ml, d.LVESV)]
    d["lvef_error"] = (d.LVEF - d.LVEF_ref).abs()
    d["error_rank"] = d.lvef_error.rank(ascending=False, method="min").astype("Int64")
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    a = ap.parse_args()
    cross = cross_fitted(a.run)
    a.out.mkdir(parents=True, exist_ok=True)
    store, pred, meas = acdc_stacks(a.run, cross)
    myo = myocardium_change(store, pred)
    meas = meas.merge(myo.rename(columns={"manual": "myo_es_change_manual", "auto": "myo_es_change"}), on="subject")
    meas.to_csv(a.out / "es_overshoot_acdc.csv", index=False)
    held = set(withheld_measures(meas).query("measure == 'LVEF'").subject)
    err = (meas.LVEF_auto - meas.LVEF_ref).abs()
    stated = ~meas.subject.isin(held)
    ranks = err.rank(ascending=False, method="min")[~stated]
    print(f"ACDC, annotated ED and ES: {overshoot_line(meas)}")
    print(f"LVEF MAE {err.mean():.2f} points over {err.notna().sum()} exams; {err[stated].mean():.2f} over the "
          f"{int(err[stated].notna().sum())} whose LVEF a report states (the withheld's LVEF errors rank "
          f"{', '.join(str(int(r)) for r in ranks)} of {err.notna().sum()})")
    m = meas.myo_es_change_manual
    worst = meas.loc[err.nlargest(2).index]
    print(f"the myocardium at ES against ED, manual masks: median {m.median():+.0%}, {m.min():+.0%} to {m.max():+.0%}; "
          "out of fold, the two largest LVEF errors: " + ", ".join(
              f"{s} {c:+.0%} (manual {cm:+.0%})" for s, c, cm in
              zip(worst.subject, worst.myo_es_change, worst.myo_es_change_manual)))
    d = read_out_of_fold(a.run, cross)
    d.to_csv(a.out / "es_overshoot_cines.csv", index=False)
    print(f"real SAX cines, every frame, ED and ES from the LV curve ({ES_OVERSHOOT_ML} as the report reads it):")
    e = d.lvef_error
    print(f"{int(d.withheld.sum())} of {len(d)} cines beyond {ES_OVERSHOOT:.0%} of LVESV (ES numbers withheld); "
          f"LVEF |error| median {e.median():.2f}, 75th percentile {e.quantile(0.75):.2f} points")
    cols = ["subject", "group", "fold", "overshoot_ml", "share", "LVEF", "LVEF_ref", "lvef_error", "error_rank"]
    print("withheld:\n" + d.loc[d.withheld, cols].round(3).to_string(index=False))
    largest = d.nlargest(5, "lvef_error")[cols + ["withheld"]]
    print("the largest LVEF errors:\n" + largest.round(3).to_string(index=False))
    d["reversal_share"] = d.reversal_ml / d.LVSV
    turned = d.nlargest(5, "reversal_share")[["subject", "group", "reversal_ml", "reversal_share", "lvef_error",
                                              "error_rank", "withheld"]]
    print("the LV curve's largest turns against its phase (share of LVSV):\n" + turned.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
