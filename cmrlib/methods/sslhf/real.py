"""SSLHF on real SAX patients (ACDC cines, reduced vs preserved LVEF by the 50 % rule on the full manual labels'
LVEF, five folds by patient): the SSLHF row's proxy chosen per fold by the gate on that fold's validation
patients, Tables II-III's rows cross-validated as on the phantom, and the run segmenter's LVEF as the measurement
row a cardiologist already has. Plain functions of the named pieces the Study hands them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...utils import seed_for
from . import crossval
from .data import HFPatches, hf_class
from .evaluate import (MEASUREMENT, collapsed_runs, detectability, differences, fold_metrics, measurement_rows,
                       paired_target, pooled_summary, table)
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
    fm = fold_metrics(pred)
    summ = pooled_summary(pred, fm, seed=seed_for(seed, "sslhf", "bootstrap"))
    return rows, dict(real_predictions=pred, fold_metrics=fm, real_summary=summ,
                      real_table=table(summ, rows, n_folds=n_folds), real_differences=differences(fm),
                      real_detectability=pd.DataFrame([detectability(fm, n, "SSLHF", "A: no proxy")]))


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
