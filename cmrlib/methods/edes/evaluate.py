"""Frame differences per cine and method, ED/ES plateaus of the truth, and the aFD table of Table 1."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from fastprogress.fastprogress import progress_bar

from ...longform import implied_volumes
from ...record import Cine
from ...skipped import StudySkipped
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


def beside_paper(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1 over all views (an `afd_table`) beside the paper's aFD of each method it has: the headline table."""
    d = table[table["view"] == "all"][["method", "n", "aFD_ED", "aFD_ES"]].copy()
    d["paper aFD_ED"] = d["method"].map(lambda m: PAPER_AFD.get(m, (np.nan,))[0])
    d["paper aFD_ES"] = d["method"].map(lambda m: PAPER_AFD.get(m, (np.nan, np.nan))[1])
    return d.round(2)


def real_afd_table(res: pd.DataFrame, short_frames: int = 20) -> pd.DataFrame:
    """Per method on real cines: aFD ED and ES with 95 % CIs over the cines, the same as % of the cycle, the share
    of cines within one frame, and ES again on the short acquisitions (fewer than `short_frames` frames), beside
    the paper's aFD."""
    from ...stats import mean_ci

    rows = []
    for method, g in res.groupby("method", sort=False):
        (ed, ed_lo, ed_hi), (es, es_lo, es_hi) = mean_ci(g["fd_ed"]), mean_ci(g["fd_es"])
        short = g[g["n_frames"] < short_frames]
        paper_ed, paper_es = PAPER_AFD.get(method.split(" (")[0], (np.nan, np.nan))  # "X (fine-tuned)" is X
        rows.append(dict(method=method, n=len(g), aFD_ED=ed, ED_low=ed_lo, ED_high=ed_hi, aFD_ES=es, ES_low=es_lo,
                         ES_high=es_hi, ED_pct_cycle=100 * (g["fd_ed"] / g["n_frames"]).mean(),
                         ES_pct_cycle=100 * (g["fd_es"] / g["n_frames"]).mean(),
                         ED_within_1=100 * (g["fd_ed"] <= 1).mean(), ES_within_1=100 * (g["fd_es"] <= 1).mean(),
                         n_short=len(short), aFD_ES_short=short["fd_es"].mean() if len(short) else np.nan,
                         paper_ED=paper_ed, paper_ES=paper_es))
    return pd.DataFrame(rows).round(3)


def combined_rows(res: pd.DataFrame, first: str, second: str, name: str) -> pd.DataFrame:
    """Per-cine rows of a detector that averages two others' frames on the cycle (`predict.combine`), from the
    rows both have for the same cine."""
    from .predict import combine

    cols = ["cine_id", "ed_pred", "es_pred"]
    pair = res[res.method == first].merge(res[res.method == second][cols], on="cine_id", suffixes=("", "_2"))
    out = pair.drop(columns=["ed_pred_2", "es_pred_2"]).assign(method=name)
    both = [combine(dict(curve=None, ed=r.ed_pred, es=r.es_pred), dict(ed=r.ed_pred_2, es=r.es_pred_2), r.n_frames)
            for r in pair.itertuples()]
    out["ed_pred"], out["es_pred"] = [b["ed"] for b in both], [b["es"] for b in both]
    out["fd_ed"] = frame_diff(out["ed_pred"], out["ed"], out["n_frames"]).astype(int)
    out["fd_es"] = frame_diff(out["es_pred"], out["es"], out["n_frames"]).astype(int)
    out["sec"] = pair["sec"].to_numpy() + res[res.method == second].set_index("cine_id")["sec"].reindex(
        pair["cine_id"]).to_numpy()
    return out.drop(columns="curve", errors="ignore")


def choose(res: pd.DataFrame, candidates: Sequence[str]) -> tuple[str, pd.DataFrame]:
    """The simplest candidate (the first of `candidates`) within one standard error of the best on these cines, in
    ES and in ED (the paired difference's SE over the cines); the best has the smallest ED + ES aFD, ES then ED
    breaking a tie (ES is image-defined, ED the trigger's), so that a detector good at one phase and the worst at
    the other cannot be the yardstick that admits everything better at that other phase. A margin a few patients
    cannot tell from noise buys no more complex detector. Frame errors are integers, so a candidate one frame worse
    on a single one of n cines has margin 1/n and SE 1/n exactly: "within" is strictly below the SE (or no worse at
    all), so that one cine's frame does not count as noise. Also the candidates' scores, margins over the best and
    whether each is within one SE."""
    r = res[res.method.isin(candidates)]
    g = r.groupby("method")[["fd_es", "fd_ed"]].mean()
    g = g.reindex([c for c in candidates if c in g.index])
    best = g.assign(both=g.fd_es + g.fd_ed).sort_values(["both", "fd_es", "fd_ed"], kind="stable").index[0]
    within = pd.Series(True, index=g.index)
    for ph in ("es", "ed"):
        fd = r.pivot_table(index="cine_id", columns="method", values=f"fd_{ph}")
        d = fd.sub(fd[best], axis=0)
        margin, se = d.mean().reindex(g.index), (d.std(ddof=1) / np.sqrt(d.count())).reindex(g.index).fillna(0.0)
        g[f"{ph.upper()}_margin"], g[f"{ph.upper()}_se"] = margin, se
        within &= (margin <= 1e-12) | (margin < se - 1e-9)
    g["within_1se"] = within
    chosen = str(within[within].index[0])
    return chosen, g.rename(columns={"fd_es": "aFD_ES", "fd_ed": "aFD_ED"}).reset_index()


def paired_table(res: pd.DataFrame, against: str, seed=0) -> pd.DataFrame:
    """Every method against one on the same cines: the mean paired difference in ED and ES frame error with its
    bootstrap 95 % interval over the cines (negative: that method is closer to the reference)."""
    from ...stats import paired_bootstrap

    ref = res[res.method == against].set_index("cine_id")
    rows = []
    for method, g in res.groupby("method", sort=False):
        if method == against:
            continue
        g = g.set_index("cine_id")
        common = g.index.intersection(ref.index)
        row = dict(method=method, against=against, n=len(common))
        for ph in ("ed", "es"):
            d, lo, hi = (paired_bootstrap(g.loc[common, f"fd_{ph}"], ref.loc[common, f"fd_{ph}"], seed=seed)
                         if len(common) >= 2 else (np.nan,) * 3)
            row.update({f"diff_{ph.upper()}": d, f"diff_{ph.upper()}_low": lo, f"diff_{ph.upper()}_high": hi})
        rows.append(row)
    return pd.DataFrame(rows).round(3)


@dataclass(frozen=True)
class TestResults:
    """Every detector on the test cines: per cine, Table 1, its all-views rows and the mean of ED and ES aFD; the
    volumes each method's frames imply on the phantom's true curves (None without them)."""

    per_cine: pd.DataFrame
    table: pd.DataFrame
    allv: pd.DataFrame
    order: list[str]
    mean_fd: pd.Series
    implied: pd.DataFrame | None = None


def sharp_ed(per_cine: pd.DataFrame, k: int, order: list[str]) -> pd.DataFrame:
    """Table 1 again on the test cines whose true ED plateau is at most `k` frames wide (within 0.5 % of the maximum
    volume); `StudySkipped` without true volume curves."""
    if not per_cine["ed_plateau"].notna().any():
        raise StudySkipped("no true volume curves in this cohort: the plateau breakdown needs the phantom's "
                           "lv_volume_curve_ml")
    sharp = per_cine[per_cine["ed_plateau"] <= k]
    print(f"{sharp['cine_id'].nunique()} of {per_cine['cine_id'].nunique()} test cines have an ED plateau of at most "
          f"{k} frames (within 0.5 % of the maximum volume)")
    return afd_table(sharp, order=order)


def ordering(t: TestResults) -> str:
    """TempReg-Net against the paper's aFD, and whether the paper's ordering of the methods holds (mean of ED and ES
    aFD), as the notebook prints it."""
    lines = []
    if "TempReg-Net" in t.allv.index:
        r = t.allv.loc["TempReg-Net"]
        lines.append(f"TempReg-Net, all views: aFD ED {r.aFD_ED:.3f} (target <= 0.38), ES {r.aFD_ES:.3f} "
                     "(target <= 0.44)")
    holds = list(t.mean_fd[t.order]) == sorted(t.mean_fd[t.order])
    lines.append("paper's ordering (mean of ED and ES aFD): " + " < ".join(f"{m} {t.mean_fd[m]:.3f}" for m in t.order)
                 + (" -> holds" if holds else " -> does not hold"))
    return "\n".join(lines)


def test_results(detectors: dict, store, test_ids: list[str], n_show: int) -> TestResults:
    """Every detector on the store's test cines: per cine (with the true ED plateaus), the paper's Table 1, and
    what each method's frames cost in mL on the true volume curves where the store has them."""
    res = evaluate(detectors, (store.read(i) for i in test_ids), total=len(test_ids), keep_curves=n_show)
    res = res.merge(label_plateaus(store, test_ids), on="cine_id", how="left")
    table = afd_table(res, order=list(detectors))
    manifest = store.manifest()
    implied = implied_volumes(res, manifest) if "lv_volume_curve_ml" in manifest else None
    allv = table[table["view"] == "all"].set_index("method")
    order = [m for m in ("TempReg-Net", "TempReg-Net w/o TSC", "CNN+Reg") if m in allv.index]
    return TestResults(res, table, allv, order, (allv["aFD_ED"] + allv["aFD_ES"]) / 2, implied)


def phantom_checks(t: TestResults) -> list[tuple]:
    """The paper's aFD targets for TempReg-Net and its ordering of the three methods, on the phantom's test cines."""
    checks = []
    if "TempReg-Net" in t.allv.index:
        paper_ed, paper_es = PAPER_AFD["TempReg-Net"]
        checks += [("TempReg-Net aFD ED (frames)", t.allv.loc["TempReg-Net", "aFD_ED"], "<=", paper_ed),
                   ("TempReg-Net aFD ES (frames)", t.allv.loc["TempReg-Net", "aFD_ES"], "<=", paper_es)]
    if len(t.order) == 3:
        checks.append(("paper's ordering: smallest step up in mean aFD", float(t.mean_fd[t.order].diff().min()), ">",
                       0.0))
    return checks
