"""The long-axis segmenters on the UK Biobank demo's 2CH and 4CH cines, every frame, against the demo's
segmentations: a network's (Bai et al. 2018), so a pseudo-reference (its 2CH has the LA alone). The phantom-only
model and the one fine-tuned on one demo subject, each scored on the subjects it never trained on; the Dice targets
and the one line the Predictor's provenance keeps. Plain functions of the named pieces the Study hands them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ... import stats
from ...measure import (EDES_ENTROPY, ES_OVERSHOOT_ML, SAX_VOLUMES, UNITS, es_overshoots, measure_pairs,
                       spread_columns, subject_measures)
from ...plausible import ES_OVERSHOOT, WITHHELD_COLUMNS, overshoot_reasons, reads_es, withheld
from ...skipped import StudySkipped
from ...store import CohortStore

from .crossfit import CROSSFIT, coverage_target, sax_evidence
from .evaluate import evaluate, model_check, summarise

LAX_TARGETS = (("LV", 0.85), ("MYO", 0.70), ("RV", 0.80), ("LA", 0.85), ("RA", 0.80))  # 4CH Dice vs pseudo-labels


@dataclass(frozen=True)
class RealLax:
    """The long-axis models on the demo's cines: models by name, cines, predictions, scores, Dice table, and the
    fine-tuned model's phantom test Dice beside the phantom-only one's (None without it)."""

    models: dict
    cines: dict
    preds: dict
    scores: pd.DataFrame
    table: pd.DataFrame
    on_phantom: pd.Series | None


def dice_all(table: pd.DataFrame, *key) -> float:
    """Mean Dice over all labelled frames for one (view,) structure of a summary table."""
    return float(table.loc[(*key, "all"), "dice_mean"])


def lax_scores(models: dict, cines: dict, trained_on: str) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Every long-axis model on every demo cine: the predictions, the per-frame scores (the fine-tuned model's
    training subject marked) and the Dice table by model, subject, view and structure."""
    from .predict import predict

    preds = {name: {cid: predict(m, c) for cid, c in cines.items()} for name, m in models.items()}
    sc = pd.concat([evaluate(cines, preds[name]).assign(model=name) for name in models], ignore_index=True)
    sc["trained_on"] = (sc.model == "lax_real") & (sc.subject.astype(str) == trained_on)
    return preds, sc, summarise(sc, by=("model", "subject", "view", "structure"))


def held_out(table: pd.DataFrame, model: str, trained_on: str) -> list[str]:
    """The demo subjects long-axis model `model` never trained on."""
    subjects = table.loc[model].index.get_level_values("subject").unique()
    return [s for s in subjects if model == "lax" or s != trained_on]


def lax_checks(r: RealLax | None, trained_on: str, model: str | None = None) -> list[tuple]:
    """The real 4CH Dice targets against the pseudo-labels, on each demo subject a long-axis model (by default the
    fine-tuned one, else the phantom one) never trained on."""
    if r is None:
        return []
    model = model or list(r.models)[-1]
    return [(f"{model} on held-out {sub} 4CH {s} Dice vs pseudo-labels", dice_all(r.table, model, sub, "4CH", s), ">=",
             t) for sub in held_out(r.table, model, trained_on) for s, t in LAX_TARGETS
            if (model, sub, "4CH", s, "all") in r.table.index]


def lax_summary(table: pd.DataFrame, model: str, trained_on: str) -> str:
    """One line for the Predictor's provenance: a long-axis model's 4CH Dice on the demo subjects it never trained
    on."""
    subjects = held_out(table, model, trained_on)
    dice = table.loc[(model, subjects), "dice_mean"].xs("all", level="phase").xs("4CH", level="view")
    how = "fine-tuned on one UK Biobank demo subject's pseudo-labels" if model == "lax_real" else "phantom-only"
    return (f"{how} long-axis model: mean 4CH Dice {dice.mean():.2f} against the pseudo-labels of "
            f"{len(subjects)} UK Biobank demo subject(s) it did not train on")


def sax_intervals(meas: pd.DataFrame, pairs: dict
                  ) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None, dict[str, dict]]:
    """90 % conformal intervals of the SAX volumes from ACDC patients no model that read them trained on: each fold
    calibrated on the others where `meas` has a `fold` column (cross-fitted, CV+ style), else each split (validation
    and held-out). Cross-fitted, a measure's width is one for every patient or in proportion to the patient's own
    value or to the segmenter's entropy on the patient at ED and ES (`measure.spread_columns`), whichever covers the
    worst-served diagnosis better, a choice scored out of fold as a procedure
    (`stats.interval_scaling`). The intervals' table, their coverage by fold and diagnosis and the scaling's table
    (cross-fitted only, else None), and the record the Predictor keeps (what the report prints beside a patient's
    number)."""
    by = "fold" if "fold" in meas else "split"
    how = (f"ACDC's {len(meas)} patients, each read by the cross-fitted model that never saw it" if by == "fold"
           else "ACDC validation and held-out patients")
    pairs = {m: pairs[m] for m in SAX_VOLUMES if m in pairs}
    spreads = spread_columns(meas, pairs)
    scales, across, scaling = stats.interval_scaling(meas, pairs, level=0.9, spreads=spreads) if by == "fold" \
        else ({}, {}, None)
    t = stats.conformal_intervals(meas, pairs, level=0.9, by=by, scales=scales, spreads=spreads)
    if across:  # each fold's width and scale chosen on the others
        t["coverage_across"] = t.index.map(across)
    cover = stats.coverage_by(meas, pairs, ["fold", "group"], level=0.9, scales=scales, spreads=spreads) \
        if by == "fold" else None
    record = {m: dict(half_width=round(r.half_width, 3 if r.scale == "none" else 5), scale=r.scale, n=int(r.n),
                      level=r.level, coverage=round(r.coverage, 3), coverage_across=round(r.coverage_across, 3),
                      across=by, calibrated_on=f"{how} (manual masks, ED and ES frames)")
              for m, r in t.iterrows() if np.isfinite(r.half_width)}
    return t, cover, scaling, record


def dice_checks(phantom: pd.DataFrame, acdc_only: pd.DataFrame | None, sim2real: pd.DataFrame | None) -> list[tuple]:
    """Dice targets of the phantom models on the phantom's test cines, of the ACDC-only model on ACDC's held-out
    patients and of the phantom SAX model on every ACDC cine (those the run has)."""
    checks = [("phantom SAX LV Dice", dice_all(phantom, "SAX", "LV"), ">=", 0.93),
              ("phantom SAX MYO Dice", dice_all(phantom, "SAX", "MYO"), ">=", 0.85)]
    checks += [(f"phantom 4CH {s} Dice", dice_all(phantom, "4CH", s), ">=", 0.90) for s in ("LA", "RA")
               if ("4CH", s, "all") in phantom.index]
    if acdc_only is not None:
        checks += [(f"ACDC-only model: ACDC held-out {s} Dice", dice_all(acdc_only, s), ">=", t)
                   for s, t in (("LV", 0.90), ("MYO", 0.80), ("RV", 0.80))]
    if sim2real is not None:
        checks += [("sim-to-real LV Dice (all ACDC)", dice_all(sim2real, "LV"), ">=", 0.80)]
    return checks


def real_check_lines(sim2real, real: RealLax | None, lax: str, trained_on: str) -> list[str]:
    """What the Predictor says about its real-data checks: the phantom SAX model on ACDC's cines, the long-axis
    model on the UK Biobank demo's."""
    lines = []
    if sim2real is not None:
        lines.append(f"phantom-only SAX model on {sim2real.scores.cine_id.nunique()} ACDC cines (manual masks): LV "
                     f"Dice {dice_all(sim2real.table, 'LV'):.2f}")
    if real is not None:
        lines.append(lax_summary(real.table, lax, trained_on))
    elif lines:
        lines.append("the long-axis model has no real-data check")
    return lines


def acdc_store(given, cohort: CohortStore, data_dir, ingest) -> CohortStore:
    """The ACDC store: `given` (a store folder), the run's cohort when notebook 00 ingested ACDC, or what
    `ingest(folder)` makes of ACDC's training folder under the data root; `StudySkipped` when there is none."""
    from ...utils import data_root

    if given is None and set(cohort.manifest()["source"]) == {"acdc"}:
        given = cohort.root
    if given is not None and len(CohortStore(given)):
        return CohortStore(given)
    root = data_root(data_dir)
    acdc_dir = root / "acdc" / "training" if root else None
    if acdc_dir is None or not acdc_dir.exists():
        why = "no data_dir / $CMRLIB_DATA" if root is None else f"{acdc_dir} not found"
        raise StudySkipped(f"no ACDC training folder ({why}): the ACDC sections need it")
    return ingest(acdc_dir)


OUT_OF_FOLD_SPLIT = "out of fold"  # ACDC measures' split when each patient was read by the fold model that never saw it


def withheld_measures(meas: pd.DataFrame) -> pd.DataFrame:
    """Every segmented measure (`<measure>_auto`) a patient report withholds, by subject, with why: outside human
    bounds (`plausible.withheld`), or read at an ES frame whose LV outgrows its ED extent (`overshoot_reason`)."""
    by_subject = meas.set_index("subject")
    auto = {c.removesuffix("_auto"): by_subject[c] for c in meas.columns if c.endswith("_auto")}
    rows = [withheld(auto, UNITS)]
    if ES_OVERSHOOT_ML in by_subject and "LVESV" in auto:
        why = overshoot_reasons(by_subject[ES_OVERSHOOT_ML], auto["LVESV"])
        why = why[why != ""]
        rows.append(pd.DataFrame([dict(subject=s, measure=m, value=auto[m][s], low=np.nan, high=np.nan, why=w)
                                  for s, w in why.items() for m in auto if reads_es(m) and pd.notna(auto[m][s])],
                                 columns=WITHHELD_COLUMNS))
    out = pd.concat([r for r in rows if len(r)], ignore_index=True) if any(len(r) for r in rows) else rows[0]
    return out.groupby(["subject", "measure"], sort=False, as_index=False).agg(
        dict(value="first", low="first", high="first", why="; ".join))[WITHHELD_COLUMNS]


def overshoot_line(meas: pd.DataFrame) -> str:
    """How far the LV at ES outgrows its ED extent, as a share of LVESV: the manual masks' largest (what
    `plausible.ES_OVERSHOOT` is twice of) and the segmented patients beyond the rule."""
    if ES_OVERSHOOT_ML not in meas or "LVESV_ref" not in meas:
        return "no ES overshoot in this table"
    manual = (meas[f"{ES_OVERSHOOT_ML}_manual"] / meas.LVESV_ref).dropna()
    auto = (meas[ES_OVERSHOOT_ML] / meas.LVESV_auto).dropna()
    beyond = meas.loc[auto[auto > ES_OVERSHOOT].index]
    return (f"LV at ES beyond its ED area, slice by slice, as a share of LVESV: manual masks at most "
            f"{manual.max():.1%} ({len(manual)} patients); segmented, {len(beyond)} of {len(auto)} beyond "
            f"{ES_OVERSHOOT:.0%} (their LV numbers read at ES are withheld)"
            + (f": {', '.join(f'{r.subject} ({r.group})' for r in beyond.itertuples())}" if len(beyond) else ""))


@dataclass(frozen=True)
class Agreed:
    """Measures against their reference: the measures, the pairs compared, the agreement table and the measures a
    patient report withholds (`withheld_measures`)."""

    measures: pd.DataFrame
    pairs: dict
    table: pd.DataFrame
    withheld: pd.DataFrame


def agreed(meas: pd.DataFrame) -> Agreed:
    """ACDC's measures against their ground-truth masks: the pairs, the agreement table and the measures a report
    withholds (kept in the agreement: a failure is part of the pathway's error); `StudySkipped` with fewer than 3
    patients measured."""
    pairs = measure_pairs(meas, ref="ref")
    if not pairs:
        raise StudySkipped(f"fewer than 3 ACDC patients with measures ({len(meas)} patients)")
    return Agreed(meas, pairs, stats.agreement_table(meas, pairs, units=UNITS), withheld_measures(meas))


def acdc_measures(acdc: CohortStore, pred: dict, folds: dict | None, entropy: dict | None = None) -> pd.DataFrame:
    """The Table-1 measures of ACDC's patients from `pred` beside their manual masks'; with `folds` (subject -> the
    cross-fitted fold whose model read them) each row says it is out of fold; with `entropy` (cine_id -> the
    segmenter's entropy sums) each row has the mean entropy inside each structure over its stack's frames (ACDC's
    stacks: the ED and ES frames measured; `measure.EDES_ENTROPY`); and each row's LV ES overshoot
    (`ES_OVERSHOOT_ML`)."""
    from .predict import mean_entropy

    meas = subject_measures(acdc, pred).merge(es_overshoots(acdc, pred), on="subject", how="left")
    if entropy:
        m = acdc.manifest()
        subject = dict(zip(m.cine_id, m.subject.astype(str)))
        per = pd.DataFrame([{f"{EDES_ENTROPY}{k}": v for k, v in mean_entropy(acc).items()} | dict(subject=subject[cid])
                            for cid, acc in entropy.items()]).drop_duplicates("subject")
        meas = meas.merge(per, on="subject", how="left")
    return meas if folds is None else meas.assign(split=OUT_OF_FOLD_SPLIT, fold=meas.subject.map(folds))


@dataclass(frozen=True)
class Evidence:
    """The notebook's segmentation targets, the real-data check line its Predictor keeps and the provenance that
    carries the rest (the real training, the intervals, each shipped model's check, the cross-fitted recipe)."""

    checks: list
    line: str | None
    provenance: dict


def shipped_evidence(sax: str, lax: str, trained_on: str, phantom: pd.DataFrame, acdc_only, sim2real,
                     real: RealLax | None, held_out: pd.Series | None, n_held_out: int, oof, agree, intervals: dict,
                     n_real: int, seed: int) -> Evidence:
    """The evidence behind the shipped SAX model `sax` and long-axis model `lax`: the Dice targets (`dice_checks`,
    `lax_checks`), the SAX model's real targets (`crossfit.sax_evidence`: out of fold where `oof`, the cross-fitted
    models, is its recipe's; else its `held_out` Dice), the LVEF interval's coverage (`intervals`), each shipped
    model's check (`evaluate.model_check`) and what the Predictor's provenance says (`n_real` ACDC patients
    trained on)."""
    checks = dice_checks(phantom, acdc_only.table if acdc_only is not None else None,
                         sim2real.table if sim2real is not None else None) + lax_checks(real, trained_on)
    lines = real_check_lines(sim2real, real, lax, trained_on)
    sax_rows, more = sax_evidence(sax, held_out, n_held_out, oof.scored.scores if oof is not None else None,
                                  len(oof.models) if oof is not None else 0, agree, seed)
    lines += more
    if "LVEF" in intervals:  # the intervals' own check, not the segmenter's
        c = intervals["LVEF"]
        checks.append(coverage_target(f"LVEF 90 % interval coverage, each {c['across']} calibrated on the others",
                                      c["coverage_across"], c["n"]))
    checks += sax_rows
    lax_text = lax_summary(real.table, lax, trained_on) if real is not None else "no real-data check"
    model_checks = dict(SAX=model_check(sax_rows, "; ".join(c for c in lines if "SAX model" in c)),
                        LAX=model_check(lax_checks(real, trained_on, lax), lax_text))  # the shipped one's
    provenance = dict(real_training=f"ACDC, {n_real} patients (SAX model)") if n_real else {}
    provenance |= dict(intervals=intervals) if intervals else {}
    provenance |= dict(model_checks=model_checks)
    provenance |= dict(cross_fitted=str(CROSSFIT)) if oof is not None else {}  # its recipe's folds read patients
    return Evidence(checks, "; ".join(lines) or None, provenance)


def fine_tune_vs_scratch(acdc, few: list[str], held_out: list[str], phantom, epochs: int, lr: float, data_kw: dict,
                         model_kw: dict, reading: dict) -> pd.DataFrame:
    """The phantom SAX model fine-tuned on a few ACDC patients against the same schedule from scratch: mean Dice
    per structure on the held-out patients, a row per way of training (`data_kw`: the frames' `dataloaders`;
    `reading`: `predict_store`'s scheduler and label store)."""
    from .evaluate import mean_dice
    from .learner import dataloaders, fit
    from .predict import predict_store

    dls = dataloaders(acdc, ["SAX"], subjects=few, **data_kw)
    print(f"fine-tuning on {len(few)} patients ({len(dls.train_ds)} slices)")
    rows = [mean_dice(acdc, predict_store(fit(dls, epochs, lr, init=init, **model_kw), acdc, held_out, **reading)
                      ).rename(how) for how, init in (("phantom-pretrained", phantom), ("from scratch", None))]
    return pd.DataFrame(rows).rename_axis("training")


def lax_on_phantom(tuned, store, pred: dict, scores: pd.DataFrame, reading: dict) -> pd.Series:
    """Phantom test Dice of the fine-tuned long-axis model beside the phantom-only one's (its `pred` and `scores`
    of the test cines): what the real frames cost on the phantom."""
    from .predict import predict_store

    ids = [i for i in pred if not i.endswith("_SAX")]
    both = pd.concat([scores[scores.cine_id.isin(ids)].assign(model="lax"),
                      evaluate(store, predict_store(tuned, store, ids, **reading), with_hd95=False
                               ).assign(model="lax_real")], ignore_index=True)
    return summarise(both, by=("model", "view", "structure")).xs("all", level="phase")["dice_mean"]

