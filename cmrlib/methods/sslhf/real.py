"""SSLHF on real SAX patients (ACDC cines, reduced vs preserved LVEF by the 50 % rule on the full manual labels'
LVEF, five folds by patient): the SSLHF row's proxy chosen per fold by the gate on that fold's validation
patients, Tables II-III's rows cross-validated as on the phantom, and the run segmenter's LVEF as the measurement
row a cardiologist already has. Plain functions of the named pieces the Study hands them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...measure import ES_OVERSHOOT_ML
from ...plausible import outside_bounds, overshoot_reasons
from . import crossval
from .data import HFREF_BELOW, HFPatches, hf_class
from .evaluate import (MEASUREMENT, collapsed_runs, detectability, differences, measurement_rows, paired_target,
                       summarised, table)
from .learner import NO_PROXY, PROXIES, SSLHFConfig, network, pretrain

POOL, TUNED, RANDOM = "pool proxy", "pool + real proxy", "random"  # the encoders the real gate probes


@dataclass(frozen=True)
class RealProxies:
    """The SSLHF proxy each real fold starts from, the further pretraining's log rows, which proxy the gate kept
    and the deepest-level probe AUC by encoder."""

    nets: dict
    logs: list
    name: str
    gate: pd.Series


@dataclass(frozen=True)
class RealCV:
    """The real patients' table, predictions, summary, the proxies' log rows, the proxy kept and the gate."""

    table: pd.DataFrame
    pred: pd.DataFrame
    summary: pd.DataFrame
    logs: list
    proxy: str
    gate: pd.Series


def real_labels(subjects: pd.DataFrame) -> pd.DataFrame:
    """The real SAX cohort's labels: HFrEF when the reference LVEF is below the rule's threshold."""
    return pd.DataFrame(dict(subject=subjects.subject, lvef=subjects.LVEF, hfref=hf_class(subjects.LVEF),
                             group=subjects.group, lvef_true=np.nan))


def further_proxies(patches: HFPatches, labels: pd.DataFrame, folds: pd.Series, pool, cfg: SSLHFConfig,
                    steps: int) -> tuple[dict, list[dict]]:
    """The pool's SSLHF proxy trained on further, per fold, on that fold's real training and validation patches
    (no test patient); the proxies by fold and their log rows."""
    tuned, logs = {}, []
    for fold in range(int(folds.max()) + 1):
        parts = crossval.fold_patients(labels, folds, fold)
        seen = patches.take(pd.concat([parts["train"], parts["valid"]]).subject)
        tuned[fold], log = pretrain(seen.x, patches.take(parts["valid"].subject).x,
                                    dataclasses.replace(cfg, proxy_steps=int(steps)), PROXIES["SSLHF"],
                                    f"SSLHF real fold {fold}", start=pool)
        logs.append(dict(log, fold=fold, stage=f"real proxy fold {fold}"))
    return tuned, logs


def kept_proxies(gate: pd.DataFrame, tuned: dict, pool, logs: list) -> RealProxies:
    """Fold -> the proxy the gate ranks first on that fold's validation patients (deepest-level probe AUC; no probe:
    the pool's), with which was kept and the kept ones' AUC beside each encoder's."""
    deepest = gate[gate.deepest].groupby("encoder").auc.mean()
    auc = gate[gate.deepest].set_index(["fold", "encoder"]).auc
    at = lambda f, name: auc.get((f, name), np.nan)  # noqa: E731 (NaN: no probe in that fold)
    kept = {f: TUNED if at(f, TUNED) >= at(f, POOL) else POOL for f in tuned}
    name = next(iter(set(kept.values()))) if len(set(kept.values())) == 1 else \
        f"{TUNED} in {sum(v != POOL for v in kept.values())} of {len(kept)} folds"
    chosen = np.nanmean([at(f, kept[f]) for f in kept]) if auc.notna().any() else np.nan
    return RealProxies({f: tuned[f] if kept[f] != POOL else pool for f in tuned}, logs, name,
                       pd.concat([deepest, pd.Series({"kept": chosen})]))


def real_proxies(patches: HFPatches, labels: pd.DataFrame, folds: pd.Series, pool, cfg: SSLHFConfig, steps: int
                 ) -> tuple[RealProxies, pd.DataFrame]:
    """Per fold, the pool's proxy as it is or trained on further (`further_proxies`), whichever the gate ranks
    first on the fold's validation patients against a random encoder (`kept_proxies`); and the gate's table."""
    tuned, logs = further_proxies(patches, labels, folds, pool, cfg, steps)
    random_encoder = network(NO_PROXY, cfg).encoder
    gate = crossval.probe(lambda fold: {POOL: pool.encoder, TUNED: tuned[fold].encoder, RANDOM: random_encoder},
                          patches, labels, folds)
    return kept_proxies(gate, tuned, pool, logs), gate


def real_tables(pred: pd.DataFrame, lvef: pd.Series | None, rows: list[str], n_folds: int, n: int, seed: int
                ) -> tuple[list[str], dict[str, pd.DataFrame]]:
    """The rows shown (the measurement row added where the segmenter measured LVEF) and the real tables by name:
    predictions, fold metrics, pooled summary, Tables II-III's rows, differences and detectability."""
    if lvef is not None:
        pred = pd.concat([pred, measurement_rows(pred, lvef)], ignore_index=True)
        rows = [*rows, MEASUREMENT]
    fm, summ = summarised(pred, seed)
    return rows, dict(real_predictions=pred, fold_metrics=fm, real_summary=summ,
                      real_table=table(summ, rows, n_folds=n_folds), real_differences=differences(fm),
                      real_detectability=pd.DataFrame([detectability(fm, n, "SSLHF", "A: no proxy")]))


@dataclass(frozen=True)
class RealRun:
    """The real patients' cross-validation: the patients with patches and their labels, the proxies kept per fold
    with the gate's table, the fits' log rows, the rows shown and the tables by name (`real_tables`)."""

    labels: pd.DataFrame
    chosen: RealProxies
    gate: pd.DataFrame
    fit_logs: list
    rows: list[str]
    tables: dict


def real_run(patches: HFPatches, subjects: pd.DataFrame, pool, rows: list[str], cfg: SSLHFConfig, steps: int,
             n_folds: int, seed: int, timer, measured_lvef, client=None) -> RealRun:
    """Tables II-III's `rows` on the real SAX cohort's patients with patches (`subjects`, their folds the cohort's):
    the SSLHF row from the proxy the gate ranks first per fold (`real_proxies`, from the pool's `pool`), every row
    fitted and scored fold by fold as on the phantom (`crossval.cross_validate`), beside the segmenter's LVEF
    (`measured_lvef(labels)`, None: no measurement row); each stage timed by `timer`."""
    labels = real_labels(subjects)
    labels = labels[labels.subject.isin(set(patches.subject))].reset_index(drop=True)
    folds = subjects.set_index("subject").fold.reindex(labels.subject)
    print(f"{len(labels)} real patients with patches ({len(patches.failures)} cines left out: "
          f"real_preprocessing_failures), {int(labels.hfref.sum())} with LVEF below {HFREF_BELOW:g} %; "
          f"{len(patches)} patches")
    with timer("real patients: proxies"):
        chosen, gate = real_proxies(patches, labels, folds, pool, cfg, steps)
    with timer("real patients: classifiers"):
        pred, fit_logs, _ = crossval.cross_validate(patches, labels, folds, rows, cfg,
                                                    lambda fold: {"SSLHF": chosen.nets[fold]}, keep=(), client=client)
    shown, tables = real_tables(pred, measured_lvef(labels), rows, n_folds, len(labels), seed)
    return RealRun(labels, chosen, gate, fit_logs, shown, tables)


def gate_summary(gate: pd.DataFrame, chosen: RealProxies) -> str:
    """The real gate's probe AUC by encoder level and the proxy the SSLHF row starts from, as the notebook prints
    them."""
    levels = gate.pivot_table(index="level", columns="encoder", values="auc", aggfunc="mean")
    return ("real validation patients, probe AUC by encoder level (mean over folds; 5: the classifier's):\n"
            f"{levels.round(3).to_string()}\nthe SSLHF row starts from the {chosen.name} (per fold, the higher "
            "deepest-level probe AUC on that fold's validation patients)")


def segmented_lvef(meas: pd.DataFrame, n: int) -> pd.Series | None:
    """Each real patient's LVEF from the run's segmenter's measures (the measurement a cardiologist already has),
    withheld as the patient report withholds it (outside human bounds, or read at an ES frame whose LV outgrows its
    ED extent: a failed segmentation gives no call); None where the measures hold no LVEF."""
    if "LVEF_auto" not in meas:
        return None
    failed = outside_bounds(meas["LVEF_auto"], "LVEF", "%")
    nan = pd.Series(np.nan, index=meas.index)
    grown = (overshoot_reasons(meas.get(ES_OVERSHOOT_ML, nan), meas.get("LVESV_auto", nan)) != "") & ~failed
    got = meas["LVEF_auto"].mask(failed | grown)
    print(f"measurement row: the run's segmenter's LVEF on {int(got.notna().sum())} of {n} real patients, reduced "
          f"when below 50 % (no threshold learnt); {int(failed.sum())} outside human bounds and {int(grown.sum())} "
          "read at an ES cavity outgrowing its ED extent (failed segmentations) give no call")
    return got


def real_checks(real: RealCV, seed) -> list:
    """The proxy's gain and gate, and no collapsed run, on the real patients: a pipeline check, with no AUC target,
    since the measurements already separate this contrast."""
    return [paired_target("real patients: SSLHF minus A: no proxy (patient AUC)", real.pred, "A: no proxy", seed),
            (f"real patients: gate, {real.proxy} minus random encoder, probe AUC on validation",
             real.gate["kept"] - real.gate["random"], ">", 0.0),
            ("real patients: (row, fold) runs with near-constant test scores (SD < 0.03)",
             collapsed_runs(real.pred, ["row", "fold"]), "<=", 0)]


def predictor_rows(predictor, named_cines, hfref_below: float) -> pd.DataFrame:
    """A Predictor's HFrEF probability of each (name, cine) beside the LVEF of its manual masks, or why it cannot
    read the cine."""
    from ...predictor import NotApplicable

    rows = []
    for name, cine in named_cines:
        lvef = cine.meta.get("LVEF")
        row = dict(cine=name, frames=cine.n_frames, LVEF_manual=lvef,
                   class_by_LVEF="HFrEF" if (lvef or 100) < hfref_below else "not HFrEF")
        try:
            row["HFrEF_probability"] = predictor.predict(cine).measures["HFrEF probability"]
        except NotApplicable as e:
            row["note"] = str(e)
        rows.append(row)
    return pd.DataFrame(rows)
