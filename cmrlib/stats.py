"""Agreement and classification statistics as the papers report them: Bland-Altman, ICC, regression, bootstrap CIs.

Convention everywhere: differences are `auto - ref` (automated minus reference), so a positive bias means the
automated method over-estimates.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from .utils import rng as _rng

__all__ = ["StatsError", "not_testable", "paired", "mean_ci", "bland_altman", "icc", "icc_wide", "ICC_FORMS",
           "regression", "lin_ccc",
           "agreement", "AGREEMENT_COLUMNS", "agreement_table",
           "classification_metrics", "binary_metrics", "roc_auc", "bootstrap_ci", "fmt_mean_sd", "fmt_ci"]


class StatsError(ValueError):
    """Inputs to a statistic are unusable (length mismatch, too few pairs, one class only)."""


def not_testable(reason) -> str:
    """The note of a table row whose statistic the groups are too small for (the reason names their sizes): a row
    that says so, never an exception that stops the notebook or a NaN that hides why."""
    return f"not testable: {reason}"


def paired(auto, ref, min_n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Two equal-length float arrays with pairs holding any NaN or infinite value dropped (listwise deletion)."""
    a, r = np.asarray(auto, dtype=float).ravel(), np.asarray(ref, dtype=float).ravel()
    if a.shape != r.shape:
        raise StatsError(f"auto and ref differ in length: {a.size} vs {r.size}")
    keep = np.isfinite(a) & np.isfinite(r)
    a, r = a[keep], r[keep]
    if a.size < min_n:
        raise StatsError(f"need at least {min_n} complete pairs, got {a.size}")
    return a, r


def mean_ci(x, conf: float = 0.95) -> tuple[float, float, float]:
    """Mean with its t-based confidence interval (NaNs ignored): (mean, low, high)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    m = float(x.mean()) if x.size else float("nan")
    if x.size < 2:
        return m, float("nan"), float("nan")
    h = sps.t.ppf(0.5 + conf / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return m, float(m - h), float(m + h)


def mean_bootstrap(x, n_boot: int = 2000, seed=0, conf: float = 0.95) -> tuple[float, float, float]:
    """Mean with its percentile bootstrap interval over the units (resampled with replacement, NaNs dropped):
    (mean, low, high); no interval under two units."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return (float(x.mean()) if x.size else float("nan")), float("nan"), float("nan")
    means = x[np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    a = (1 - conf) / 2
    return float(x.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def paired_bootstrap(a, b, n_boot: int = 2000, seed=0, conf: float = 0.95) -> tuple[float, float, float]:
    """Mean of a - b over paired units with its percentile bootstrap interval (units resampled with replacement,
    NaN pairs dropped): (difference, low, high)."""
    x, y = paired(a, b)
    d = x - y
    idx = np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))
    boots = d[idx].mean(1)
    lo, hi = np.percentile(boots, [50 * (1 - conf), 50 * (1 + conf)])
    return float(d.mean()), float(lo), float(hi)


def bland_altman(auto, ref, conf: float = 0.95) -> dict:
    """Bias (auto - ref), SD of differences and 95 % limits of agreement with their CIs (Bland & Altman 1999).

    LoA = bias +- 1.96 SD. CIs use t(n-1): SE(bias) = sqrt(s^2/n), SE(LoA) ~= sqrt(3 s^2/n).
    """
    a, r = paired(auto, ref, min_n=2)
    d = a - r
    n = d.size
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    lo, hi = bias - 1.96 * sd, bias + 1.96 * sd
    t = sps.t.ppf(0.5 + conf / 2, n - 1)
    se_b, se_l = np.sqrt(sd**2 / n), np.sqrt(3 * sd**2 / n)
    ci = lambda v, se: (float(v - t * se), float(v + t * se))
    return dict(n=n, mean_auto=float(a.mean()), mean_ref=float(r.mean()), bias=bias, sd=sd, loa_low=lo, loa_high=hi,
                bias_ci=ci(bias, se_b), loa_low_ci=ci(lo, se_l), loa_high_ci=ci(hi, se_l))


# our form name -> (pingouin >= 0.7 Type, pingouin < 0.7 Type, description)
ICC_FORMS = {
    "ICC1": ("ICC(1,1)", "ICC1", "ICC(1,1): one-way random effects, single measurement"),
    "ICC2": ("ICC(A,1)", "ICC2", "ICC(2,1): two-way random effects, absolute agreement, single measurement"),
    "ICC3": ("ICC(C,1)", "ICC3", "ICC(3,1): two-way mixed effects, consistency, single measurement"),
}


@contextlib.contextmanager
def _pingouin_full_precision():
    """pingouin rounds the CI95 column to 2 decimals by default; keep full precision while we compute."""
    import pingouin as pg
    old = dict(pg.options)
    pg.options.clear()
    pg.options.update({"round": None})
    try:
        yield pg
    finally:
        pg.options.clear()
        pg.options.update(old)


def icc(auto, ref, form: str = "ICC2") -> dict:
    """Single-measure ICC of auto vs ref with its 95 % CI via pingouin (default ICC(2,1) absolute agreement).

    form: "ICC2" = ICC(2,1) two-way random, absolute agreement; "ICC3" = ICC(3,1) two-way mixed, consistency;
    "ICC1" = ICC(1,1) one-way random. Pairs with a NaN are dropped; needs >= 3 complete pairs.
    """
    a, r = paired(auto, ref, min_n=3)
    return icc_wide(np.stack([a, r], axis=1), form)


def icc_wide(ratings, form: str = "ICC2") -> dict:
    """Single-measure ICC of an (n targets, k raters) table (rows with a NaN dropped) via pingouin, with 95 % CI."""
    if form not in ICC_FORMS:
        raise StatsError(f"unknown ICC form {form!r}; choose one of {sorted(ICC_FORMS)}")
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise StatsError(f"ratings must be (n targets, k >= 2 raters), got shape {x.shape}")
    x = x[np.isfinite(x).all(axis=1)]
    n, k = x.shape
    if n < 3:
        raise StatsError(f"ICC needs at least 3 complete targets, got {n}")
    long = pd.DataFrame({"target": np.repeat(np.arange(n), k), "rater": np.tile(np.arange(k), n), "rating": x.ravel()})
    new_name, old_name, desc = ICC_FORMS[form]
    with _pingouin_full_precision() as pg, np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pandas deprecations raised inside pingouin
        warnings.simplefilter("ignore", DeprecationWarning)
        tab = pg.intraclass_corr(data=long, targets="target", raters="rater", ratings="rating").set_index("Type")
    row = tab.loc[new_name] if new_name in tab.index else tab.loc[old_name]
    lo, hi = (float(v) for v in row["CI95"])
    return dict(icc=float(row["ICC"]), ci_low=lo, ci_high=hi, form=form, description=desc, n=n)


def regression(auto, ref) -> dict:
    """Least-squares line auto = slope * ref + intercept with Pearson r and its p-value."""
    a, r = paired(auto, ref, min_n=3)
    fit = sps.linregress(r, a)
    return dict(slope=float(fit.slope), intercept=float(fit.intercept), r=float(fit.rvalue), p=float(fit.pvalue),
                n=int(a.size))


def fmt_mean_sd(x, digits: int = 1) -> str:
    """'mean +- SD' of finite values, for tables."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f}" if x.size > 1 else "n/a"


def fmt_ci(v: float, lo: float, hi: float, digits: int = 3) -> str:
    """'value [low, high]' for tables."""
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def lin_ccc(auto, ref) -> float:
    """Lin's concordance correlation coefficient: agreement with the identity line (1 = identical, 0 = none)."""
    a, r = paired(auto, ref, min_n=3)
    cov = np.mean((a - a.mean()) * (r - r.mean()))
    return float(2 * cov / (a.var() + r.var() + (a.mean() - r.mean()) ** 2))


AGREEMENT_COLUMNS = ("n", "ref_mean", "ref_sd", "auto_mean", "auto_sd", "bias", "bias_low", "bias_high", "sd",
                     "loa_low", "loa_low_lo", "loa_low_hi", "loa_high", "loa_high_lo", "loa_high_hi", "mae",
                     "icc2", "icc2_low", "icc2_high", "icc3", "icc3_low", "icc3_high", "r", "p", "ccc", "slope",
                     "intercept")  # the keys of `agreement`, in order


def agreement(auto, ref) -> dict:
    """Every agreement statistic of one auto/ref pairing: n, bias and LoA with CIs, ICC(2,1) and ICC(3,1) with CIs,
    Pearson r, Lin's CCC, MAE and the regression line (auto on ref)."""
    a, r = paired(auto, ref, min_n=3)
    ba, i2, i3, rg = bland_altman(a, r), icc(a, r, "ICC2"), icc(a, r, "ICC3"), regression(a, r)
    return {
        "n": ba["n"], "ref_mean": r.mean(), "ref_sd": r.std(ddof=1), "auto_mean": a.mean(), "auto_sd": a.std(ddof=1),
        "bias": ba["bias"], "bias_low": ba["bias_ci"][0], "bias_high": ba["bias_ci"][1], "sd": ba["sd"],
        "loa_low": ba["loa_low"], "loa_low_lo": ba["loa_low_ci"][0], "loa_low_hi": ba["loa_low_ci"][1],
        "loa_high": ba["loa_high"], "loa_high_lo": ba["loa_high_ci"][0], "loa_high_hi": ba["loa_high_ci"][1],
        "mae": float(np.abs(a - r).mean()),
        "icc2": i2["icc"], "icc2_low": i2["ci_low"], "icc2_high": i2["ci_high"],
        "icc3": i3["icc"], "icc3_low": i3["ci_low"], "icc3_high": i3["ci_high"],
        "r": rg["r"], "p": rg["p"], "ccc": lin_ccc(a, r), "slope": rg["slope"], "intercept": rg["intercept"],
    }


def agreement_table(df: pd.DataFrame, pairs: Mapping[str, tuple[str, str]], units: Mapping[str, str] | str | None = None,
                    digits: int = 2) -> pd.DataFrame:
    """One row per measure: n, ref/auto mean +- SD, bias, SD, LoA, MAE, ICC2 [CI], ICC3 [CI], r (auto - ref).

    Numeric columns stay numeric (for targets and tests); `*_str` columns are formatted for display.
    """
    rows = []
    for name, (ac, rc) in pairs.items():
        for c in (ac, rc):
            if c not in df.columns:
                raise StatsError(f"agreement_table: column {c!r} for measure {name!r} not in {list(df.columns)}")
        a, r = paired(df[ac], df[rc], min_n=3)
        st = agreement(a, r)
        unit = units.get(name, "") if isinstance(units, Mapping) else (units or "")
        keep = ("n", "ref_mean", "ref_sd", "auto_mean", "auto_sd", "bias", "sd", "loa_low", "loa_high", "mae",
                "icc2", "icc2_low", "icc2_high", "icc3", "icc3_low", "icc3_high", "r", "p")
        rows.append({
            "measure": name, "unit": unit, **{k: st[k] for k in keep},
            "ref_str": fmt_mean_sd(r, digits), "auto_str": fmt_mean_sd(a, digits),
            "loa_str": f"[{st['loa_low']:.{digits}f}, {st['loa_high']:.{digits}f}]",
            "icc2_str": fmt_ci(st["icc2"], st["icc2_low"], st["icc2_high"]),
            "icc3_str": fmt_ci(st["icc3"], st["icc3_low"], st["icc3_high"]),
        })
    return pd.DataFrame(rows).set_index("measure")


def conformal_half_width(residuals, level: float = 0.9) -> float:
    """Split-conformal half-width: the ceil((n+1) level)-th smallest |auto - ref| of patients the model never
    trained on, so a new patient's interval value +- it holds their reference with probability >= level (inf when
    too few patients for that level; an infinite error, a failed measure, counts as the largest)."""
    r = np.abs(np.asarray(residuals, float))
    r = np.sort(r[~np.isnan(r)])
    k = int(np.ceil((len(r) + 1) * level))
    return float(r[k - 1]) if 0 < k <= len(r) else float("inf")


def conformal_coverage(residuals, level: float = 0.9) -> float:
    """Out-of-fold coverage of `conformal_half_width`: each patient's interval calibrated on the others."""
    r = np.asarray(residuals, float)
    r = r[~np.isnan(r)]
    return float(covered_leaving_out(r, level).mean()) if len(r) > 1 else float("nan")


def conformal_cross_coverage(groups, level: float = 0.9) -> float:
    """Coverage with each group of patients (a split) held out: its interval calibrated on the other groups."""
    groups = [np.abs(np.asarray(g, float)) for g in groups]
    hits = [g <= conformal_half_width(np.concatenate(groups[:i] + groups[i + 1:]), level)
            for i, g in enumerate(groups)]
    return float(np.concatenate(hits).mean()) if len(groups) > 1 else float("nan")


SCALES = ("none", "value", "entropy")  # an interval's width: one for every patient, in proportion to the patient's
# measure, or in proportion to the segmenter's uncertainty on the patient (its mean entropy, a `spread` column)


def scaled_errors(auto, ref, scale: str = "none", spread=None) -> np.ndarray:
    """|auto - ref| in the unit an interval's width is calibrated in: as measured ('none'), over |auto| ('value': a
    width in proportion to the measure, as a large heart's volume errs by more millilitres) or over the patient's
    `spread` ('entropy': in proportion to the segmenter's uncertainty); infinite where the divisor is 0 or missing
    (no width in proportion to it holds anything), NaN pairs kept NaN."""
    auto, err = np.asarray(auto, float), np.abs(np.asarray(auto, float) - np.asarray(ref, float))
    if scale == "none":
        return err
    by = np.abs(auto) if scale == "value" else np.full(err.shape, np.nan) if spread is None \
        else np.asarray(spread, float)
    usable = np.isfinite(by) & (by > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(err), np.nan, np.where(usable, err / np.where(usable, by, 1.0), np.inf))


def covered_leaving_out(errors, level: float = 0.9) -> np.ndarray:
    """Per patient: whether their (scaled) error lies within the width calibrated on every other patient."""
    e = np.abs(np.asarray(errors, float))
    return np.array([e[i] <= conformal_half_width(np.delete(e, i), level) for i in range(len(e))], dtype=bool)


def _worst_group(covered: np.ndarray, groups: np.ndarray) -> float:
    """The lowest coverage of any group."""
    return min(float(covered[groups == g].mean()) for g in np.unique(groups))


def chosen_scale(auto, ref, groups, level: float = 0.9, spread=None) -> str:
    """The interval's scale (`SCALES`; 'entropy' only with a `spread`) whose worst group (a diagnosis) is covered
    best, each patient calibrated on the others: one width for every patient unless another scale covers the
    worst-served group strictly better (all are calibrated to the same overall level, so a better worst group is a
    better conditional coverage; a tie keeps the earlier scale). A scale whose width is infinite (a failed measure
    of value 0, a missing spread, too few patients) covers everyone and tells no one anything: it is never
    chosen."""
    groups = np.asarray(groups)
    best, worst = SCALES[0], -1.0
    for scale in SCALES:  # without a spread the entropy scale's errors are infinite: never chosen
        errors = scaled_errors(auto, ref, scale, spread)
        if scale != SCALES[0] and not np.isfinite(conformal_half_width(errors, level)):
            continue
        w = _worst_group(covered_leaving_out(errors, level), groups)
        if w > worst:
            best, worst = scale, w
    return best


def _spread_of(d: pd.DataFrame, spread: str | None):
    """A table's spread column (None without one)."""
    return None if spread is None else d[spread]


def scale_procedure(df: pd.DataFrame, auto: str, ref: str, fold: str = "fold", group: str = "group",
                    level: float = 0.9, spread: str | None = None) -> tuple[str, pd.Series, dict]:
    """`chosen_scale` as a procedure scored out of fold (`spread`: the column an 'entropy' width is a multiple of):
    for each fold, the scale chosen on the other folds and its width calibrated there; (the scale chosen on every
    fold, each patient's coverage under the procedure (indexed like the complete pairs of `df`), fold -> the scale
    its other folds chose)."""
    d = df[df[auto].notna() & df[ref].notna()]
    covered, per_fold = pd.Series(False, index=d.index), {}
    for f, outer in d.groupby(fold):
        inner = d.drop(outer.index)
        scale = per_fold[f] = chosen_scale(inner[auto], inner[ref], inner[group], level, _spread_of(inner, spread)) \
            if len(inner) > 1 else SCALES[0]
        width = conformal_half_width(scaled_errors(inner[auto], inner[ref], scale, _spread_of(inner, spread)), level)
        covered[outer.index] = scaled_errors(outer[auto], outer[ref], scale, _spread_of(outer, spread)) <= width
    return chosen_scale(d[auto], d[ref], d[group], level, _spread_of(d, spread)), covered, per_fold


def interval_scaling(df: pd.DataFrame, pairs: Mapping[str, tuple[str, str]], fold: str = "fold",
                     group: str = "group", level: float = 0.9, spreads: Mapping[str, str] | None = None
                     ) -> tuple[dict[str, str], dict[str, float], pd.DataFrame]:
    """Each measure's interval scale chosen as `scale_procedure` does (`spreads`: measure -> its spread column, for
    the 'entropy' scale), shown: (measure -> the scale chosen on every fold, measure -> the procedure's out-of-fold
    coverage, and per measure the coverage overall and per group of each scale (each patient calibrated on the
    others; its half-width calibrated on all, a multiple of the value or the spread where scaled) and of the
    procedure (each fold's scale and width from the other folds), with Clopper-Pearson 95 % intervals and the scale
    each fold's others chose)."""
    scales, across, rows = {}, {}, []
    for name, (ac, rc) in pairs.items():
        d = df[df[ac].notna() & df[rc].notna()]
        if len(d) < 3:
            continue
        spread = (spreads or {}).get(name)
        scales[name], covered, per_fold = scale_procedure(d, ac, rc, fold, group, level, spread)
        across[name] = float(covered.mean())
        keys = np.concatenate([np.full(len(d), "all", dtype=object), d[group].to_numpy(object)])
        chosen = ", ".join(f"{k}: {v}" for k, v in sorted(per_fold.items()))
        for scale in SCALES:
            if scale == "entropy" and spread is None:
                continue
            errors = scaled_errors(d[ac], d[rc], scale, _spread_of(d, spread))
            hit = covered_leaving_out(errors, level)
            rows += _share_rows(np.concatenate([hit, hit]), keys, measure=name, scale=scale,
                                half_width=conformal_half_width(errors, level), shipped=scale == scales[name],
                                folds_chose="")
        hit = covered.to_numpy()
        rows += _share_rows(np.concatenate([hit, hit]), keys, measure=name, scale="procedure, out of fold",
                            half_width=np.nan, shipped=False, folds_chose=chosen)
    table = pd.DataFrame(rows, columns=["measure", "scale", "half_width", "shipped", "group", "n", "coverage", "low",
                                        "high", "folds_chose"])
    return scales, across, table


def _share_rows(covered: np.ndarray, keys: np.ndarray, **fields) -> list[dict]:
    """The share covered per key ('all' first, then in order) with its Clopper-Pearson 95 % interval, one row
    each."""
    from scipy.stats import binomtest

    rows = []
    for key in sorted(set(keys), key=lambda k: (k != "all", k)):
        hit = covered[keys == key]
        ci = binomtest(int(hit.sum()), len(hit)).proportion_ci(0.95)
        rows.append(dict(fields, group=key, n=len(hit), coverage=float(hit.mean()), low=float(ci.low),
                         high=float(ci.high)))
    return rows


def coverage_by(df: pd.DataFrame, pairs: Mapping[str, tuple[str, str]], groups: Sequence[str],
                level: float = 0.9, scales: Mapping[str, str] | None = None,
                spreads: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per measure and per value of each grouping column (a fold, a diagnosis): patients, and the share whose
    reference lies within their value plus or minus the width calibrated on every other patient (`scales`: each
    measure's `SCALES` entry, 'none' where absent; `spreads`: each measure's spread column), with its
    Clopper-Pearson 95 % interval: whether one width serves each kind of patient."""
    rows = []
    for name, (ac, rc) in pairs.items():
        d = df[df[ac].notna() & df[rc].notna()].reset_index(drop=True)
        scale, spread = (scales or {}).get(name, "none"), (spreads or {}).get(name)
        covered = covered_leaving_out(scaled_errors(d[ac], d[rc], scale, _spread_of(d, spread)), level)
        for col in groups:
            rows += _share_rows(covered, d[col].to_numpy(), measure=name, by=col)
    return pd.DataFrame(rows, columns=["measure", "by", "group", "n", "coverage", "low", "high"])


def conformal_intervals(df: pd.DataFrame, pairs: Mapping[str, tuple[str, str]], level: float = 0.9,
                        by: str | None = None, scales: Mapping[str, str] | None = None,
                        spreads: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per measure: patients, its scale (`scales`, 'none' where absent: then the half-width is in the
    measure's unit, else a multiple of the patient's own value or of their spread, the column `spreads` names),
    half-width of its `level` interval, coverage leaving each patient out, and with `by` (a column such as the split)
    coverage of each group calibrated on the others (auto, ref columns as in `agreement_table`)."""
    rows = []
    for name, (ac, rc) in pairs.items():
        d = df[df[ac].notna() & df[rc].notna()]  # an infinite value (a failed measure) stays: it is never covered
        if len(d) < 3:
            raise StatsError(f"{name}: need at least 3 complete pairs, got {len(d)}")
        scale, spread = (scales or {}).get(name, "none"), (spreads or {}).get(name)
        e = scaled_errors(d[ac], d[rc], scale, _spread_of(d, spread))
        row = dict(measure=name, n=len(d), level=level, scale=scale, half_width=conformal_half_width(e, level),
                   coverage=conformal_coverage(e, level))
        if by is not None:
            row["coverage_across"] = conformal_cross_coverage(
                [scaled_errors(g[ac], g[rc], scale, _spread_of(g, spread)) for _, g in d.groupby(by)], level)
        rows.append(row)
    return pd.DataFrame(rows).set_index("measure")


METRICS = ("precision", "recall", "specificity", "f1", "roc_auc", "pr_auc", "accuracy", "positive_accuracy",
           "negative_accuracy")


def binary_metrics(y_true, y_score, threshold: float = 0.5) -> dict[str, float]:
    """The CUSSP/SSLHF metric set for one sample (scikit-learn); positive/negative accuracy = per-class accuracy.

    positive accuracy = TP/(TP+FN) (accuracy on the positive class, equal to recall/sensitivity),
    negative accuracy = TN/(TN+FP) (accuracy on the negative class, equal to specificity), as CUSSP reports them.
    """
    from sklearn import metrics as skm
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(y_score, dtype=float).ravel()
    p = (s >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, p, labels=[0, 1]).ravel()
    div = lambda a, b: float(a / b) if b else float("nan")
    both = len(np.unique(y)) == 2
    return dict(
        precision=float(skm.precision_score(y, p, zero_division=np.nan)),
        recall=float(skm.recall_score(y, p, zero_division=np.nan)),
        specificity=div(tn, tn + fp),
        f1=float(skm.f1_score(y, p, zero_division=np.nan)),
        roc_auc=float(skm.roc_auc_score(y, s)) if both else float("nan"),
        pr_auc=float(skm.average_precision_score(y, s)) if both else float("nan"),
        accuracy=float(skm.accuracy_score(y, p)),
        positive_accuracy=div(tp, tp + fn),
        negative_accuracy=div(tn, tn + fp),
    )


def _stratified_indices(y: np.ndarray, n_boot: int, seed) -> np.ndarray:
    """(n_boot, n) bootstrap indices resampling each class separately, so every resample has both classes."""
    g = _rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)]
    return np.concatenate([g.choice(ix, size=(n_boot, ix.size), replace=True) for ix in groups], axis=1)


def _mann_whitney(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """ROC-AUC per row of (B, n) labels and scores: the Mann-Whitney statistic with tie-averaged ranks."""
    pos = y.sum(1)
    return ((sps.rankdata(s, axis=1) * y).sum(1) - pos * (pos + 1) / 2) / (pos * (y.shape[1] - pos))


def _auc_rows(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC (Mann-Whitney with tie-averaged ranks) and average precision (sklearn's step rule) per row.

    Vectorised twin of sklearn's roc_auc_score / average_precision_score for (B, n) resamples: identical values
    (a test pins it), ~100x faster than calling sklearn in a loop.
    """
    pos = y.sum(1)
    auc = _mann_whitney(y, s)
    order = np.argsort(-s, axis=1, kind="stable")
    ss, yy = np.take_along_axis(s, order, 1), np.take_along_axis(y, order, 1)
    tp = np.cumsum(yy, axis=1)
    end = np.ones_like(ss, dtype=bool)
    end[:, :-1] = ss[:, 1:] != ss[:, :-1]  # last element of each group of tied scores = one threshold
    tp_end = np.where(end, tp, 0)
    prev = np.zeros_like(tp)
    prev[:, 1:] = np.maximum.accumulate(tp_end, axis=1)[:, :-1]
    prec = tp / np.arange(1, y.shape[1] + 1)
    ap = (end * (tp - prev) * prec).sum(1) / pos
    return auc, ap


def roc_auc(y, s) -> float:
    """ROC-AUC of scores `s` for 0/1 labels `y` (`_mann_whitney`): scikit-learn's value to rounding, without its
    per-call checks, for the bootstrap loops that call it thousands of times."""
    return float(_mann_whitney(np.asarray(y, dtype=int)[None], np.asarray(s, dtype=float)[None])[0])


def _metrics_rows(y: np.ndarray, s: np.ndarray, threshold: float) -> pd.DataFrame:
    """The metric set of `binary_metrics` for every row of (B, n) label/score resamples, vectorised."""
    p = s >= threshold
    tp, fp = (p & (y == 1)).sum(1), (p & (y == 0)).sum(1)
    fn, tn = (~p & (y == 1)).sum(1), (~p & (y == 0)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec, rec, spec = tp / (tp + fp), tp / (tp + fn), tn / (tn + fp)
        auc, ap = _auc_rows(y, s)
        return pd.DataFrame(dict(precision=prec, recall=rec, specificity=spec, f1=2 * tp / (2 * tp + fp + fn),
                                 roc_auc=auc, pr_auc=ap, accuracy=(tp + tn) / y.shape[1], positive_accuracy=rec,
                                 negative_accuracy=spec))


def paired_auc_difference(y, a, b, n_boot: int = 1000, seed=0, conf: float = 0.95) -> tuple[float, float, float]:
    """ROC-AUC of scores `a` minus that of `b` on the same units (labels `y`), with the percentile interval of a
    bootstrap resampling each class separately, both scores resampled together: (difference, low, high)."""
    y, a, b = (np.asarray(v) for v in (y, a, b))
    d = _auc_rows(y[None], a[None])[0] - _auc_rows(y[None], b[None])[0]
    idx = _stratified_indices(y, n_boot, seed)
    boots = _auc_rows(y[idx], a[idx])[0] - _auc_rows(y[idx], b[idx])[0]
    lo, hi = np.percentile(boots, [50 * (1 - conf), 50 * (1 + conf)])
    return float(d[0]), float(lo), float(hi)


def bootstrap_ci(boots: pd.DataFrame, conf: float = 0.95) -> pd.DataFrame:
    """Percentile CIs (ci_low, ci_high) of every column of a table of bootstrap replicates (NaNs ignored)."""
    q = (1 - conf) / 2
    return pd.DataFrame({"ci_low": boots.quantile(q), "ci_high": boots.quantile(1 - q)})


def classification_metrics(y_true, y_score, threshold: float = 0.5, n_boot: int = 1000, seed=0,
                           conf: float = 0.95) -> pd.DataFrame:
    """Binary metrics with percentile bootstrap CIs (subjects resampled, stratified by class, seeded).

    Rows: precision, recall (sensitivity), specificity, f1, roc_auc, pr_auc (average precision), accuracy,
    positive_accuracy, negative_accuracy; columns value (scikit-learn on all subjects), ci_low, ci_high.
    """
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(y_score, dtype=float).ravel()
    if y.shape != s.shape:
        raise StatsError(f"y_true and y_score differ in length: {y.size} vs {s.size}")
    if not set(np.unique(y)) <= {0, 1}:
        raise StatsError(f"y_true must be binary 0/1, got values {sorted(set(np.unique(y).tolist()))}")
    if len(np.unique(y)) < 2:
        raise StatsError(f"{int(y.sum())} positive and {int((y == 0).sum())} negative cases; metrics and a stratified "
                         "bootstrap need both classes")
    out = pd.DataFrame({"value": pd.Series(binary_metrics(y, s, threshold))})
    if n_boot:
        idx = _stratified_indices(y, n_boot, seed)
        out = out.join(bootstrap_ci(_metrics_rows(y[idx], s[idx], threshold), conf))
    else:
        out["ci_low"] = out["ci_high"] = np.nan
    return out.loc[list(METRICS)]


def f1_threshold(y_true, y_score) -> float:
    """The score threshold that maximises F1 (choose it on validation, apply it to test): the midpoint between the
    best-F1 score and the next lower one, so test scores equal to a validation score fall on the same side."""
    from sklearn.metrics import precision_recall_curve
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(y_score, dtype=float).ravel()
    if y.sum() == 0:
        raise StatsError("f1_threshold: no positive case to choose a threshold on")
    prec, rec, thr = precision_recall_curve(y, s)
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0)[:-1]
    best = thr[int(np.argmax(f1))]
    lower = s[s < best]
    return float((best + lower.max()) / 2) if lower.size else float(best)


def accuracy_threshold(y_true, y_score) -> float:
    """The score threshold that maximises accuracy (choose it on validation, apply it to test): the midpoint
    between neighbouring scores, ties going to the threshold nearest 0.5."""
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(y_score, dtype=float).ravel()
    if y.size == 0:
        raise StatsError("accuracy_threshold: no cases to choose a threshold on")
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    acc = np.array([np.mean((s >= t) == y) for t in cands])
    best = np.flatnonzero(acc == acc.max())
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])
