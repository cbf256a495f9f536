"""SSLHF's experiment: every row of Tables II-III trained and scored in each of the five patient-grouped folds (3
train, 1 validation, 1 test, rotating), optionally on a fraction of the training patients (the learning curve).
Out-of-fold patch probabilities come back as one long table for `evaluate`; a (row, fold) whose loss or scores
turn non-finite is logged as failed with its reason and the others go on."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ...learn import attempt
from ...utils import seed_for
from ...store import fold_roles
from .data import HFPatches, subsample_patients
from .evaluate import summarised
from .learner import PROXIES, SSLHFConfig, features, fit, pretrain, scores


def fold_patients(labels: pd.DataFrame, folds: pd.Series, fold: int, fraction: float = 1.0, seed: int = 0
                  ) -> dict[str, pd.DataFrame]:
    """The labels of one fold's train, valid and test patients; `fraction` < 1 keeps a class-stratified share of
    the training patients only (validation and test stay whole)."""
    k = int(folds.max()) + 1
    out = {role: labels[labels.subject.map(folds).isin(fs)] for role, fs in fold_roles(fold, k).items()}
    out["train"] = subsample_patients(out["train"], fraction, seed_for(seed, "sslhf", "subsample", fold, fraction))
    return out


def _xy(patches: HFPatches, lab: pd.DataFrame) -> tuple[HFPatches, np.ndarray]:
    p = patches.take(lab.subject)
    return p, lab.set_index("subject").hfref.reindex(p.subject).to_numpy(int)


def fold_proxies(patches: HFPatches, labels: pd.DataFrame, folds: pd.Series, fold: int, cfg: SSLHFConfig,
                 rows: Sequence[str]) -> tuple[dict, list[dict]]:
    """The paper's protocol for the proxy: one restorer per row trained on this fold's training and validation
    patients (never its test patients)."""
    parts = fold_patients(labels, folds, fold)
    seen = patches.take(pd.concat([parts["train"], parts["valid"]]).subject)
    held = patches.take(parts["valid"].subject)
    out, logs = {}, []
    for row in rows:
        out[row], log = pretrain(seen.x, held.x, cfg, PROXIES[row], f"{row} fold {fold}")
        logs.append(dict(log, fold=fold))
    return out, logs


def _fit_and_score(row: str, data: dict, cfg: SSLHFConfig, restorers: dict | None, tag: str, lrs: tuple | None):
    """One row trained on a fold's training patches; its log, and the probabilities of its validation and test
    patches."""
    (pt, yt), (pv, yv) = data["train"], data["valid"]
    learn, log = fit(row, (pt.x, yt), (pv.x, yv), cfg, restorers, tag, lrs)
    preds = {split: scores(learn.model, data[split][0].x) for split in ("valid", "test")}
    return learn, log, preds


def _one_run(item: tuple[int, str], patches: HFPatches, labels: pd.DataFrame, folds: pd.Series, cfg: SSLHFConfig,
             proxies: dict, fraction: float, chosen: dict, keep: tuple):
    """One (fold, row) of the cross-validation (a Dask task, or a call in this process): its log, the predictions
    of its validation and test patches, and its trained network when the row is kept."""
    fold, row = item
    parts = fold_patients(labels, folds, fold, fraction, cfg.seed)
    data = {role: _xy(patches, lab) for role, lab in parts.items()}
    size = dict(train_patients=len(parts["train"]), train_patches=len(data["train"][1]))
    what = dict(method="SSLHF", row=row, fold=fold, fraction=fraction)
    lrs = (chosen[(row, fold)],) if (row, fold) in chosen else None
    done, failure = attempt(what, _fit_and_score, row, data, cfg, proxies.get(fold) if row in PROXIES else None,
                            f"fold {fold} fraction {fraction:g}", lrs)
    if failure:
        return dict(failure, stage=f"{row} fold {fold} fraction {fraction:g}", **size), None, None
    learn, log, scored = done
    preds = pd.concat([pd.DataFrame(dict(row=row, fold=fold, fraction=fraction, split=split,
                                         subject=data[split][0].subject, slice=data[split][0].slice,
                                         y=data[split][1], score=score)) for split, score in scored.items()],
                      ignore_index=True)
    return dict(log, fold=fold, fraction=fraction, status="ok", **size), preds, learn.model if row in keep else None


def cross_validate(patches: HFPatches, labels: pd.DataFrame, folds: pd.Series, rows: Sequence[str],
                   cfg: SSLHFConfig, restorers: Callable[[int], dict], fraction: float = 1.0,
                   keep: Sequence[str] = ("SSLHF",), progress: bool = True, chosen: dict | None = None,
                   client=None) -> tuple[pd.DataFrame, list, dict]:
    """Train each row in each fold and score its validation and test patches. `restorers(fold)` gives the proxies
    the self-supervised rows start from; `chosen` (row, fold) -> learning rate pins the rate a (row, fold) trains
    at (the learning curve reuses what the full run chose on validation), else every rate of `cfg.lrs` is tried:
    in every fold, or with `cfg.lr_from_first_fold` in the first fold, whose validation patients then choose each
    row's rate for the other folds, and in the fold those patients are the test patients of (`_choosing_folds`).
    With a Dask `client` every (fold, row) is a task of its own, on one torch thread (Dask starts its workers with
    OMP_NUM_THREADS=1; small 3D networks use a second thread poorly); every fit seeds itself, so the tables do not
    depend on the order.
    Returns the predictions (row, fold, fraction, split, subject, slice, y, score), the training log (`status` ok
    or failed, with the `reason`; `lr` the rate kept) and the trained networks of the `keep` rows by (row, fold)."""
    k = int(folds.max()) + 1
    proxies = {f: restorers(f) for f in range(k)} if any(r in PROXIES for r in rows) else {}
    items = [(fold, row) for fold in range(k) for row in rows]
    chosen = dict(chosen or {})
    first = [it for it in items if it[0] in _choosing_folds(k)]
    rest = [it for it in items if it not in first]
    waves = [first, rest] if cfg.lr_from_first_fold and not chosen and len(cfg.lrs) > 1 else [items]
    done = {}
    for wave in waves:
        chosen.update(_first_fold_rates(done, k))
        args = (patches, labels, folds, cfg, proxies, fraction, dict(chosen), tuple(keep))
        done.update(_run_items(wave, args, client, progress, fraction))
    logs = [done[it][0] for it in items]
    preds = [done[it][1] for it in items if done[it][1] is not None]
    kept = {(row, fold): done[(fold, row)][2] for fold, row in items if done[(fold, row)][2] is not None}
    pred = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame(
        columns=["row", "fold", "fraction", "split", "subject", "slice", "y", "score"])
    return pred, logs, kept


def learning_curve(patches: HFPatches, labels: pd.DataFrame, folds: pd.Series, rows: Sequence[str], cfg: SSLHFConfig,
                   restorers: Callable[[int], dict], fractions: Sequence[float], full: pd.DataFrame, chosen: dict,
                   seed: int, client=None) -> tuple[pd.DataFrame, list]:
    """`rows` again on each fraction of every fold's training patients at the `chosen` rates, beside the full run's
    predictions `full`: the pooled summary by fraction and the fits' log rows."""
    curve, logs = [full[full.row.isin(rows)]], []
    for frac in fractions:
        pred, fit_logs, _ = cross_validate(patches, labels, folds, rows, cfg, restorers, float(frac), keep=(),
                                           chosen=chosen, client=client)
        curve.append(pred)
        logs += fit_logs
    curve = pd.concat(curve, ignore_index=True)
    return summarised(curve, seed)[1], logs


def _choosing_folds(k: int) -> tuple[int, ...]:
    """The folds that try every rate with `lr_from_first_fold`: fold 0, whose validation patients choose the rate
    the others reuse, and the fold whose test patients those are (it chooses on its own validation patients), so
    no fold's rate depends on its own test patients."""
    return tuple(sorted({0, *fold_roles(0, k)["valid"]}))


def _first_fold_rates(done: dict, k: int) -> dict[tuple[str, int], float]:
    """(row, fold) -> the rate each row kept in fold 0, for the folds that did not choose their own (none for a row
    that failed there)."""
    return {(row, f): float(res[0]["lr"]) for (fold, row), res in done.items()
            if fold == 0 and res[0].get("status") == "ok" for f in range(k) if f not in _choosing_folds(k)}


def _run_items(items: list, args: tuple, client, progress: bool, fraction: float) -> dict:
    """(fold, row) -> what `_one_run` returned, for each item (Dask tasks when a client is given); `fraction`
    names a failed row's share of training patients."""
    from distributed import KilledWorker

    from ...dask_tasks import map_tasks

    done = {}
    for item, res, err in map_tasks(_one_run, items, client, args=args, desc="SSLHF rows x folds", unit="fit",
                                    progress=progress):
        if isinstance(err, KilledWorker):  # the fit's worker died (its memory share, most often): a failed row
            fold, row = item
            res = (dict(method="SSLHF", row=row, fold=fold, fraction=fraction, status="failed",
                        reason="its Dask worker died (most often: past its share of memory); fits_on_workers=False "
                               "runs the fits one at a time in the notebook's process"), None, None)
        elif err is not None:
            raise err
        done[item] = res
    return done


def failures(logs: Sequence[dict]) -> pd.DataFrame:
    """The (row, fold, fraction) runs that failed, with their reason (empty when every run trained)."""
    cols = ["row", "fold", "fraction", "reason"]
    bad = [{k: r.get(k) for k in cols} for r in logs if r.get("status") == "failed"]
    return pd.DataFrame(bad, columns=cols)


def chosen_rates(logs: Sequence[dict], fraction: float = 1.0) -> dict[tuple[str, int], float]:
    """(row, fold) -> the learning rate each trained (row, fold) kept at `fraction` of its training patients."""
    return {(r["row"], int(r["fold"])): float(r["lr"]) for r in logs
            if r.get("status") == "ok" and r.get("fraction") == fraction and "lr" in r}


def probe(encoders: dict | Callable[[int], dict], patches: HFPatches, labels: pd.DataFrame, folds: pd.Series
          ) -> pd.DataFrame:
    """The gate before any classifier: a logistic regression on each frozen encoder's pooled features at each of
    its levels (`encoders`: name -> encoder, or fold -> that dict), trained on a fold's training patches and scored
    on its validation patients (patient = mean of its patches), every fold. A proxy encoder whose deepest level
    (the one the classifier pools) does not beat a random one has learned nothing the classifier can use; the
    shallower levels say where what it learned sits (a U-Net's skips let its decoder restore from them)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cache: dict[int, list[np.ndarray]] = {}
    rows = []
    y = labels.set_index("subject").hfref.reindex(patches.subject).to_numpy(int)
    for fold in range(int(folds.max()) + 1):
        named = encoders(fold) if callable(encoders) else encoders
        for enc in named.values():
            if id(enc) not in cache:
                cache[id(enc)] = features(enc, patches.x)
        parts = fold_patients(labels, folds, fold)
        tr, va = (np.isin(patches.subject, parts[r].subject) for r in ("train", "valid"))
        both = len(np.unique(y[tr])) == 2  # a fold whose training patients are of one class has no probe (NaN)
        for name, enc in named.items():
            for level, f in enumerate(cache[id(enc)]):
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000,
                                                                         class_weight="balanced"))
                p = clf.fit(f[tr], y[tr]).predict_proba(f[va])[:, 1] if both else np.full(int(va.sum()), np.nan)
                pat = pd.DataFrame(dict(subject=patches.subject[va], y=y[va], p=p))
                pat = pat.groupby("subject").agg(y=("y", "first"), p=("p", "mean"))
                auc = roc_auc_score(pat.y, pat.p) if both and pat.y.nunique() == 2 else np.nan
                rows.append(dict(encoder=name, level=level + 1, deepest=level == len(cache[id(enc)]) - 1, fold=fold,
                                 valid_patients=len(pat), auc=auc))
    return pd.DataFrame(rows)
