"""HeartMAE on real SAX patients: each fold's views labelled by role, two read-outs of LVEF from frozen features
trained on the fold's training and validation patients (the test patients scored once), and the out-of-fold errors
summarised with bootstrap CIs, paired against the random encoder.

- pooled: one mean feature per patient, a ridge on its principal components (their number and the strength by
  leave-one-patient-out);
- frame-resolved: each (SAX slice, clip time step) feature regressed on the LV blood-pool area the run's segmenter
  finds over the same frames (settings by patient-grouped CV), the patient's area curve summed over slices and its
  (max - min) / max read as EF, mapped to LVEF by a line fitted on the training patients' out-of-fold curves.
"""
from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...results import Target
from ...stats import paired_bootstrap
from ...store import fold_roles
from ...utils import load_arrays, rng, save_arrays, seed_for
from .baselines import EXPERT
from .data import CineSet, Clips, inference_views, intensity_stats
from .evaluate import boot_mae_ci
from .gates import pretext, subject_means
from .learner import FAMILY, RANDOM, pretrain

ALPHAS = np.logspace(-2, 4, 13)  # ridge strengths tried by cross-validation on the non-test patients
POOLED, FRAMES = "pooled", "frame-resolved"          # the two read-outs
AREAS = "segmenter areas (the read-out's target)"   # the frame-resolved read-out's ceiling: its target, no features
PIXELS = "raw pixels"                                # the control: each time step's mean image, shrunk
SEGMENTER = "segmenter encoder"                      # the run's SAX segmenter's encoder stages, pooled: frozen
                                                     # features that were trained to find the blood pool
PHANTOM = "HeartMAE (phantom)"                       # HeartMAE as the phantom left it
TUNED = "HeartMAE (phantom + real)"                  # its pretraining continued on a fold's real training patients
CHOSEN = "HeartMAE (epochs chosen per fold)"         # the frozen procedure choosing between the two on each fold
N_PCA = (8, 32, 128)              # principal components a read-out may regress on, chosen with the strength
FRAME_SPLITS = 10                 # patient-grouped folds choosing the frame-resolved ridge's strength
PIXEL_SIDE = 16                   # the raw-pixel control: each time step's mean image at 16 x 16 px


def feature_tables(feature_sets: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each feature set's real subject features by table name (the family as the phantom left it, the random
    encoder, the segmentation measures): what notebook 08 clusters."""
    return {f"real_subject_features_{name.split(' ')[0]}": x.rename_axis("subject").rename(columns=str)
            for name, x in feature_sets.items()}


def fold_views(cines: CineSet, folds: pd.Series, fold: int) -> CineSet:
    """The views with `split` set to each subject's role in `fold` (train, valid or test)."""
    k = int(folds.max()) + 1
    role = {f: r for r, fs in fold_roles(fold, k).items() for f in fs}
    table = cines.table.assign(split=cines.table["subject"].map(folds).map(role))
    return CineSet(cines.frames, cines.weight, table, cines.failures)


def ridge_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray, max_splits: int | None = None):
    """Standardise, project on principal components, ridge: the number of components (of `N_PCA`, at most what the
    folds allow) and the strength (of `ALPHAS`) with the lowest out-of-fold MAE over patient-grouped folds (leave one
    patient out, or `max_splits` folds), refitted on all rows. (model, cross-validated MAE, alpha, each row's
    out-of-fold prediction at those settings)."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    n_groups = len(np.unique(groups))
    cv = LeaveOneGroupOut() if max_splits is None or n_groups <= max_splits else GroupKFold(max_splits)
    splits = list(cv.split(x, y, groups))
    most = min(min(len(tr) for tr, _ in splits) - 1, x.shape[1])
    ks = sorted({min(k, most) for k in N_PCA})
    oof = np.zeros((len(ks), len(ALPHAS), len(y)))
    for tr, te in splits:  # one projection per split: the first k components of the largest are PCA(k)'s
        proj = _projection(max(ks)).fit(x[tr])
        oof[:, :, te] = _ridge_paths(proj.transform(x[tr]), y[tr], proj.transform(x[te]), ks)
    mae = np.abs(oof - y).mean(-1)
    i, j = np.unravel_index(int(np.argmin(mae)), mae.shape)
    model = _projection(ks[i], Ridge(alpha=ALPHAS[j])).fit(x, y)
    return model, float(mae[i, j]), float(ALPHAS[j]), oof[i, j]


def _ridge_paths(z_tr: np.ndarray, y_tr: np.ndarray, z_te: np.ndarray, ks: list[int]) -> np.ndarray:
    """(len(ks), len(ALPHAS), test rows) ridge predictions on the first k principal-component scores at every
    strength, in closed form: the training scores are centred and orthogonal, so each component's coefficient is
    its covariance with y over its squared norm plus alpha (what `Ridge` fits on them, without a fit per setting)."""
    yc = y_tr - y_tr.mean()
    coef = (z_tr.T @ yc)[None, :] / ((z_tr ** 2).sum(0)[None, :] + ALPHAS[:, None])  # (alphas, K)
    paths = np.cumsum(z_te[:, None, :] * coef[None], axis=2)  # (test, alphas, K): sums over the first k components
    return np.stack([y_tr.mean() + paths[:, :, k - 1].T for k in ks])


def _projection(k: int, *then):
    """Standardisation, the first `k` principal components (exact SVD, so fewer components are a prefix), `then`."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), PCA(k, svd_solver="full"), *then)


def pooled_lvef(x: pd.DataFrame, y: pd.Series, roles: Mapping[str, list[str]]) -> tuple[pd.Series, float, float]:
    """The pooled read-out: `ridge_cv` of `y` on the subject features `x` (subject-indexed; missing values take the
    training median), leaving one training or validation patient out, applied to the test patients.
    (test predictions, cross-validated MAE, alpha)."""
    fit_on, te = list(roles["train"]) + list(roles["valid"]), list(roles["test"])
    median = x.loc[fit_on].median()
    x = x.loc[:, median.notna()].fillna(median)
    model, cv_mae, alpha, _ = ridge_cv(x.loc[fit_on].to_numpy(), y.loc[fit_on].to_numpy(), np.asarray(fit_on))
    return pd.Series(model.predict(x.loc[te].to_numpy()), index=te), cv_mae, alpha


def step_windows(n_frames: int, load: int, size: int, frames: int, tubelet: int, k: int, t: int
                 ) -> list[tuple[int, int]]:
    """(first, last + 1) frame of every (clip, time step) of `inference_views`' `t` clips, in clip then step order."""
    starts = [v.start for v in inference_views(n_frames, load, size, frames, k, t)[::k]]
    return [(s + j * tubelet, s + (j + 1) * tubelet) for s in starts for j in range(frames // tubelet)]


def window_means(x: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
    """(T, ...) per-frame values -> (windows, ...) their mean over each window's frames."""
    return np.stack([np.asarray(x[a:b], np.float64).mean(0) for a, b in windows])


def split_steps(features: np.ndarray, k: int, t: int, n_steps: int, pool: str) -> tuple[np.ndarray, np.ndarray]:
    """`extract`'s (views, k x t, n_steps x dim) step means -> (views, t x n_steps, dim) frame-resolved features
    (the k crops averaged) and (views, k x t, dim') pooled clip features as `VideoMAE.features` gives them."""
    f = np.asarray(features, np.float64).reshape(len(features), t, k, n_steps, -1)
    frames = f.mean(2).reshape(len(features), t * n_steps, -1)
    clips = f.reshape(len(features), t * k, n_steps, -1)
    mean = clips.mean(2)
    return frames, (mean if pool == "mean" else np.concatenate([mean, clips.std(2, ddof=1)], -1))


def pixel_steps(frames: np.ndarray, windows: list[tuple[int, int]], size: int, side: int = PIXEL_SIDE) -> np.ndarray:
    """The raw-pixel control: (views, windows, side x side) each window's mean image of the centre crop, shrunk."""
    import cv2

    y = (frames.shape[-1] - size) // 2
    crop = frames[:, :, y:y + size, y:y + size].astype(np.float32) / 255
    return np.stack([[cv2.resize(m, (side, side), interpolation=cv2.INTER_AREA).ravel()
                      for m in window_means(v, windows).astype(np.float32)] for v in crop])


def segmenter_windows(seg, cine, view_ids, cycle: int, windows: list[tuple[int, int]]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """For the views (`<cine_id>:<slice>`) of one SAX cine: (views, windows) the segmenter's mean LV area (mm^2) and
    (views, windows, C) its encoder's features over each window of the cycle resampled to `cycle` frames."""
    from ...labels import LV
    from ...measure import area_curve, resample_cycle

    zs = [int(str(v).rsplit(":", 1)[1]) for v in view_ids]
    labels = seg.labels(cine)
    area = [window_means(resample_cycle(area_curve(labels[:, z], cine.spacing[-2:], LV), cycle), windows)
            for z in zs]
    feats = resample_cycle(seg.encoder_features(cine, zs), cycle)  # (cycle, views, C)
    return np.stack(area), window_means(feats, windows).transpose(1, 0, 2)


def segmenter_targets(seg, store, cines: CineSet, windows: list[tuple[int, int]], progress: bool = True
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per view and window of every cine of `cines`: the segmenter's mean LV blood-pool area (mm^2) over the
    window's frames of the cycle, and (views, windows, C) its encoder's features (`segmenter_windows`)."""
    from fastprogress.fastprogress import progress_bar

    cycle = cines.frames.shape[1]
    area, feats = np.full((len(cines), len(windows)), np.nan), []
    for cid, views in progress_bar(list(cines.table.groupby("cine_id", sort=False).groups.items()), leave=False,
                                   display=progress):
        area[views], f = segmenter_windows(seg, store.read(cid), cines.table.view_id[views], cycle, windows)
        feats.append((views, f))
    enc = np.zeros((len(cines), len(windows), feats[0][1].shape[-1]), np.float32)
    for views, f in feats:
        enc[views] = f
    return area, enc


def frame_targets(seg, store, cines: CineSet, windows: list[tuple[int, int]], path, timer
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """`segmenter_targets` of the real views by `seg` (None: the run has no segmenter; NaN areas, no features),
    saved at `path` with what made them and read from there while the segmenter, cohort, views and windows are the
    same; the segmentation timed by `timer`."""
    key = dict(segmentation=seg.content_key() if seg is not None else "absent", cohort=store.fingerprint(),
               views=cines.table.view_id.tolist(), windows=windows, cycle=cines.frames.shape[1],
               encoder="every stage, mean over space")
    got = load_arrays(path, key)
    if got is not None:
        return got[0]["area"], (got[0]["segmenter"] if got[0]["segmenter"].size else None)
    if seg is None or not seg.reads("SAX"):
        return np.full((len(cines), len(windows)), np.nan), None
    with timer("real patients: segmenter areas"):
        area, enc = segmenter_targets(seg, store, cines, windows)
    save_arrays(path, dict(area=area, segmenter=enc), key)
    return area, enc


def curve_ef(values: np.ndarray, rows: pd.DataFrame) -> pd.Series:
    """Per subject, EF (%) of the area curve: the windows' values summed over its slices, (max - min) / max."""
    c = rows.assign(v=values).groupby(["subject", "window"]).v.sum().groupby(level=0)
    return ((c.max() - c.min()) / c.max().where(c.max() > 0) * 100).rename("curve_EF")


def frame_lvef(x: np.ndarray, rows: pd.DataFrame, lvef: pd.Series, roles: Mapping[str, list[str]]
               ) -> tuple[pd.Series, float, float, float]:
    """The frame-resolved read-out (module docstring): `x` one feature row per `rows` row (subject, window, area
    in mm^2). (test LVEF, cross-validated area MAE in cm^2, alpha, test area MAE in cm^2)."""
    fit_on = set(roles["train"]) | set(roles["valid"])
    on, te = rows.subject.isin(fit_on).to_numpy(), rows.subject.isin(set(roles["test"])).to_numpy()
    model, cv_mae, alpha, oof = ridge_cv(x[on], rows.area.to_numpy()[on], rows.subject.to_numpy()[on], FRAME_SPLITS)
    area = model.predict(x[te])
    test = calibrated_ef(curve_ef(oof, rows[on]), curve_ef(area, rows[te]), lvef)
    return test, cv_mae / 100, alpha, float(np.abs(area - rows.area.to_numpy()[te]).mean() / 100)


def calibrated_ef(fit_curve: pd.Series, test_curve: pd.Series, lvef: pd.Series) -> pd.Series:
    """Test patients' LVEF from their curve EF by the least-squares line from curve EF to LVEF of the fitting
    patients (a curve of three mid slices at four-frame steps reads EF low; the line maps it to the full stack). A
    curve with no positive area has no EF: it reads as the fitting patients' mean LVEF."""
    ok = fit_curve.dropna()
    y = lvef.reindex(ok.index).to_numpy()
    slope, icpt = np.polyfit(ok.to_numpy(), y, 1)
    return (icpt + slope * test_curve).fillna(float(y.mean())).rename("predicted")


def area_lvef(rows: pd.DataFrame, lvef: pd.Series, roles: Mapping[str, list[str]]) -> pd.Series:
    """The read-out's ceiling: the segmenter's own window areas through the same curve and line, no features."""
    fit_on = rows.subject.isin(set(roles["train"]) | set(roles["valid"])).to_numpy()
    te = rows.subject.isin(set(roles["test"])).to_numpy()
    return calibrated_ef(curve_ef(rows.area.to_numpy()[fit_on], rows[fit_on]),
                         curve_ef(rows.area.to_numpy()[te], rows[te]), lvef)


def subject_features(features: np.ndarray, table: pd.DataFrame, subjects: list[str]) -> pd.DataFrame:
    """The mean of each subject's view features (views x crops x clips), one row per subject."""
    return pd.DataFrame(subject_means(features, table, subjects), index=subjects)


def lvef_table(pred: pd.DataFrame, reference: str, n_boot: int, seed: int) -> pd.DataFrame:
    """Per encoder: the out-of-fold LVEF MAE with its bootstrap CI over patients, and its paired difference from
    `reference` (the random encoder) with the CI of that difference."""
    rows = []
    if pred.empty:
        return pd.DataFrame(columns=["encoder", "n", "MAE", "ci_low", "ci_high", "minus_random", "minus_random_low",
                                     "minus_random_high"])
    err = (pred.pivot(index="subject", columns="encoder", values="predicted")
           .sub(pred.groupby("subject").reference.first(), axis=0).abs())
    idx = rng(seed).integers(0, len(err), (n_boot, len(err))) if n_boot and len(err) > 1 else None
    for enc in err.columns:
        e = err[enc].to_numpy()
        lo, hi = boot_mae_ci(e, n_boot, seed)
        d = e - err[reference].to_numpy()
        d_lo, d_hi = (np.percentile(d[idx].mean(1), [2.5, 97.5]) if idx is not None else (np.nan, np.nan))
        rows.append(dict(encoder=enc, n=len(e), MAE=float(e.mean()), ci_low=lo, ci_high=hi,
                         minus_random=float(d.mean()), minus_random_low=float(d_lo), minus_random_high=float(d_hi)))
    return pd.DataFrame(rows).sort_values("MAE").reset_index(drop=True)


@dataclass(frozen=True)
class Encoded:
    """One representation of the real patients: a pooled row per subject and/or a frame-resolved row per window
    row (`frame_rows`' order); None where it is not read that way."""

    pooled: pd.DataFrame | None = None
    frames: np.ndarray | None = None


def frame_rows(table: pd.DataFrame, n_windows: int, area: np.ndarray) -> pd.DataFrame:
    """One row per (view, window) in `table`'s view order: subject, view_id, window, area (mm^2, the segmenter's
    mean LV area over the window's frames) and pos (the row's place in a (views x windows) feature array); rows
    without a finite area left out."""
    rows = pd.DataFrame(dict(subject=np.repeat(table["subject"].to_numpy(), n_windows),
                             view_id=np.repeat(table["view_id"].to_numpy(), n_windows),
                             window=np.tile(np.arange(n_windows), len(table)), area=np.asarray(area).ravel()))
    rows["pos"] = np.arange(len(rows))
    return rows[np.isfinite(rows.area)].reset_index(drop=True)


def fold_readouts(encoded: Mapping[str, Encoded], rows: pd.DataFrame, lvef: pd.Series,
                  roles: Mapping[str, list[str]], fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both read-outs of every representation on one outer fold, and the target's own curve (`AREAS`): the test
    patients' LVEF (encoder, readout, fold, subject, predicted, reference) and each fit's gate row (its
    cross-validated MAE on the non-test patients: EF points pooled, cm^2 of area frame-resolved; the test
    patients' area MAE)."""
    preds, gates = [], []

    def add(enc: str, readout: str, test: pd.Series, **gate):
        gates.append(dict(encoder=enc, readout=readout, fold=fold, **gate))
        preds.append(pd.DataFrame(dict(encoder=enc, readout=readout, fold=fold, subject=test.index,
                                       predicted=test.to_numpy(), reference=lvef.reindex(test.index).to_numpy())))

    for enc, e in encoded.items():
        if e.pooled is not None:
            test, cv, alpha = pooled_lvef(e.pooled, lvef, roles)
            add(enc, POOLED, test, cv_MAE=cv, alpha=alpha)
        if e.frames is not None and len(rows):
            test, cv, alpha, area_mae = frame_lvef(e.frames[rows.pos.to_numpy()], rows, lvef, roles)
            add(enc, FRAMES, test, cv_area_MAE_cm2=cv, alpha=alpha, test_area_MAE_cm2=area_mae)
    if len(rows):  # no rows: the run has no SAX segmenter to give the areas
        add(AREAS, FRAMES, area_lvef(rows, lvef, roles), test_area_MAE_cm2=0.0)
    return pd.concat(preds, ignore_index=True), pd.DataFrame(gates)


def readout_gain(pred: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Per representation read both ways: its pooled and frame-resolved LVEF MAE on the same test patients and
    their paired difference (frame-resolved minus pooled) with a patient-bootstrap CI."""
    err = (pred.assign(err=(pred.predicted - pred.reference).abs())
           .pivot_table(index="subject", columns=["encoder", "readout"], values="err"))
    rows = []
    for enc in sorted({e for e, r in err.columns if (e, POOLED) in err and (e, FRAMES) in err}):
        both = err[[(enc, FRAMES), (enc, POOLED)]].dropna()
        d, lo, hi = (paired_bootstrap(both.iloc[:, 0], both.iloc[:, 1], n_boot, seed) if n_boot and len(both) > 1
                     else (float((both.iloc[:, 0] - both.iloc[:, 1]).mean()), np.nan, np.nan))
        rows.append(dict(encoder=enc, n=len(both), pooled_MAE=float(err[(enc, POOLED)].mean()),
                         frames_MAE=float(err[(enc, FRAMES)].mean()), frames_minus_pooled=d, ci_low=lo, ci_high=hi))
    return pd.DataFrame(rows, columns=["encoder", "n", "pooled_MAE", "frames_MAE", "frames_minus_pooled", "ci_low",
                                       "ci_high"])


def encode(model, mean: float, std: float, cines: CineSet, names: list[str], cfg, k: int, t: int, pool: str
           ) -> Encoded:
    """A masked autoencoder's frozen features of every view: per subject, pooled, and per (view, time step)."""
    from .features import extract, mae_steps

    steps = extract(mae_steps(model, mean, std), cines, cfg.size, cfg.frames, k, t, progress=False)
    frames, pooled = split_steps(steps, k, t, cfg.frames // cfg.tubelet, pool)
    return Encoded(subject_features(pooled, cines.table, names), frames.reshape(-1, frames.shape[-1]))


def fixed_readouts(phantom: Encoded, random: Encoded, cines: CineSet, windows: list[tuple[int, int]], size: int,
                   segmenter: np.ndarray | None, expert: pd.DataFrame | None) -> dict[str, Encoded]:
    """The representations no fold changes: HeartMAE as the phantom left it, a random encoder, the raw pixels, the
    segmenter's encoder (None: no SAX segmenter) and the expert features (None: not asked for)."""
    fixed = {PHANTOM: phantom, RANDOM: random,
             PIXELS: Encoded(frames=pixel_steps(cines.frames, windows, size).reshape(-1, PIXEL_SIDE ** 2))}
    if segmenter is not None:
        fixed[SEGMENTER] = Encoded(frames=segmenter.reshape(-1, segmenter.shape[-1]))
    if expert is not None:
        fixed[EXPERT] = Encoded(pooled=expert)
    return fixed


def fold_pretext(name: str, model, random_network, fc: CineSet, mean: float, std: float, fold: int, cfg, seed: int
                 ) -> pd.DataFrame:
    """The pretext gate of a HeartMAE against the run's random network on one fold's real validation views."""
    spec = FAMILY["HeartMAE"]
    clips = Clips(fc.take(fc.rows("valid")), cfg.size, cfg.frames, mean, std, train=False)
    return pretext({name: model}, random_network, clips, spec["ratio"], spec["masking"],
                   seed_for(seed, "06", "real pretext", fold), target=cfg.target).assign(fold=fold)


def fold_tuning(heartmae, random_network, cfg, epochs: int, mean: float, std: float, seed: int, models_dir, timer,
                encoded):
    """`cross_fold`'s `tuned_for`: with `epochs`, HeartMAE's pretraining continued on the fold's training views (its
    features by `encoded(model, mean, std)`), and the pretext gate against `random_network` on the fold's validation
    views of the phantom HeartMAE (`heartmae`, its views' `mean` and `std`) and of the continued one if any."""
    def tuned_for(fc: CineSet, fold: int) -> tuple[dict, pd.DataFrame]:
        gate = fold_pretext(PHANTOM, heartmae, random_network, fc, mean, std, fold, cfg, seed)
        if not epochs:
            return {}, gate
        m, s = intensity_stats(fc.take(fc.rows("train")))
        with timer("real patients: pretraining"):
            tuned, _ = pretrain("HeartMAE", fc, dataclasses.replace(cfg, epochs=epochs), m, s, models_dir,
                                init=heartmae)
        gate = pd.concat([gate, fold_pretext(TUNED, tuned, random_network, fc, m, s, fold, cfg, seed)],
                         ignore_index=True)
        with timer("real patients: features"):
            return {TUNED: encoded(tuned, m, s)}, gate
    return tuned_for


def epochs_per_fold(gate: pd.DataFrame) -> pd.DataFrame:
    """The frozen choice of HeartMAE's real epochs on each outer fold, made on the fold's non-test patients only:
    the continued pretraining where its pooled ridge's cross-validated LVEF MAE is lower than the phantom model's,
    else the phantom model (a tie keeps the fewer epochs). Empty when no fold continued the pretraining."""
    g = gate[gate.readout == POOLED].pivot(index="fold", columns="encoder", values="cv_MAE")
    if TUNED not in g or PHANTOM not in g:
        return pd.DataFrame(columns=["fold", "phantom_cv_MAE", "real_cv_MAE", "chosen"])
    return pd.DataFrame({"fold": g.index, "phantom_cv_MAE": g[PHANTOM].to_numpy(), "real_cv_MAE": g[TUNED].to_numpy(),
                         "chosen": np.where(g[TUNED] < g[PHANTOM], TUNED, PHANTOM)})


def with_chosen(frame: pd.DataFrame, column: str, choice: pd.DataFrame) -> pd.DataFrame:
    """`frame` with each fold's rows of its chosen model (`epochs_per_fold`) repeated under `CHOSEN` in `column`."""
    picked = frame.merge(choice[["fold", "chosen"]], on="fold")
    picked = picked[picked[column] == picked["chosen"]].drop(columns="chosen").assign(**{column: CHOSEN})
    return pd.concat([frame, picked], ignore_index=True)


def cross_fold(cines: CineSet, folds: pd.Series, names: list[str], fixed: Mapping[str, Encoded], tuned_for,
               rows: pd.DataFrame, lvef: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every read-out of every representation, fold by fold: `tuned_for(fold views, fold)` gives the fold's own
    representations and its pretext gate; the fixed ones are read as they are. The out-of-fold predictions, the
    features gates and the pretext gates."""
    preds, gates, pretexts = [], [], []
    for fold in range(int(folds.max()) + 1):
        fc = fold_views(cines, folds, fold)
        role = fc.table.drop_duplicates("subject").set_index("subject")["split"]
        roles = {r: [s for s in names if role[s] == r] for r in ("train", "valid", "test")}
        tuned, pretext = tuned_for(fc, fold)
        pred, gate = fold_readouts({**tuned, **fixed}, rows, lvef, roles, fold)
        preds.append(pred)
        gates.append(gate)
        pretexts.append(pretext)
    return tuple(pd.concat(x, ignore_index=True) for x in (preds, gates, pretexts))


@dataclass(frozen=True)
class ReadOuts:
    """The real patients' out-of-fold LVEF by representation and read-out, the features and pretext gates, and each
    fixed representation's pooled subject features (notebook 08 clusters them)."""

    pred: pd.DataFrame
    gate: pd.DataFrame
    pretext: pd.DataFrame
    pooled: dict


def read_outs(cines: CineSet, subjects: pd.DataFrame, models: dict, random_network, mean: float, std: float, cfg,
              p: dict, seg, store, out, timer, expert: pd.DataFrame | None) -> ReadOuts:
    """Both read-outs of every representation of the real patients (`subjects`: subject, fold, LVEF), fold by fold
    (`cross_fold`): the family as the phantom left it (its views' `mean`, `std`), HeartMAE continued per fold with
    `p["real_epochs"]` (`fold_tuning`), and the fixed ones (`fixed_readouts`), the frame-resolved read-out against
    the segmenter `seg`'s LV areas (`frame_targets`, cached in `out`); each stage timed by `timer`."""
    k, t, seed = int(p["crops"]), int(p["clips"]), p["seed"]
    names = subjects.subject.tolist()
    windows = step_windows(cines.frames.shape[1], cines.frames.shape[-1], cfg.size, cfg.frames, cfg.tubelet, k, t)
    area, seg_steps = frame_targets(seg, store, cines, windows, out / "real_frame_targets.npz", timer)

    def encoded(model, m: float, s: float) -> Encoded:
        return encode(model, m, s, cines, names, cfg, k, t, p["pool"])

    with timer("real patients: features"):
        family = {row: encoded(m, mean, std) for row, m in models.items()}
        random_mae = encoded(random_network, mean, std)
        fixed = fixed_readouts(family["HeartMAE"], random_mae, cines, windows, cfg.size, seg_steps, expert)
    pooled = {**{r: e.pooled for r, e in family.items()},
              **{n: e.pooled for n, e in fixed.items() if e.pooled is not None and n != PHANTOM}}
    tuned_for = fold_tuning(models["HeartMAE"], random_network, cfg, int(p["real_epochs"]), mean, std, seed,
                            out / "real_models", timer, encoded)
    by = subjects.set_index("subject")
    pred, gate, pretext = cross_fold(cines, by.fold, names, fixed, tuned_for,
                                     frame_rows(cines.table, len(windows), area), by.LVEF)
    return ReadOuts(pred, gate, pretext, pooled)


def predictor_rows(predictor, subjects: list[tuple], columns: tuple[str, ...]) -> pd.DataFrame:
    """The run's HeartMAE Predictor on each real subject ((name, cines, reference measures, what the reference
    is)): its `columns` beside the reference's, or why it cannot read the subject."""
    from ...predictor import NotApplicable

    rows = []
    for name, cines, ref, what in subjects:
        row = dict(subject=name, views="+".join(sorted({c.view for c in cines})), reference=what)
        try:
            pred = predictor.predict(cines).measures
        except NotApplicable as e:
            rows.append(dict(row, note=str(e)))
            continue
        for k in columns:
            row |= {f"{k}_pred": pred.get(k, np.nan), f"{k}_ref": ref.get(k, np.nan)}
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RealLVEF:
    """The real patients' pooled LVEF table, out-of-fold predictions of both read-outs, features gate, pretext
    gate, frame-resolved LVEF table, frame-resolved minus pooled, and each fold's choice of HeartMAE's real epochs
    (`epochs_per_fold`; empty when no fold continued the pretraining)."""

    table: pd.DataFrame
    pred: pd.DataFrame
    gate: pd.DataFrame
    pretext: pd.DataFrame
    frames: pd.DataFrame
    gain: pd.DataFrame
    choice: pd.DataFrame = field(default_factory=pd.DataFrame)


def real_tables(pred: pd.DataFrame, gate: pd.DataFrame, pretext: pd.DataFrame, n_boot: int, seed) -> RealLVEF:
    """Out-of-fold LVEF per read-out with bootstrap CIs beside the random encoder, and frame-resolved minus pooled;
    where the folds continued HeartMAE's pretraining, the per-fold choice (`epochs_per_fold`) is a row of its own in
    every table, scored on the outer folds' test patients as the procedure it is."""
    choice = epochs_per_fold(gate)
    if len(choice):
        pred, gate, pretext = (with_chosen(pred, "encoder", choice), with_chosen(gate, "encoder", choice),
                               with_chosen(pretext, "model", choice))
    pooled = lvef_table(pred[pred.readout == POOLED], RANDOM, n_boot, seed)
    frames = lvef_table(pred[pred.readout == FRAMES], RANDOM, n_boot, seed)
    return RealLVEF(pooled, pred, gate, pretext, frames, readout_gain(pred, n_boot, seed), choice)


def real_checks(r: RealLVEF) -> list:
    """On the real patients: HeartMAE's pooled LVEF MAE, its gain over the random encoder on the test patients and
    in cross-validation on the others (the features gate), its masked loss against the copy rule's, and its
    frame-resolved read-out against its pooled one. HeartMAE is the per-fold choice where the folds continued its
    pretraining (its features gate is then the cross-validated MAE it chose on), else the phantom model."""
    t = r.table.set_index("encoder")
    g = r.gate[r.gate.readout == POOLED].groupby("encoder").cv_MAE.mean()
    pt = r.pretext.groupby("model").masked_loss.mean()
    ours = CHOSEN if CHOSEN in t.index else PHANTOM
    row, gain = t.loc[ours], r.gain.set_index("encoder").reindex([ours]).iloc[0]
    boot = "patient bootstrap, 95 %"
    return [Target("real patients: HeartMAE LVEF MAE (EF points)", row.MAE, "<=", 8.0, row.ci_low, row.ci_high,
                   row.n, boot),
            Target("real patients: HeartMAE LVEF MAE minus the random encoder's (test, EF points)",
                   row.minus_random, "<=", -1.0, row.minus_random_low, row.minus_random_high, row.n,
                   f"paired {boot}"),
            ("real patients: features gate, HeartMAE minus random encoder (cross-validated LVEF MAE)",
             g[ours] - g[RANDOM], "<", 0.0),
            ("real patients: HeartMAE masked loss minus the copy rule's (validation)",
             pt[ours] - pt["copy rule"], "<", 0.0),
            Target("real patients: HeartMAE frame-resolved minus pooled LVEF MAE (test, EF points)",
                   gain.frames_minus_pooled, "<", 0.0, gain.ci_low, gain.ci_high, gain.n, f"paired {boot}")]
