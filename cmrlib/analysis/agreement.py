"""Agreement of every method's measures with the reference and with each other (notebook 07), from run-folder tables.

Everything meets in one tidy long table (`LONG_COLUMNS`): one row per subject x measure x method, the method's value
beside the reference value of the same subject. Differences are method - reference throughout (`cmrlib.stats`).
Every method notebook that measures joins by writing `NN/measures_long.csv` with these columns (the run-folder
contract; `collect` reads nothing else).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .. import plots, stats
from ..longform import (LONG_COLUMNS, PHANTOM_REFERENCES, STAGE_METHODS, from_columns, from_table1,
                        implied_volumes, view_of)
from ..measure import UNITS, MeasureError, average_views, fill_gaps, mv_displacement, valve_measures, valve_track
from ..store import CohortStore

__all__ = ["LONG_COLUMNS", "view_of", "from_table1", "from_columns", "implied_volumes", "mask_mapse", "collect",
           "summarise", "method_vs_method", "by_condition", "yardstick", "icc_heatmap", "headline_figure",
           "real_sax", "real_sax_from_run", "real_figure", "frame_differences", "never_trained_on"]

HEADLINE = ("LVEDV", "LVESV", "LVEF", "LVM", "RVEF", "LAVmax", "MAPSE", "e_prime")


MASK_MEASURES = ("MAPSE", "s_prime", "e_prime", "a_prime")  # what `mask_mapse` reads from the valve track


def mask_mapse(store: CohortStore, labels: Mapping[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MAPSE (and s', e', a') per subject from long-axis label cines (cine_id -> labels): the LV/LA border's ends as
    hinge points in every frame, their displacement toward the apex averaged over the 2CH and 4CH views; and the
    cines left out, with the reason."""
    by_subject: dict[str, list] = {}
    errors = []
    for cid, lab in labels.items():
        c = store.read(cid)
        try:
            d = mv_displacement(fill_gaps(valve_track(lab)), c.spacing[-2:], int(c.ed))
        except MeasureError as e:
            errors.append(dict(subject=str(c.subject), view=c.view, error=str(e)))
            continue
        by_subject.setdefault(str(c.subject), []).append((d, c.frame_interval, int(c.ed)))
    rows = []
    for sub, views in sorted(by_subject.items()):
        d = average_views(*[v[0] for v in views])
        m = valve_measures(d, views[0][1], views[0][2])
        rows.append(dict(subject=sub, **{k: m[k] for k in MASK_MEASURES}))
    return (pd.DataFrame(rows, columns=["subject", *MASK_MEASURES]),
            pd.DataFrame(errors, columns=["subject", "view", "error"]))


def collect(run_dir: str | Path) -> pd.DataFrame:
    """The long table of every measure a run's notebooks wrote: each method notebook's `NN/measures_long.csv`
    (01 segmentation, 02 ED/ES, 03 MVnet, 06 HeartMAE), the one shape the run folder hands to the analysis."""
    parts = [pd.read_csv(f)[LONG_COLUMNS] for f in sorted(Path(run_dir).glob("[0-9][0-9]/measures_long.csv"))]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=LONG_COLUMNS)


def _groups(long: pd.DataFrame, by: Sequence[str]):
    return long.dropna(subset=["value", "reference"]).groupby(list(by), sort=False, dropna=False)


def summarise(long: pd.DataFrame, by: Sequence[str] = ("cohort", "measure", "method"), min_n: int = 3) -> pd.DataFrame:
    """Every agreement statistic per group (`stats.agreement`); groups with fewer than `min_n` pairs or no spread
    keep a row with `n` and the reason in `note`."""
    rows = []
    for key, g in _groups(long, by):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True), unit=g["unit"].iloc[0],
                   reference_kind=g["reference_kind"].iloc[0], n=len(g))
        try:
            if len(g) < min_n:
                raise stats.StatsError(f"{len(g)} pair(s), fewer than {min_n}")
            row.update(stats.agreement(g["value"], g["reference"]), note="")
        except ValueError as e:  # StatsError, or pingouin on pairs without spread
            row["note"] = stats.not_testable(e)
        rows.append(row)
    return _with_columns(pd.DataFrame(rows), [*by, "unit", "reference_kind"])


def _with_columns(df: pd.DataFrame, head: list[str]) -> pd.DataFrame:
    """Every agreement column present (NaN where no group had enough pairs), the reason last."""
    return df.reindex(columns=[*head, *stats.AGREEMENT_COLUMNS, "note"])


def method_vs_method(long: pd.DataFrame, pairs: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """Agreement of two methods on the same subjects, per (measure, method a, method b): difference a - b."""
    rows = []
    for measure, a, b in pairs:
        w = long[long["measure"] == measure].pivot_table(index="subject", columns="method", values="value")
        if a not in w or b not in w:
            continue
        both = w[[a, b]].dropna()
        row = dict(measure=measure, method_a=a, method_b=b, unit=UNITS.get(measure, ""), n=len(both))
        try:
            row.update(stats.agreement(both[a], both[b]), note="")
        except ValueError as e:
            row["note"] = stats.not_testable(e)
        rows.append(row)
    return _with_columns(pd.DataFrame(rows), ["measure", "method_a", "method_b", "unit"])


def by_condition(long: pd.DataFrame, min_n: int = 3) -> pd.DataFrame:
    """Bias with its CI and MAE per cohort x measure x method x condition (ICC needs a spread a condition rarely has)."""
    rows = []
    for (cohort, measure, method, cond), g in _groups(long, ("cohort", "measure", "method", "condition")):
        d = (g["value"] - g["reference"]).to_numpy()
        m, lo, hi = stats.mean_ci(d) if len(d) >= min_n else (float(d.mean()), np.nan, np.nan)
        rows.append(dict(cohort=cohort, measure=measure, method=method, condition=cond, n=len(d), bias=m,
                         bias_low=lo, bias_high=hi, mae=float(np.abs(d).mean())))
    return pd.DataFrame(rows, columns=["cohort", "measure", "method", "condition", "n", "bias", "bias_low",
                                       "bias_high", "mae"])


def yardstick(summary: pd.DataFrame, observer: str = "observer 2") -> pd.DataFrame:
    """Each method's limits-of-agreement width beside the second observer's on the same measure (ratio > 1: the
    method disagrees with the reference more than a second reader does)."""
    s = summary.dropna(subset=["loa_low"]).assign(width=lambda d: d["loa_high"] - d["loa_low"])
    obs = s[s["method"] == observer].set_index(["cohort", "measure"])["width"]
    out = s[s["method"] != observer].join(obs.rename("observer_width"), on=["cohort", "measure"], how="inner")
    out["width_ratio"] = out["width"] / out["observer_width"]
    return out[["cohort", "measure", "method", "n", "width", "observer_width", "width_ratio"]]


def icc_heatmap(summary: pd.DataFrame, cohort: str = "phantom", form: str = "icc2") -> Figure:
    """ICC (measure x method) of one cohort as an annotated heat map (the overview figure)."""
    s = summary[(summary["cohort"] == cohort)].dropna(subset=[form])
    grid = s.pivot_table(index="measure", columns="method", values=form, sort=False)
    if grid.empty:
        fig, ax = plt.subplots(figsize=(4, 2), constrained_layout=True)
        ax.text(0.5, 0.5, f"{cohort}: no measure with enough pairs for an ICC", ha="center", va="center")
        ax.set_axis_off()
        return fig
    fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 3, 0.32 * grid.shape[0] + 1.5), constrained_layout=True)
    sns.heatmap(grid, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax, annot_kws=dict(fontsize=7),
                cbar_kws=dict(label=f"ICC({'2' if form == 'icc2' else '3'},1)"))
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(f"{cohort}: {'absolute agreement' if form == 'icc2' else 'consistency'} with the reference",
                 fontsize=10)
    ax.tick_params(axis="x", labelrotation=30)
    return fig


def headline_figure(long: pd.DataFrame, chosen: Mapping[str, str], cohort: str = "phantom",
                    observer: str = "observer 2") -> Figure:
    """Regression (top) and Bland-Altman (bottom) per headline measure for its chosen method; the grey band is the
    second observer's limits of agreement where the run has one."""
    shown = {m: meth for m, meth in chosen.items()
             if len(long[(long.cohort == cohort) & (long.measure == m) & (long.method == meth)].dropna(
                 subset=["value", "reference"])) >= 3}
    fig, axes = plt.subplots(2, max(len(shown), 1), figsize=(3.4 * max(len(shown), 1), 6.4), squeeze=False,
                             constrained_layout=True)
    for j, (m, meth) in enumerate(shown.items()):
        g = long[(long.cohort == cohort) & (long.measure == m) & (long.method == meth)]
        unit = UNITS.get(m, "")
        plots.regression_plot(g["value"], g["reference"], ax=axes[0, j], units=unit, title=f"{m}: {meth}")
        plots.bland_altman_plot(g["value"], g["reference"], ax=axes[1, j], units=unit)
        o = long[(long.cohort == cohort) & (long.measure == m) & (long.method == observer)].dropna(
            subset=["value", "reference"])
        if len(o) >= 3:
            ba = stats.bland_altman(o["value"], o["reference"])
            axes[1, j].axhspan(ba["loa_low"], ba["loa_high"], color="0.85", zorder=0, label="observer 2 LoA")
            axes[1, j].legend(fontsize=6, loc="lower left")
    return fig


# ---------------------------------------------------------------- real patients: ACDC's SAX cines

REAL_COHORT = "ACDC real"
OUT_OF_FOLD = "run's segmenter, out of fold"  # notebook 01's cross-fitted SAX models, each patient by its fold's
REAL_MEASURES = ("LVEDV", "LVESV", "LVEF")


def never_trained_on(run_dir: str | Path) -> set[str]:
    """The ACDC subjects notebook 01's real segmenter neither trained on nor chose a setting with: its held-out
    (test) split of the ACDC store it trained from (`<run>/01/acdc`); empty when the run has no such store."""
    from ..store import CohortStore

    store = CohortStore(Path(run_dir) / "01" / "acdc")
    return {s for s, split in store.splits().items() if split == "test"} if store.cines_dir.exists() else set()


def _cyclic_value(pred: int, ref: int, n: int) -> int:
    """A predicted frame as the reference plus the signed cyclic difference (frame 29 of 30 beside 0 is -1)."""
    d = (int(pred) - int(ref)) % n
    return int(ref) + (d - n if d > n // 2 else d)


def real_sax(subjects: pd.DataFrame, full_field: Mapping[str, object], cines: Mapping[str, object],
             segmenters: Mapping[str, tuple[object, set[str] | None]], progress: bool = True) -> pd.DataFrame:
    """Long rows of the real SAX cohort (cohort 'ACDC real'), each segmenter scored only on the patients it never
    trained on (`segmenters`: name -> (segmentation Predictor, the subjects it may score; None: all)):
    - LV volumes and EF from the full-field ED/ES frames (ACDC's own, uncropped) against `reference.csv`;
    - ED and ES frames picked by its LV volume curve over every frame of the cropped cine (rolled as notebook 02 rolls
      it, `io.real.rolled_cine`, so one detector has one number) against the annotated ones;
    - within-crop LV volumes at the annotated frames against the manual masks on the same crop grid;
    - the exam ACDC segmented twice (074 and 076; the cohort keeps 074 with 076's truths as `<measure>_second`)
      as a second observer of the same heart."""
    from fastprogress.fastprogress import progress_bar

    from ..labels import LV
    from ..measure import ed_es_from_curve, sax_measures, volume_curve

    ref = subjects.set_index("subject")
    rows = []
    for name, (seg, allowed) in segmenters.items():
        todo = [s for s in ref.index if allowed is None or s in allowed]
        for s in progress_bar(todo, leave=False) if progress else todo:
            cond = ref.loc[s, "group"]
            if s in full_field:
                c = full_field[s]
                m = sax_measures(seg.labels(c), c.spacing, ed=int(c.ed), es=int(c.es))
                rows += [dict(subject=s, measure=k, method=f"{name}, full field", value=m[k], reference=ref.loc[s, k],
                              reference_kind="reference.csv (full manual labels)", condition=cond)
                         for k in REAL_MEASURES]
            c = cines[s]
            lab = seg.labels(c)
            ed, es = ed_es_from_curve(volume_curve(lab, c.spacing, LV))
            rows += [dict(subject=s, measure=f"{k} frame", method=f"{name}, LV curve", condition=cond,
                          value=_cyclic_value(p, r, c.n_frames), reference=int(r), reference_kind="ACDC annotation")
                     for k, p, r in (("ED", ed, c.ed), ("ES", es, c.es))]
            crop = sax_measures(c.labels[[c.ed, c.es]], c.spacing, ed=0, es=1)
            auto = sax_measures(lab[[c.ed, c.es]], c.spacing, ed=0, es=1)
            rows += [dict(subject=s, measure=f"{k} (crop)", method=f"{name}, crop", value=auto[k], reference=crop[k],
                          reference_kind="manual masks on the crop", condition=cond) for k in REAL_MEASURES]
    for a in ref.index[ref["LVEF_second"].notna()] if "LVEF_second" in ref else []:
        rows += [dict(subject=a, measure=k, method="second observer (074/076)", value=ref.loc[a, f"{k}_second"],
                      reference=ref.loc[a, k], reference_kind="reference.csv (full manual labels)",
                      condition=ref.loc[a, "group"]) for k in REAL_MEASURES]
    out = pd.DataFrame(rows).assign(cohort=REAL_COHORT, split="held out")
    out["view"] = "SAX"
    out["unit"] = out["measure"].map(lambda m: "frame" if m.endswith("frame") else UNITS.get(m.split(" ")[0], ""))
    return out.reindex(columns=LONG_COLUMNS)


def frame_differences(long: pd.DataFrame) -> pd.DataFrame:
    """Per method and frame (ED, ES) on the real cohort: absolute frame differences from the annotation (mean with
    its 95 % CI, median, largest, share within one frame). Agreement statistics need a spread of references, and ACDC
    annotates ED at frame 0 in almost every cine."""
    f = long[(long.cohort == REAL_COHORT) & long.measure.str.endswith(" frame")].dropna(subset=["value", "reference"])
    rows = []
    for (method, measure), g in f.groupby(["method", "measure"], sort=False):
        d = (g["value"] - g["reference"]).abs()
        mean, lo, hi = stats.mean_ci(d)
        rows.append(dict(method=method, frame=measure.split()[0], n=len(d), mean_abs=mean, low=lo, high=hi,
                         median=float(d.median()), largest=float(d.max()), within_1=float((d <= 1).mean())))
    return pd.DataFrame(rows, columns=["method", "frame", "n", "mean_abs", "low", "high", "median", "largest",
                                       "within_1"])


CAPTIONS = {  # figure name -> its caption, beside the drawings
    "07_icc_phantom": "ICC(2,1) of every measure and method against the phantom's reference",
    "07_icc_acdc": "ICC(2,1) of the segmentation measures on ACDC",
    "07_headline": "regression and Bland-Altman panels of the headline measures (phantom test split)",
    "07_real": ("real ACDC patients: LV volumes and EF from the full-field frames against the reference, and the ED/ES "
                "frames the LV curve picks against the annotation, for a segmenter that never trained on the patients "
                "shown"),
}


def real_figure(long: pd.DataFrame) -> Figure:
    """Regression and Bland-Altman panels of LVEDV, LVESV and LVEF from the full-field frames and of the ED and ES
    frames from the LV curve, each for the segmenter that never trained on the patients scored (the run's where it
    has a held-out set of three or more, else the phantom-only one); a measure whose reference never varies (ED is
    frame 0 in almost every ACDC cine) has no regression to draw and is left to `frame_differences`."""
    real = long[long.cohort == REAL_COHORT].dropna(subset=["value", "reference"])
    counts = real.groupby("method").size()
    run = [m.removesuffix(", full field") for m in counts.index if m.startswith("run's") and
           m.endswith(", full field") and counts[m] >= 3]
    who = run[0] if run else "phantom-only segmenter"
    chosen = {**{m: f"{who}, full field" for m in REAL_MEASURES}, "ED frame": f"{who}, LV curve",
              "ES frame": f"{who}, LV curve"}
    spread = {m: meth for m, meth in chosen.items()
              if real[(real.measure == m) & (real.method == meth)]["reference"].nunique() > 1}
    return headline_figure(long, spread, REAL_COHORT)


def real_sax_from_run(run_dir: str | Path, root: Path | None, seed: int = 0, segmentation=None, phantom=None,
                      progress: bool = True, per_group: int | None = None) -> pd.DataFrame:
    """`real_sax` on a run folder: the real SAX cohort (`io.real.real_sax_cohort`, in `<run>/real_sax`), ACDC's
    full-field ED/ES frames of the same patients, notebook 01's phantom-only SAX segmenter (`phantom`, a segmentation
    Predictor: `Study.phantom_segmenter`) on every patient and the run's segmentation Predictor (`segmentation`) on
    the patients it never trained on (every patient, each by the fold model that never saw it, where notebook 01
    cross-fitted its recipe); `per_group`: only the first patients of each diagnosis. `StudySkipped` without the real
    cohort."""
    from .. import modelfile
    from ..io.acdc import read_acdc_patient
    from ..io.real import REAL_SAX_STORE, real_sax_cohort, rolled_cine

    run_dir = Path(run_dir)
    store, subjects = real_sax_cohort(root, run_dir / REAL_SAX_STORE, seed, per_group=per_group)
    training = Path(root) / "acdc" / "training"
    full = {s: read_acdc_patient(training / f"patient{s[-3:]}", s) for s in subjects.subject
            if (training / f"patient{s[-3:]}" / "Info.cfg").is_file()}
    cines = {r.subject: rolled_cine(store, r, seed) for r in subjects.itertuples()}
    segs, phantom_key = {}, None
    if phantom is not None:
        segs["phantom-only segmenter"] = (phantom, None)
        phantom_key = modelfile.fingerprint(phantom.nets["SAX"])
    if segmentation is not None and "SAX" in segmentation.nets \
            and modelfile.fingerprint(segmentation.nets["SAX"]) != phantom_key:
        crossed = segmentation.cross_fitted(run_dir)
        if crossed is not None:  # every patient, each by the fold model that never saw it
            segs[OUT_OF_FOLD] = (crossed, None)
        else:
            segs["run's segmenter"] = (segmentation, never_trained_on(run_dir) & set(subjects.subject))
    return real_sax(subjects, full, cines, segs, progress)
