"""Dice / HD95 per frame and structure, summaries, and Table-1 measures per subject from predicted and true labels."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from ...labels import NAMES
from ...record import Cine
from ...store import CohortStore


def dice(pred: np.ndarray, truth: np.ndarray, label: int) -> float:
    """Dice overlap of one label (nan when the label is absent from both)."""
    p, t = np.asarray(pred) == label, np.asarray(truth) == label
    s = p.sum() + t.sum()
    return float(2.0 * np.logical_and(p, t).sum() / s) if s else float("nan")


def _surface(m: np.ndarray) -> np.ndarray:
    return m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(m.ndim, 1), border_value=0)


def hd95(pred: np.ndarray, truth: np.ndarray, label: int, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric surface distance in mm (MedPy's hd95); nan when either mask is empty."""
    p, t = np.asarray(pred) == label, np.asarray(truth) == label
    if not p.any() or not t.any():
        return float("nan")
    sp, st = _surface(p), _surface(t)
    d_to_t = ndimage.distance_transform_edt(~st, sampling=spacing)
    d_to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return float(np.percentile(np.concatenate([d_to_t[sp], d_to_p[st]]), 95))


def evaluate(source: CohortStore | str | Path, predictions: Mapping[str, np.ndarray],
             labels: Sequence[int] | None = None) -> pd.DataFrame:
    """Dice and HD95 per cine, labelled frame and structure (SAX: over the whole stack), with ED/ES flags and the
    structure's true and predicted pixel counts.

    Structures default to those the cine's truth contains; a structure predicted where the truth
    has none at that frame scores Dice 0.
    """
    store = source if isinstance(source, CohortStore) else CohortStore(source)
    splits = store.splits()
    rows = []
    for cid, pred in predictions.items():
        c = store.read(cid)
        if c.labels is None:
            continue
        if pred.shape != c.labels.shape:
            raise ValueError(f"evaluate: prediction for {cid} has shape {pred.shape}, truth {c.labels.shape}")
        present = sorted(set(np.unique(c.labels[c.labelled]).tolist()) - {0}) if labels is None else list(labels)
        for t in np.flatnonzero(c.labelled):
            for lab in present:
                rows.append(dict(cine_id=cid, subject=c.subject, view=c.view, source=c.source,
                                 split=splits.get(str(c.subject)), frame=int(t), is_ed=t == c.ed, is_es=t == c.es,
                                 structure=NAMES[lab], dice=dice(pred[t], c.labels[t], lab),
                                 hd95=hd95(pred[t], c.labels[t], lab, c.spacing),
                                 truth_px=int((c.labels[t] == lab).sum()), pred_px=int((pred[t] == lab).sum())))
    return pd.DataFrame(rows)


def summarise(scores: pd.DataFrame, by: Sequence[str] = ("view", "structure")) -> pd.DataFrame:
    """Mean (sd) Dice and median HD95 at ED, ES and over all labelled frames."""
    parts = []
    for phase, sel in (("ED", scores["is_ed"]), ("ES", scores["is_es"]), ("all", slice(None))):
        g = scores[sel].groupby(list(by))
        parts.append(pd.DataFrame({"phase": phase, "n": g["dice"].count(), "dice_mean": g["dice"].mean(),
                                   "dice_sd": g["dice"].std(), "hd95_median_mm": g["hd95"].median()}))
    return pd.concat(parts).reset_index().set_index([*by, "phase"]).sort_index()


# the phantom's generating ("model") values in its meta, by cmrlib.measure key
MODEL_KEYS = {"LVEDV": "lv_edv_ml", "LVESV": "lv_esv_ml", "LVSV": "lv_sv_ml", "LVEF": "lv_ef", "LVM": "lv_mass_g",
              "RVEDV": "rv_edv_ml", "RVESV": "rv_esv_ml", "RVSV": "rv_sv_ml", "RVEF": "rv_ef", "LVCO": "co_l_min",
              "LAVmax": "la_max_ml", "LAVmin": "la_min_ml", "LAEF": "la_ef", "RAVmax": "ra_max_ml",
              "RAVmin": "ra_min_ml", "RAEF": "ra_ef"}


def _table1_inputs(cines: dict[str, Cine], labels_of, predicted: bool) -> dict:
    """table1 keyword arguments from one subject's cines and a cine -> label maps accessor (None: unusable).

    Predicted labels cover every frame; true labels count only where every frame is labelled, else (SAX)
    the labelled ED/ES frames are used."""
    kw = {}
    whole = lambda c: predicted or bool(c.labelled.all())
    sax = cines.get("SAX")
    if sax is not None and (lab := labels_of(sax)) is not None:
        ed, es = (None, None) if whole(sax) and sax.n_frames > 2 else (sax.ed, sax.es)  # whole cine: curve max/min
        kw.update(sax=lab, sax_spacing=sax.spacing, ed=ed, es=es)
    for view, k, sp in (("4CH", "la_4ch", "sp_4ch"), ("2CH", "la_2ch", "sp_2ch")):
        c = cines.get(view)
        lab = None if c is None else labels_of(c)
        if lab is not None and whole(c):
            kw.update({k: lab, sp: c.spacing})
    if "la_2ch" in kw and "la_4ch" not in kw:  # biplane needs the 4CH; a lone 2CH gives no atrial volume
        kw.pop("la_2ch"), kw.pop("sp_2ch")
    return kw


def subject_measures(source: CohortStore | str | Path, predictions: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Table-1 measures per subject from predicted labels (`<m>_auto`), true labels (`<m>_ref`) and, for the
    phantom, its generating values (`<m>_model`); BSA and heart rate from the subject's meta."""
    from ...measure import MeasureError, table1

    store = source if isinstance(source, CohortStore) else CohortStore(source)
    splits = store.splits()
    by_subject: dict[str, dict[str, Cine]] = {}
    for cid in predictions:
        c = store.read(cid)
        by_subject.setdefault(str(c.subject), {})[c.view] = c
    rows = []
    for sub, cines in sorted(by_subject.items()):
        meta = next(iter(cines.values())).meta
        row = dict(subject=sub, split=splits.get(sub), group=meta.get("group", meta.get("condition")))
        ctx = dict(bsa=meta.get("bsa_m2"), hr_bpm=meta.get("hr_bpm"))
        for kind, labels_of in (("auto", lambda c: predictions.get(c.cine_id)), ("ref", lambda c: c.labels)):
            kw = _table1_inputs(cines, labels_of, kind == "auto")
            try:
                m = table1(**kw, **ctx) if kw else {}
            except MeasureError as e:  # e.g. an empty predicted chamber: keep the subject, flag the reason
                m, row[f"error_{kind}"] = {}, str(e)
            row.update({f"{k}_{kind}": v for k, v in m.items() if k not in ("ED", "ES", "BSA", "HR")})
        row.update({f"{k}_model": meta[v] for k, v in MODEL_KEYS.items() if v in meta})
        rows.append(row)
    return pd.DataFrame(rows)


def measure_pairs(df: pd.DataFrame, ref: str = "ref",
                  measures: Sequence[str] = ("LVEDV", "LVESV", "LVEF", "LVM", "RVEDV", "RVESV", "RVEF",
                                             "LAVmax", "LAVmin", "LAEF", "RAVmax", "RAVmin", "RAEF")) -> dict:
    """measure -> (auto column, reference column) for the measures both sides of `df` have (for cmrlib.stats)."""
    return {m: (f"{m}_auto", f"{m}_{ref}") for m in measures
            if f"{m}_auto" in df and f"{m}_{ref}" in df and df[[f"{m}_auto", f"{m}_{ref}"]].notna().all(1).sum() >= 3}


def frame_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice over structures per cine and frame (the ranking behind best/median/worst figures)."""
    return scores.groupby(["cine_id", "view", "frame"], as_index=False)["dice"].mean()
