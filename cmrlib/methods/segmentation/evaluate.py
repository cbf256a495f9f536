"""Dice / HD95 per frame and structure against the reference labels, and their summaries."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from ...labels import NAMES
from ...record import Cine
from ...results import Target
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


def evaluate(source: CohortStore | str | Path | Mapping[str, Cine], predictions: Mapping[str, np.ndarray],
             labels: Sequence[int] | None = None, with_hd95: bool = True) -> pd.DataFrame:
    """Dice and HD95 per cine, labelled frame and structure (SAX: over the whole stack), with ED/ES flags and the
    structure's true and predicted pixel counts; `source` a store, or cines by id (cines read outside a store).

    Structures default to those the cine's truth contains; a structure predicted where the truth
    has none at that frame scores Dice 0. `with_hd95=False` leaves HD95 empty (NaN) for a comparison that reads
    only Dice: its two distance transforms per frame and structure cost more than the Dice.
    """
    if isinstance(source, Mapping):
        read, splits = source.__getitem__, {}
    else:
        store = source if isinstance(source, CohortStore) else CohortStore(source)
        read, splits = store.read, store.splits()
    rows = []
    for cid, pred in predictions.items():
        c = read(cid)
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
                                 hd95=hd95(pred[t], c.labels[t], lab, c.spacing) if with_hd95 else float("nan"),
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


def ra_check(scores: pd.DataFrame) -> pd.DataFrame | None:
    """4CH RA Dice per cine over every frame, over frames with a true RA of at least 100 px, and the frames without
    one; None without a 4CH cine with an RA."""
    ra = scores[(scores["view"] == "4CH") & (scores["structure"] == "RA")]
    if not len(ra):
        return None
    check = ra.groupby("cine_id").apply(lambda d: pd.Series({
        "dice_all": d["dice"].mean(), "dice_ra_ge_100px": d.loc[d["truth_px"] >= 100, "dice"].mean(),
        "frames_no_true_ra": (d["truth_px"] == 0).sum(), "frames": len(d)}), include_groups=False)
    return check.astype({"frames_no_true_ra": int, "frames": int})


def frame_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice over structures per cine and frame (the ranking behind best/median/worst figures)."""
    return scores.groupby(["cine_id", "view", "frame"], as_index=False)["dice"].mean()


def dice_by_view(table: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice over every frame per view and structure (a `summarise` table by view, structure and phase)."""
    d = table.reset_index()
    d = d[d["phase"] == "all"].pivot_table(index="view", columns="structure", values="dice_mean")
    return d.round(3).reset_index()


def dice_by_model(tables: dict[str, pd.DataFrame | None]) -> pd.DataFrame | None:
    """Mean Dice per model, phase and structure from each model's `summarise` table by structure (None: absent);
    None when no model has one."""
    shown = [t.reset_index().assign(model=name) for name, t in tables.items() if t is not None]
    if not shown:
        return None
    d = pd.concat(shown).pivot_table(index=["model", "phase"], columns="structure", values="dice_mean")
    return d.round(3).reset_index()


def choose_sax(table: pd.DataFrame, margin: float, baseline: str = "sax") -> tuple[str, pd.DataFrame]:
    """The SAX model with the highest mean Dice on ACDC's validation patients among those whose mean Dice on the
    phantom's validation cines is within `margin` of `baseline`'s; `table`: (model, data) rows of Dice per
    structure, as `Study.sax_models` writes. The choice and the two means per model."""
    t = table.mean(axis=1).unstack("data")[["phantom validation", "ACDC validation"]]
    keep = t[t["phantom validation"] >= t.loc[baseline, "phantom validation"] - margin]
    return str(keep["ACDC validation"].idxmax()), t


SAX_NAMED = {"phantom": "sax", "real": "sax_real", "acdc": "acdc"}  # `sax_predictor` -> its row in `sax_models`


def named_sax(choice: str, has_acdc: bool, has_real: bool) -> str:
    """The SAX model `sax_predictor` names ("phantom", "real" or "acdc"): the phantom one where the phantom + ACDC one
    was not trained; an error for an ACDC-only model that was not."""
    name = SAX_NAMED[choice]
    if name == "acdc" and not has_acdc:
        raise ValueError("sax_predictor 'acdc' ships the ACDC-only model, which epochs_acdc=0 does not train")
    return name if name != "sax_real" or has_real else "sax"


def model_check(rows: list, text: str) -> dict:
    """One model's own real-data check for the patient report: what it is, and whether every target of it is met,
    interval and all where it has one (no target: not passed)."""
    ts = [r if isinstance(r, Target) else Target(*r) for r in rows]
    return dict(check=text or "no real-data check", passed=bool(ts) and all(t.met for t in ts), targets=len(ts))


def mean_dice(store: CohortStore | Mapping[str, Cine], pred: dict) -> pd.Series:
    """Mean Dice per structure over the labelled frames (ED and ES) of these predictions: every SAX comparison's row."""
    return summarise(evaluate(store, pred, with_hd95=False), by=("structure",)).xs("all", level="phase")["dice_mean"]


def sax_sets(store: CohortStore, acdc: CohortStore, phantom_pred: dict, n_valid: int | None, held_out: list,
             held_out_preds, models) -> tuple[dict, dict]:
    """What `model_table` scores the SAX `models` on: the phantom's validation (`n_valid` cines) and test cines (those
    `phantom_pred` holds), ACDC's validation and held-out patients; and the labels already made (each model's of the
    held-out patients, `held_out_preds[name]`, the phantom model's of its test cines)."""
    phantom_ids = [i for i in phantom_pred if i.endswith("_SAX")]
    sets = {"phantom validation": (store, store.select("SAX", "valid", n_valid)),
            "phantom test": (store, phantom_ids),
            "ACDC validation": (acdc, acdc.select(view="SAX", split="valid")),
            "ACDC held-out": (acdc, held_out)}
    known = {**{(name, "ACDC held-out"): held_out_preds[name] for name in models},
             ("sax", "phantom test"): {i: phantom_pred[i] for i in phantom_ids}}
    return sets, known


def model_table(models: dict, sets: dict, known: dict, client=None) -> pd.DataFrame:
    """Mean Dice per structure of each SAX model (name -> model) on each data set (name -> (store, cine ids); an
    empty one left out), indexed (model, data); `known`: (model, data) -> predictions already made."""
    from .predict import predict_store

    rows = {(name, data): mean_dice(st, known.get((name, data)) or predict_store(model, st, ids, progress=False,
                                                                                scheduler=client))
            for name, model in models.items() for data, (st, ids) in sets.items() if ids}
    return pd.DataFrame(rows).T.rename_axis(["model", "data"])


def inference_table(model, store: CohortStore, ids: list[str], centred: bool, off_mm: float, client=None
                    ) -> pd.DataFrame:
    """A SAX model on cines `ids` as it decides (each structure's largest connected component, read round the heart
    or the frame's centre as `centred` says), with mirrored test-time augmentation, without the largest-component
    filter, read the other way round, and with the field of view moved `off_mm` off the heart both ways: mean Dice
    per structure by way of reading (the model's own mirroring restored)."""
    from .learner import as_model
    from .predict import predict_off_centre, predict_store

    net, rows = as_model(model), {}
    shipped_tta, other = bool(getattr(net, "tta", False)), "frame-centred" if centred else "heart-centred"
    try:
        for name, tta, kw in (("plain", False, {}), ("mirrored", True, {}),
                              ("plain, every component kept", False, dict(largest=False)),
                              (f"plain, {other}", False, dict(centred=not centred))):
            net.tta = tta
            rows[name] = mean_dice(store, predict_store(model, store, ids, progress=False, scheduler=client, **kw))
        net.tta = False
        for how in (False, True):
            rows[f"field of view {off_mm:.0f} mm off the heart, {'heart' if how else 'frame'}-centred"] = mean_dice(
                store, {i: predict_off_centre(model, store.read(i), off_mm, centred=how) for i in ids})
    finally:
        net.tta = shipped_tta
    return pd.DataFrame(rows).T.rename_axis("inference")
