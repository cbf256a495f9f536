"""Table 2 of CUSSP: every row's test metrics with bootstrap CIs at a threshold chosen on validation, recall by
MR grade, and the paper's numbers beside them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ...measure import TABLE1_VIEWS, subject_measures, table1_frames
from ...stats import METRICS, StatsError, classification_metrics, f1_threshold, not_testable

# Table 2 metric name -> cmrlib.stats metric
TABLE2_METRICS = {"Pos. Acc": "positive_accuracy", "Neg. Acc": "negative_accuracy", "Precision": "precision",
                  "Recall": "recall", "F1": "f1", "AUC": "roc_auc"}
# the paper's Table 2 (UK Biobank, 179 test sequences, 25 MR)
PAPER_TABLE2 = pd.DataFrame(
    [[0.09, 0.99, 0.43, 0.09, 0.14, 0.58], [0.53, 0.86, 0.45, 0.53, 0.44, 0.72], [0.38, 0.87, 0.29, 0.38, 0.32, 0.65],
     [0.29, 0.87, 0.25, 0.29, 0.27, 0.63], [0.38, 0.90, 0.35, 0.38, 0.36, 0.66], [0.55, 0.96, 0.66, 0.55, 0.60, 0.80],
     [0.62, 0.96, 0.80, 0.62, 0.69, 0.88]],
    index=["RF", "CNN-LSTM", "CUSSP-1", "CUSSP-2", "CUSSP-3", "CUSSP-SIAM", "CUSSP-SIAM-25"],
    columns=list(TABLE2_METRICS))
ROWS = list(PAPER_TABLE2.index)


def thresholds(valid: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Per row, the F1-maximising threshold on its validation (labels, scores); 0.5 when validation has no MR."""
    out = {}
    for row, (y, s) in valid.items():
        out[row] = f1_threshold(y, s) if np.sum(y) else 0.5
    return out


def validation_table(valid: Mapping[str, tuple[np.ndarray, np.ndarray]], thr: Mapping[str, float]) -> pd.DataFrame:
    """Per row, what the validation split says (the only split settings and thresholds are chosen on): cines,
    MR cines, ROC-AUC and the chosen threshold."""
    from sklearn.metrics import roc_auc_score
    rows = []
    for row, (y, s) in valid.items():
        both = len(set(np.asarray(y).tolist())) == 2
        rows.append(dict(row=row, n=len(y), n_mr=int(np.sum(y)), roc_auc=roc_auc_score(y, s) if both else np.nan,
                         threshold=thr[row]))
    return pd.DataFrame(rows)


def evaluate(test: Mapping[str, tuple[np.ndarray, np.ndarray]], thr: Mapping[str, float], n_boot: int = 1000,
             seed: int = 0) -> pd.DataFrame:
    """Long table (row, metric, value, ci_low, ci_high, threshold, n, n_mr, paper, note) of every row's test metrics;
    a split with one class only gives NaN metrics and a note that says so."""
    parts = []
    for row, (y, s) in test.items():
        try:
            m, note = classification_metrics(y, s, thr[row], n_boot=n_boot, seed=seed), ""
        except StatsError as e:
            m = pd.DataFrame(np.nan, index=list(METRICS), columns=["value", "ci_low", "ci_high"])
            note = not_testable(e)
        m = m.rename_axis("metric").reset_index()
        m.insert(0, "row", row)
        parts.append(m.assign(threshold=thr[row], n=len(y), n_mr=int(np.sum(y)), note=note))
    out = pd.concat(parts, ignore_index=True)
    paper = {(r, v): PAPER_TABLE2.loc[r, k] for r in PAPER_TABLE2.index for k, v in TABLE2_METRICS.items()}
    out["paper"] = [paper.get((r, m), np.nan) for r, m in zip(out.row, out.metric)]
    return out


def table2(long: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """The paper's layout: one line per row, 'value (low-high)' per Table-2 metric, then the paper's F1 and AUC."""
    fmt = lambda r: ("not testable" if getattr(r, "note", "") else
                     f"{r.value:.{digits}f} ({r.ci_low:.{digits}f}-{r.ci_high:.{digits}f})")
    cells = long.assign(cell=long.apply(fmt, axis=1))
    names = {v: k for k, v in TABLE2_METRICS.items()}
    wide = cells[cells.metric.isin(names)].pivot(index="row", columns="metric", values="cell").rename(columns=names)
    wide = wide[list(TABLE2_METRICS)].reindex([r for r in long.row.unique()])
    for k in ("F1", "AUC"):
        wide[f"paper {k}"] = [PAPER_TABLE2[k].get(r, np.nan) for r in wide.index]
    return wide


def recall_by_grade(grades: np.ndarray, scores: Mapping[str, np.ndarray], thr: Mapping[str, float]) -> pd.DataFrame:
    """Per row and MR grade 1-3: how many test cines, how many flagged (does the model find mild MR?)."""
    g = np.asarray(grades, dtype=float)
    rows = []
    for row, s in scores.items():
        for grade in (1, 2, 3):
            sel = g == grade
            hit = int((np.asarray(s)[sel] >= thr[row]).sum())
            rows.append(dict(row=row, grade=grade, n=int(sel.sum()), found=hit,
                             recall=hit / sel.sum() if sel.sum() else np.nan))
    return pd.DataFrame(rows)


def auc_gap(y: np.ndarray, scores_a: Sequence[np.ndarray], scores_b: Sequence[np.ndarray], n_boot: int = 1000,
            seed: int = 0, conf: float = 0.95) -> dict:
    """Row a minus row b in ROC-AUC on the same cines, averaged over paired draws (a's and b's scores of draw k),
    with a percentile bootstrap CI over the cines (stratified by class): gap, ci_low, ci_high."""
    from ...stats import roc_auc

    y = np.asarray(y).astype(int)
    a, b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    if len(set(y.tolist())) < 2:
        return dict(gap=np.nan, ci_low=np.nan, ci_high=np.nan)
    gap = lambda i: float(np.mean([roc_auc(y[i], sa[i]) - roc_auc(y[i], sb[i]) for sa, sb in zip(a, b)]))
    g = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    boot = [gap(np.r_[g.choice(pos, len(pos)), g.choice(neg, len(neg))]) for _ in range(n_boot)]
    lo, hi = (np.percentile(boot, [50 * (1 - conf), 50 * (1 + conf)]) if boot else (np.nan, np.nan))
    return dict(gap=gap(np.arange(len(y))), ci_low=float(lo), ci_high=float(hi))


def measures_reusable(cached: pd.DataFrame | None, subjects, anatomy: str, made_by: str) -> bool:
    """Whether a cached Table-1 measures table serves: every subject, the same anatomy, and made by the same
    segmenter (its content key, or 'labels'), so a retrained segmenter's measures are never the old one's."""
    return (cached is not None and set(cached.subject) >= set(subjects)
            and set(cached.get("anatomy", [])) == {anatomy}
            and set(cached.get("made_by", pd.Series(dtype=str)).astype(str)) == {made_by})


@dataclass(frozen=True)
class Forest:
    """The forest's labels and measures per role, and the fitted forest."""

    data: dict
    Xs: dict
    model: object


def fit_forest(labels: pd.DataFrame, X: pd.DataFrame, splits: Mapping, n_iter: int, seed: int
               ) -> tuple[Forest, pd.DataFrame]:
    """The random forest on the Table-1 measures `X` of the training subjects (a missing measure stays NaN), its
    settings from a cross-validated random search (`learner.random_forest`); the forest and the search."""
    from .learner import random_forest

    data = {k: labels[labels.split.isin(np.atleast_1d(s))].set_index("subject") for k, s in splits.items()}
    Xs = {s: X.reindex(d.index) for s, d in data.items()}
    model, search = random_forest(Xs["train"], data["train"].mr.reindex(Xs["train"].index).to_numpy(), n_iter=n_iter,
                                  seed=seed)
    return Forest(data, Xs, model), search


@dataclass(frozen=True)
class Scored:
    """Every row on validation and test: (y, scores) by row, test grades, thresholds, Table 2's long metrics, the
    rows that scored and the ones that failed."""

    valid: dict
    test: dict
    grades: dict
    thr: dict
    long: pd.DataFrame
    models: dict
    failed: list


def score_rows(nets: dict, forest: Forest, inputs, n_boot: int, seed: int) -> Scored:
    """Every trained row (`nets`: Learners by row) and the forest scored on validation (its threshold: best F1) and
    once on the evaluated splits, Table 2's metrics with bootstrap CIs; a row with non-finite scores is a failure
    and leaves the tables."""
    from ...learn import attempt
    from ...utils import seed_for
    from .learner import INPUTS, scores

    rf, Xs, data = forest.data, forest.Xs, inputs.data
    valid, test, grades, models, failed = {}, {}, {}, dict(nets), []
    if len(Xs["valid"]):
        valid["RF"] = (rf["valid"].mr.reindex(Xs["valid"].index).to_numpy(),
                       forest.model.predict_proba(Xs["valid"])[:, 1])
    test["RF"] = (rf["eval"].mr.reindex(Xs["eval"].index).to_numpy(), forest.model.predict_proba(Xs["eval"])[:, 1])
    grades["RF"] = rf["eval"].grade.reindex(Xs["eval"].index).to_numpy()
    for r in [r for r in INPUTS if r in models]:
        inp = INPUTS[r]
        xe, ye, te = data[inp]["eval"]
        got, failure = attempt(dict(method="CUSSP", row=r), lambda m=models[r].model, i=inp: (
            scores(m, data[i]["valid"][0]), scores(m, xe)))
        if failure:  # non-finite scores never reach a metric
            failed.append(failure)
            models.pop(r)
            continue
        valid[r], test[r], grades[r] = (data[inp]["valid"][1], got[0]), (ye, got[1]), te.grade.to_numpy()
    thr = thresholds(valid)
    long = evaluate(test, thr, n_boot=n_boot, seed=seed_for(seed, "cussp", "boot"))
    return Scored(valid, test, grades, thr, long, models, failed)


def shipped_row(sc: "Scored", models: Mapping) -> tuple[str, str]:
    """The row the run's Predictor carries: the trained row validation ranks first by ROC-AUC, or CUSSP-SIAM-25, the
    paper's headline row, when validation ranks none; with how it was chosen."""
    ranked = validation_table(sc.valid, sc.thr).query("row in @models").set_index("row").roc_auc.dropna()
    if len(ranked):
        return ranked.idxmax(), "validation ROC-AUC"
    return "CUSSP-SIAM-25", "the paper's headline row (validation ranks no row)"


def gate_rows(inputs, encoders: Mapping[str, Mapping], seed: int) -> pd.DataFrame:
    """A linear probe of MR on each frozen encoder's features (input -> name -> network or None), fit on training
    and scored on validation: the gate before any downstream row."""
    from .learner import probe

    rows = []
    for inp, nets in encoders.items():
        train, valid = inputs.xy(inp, "train"), inputs.xy(inp, "valid")
        for name, net in nets.items():
            if net is not None:
                rows.append(dict(input=inp, encoder=name, valid_auc=probe(net, train, valid, seed),
                                 n_train=len(train[1]), n_valid=len(valid[1]), n_valid_mr=int(valid[1].sum())))
    return pd.DataFrame(rows, columns=["input", "encoder", "valid_auc", "n_train", "n_valid", "n_valid_mr"])


def phantom_checks(sc: Scored, gate_gap, budget: dict) -> list[tuple]:
    """The gate, the phantom task's difficulty, the paper's targets and the label-budget comparison."""
    from .learner import JOINT_WEIGHTS, SUPERVISED

    got = sc.long.set_index(["row", "metric"]).value
    val = lambda r, metric: got.get((r, metric), np.nan)  # NaN: the row did not train or was not testable
    supervised = validation_table(sc.valid, sc.thr).set_index("row").roc_auc.get(SUPERVISED, np.nan)
    return [("gate: Barlow Twins minus random encoder, probe ROC-AUC (validation, systolic window)",
             gate_gap("window"), ">=", 0.05),
            ("gate: Barlow Twins minus random encoder, probe ROC-AUC (validation, full cycle)",
             gate_gap("cycle"), ">=", 0.05),
            ("phantom MR task: supervised ResNet-18 validation ROC-AUC (all labels), at least", supervised, ">=", 0.80),
            ("phantom MR task: supervised ResNet-18 validation ROC-AUC (all labels), at most", supervised, "<=", 0.92),
            ("CUSSP-SIAM-25 F1", val("CUSSP-SIAM-25", "f1"), ">=", 0.69),
            ("CUSSP-SIAM-25 ROC-AUC", val("CUSSP-SIAM-25", "roc_auc"), ">=", 0.88),
            ("Siamese F1 minus best CUSSP-1/2/3 F1", min(val(r, "f1") for r in ("CUSSP-SIAM", "CUSSP-SIAM-25"))
             - max(val(r, "f1") for r in JOINT_WEIGHTS), ">", 0.0),
            (f"CUSSP-SIAM-25 minus supervised test ROC-AUC at {budget['budget']} MR training cines (mean of draws)",
             budget["gap"], ">", 0.0)]


TABLE1 = ["LAVmax", "LAVmin", "LASV", "LAEF", "RAVmax", "RAVmin", "RASV", "RAEF", "LVESV", "LVEDV", "LVSV", "LVEF",
          "LVCO", "LVM", "RVESV", "RVEDV", "RVSV", "RVEF"]  # the paper's Table 1: the forest's measures (per BSA)


def segmented_measures(stores: Mapping, manifest: pd.DataFrame, subjects, find, known: Mapping) -> pd.DataFrame:
    """The Table-1 measures of `subjects` in each store, their cines labelled by `find` (a SAX stack at ED and ES
    only; a cine in `known` keeps the labels it has there); no labels without `find`."""
    from fastprogress.fastprogress import progress_bar

    parts = []
    for name, st in stores.items():
        m = manifest[manifest.store == name]
        ids = m[m.view.isin(TABLE1_VIEWS) & m.subject.isin(subjects)].cine_id
        segment = lambda cid: find(st.read(cid, table1_frames(st, cid)))
        preds = {cid: known[cid] if cid in known else segment(cid)
                 for cid in progress_bar(list(ids), leave=False)} if find is not None else {}
        parts.append(subject_measures(st, preds))
    return pd.concat(parts, ignore_index=True)


def per_bsa(measures: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """The forest's input: each Table-1 measure divided by the subject's body-surface area."""
    feats = measures.set_index("subject")
    bsa = manifest.drop_duplicates("subject").set_index("subject").bsa_m2
    return pd.DataFrame({m: feats[f"{m}_auto"] / bsa.reindex(feats.index) for m in TABLE1 if f"{m}_auto" in feats})
