"""Point, angle and displacement errors, MAPSE and velocities per subject, inference choices on validation cines."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ...measure import average_views, mv_displacement, valve_measures
from ...stats import agreement_table
from .data import Track
from .geometry import STAGES, standardise
from .predict import MVnet, predict_all


def _mm(points: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    sy, sx = (float(s) for s in spacing)
    return np.asarray(points, dtype=np.float64) * (sx, sy)


def point_errors(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """(T,2) Euclidean error in mm of each point."""
    return np.linalg.norm(_mm(pred, spacing) - _mm(ref, spacing), axis=-1)


def valve_angle_error(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """(T,) absolute angle in degrees between the predicted and reference valve lines."""
    dp, dr = (np.diff(_mm(a, spacing), axis=1)[:, 0] for a in (pred, ref))
    ang = np.degrees(np.arctan2(dp[:, 1], dp[:, 0]) - np.arctan2(dr[:, 1], dr[:, 0]))
    return np.abs((ang + 180) % 360 - 180)


def _apex_side(points: np.ndarray, spacing: Sequence[float], ed: int = 0) -> np.ndarray:
    """A point on the apex side of a track's ED valve line, from its own motion (the valve moves toward the apex)."""
    g = standardise(points, spacing, ed=ed)
    return g.inverse_points(np.array([(g.size[1] - 1) / 2, g.size[0] - 1.0]))


def spatial_errors(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], ed: int = 0) -> pd.DataFrame:
    """Per-frame errors: each point (mm), valve-line angle (deg), displacement (auto - ref, mm)."""
    e = point_errors(pred, ref, spacing)
    da = mv_displacement(pred, spacing, ed, _apex_side(pred, spacing, ed))
    dr = mv_displacement(ref, spacing, ed, _apex_side(ref, spacing, ed))
    return pd.DataFrame({"frame": np.arange(len(ref)), "err_p0_mm": e[:, 0], "err_p1_mm": e[:, 1],
                         "err_mm": e.mean(1), "angle_deg": valve_angle_error(pred, ref, spacing),
                         "disp_auto_mm": da, "disp_ref_mm": dr, "disp_err_mm": da - dr})


def clinical(views: dict[str, tuple[np.ndarray, Track]], window: int | None = 5) -> dict:
    """MAPSE (mm), s', e', a' (cm/s) of one subject from its views' tracks, displacement averaged over views.

    views: view -> (points (T,2,2), Track with spacing, frame times and ED). Each track is rolled to start at ED;
    its apex side comes from its own motion (`standardise`); window: Savitzky-Golay velocity window (None: none).
    """
    curves, cycle = [], []
    for pts, t in views.values():
        p = np.roll(np.asarray(pts), -t.ed, axis=0)
        curves.append(mv_displacement(p, t.spacing, 0, _apex_side(p, t.spacing, 0)))
        cycle.append(t.frame_interval * len(p))
    d = average_views(*curves)
    w = window if window and window < len(d) else None
    m = valve_measures(d, float(np.nanmean(cycle)) / len(d), 0, w)
    return {k: m[k] for k in ("MAPSE", "s_prime", "e_prime", "a_prime")}


def pseudo_reference(labels: np.ndarray | None, spacing: Sequence[float], fill: bool = True,
                     min_mm: float = 15.0) -> np.ndarray | None:
    """(T, 2, 2) annulus points where a 4CH label cine's LV and LA meet (`measure.valve_track`) in the phantom's
    order (lateral, then septal: the septal hinge is the one nearer the RV; a frame without an RV keeps its
    order); None without LV and LA at every frame. A frame whose two hinges lie under `min_mm` apart (an adult
    annulus spans 25-35 mm: the border search found a sliver, not the valve) has no reference: NaN, or with
    `fill` interpolated from its neighbours like a frame without a valve line."""
    from ...labels import LA, LV, RV
    from ...measure import fill_gaps, valve_track

    if labels is None or not all((f == LV).any() and (f == LA).any() for f in labels):
        return None
    pts = valve_track(labels)
    pts[np.linalg.norm(_mm(pts[:, 0] - pts[:, 1], spacing), axis=-1) < min_mm] = np.nan
    rv = [np.argwhere(f == RV)[:, ::-1].mean(0) if (f == RV).any() else np.full(2, np.nan) for f in labels]
    d = np.linalg.norm(pts - np.asarray(rv)[:, None], axis=-1)  # (T, 2) px from each frame's RV centroid, (x, y)
    swap = d[:, 0] < d[:, 1]  # frame by frame: the hinges come in no fixed order
    pts[swap] = pts[swap][:, ::-1]
    if np.isfinite(pts).all(axis=(1, 2)).sum() < 2:
        return None
    return fill_gaps(pts) if fill else pts


def pseudo_point_error(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """Mean distance (mm) of predicted (T, 2, 2) valve points from a pseudo-reference's (`measure.valve_track` on a
    network's labels: its two points come in no fixed order), the points paired the way that fits the cine best;
    frames without a reference point are left out."""
    ref = np.asarray(ref, float)
    return float(min(np.nanmean(point_errors(pred, ref[:, order], spacing[-2:])) for order in ([0, 1], [1, 0])))


def evaluate(predictions: dict[str, list[dict[str, np.ndarray]]], tests: dict[str, list[Track]],
             observers: dict[str, dict[str, list[np.ndarray]]] | None = None,
             window: int | None = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compare predictions with the reference: (per-frame spatial table, per-subject clinical table).

    predictions: from `predict_all`; tests: view -> tracks whose `points` are the reference ('ref');
    observers: other readers, name -> view -> (T,2,2) tracks aligned with `tests` (e.g. {'obsA2': ...}).
    Clinical columns are `<measure>_<source>` for source in ref, each stage and each observer.
    """
    frames, subj = [], {}
    for view, tracks in tests.items():
        for i, t in enumerate(tracks):
            s = subj.setdefault(t.subject, {})
            s.setdefault("ref", {})[view] = (t.points, t)
            for stage, p in predictions[view][i].items():
                df = spatial_errors(p, t.points, t.spacing, t.ed)
                frames.append(df.assign(subject=t.subject, view=view, stage=stage))
                s.setdefault(stage, {})[view] = (p, t)
            for name, r in (observers or {}).items():
                s.setdefault(name, {})[view] = (r[view][i], t)
    rows = [{"subject": sid, **{f"{m}_{src}": v for src, views in s.items() for m, v in clinical(views, window).items()}}
            for sid, s in subj.items()]
    lead = ["subject", "view", "stage"]
    frames = pd.concat(frames, ignore_index=True)
    return frames[lead + [c for c in frames.columns if c not in lead]], pd.DataFrame(rows)


def tracker_costs(preds: dict[str, list], tests: list[Track], window: int | None) -> pd.DataFrame:
    """Each tracker's (name -> its predictions of the 4CH `tests`) mean point error and displacement error (mean,
    SD) after every stage, by tracker."""
    rows = []
    for name, pred in preds.items():
        fr, _ = evaluate({"4CH": pred}, {"4CH": tests}, window=window)
        fr = fr[fr["stage"] == "1+2+2"]
        rows.append(dict(tracker=name, point_err_mm=fr["err_mm"].mean(), disp_err_mean_mm=fr["disp_err_mm"].mean(),
                         disp_err_sd_mm=fr["disp_err_mm"].std()))
    return pd.DataFrame(rows).set_index("tracker")


def choose_inference(trackers: dict[str, MVnet], valid: dict[str, list[Track]],
                     windows: Sequence[int | None] = (None, 5, 7),
                     ttas: Sequence[float | None] = (None,)) -> tuple[dict, pd.DataFrame]:
    """Set every tracker's smoothing window and test-time shift to the pair with the lowest |mean| + SD of the
    final-stage displacement error on validation cines (never the test split); returns (choice, one row per pair).

    |mean| + SD weighs a bias like a spread: RMSE hardly sees a bias well below the SD, so it favours windows that
    flatten the motion's peaks (a negative displacement bias and a lower e'). Ties keep the earlier (cheaper) pair.
    """
    rows = []
    for tta, w in ((a, w) for a in ttas for w in windows):
        for t in trackers.values():
            t.smooth, t.tta = w, tta
        frames, _ = evaluate(predict_all(trackers, valid), valid, window=None)
        d = frames.loc[frames["stage"] == STAGES[-1], "disp_err_mm"]
        rows.append(dict(tta=tta, smooth=w, disp_err_mean_mm=d.mean(), disp_err_sd_mm=d.std(),
                         disp_rmse_mm=float(np.sqrt((d ** 2).mean())), criterion_mm=abs(d.mean()) + d.std()))
    best = rows[int(np.argmin([r["criterion_mm"] for r in rows]))]
    for t in trackers.values():
        t.smooth, t.tta = best["smooth"], best["tta"]
    tab = pd.DataFrame(rows).assign(**{k: pd.Series([r[k] for r in rows], dtype=object) for k in ("tta", "smooth")})
    return dict(smooth=best["smooth"], tta=best["tta"]), tab


@dataclass(frozen=True)
class Inference:
    """The smoothing window and test-time crop shift kept, and the candidates scored on validation (None: the
    profile's setting)."""

    smooth: int | None
    tta: float | None
    choices: pd.DataFrame | None


def inference_settings(trackers: dict[str, MVnet], valid: dict[str, list[Track]], smooth, tta: float | None
                       ) -> Inference:
    """The profile's smoothing and test-time crops set on every tracker; with `smooth='valid'`, those
    `choose_inference` picks on the validation tracks (no smoothing where there are none)."""
    choices = None
    if smooth == "valid":
        valid = {v: ts for v, ts in valid.items() if len(ts)}
        choice = dict(smooth=None, tta=tta)
        if valid:
            choice, choices = choose_inference(trackers, valid, ttas=(None, tta) if tta else (None,))
        smooth, tta = choice["smooth"], choice["tta"]
    for tr in trackers.values():
        tr.smooth, tr.tta = smooth, tta
    return Inference(smooth, tta, choices)


def observer_frames(observers: dict[str, dict[str, list[np.ndarray]]], tests: dict[str, list[Track]]) -> pd.DataFrame:
    """Per-frame errors of other readers (or the true motion) against the reference, `stage` = their name.

    The reference is itself an annotation: these rows bound what any tracker can reach against it.
    """
    preds = {v: [{k: observers[k][v][i] for k in observers} for i in range(len(ts))] for v, ts in tests.items()}
    return evaluate(preds, tests, window=None)[0]


def pooled_displacement_error(frames: pd.DataFrame) -> pd.DataFrame:
    """Displacement error (mm) mean and SD per stage over both views (the paper's -0.10 +- 0.97 mm figure)."""
    g = frames.groupby("stage", sort=False)["disp_err_mm"].agg(["mean", "std", "count"])
    return g.rename(columns={"mean": "disp_err_mean_mm", "std": "disp_err_sd_mm", "count": "n_frames"}).reset_index()


def summarise_spatial(frames: pd.DataFrame) -> pd.DataFrame:
    """Mean +- SD of point, angle and displacement errors per view and stage (the paper's Fig. 4/5 numbers)."""
    cols = ["err_p0_mm", "err_p1_mm", "err_mm", "angle_deg", "disp_err_mm"]
    g = frames.groupby(["view", "stage"], sort=False)[cols].agg(["mean", "std"])
    g.columns = [f"{c}_{s}" for c, s in g.columns]
    return g.reset_index()


def convention_matrix(preds: dict[str, dict], tests: dict[str, dict[str, list[Track]]], stage: str = "1+2+2",
                      window: int | None = 5) -> pd.DataFrame:
    """Train-convention x test-convention errors (the paper's Fig. 6): mean point error, |displacement error|, MAPSE bias.

    preds: trained-on name -> `predict_all` output; tests: reference name -> view -> tracks carrying that reference.
    """
    rows = []
    for tr_name, p in preds.items():
        for te_name, te in tests.items():
            frames, subj = evaluate(p, te, window=window)
            f = frames[frames["stage"] == stage]
            rows.append(dict(trained_on=tr_name, tested_on=te_name, err_mm=f["err_mm"].mean(),
                             abs_disp_err_mm=f["disp_err_mm"].abs().mean(), disp_err_mm=f["disp_err_mm"].mean(),
                             mapse_bias_mm=(subj[f"MAPSE_{stage}"] - subj["MAPSE_ref"]).mean()))
    return pd.DataFrame(rows)


AGREEMENT = {"MAPSE MVnet": ("MAPSE_1+2+2", "MAPSE_ref"), "MAPSE observer 2": ("MAPSE_obsA2", "MAPSE_ref"),
             "MAPSE true motion": ("MAPSE_truth", "MAPSE_ref"), "e' MVnet": ("e_prime_1+2+2", "e_prime_ref"),
             "e' observer 2": ("e_prime_obsA2", "e_prime_ref"), "e' true motion": ("e_prime_truth", "e_prime_ref")}
AGREEMENT_UNITS = {k: ("mm" if k.startswith("MAPSE") else "cm/s") for k in AGREEMENT}


def agreement_tables(subj: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MAPSE and e' of MVnet, a second observer and the true motion against the reference, overall and per stage
    (the paper's Tables 4/5)."""
    n_subj = int(subj[["MAPSE_ref", "MAPSE_1+2+2"]].notna().all(axis=1).sum())
    if n_subj < 3:
        raise ValueError(f"only {n_subj} evaluated subjects: agreement statistics need >= 3 (use a larger cohort)")
    agree = agreement_table(subj, AGREEMENT, AGREEMENT_UNITS).reset_index()
    stage_pairs = {f"{m} stage {s}": (f"{m}_{s}", f"{m}_ref") for m in ("MAPSE", "e_prime") for s in STAGES}
    by_stage = agreement_table(subj, stage_pairs, {k: ("mm" if "MAPSE" in k else "cm/s") for k in stage_pairs})
    return agree, by_stage.reset_index()


def phantom_checks(agree: pd.DataFrame, frames: pd.DataFrame, sec_per_cine: float) -> list[tuple]:
    """The paper's agreement, displacement and speed targets on the phantom's test cines."""
    a = agree.set_index("measure")
    f3 = frames[frames["stage"] == "1+2+2"]
    e1, e3 = frames.loc[frames["stage"] == "1", "err_mm"].mean(), f3["err_mm"].mean()
    return [("MAPSE ICC (MVnet vs ref)", a.loc["MAPSE MVnet", "icc2"], ">=", 0.94),
            ("e' ICC (MVnet vs ref)", a.loc["e' MVnet", "icc2"], ">=", 0.93),
            ("displacement error mean (mm)", f3["disp_err_mm"].mean(), "within", 0.10),
            ("displacement error SD (mm)", f3["disp_err_mm"].std(), "<=", 0.97),
            ("Euclidean error 1+2+2 vs 1 (mm)", e3 - e1, "<", 0.0),
            ("inference s per cine (1 s per 2-view patient)", sec_per_cine, "<=", 0.5)]


@dataclass(frozen=True)
class TestResults:
    """The test cines tracked: predictions by view, errors per frame, clinical measures per subject, seconds per
    cine."""

    preds: dict
    frames: pd.DataFrame
    subj: pd.DataFrame
    sec_per_cine: float


def test_results(trackers: dict, tests: dict, obs: dict, window: int) -> TestResults:
    """Every stage of the trackers on the test cines, timed: point, angle and displacement errors per frame and the
    clinical measures per subject."""
    t0 = time.perf_counter()
    preds = predict_all(trackers, tests)
    sec_per_cine = (time.perf_counter() - t0) / max(sum(len(t) for t in tests.values()), 1)
    frames, subj = evaluate(preds, tests, obs, window=window)
    return TestResults(preds, frames, subj, sec_per_cine)
