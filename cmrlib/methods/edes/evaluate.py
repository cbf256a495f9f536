"""Frame differences per cine and method, ED/ES plateaus of the truth, and the aFD table of Table 1."""
from __future__ import annotations

import time
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from fastprogress.fastprogress import progress_bar

from ...record import Cine
from .curves import frame_diff

PAPER_AFD = {"CNN+Reg": (1.30, 1.97), "TempReg-Net w/o TSC": (0.47, 0.52), "TempReg-Net": (0.38, 0.44)}  # Table 1


def evaluate(detectors: dict[str, Callable[[Cine], dict]], cines: Iterable[Cine], total: int | None = None,
             keep_curves: int = 0) -> pd.DataFrame:
    """Run every detector `fn(cine) -> {ed, es, curve}` on each labelled cine (read once): one row per cine and
    method with cyclic frame differences and the seconds the detector took (wall clock, from the record).

    The first `keep_curves` cines keep their predicted curves (column `curve`) for figures. Each detector runs once
    untimed on the first cine first, so one-off warm-up costs do not land in the seconds per sequence."""
    rows = []
    for i, c in enumerate(progress_bar(cines, total=total, leave=False)):
        for name, fn in detectors.items():
            if i == 0:
                fn(c)
            t0 = time.perf_counter()
            r = fn(c)
            sec = time.perf_counter() - t0
            row = dict(method=name, cine_id=c.cine_id, view=c.view, n_frames=c.n_frames, ed=c.ed, es=c.es,
                       ed_pred=r["ed"], es_pred=r["es"], sec=sec)
            if c.ed is not None and c.es is not None:
                row.update(fd_ed=int(frame_diff(r["ed"], c.ed, c.n_frames)),
                           fd_es=int(frame_diff(r["es"], c.es, c.n_frames)))
            if i < keep_curves:
                row.update(curve=np.asarray(r["curve"], dtype=np.float32))
            rows.append(row)
    return pd.DataFrame(rows)


def pseudo_reference(cines: Iterable[Cine]) -> list[Cine]:
    """Cines with the ED/ES their subject's 4CH labels imply (largest and smallest LV area; `meta['ed_es_from']`
    says so), for real cines whose labels are a network's pseudo-labels: every view of a subject takes its 4CH
    cine's frames (the same cycle in as many phases, another breath-hold); subjects without a labelled 4CH are
    left out."""
    from dataclasses import replace

    from ...labels import LV
    from ...measure import area_curve, ed_es_from_curve

    cines = list(cines)
    ref = {}
    for c in cines:
        if c.view == "4CH" and c.labels is not None and (c.labels == LV).any():
            ref[c.subject] = (ed_es_from_curve(area_curve(c.labels, c.spacing[-2:], LV)), c.n_frames)
    out = []
    for c in cines:
        if c.subject in ref and ref[c.subject][1] == c.n_frames:
            (ed, es), _ = ref[c.subject]
            out.append(replace(c, ed=int(ed), es=int(es), meta={**c.meta, "ed_es_from": "4CH pseudo-label LV area"}))
    return out


def plateau(curve, i: int, tol: float = 0.005) -> int:
    """How many frames of a volume curve lie within `tol` (relative) of its value at frame i: more than one or two
    means the extremum at i is shared by visually identical frames, so a label there is ambiguous."""
    c = np.asarray(curve, dtype=float)
    return int((np.abs(c - c[i]) <= tol * abs(c[i])).sum())


def label_plateaus(store, ids: Sequence[str], tol: float = 0.005) -> pd.DataFrame:
    """Per cine, the width of the ED and ES volume plateaus of the phantom's true LV volume curve
    (`meta['lv_volume_curve_ml']`; NaN for cines without one)."""
    rows = []
    for cid in ids:
        a = store.attrs(cid)
        v = (a.get("meta") or {}).get("lv_volume_curve_ml")
        ok = v is not None and a.get("ed") is not None and a.get("es") is not None
        rows.append(dict(cine_id=cid, ed_plateau=plateau(v, a["ed"], tol) if ok else np.nan,
                         es_plateau=plateau(v, a["es"], tol) if ok else np.nan))
    return pd.DataFrame(rows)


def afd_table(df: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's Table 1: aFD and SD (frames) for ED and ES and seconds per sequence, per method and view + 'all'."""
    both = pd.concat([df, df.assign(view="all")])
    t = both.groupby(["method", "view"], sort=False).agg(
        n=("fd_ed", "size"), aFD_ED=("fd_ed", "mean"), SD_ED=("fd_ed", "std"), aFD_ES=("fd_es", "mean"),
        SD_ES=("fd_es", "std"), sec_per_seq=("sec", "mean")).reset_index()
    if order is not None:
        t["method"] = pd.Categorical(t["method"], [m for m in order if m in set(t["method"])], ordered=True)
        t = t.sort_values(["method", "view"]).reset_index(drop=True)
    return t


def real_afd_table(res: pd.DataFrame, short_frames: int = 20) -> pd.DataFrame:
    """Per method on real cines: aFD ED and ES with 95 % CIs over the cines, and ES again on the short
    acquisitions (fewer than `short_frames` frames), beside the paper's aFD."""
    from ...stats import mean_ci

    rows = []
    for method, g in res.groupby("method", sort=False):
        (ed, ed_lo, ed_hi), (es, es_lo, es_hi) = mean_ci(g["fd_ed"]), mean_ci(g["fd_es"])
        short = g[g["n_frames"] < short_frames]
        paper_ed, paper_es = PAPER_AFD.get(method.split(" (")[0], (np.nan, np.nan))  # "X (fine-tuned)" is X
        rows.append(dict(method=method, n=len(g), aFD_ED=ed, ED_low=ed_lo, ED_high=ed_hi, aFD_ES=es, ES_low=es_lo,
                         ES_high=es_hi, n_short=len(short), aFD_ES_short=short["fd_es"].mean() if len(short) else
                         np.nan, paper_ED=paper_ed, paper_ES=paper_es))
    return pd.DataFrame(rows).round(3)
