"""cmrlib.stats against hand-computed values, pingouin's bundled ICC example and scikit-learn."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as sps
from sklearn import metrics as skm

from cmrlib import stats as S


def anova_icc(x: np.ndarray) -> dict:
    """ICC(2,1) and ICC(3,1) (+ ICC(3,1)'s F-based CI) by hand from the two-way ANOVA mean squares of (n, k) data."""
    n, k = x.shape
    gm = x.mean()
    ssr = k * ((x.mean(1) - gm) ** 2).sum()
    ssc = n * ((x.mean(0) - gm) ** 2).sum()
    sse = ((x - gm) ** 2).sum() - ssr - ssc
    msr, msc, mse = ssr / (n - 1), ssc / (k - 1), sse / ((n - 1) * (k - 1))
    f = msr / mse
    fl = f / sps.f.ppf(0.975, n - 1, (n - 1) * (k - 1))
    fu = f * sps.f.ppf(0.975, (n - 1) * (k - 1), n - 1)
    return dict(icc2=(msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n),
                icc3=(msr - mse) / (msr + (k - 1) * mse),
                icc3_ci=((fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1)))


TINY = [
    (np.array([10.0, 12, 14, 16, 18]), np.array([11.0, 11, 15, 15, 20])),
    (np.array([50.0, 61, 58, 72, 66, 80]), np.array([48.0, 65, 55, 70, 70, 77])),  # no systematic bias
    (np.array([3.0, 5, 4, 8, 7, 6, 9]), np.array([1.0, 2, 2, 5, 5, 3, 6])),  # auto over-estimates by ~2.6
]


@pytest.mark.parametrize("auto,ref", TINY)
def test_icc_matches_hand_anova(auto, ref):
    hand = anova_icc(np.stack([auto, ref], 1))
    i2, i3 = S.icc(auto, ref), S.icc(auto, ref, form="ICC3")
    assert i2["icc"] == pytest.approx(hand["icc2"], abs=1e-10)
    assert i3["icc"] == pytest.approx(hand["icc3"], abs=1e-10)
    assert (i3["ci_low"], i3["ci_high"]) == pytest.approx(hand["icc3_ci"], abs=1e-10)  # full precision, not rounded
    assert i2["ci_low"] < i2["icc"] < i2["ci_high"]
    assert "absolute agreement" in i2["description"] and "consistency" in i3["description"]


def test_icc_bias_lowers_absolute_agreement_only():
    auto, ref = TINY[2]
    assert S.icc(auto, ref)["icc"] < S.icc(auto, ref, "ICC3")["icc"]
    assert S.icc(ref + 2.6, ref, "ICC3")["icc"] == pytest.approx(1.0)


def test_icc_on_pingouin_example_dataset():
    """pingouin's wine data (8 wines x 4 judges): its docs print ICC(A,1) = 0.728 and ICC(C,1) = 0.729."""
    wide = pg.read_dataset("icc").pivot(index="Wine", columns="Judge", values="Scores").to_numpy(float)
    hand = anova_icc(wide)
    i2, i3 = S.icc_wide(wide, "ICC2"), S.icc_wide(wide, "ICC3")
    assert i2["icc"] == pytest.approx(hand["icc2"], abs=1e-10) and round(i2["icc"], 3) == 0.728
    assert i3["icc"] == pytest.approx(hand["icc3"], abs=1e-10) and round(i3["icc"], 3) == 0.729
    assert (i3["ci_low"], i3["ci_high"]) == pytest.approx(hand["icc3_ci"], abs=1e-10)
    two = anova_icc(wide[:, :2])  # the two-rater path used for auto vs ref
    assert S.icc(wide[:, 0], wide[:, 1])["icc"] == pytest.approx(two["icc2"], abs=1e-10)


def test_icc_errors_and_nan_pairs():
    with pytest.raises(S.StatsError, match="unknown ICC form"):
        S.icc([1, 2, 3], [1, 2, 3], form="ICC9")
    with pytest.raises(S.StatsError, match="at least 3"):
        S.icc([1, 2, np.nan], [1, 2, 3])
    a, r = TINY[1]
    assert S.icc(np.r_[a, np.nan], np.r_[r, 5.0])["icc"] == pytest.approx(S.icc(a, r)["icc"])


def test_bland_altman_by_hand():
    auto, ref = TINY[0]  # differences auto - ref = [-1, 1, -1, 1, -2]
    ba = S.bland_altman(auto, ref)
    sd = np.sqrt(7.2 / 4)  # sum of squared deviations from -0.4 is 7.2
    t = sps.t.ppf(0.975, 4)
    assert ba["n"] == 5 and ba["bias"] == pytest.approx(-0.4) and ba["sd"] == pytest.approx(sd)
    assert ba["loa_low"] == pytest.approx(-0.4 - 1.96 * sd) and ba["loa_high"] == pytest.approx(-0.4 + 1.96 * sd)
    assert ba["bias_ci"] == pytest.approx((-0.4 - t * sd / np.sqrt(5), -0.4 + t * sd / np.sqrt(5)))
    se_loa = np.sqrt(3 * sd**2 / 5)
    assert ba["loa_high_ci"] == pytest.approx((ba["loa_high"] - t * se_loa, ba["loa_high"] + t * se_loa))
    assert ba["mean_auto"] == pytest.approx(14.0) and ba["mean_ref"] == pytest.approx(14.4)
    with pytest.raises(S.StatsError, match="differ in length"):
        S.bland_altman([1, 2], [1, 2, 3])


def test_regression_and_mean_ci():
    ref = np.arange(10.0)
    auto = 2 * ref + 1 + np.array([0.1, -0.1] * 5)
    rg = S.regression(auto, ref)
    slope, intercept = np.polyfit(ref, auto, 1)
    assert rg["slope"] == pytest.approx(slope) and rg["intercept"] == pytest.approx(intercept)
    assert rg["r"] == pytest.approx(np.corrcoef(auto, ref)[0, 1]) and rg["p"] < 1e-6 and rg["n"] == 10
    m, lo, hi = S.mean_ci([1.0, 2, 3, 4, np.nan])
    h = sps.t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    assert (m, lo, hi) == pytest.approx((2.5, 2.5 - h, 2.5 + h))


def test_agreement_table():
    g = np.random.default_rng(0)
    ref = g.normal(150, 30, 40)
    df = pd.DataFrame({"edv_ref": ref, "edv_auto": ref + g.normal(3, 5, 40), "ef_ref": g.normal(55, 8, 40)})
    df["ef_auto"] = df.ef_ref + g.normal(-1, 2, 40)
    df.loc[3, "ef_auto"] = np.nan
    tab = S.agreement_table(df, {"LVEDV": ("edv_auto", "edv_ref"), "LVEF": ("ef_auto", "ef_ref")},
                            units={"LVEDV": "mL", "LVEF": "%"})
    assert list(tab.index) == ["LVEDV", "LVEF"] and tab.loc["LVEF", "n"] == 39
    ba = S.bland_altman(df.edv_auto, df.edv_ref)
    assert tab.loc["LVEDV", "bias"] == pytest.approx(ba["bias"]) and tab.loc["LVEDV", "unit"] == "mL"
    assert tab.loc["LVEDV", "icc2"] == pytest.approx(S.icc(df.edv_auto, df.edv_ref)["icc"])
    assert tab.loc["LVEDV", "mae"] == pytest.approx(np.abs(df.edv_auto - df.edv_ref).mean())
    assert {"ref_str", "auto_str", "loa_str", "icc2_str", "icc3_str", "r"} <= set(tab.columns)
    with pytest.raises(S.StatsError, match="not in"):
        S.agreement_table(df, {"X": ("nope", "edv_ref")})


def scores(n=120, seed=1, ties=True):
    g = np.random.default_rng(seed)
    y = (g.random(n) < 0.2).astype(int)
    y[:2] = [0, 1]
    s = np.clip(0.35 * y + 0.8 * g.random(n), 0, 1)
    return y, (np.round(s, 1) if ties else s)


def test_metric_values_match_sklearn():
    y, s = scores()
    m = S.classification_metrics(y, s, threshold=0.4, n_boot=0)["value"]
    p = (s >= 0.4).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, p).ravel()
    assert m["precision"] == pytest.approx(skm.precision_score(y, p))
    assert m["recall"] == pytest.approx(skm.recall_score(y, p)) == pytest.approx(m["positive_accuracy"])
    assert m["specificity"] == pytest.approx(tn / (tn + fp)) == pytest.approx(m["negative_accuracy"])
    assert m["f1"] == pytest.approx(skm.f1_score(y, p))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, s))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p))


@pytest.mark.parametrize("ties", [True, False])
def test_vectorised_bootstrap_metrics_equal_sklearn(ties):
    """The fast per-resample metrics equal scikit-learn's on every resample (ties in scores included)."""
    y, s = scores(ties=ties)
    idx = S._stratified_indices(y, 25, seed=3)
    fast = S._metrics_rows(y[idx], s[idx], 0.5)
    slow = pd.DataFrame([S.binary_metrics(y[i], s[i], 0.5) for i in idx])
    pd.testing.assert_frame_equal(fast[slow.columns], slow, check_dtype=False, rtol=1e-10)


@pytest.mark.parametrize("ties", [True, False])
def test_the_loop_auc_is_sklearns_on_every_resample(ties):
    """`roc_auc`, which the bootstrap loops call thousands of times, gives scikit-learn's ROC-AUC (ties included)."""
    from sklearn.metrics import roc_auc_score

    y, s = scores(ties=ties)
    for i in S._stratified_indices(y, 25, seed=4):
        assert S.roc_auc(y[i], s[i]) == pytest.approx(roc_auc_score(y[i], s[i]), rel=1e-12, abs=1e-15)


def test_bootstrap_is_seeded_stratified_and_brackets_value():
    y, s = scores()
    a = S.classification_metrics(y, s, n_boot=300, seed=7)
    b = S.classification_metrics(y, s, n_boot=300, seed=7)
    c = S.classification_metrics(y, s, n_boot=300, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert list(a.index) == list(S.METRICS) and list(a.columns) == ["value", "ci_low", "ci_high"]
    assert (a.ci_low <= a.value + 1e-12).all() and (a.value <= a.ci_high + 1e-12).all()
    idx = S._stratified_indices(y, 50, seed=0)
    assert (y[idx].sum(1) == y.sum()).all()  # every resample keeps both classes, in their original counts


def test_classification_errors():
    with pytest.raises(S.StatsError, match="3 positive and 0 negative cases; .* need both classes"):
        S.classification_metrics([1, 1, 1], [0.2, 0.4, 0.9])
    with pytest.raises(S.StatsError, match="binary"):
        S.classification_metrics([0, 2, 1], [0.2, 0.4, 0.9])


def test_conformal_intervals_cover_new_patients_at_their_level():
    from cmrlib.stats import conformal_coverage, conformal_half_width, conformal_intervals

    r = np.arange(1.0, 21.0)  # |residuals| 1..20: the 90 % half-width is the ceil(21 * 0.9) = 19th smallest
    assert conformal_half_width(r, 0.9) == 19.0 and conformal_half_width(r[:5], 0.9) == float("inf")
    noise = np.random.default_rng(0).normal(0, 5, 400)
    assert 0.87 <= conformal_coverage(noise, 0.9) <= 0.93  # out of fold, each patient calibrated on the others
    df = pd.DataFrame(dict(EF_auto=50 + noise[:40], EF_ref=np.full(40, 50.0)))
    t = conformal_intervals(df, {"LVEF": ("EF_auto", "EF_ref")})
    assert t.loc["LVEF", "n"] == 40 and t.loc["LVEF", "half_width"] > 0
    failed = conformal_intervals(df.assign(EF_auto=np.where(np.arange(40) < 4, -np.inf, df.EF_auto)),
                                 {"LVEF": ("EF_auto", "EF_ref")}).loc["LVEF"]  # 4 failed measures: counted, uncovered
    assert failed.n == 40 and failed.half_width > t.loc["LVEF", "half_width"] and failed.coverage <= 0.9
    three = df.head(3).assign(EF_auto=[-np.inf, 50.0, 51.0])  # a failed measure is a complete pair that counts
    assert conformal_intervals(three, {"LVEF": ("EF_auto", "EF_ref")}).loc["LVEF", "n"] == 3
    with pytest.raises(S.StatsError, match="LVEF: need at least 3 complete pairs, got 2"):
        conformal_intervals(three.assign(EF_ref=[50.0, np.nan, 50.0]), {"LVEF": ("EF_auto", "EF_ref")})


def test_conformal_coverage_across_groups_calibrates_each_group_on_the_others():
    from cmrlib.stats import conformal_cross_coverage, conformal_intervals

    a, b = np.arange(1.0, 11.0), np.arange(1.0, 11.0) * 3  # b's errors are three times a's
    assert conformal_cross_coverage([a, a], 0.9) == 1.0
    assert conformal_cross_coverage([a, b], 0.9) == pytest.approx(13 / 20)  # a all held by b's 30; b held to 10
    df = pd.DataFrame(dict(x_auto=np.r_[a, b], x_ref=0.0, split=["valid"] * 10 + ["test"] * 10))
    t = conformal_intervals(df, {"X": ("x_auto", "x_ref")}, by="split")
    assert t.loc["X", "coverage_across"] == pytest.approx(13 / 20) and t.loc["X", "n"] == 20


def test_paired_auc_difference_is_sklearns_difference_with_a_stratified_interval():
    """The estimate is the difference of the two ROC-AUCs; the interval holds it; a score against itself is 0."""
    from sklearn.metrics import roc_auc_score

    g = np.random.default_rng(0)
    y = np.r_[np.zeros(30), np.ones(25)].astype(int)
    a, b = y + g.normal(0, 1, 55), y + g.normal(0, 2, 55)
    d, lo, hi = S.paired_auc_difference(y, a, b, 300, seed=0)
    assert d == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b)) and lo <= d <= hi
    assert S.paired_auc_difference(y, a, a, 50, seed=0) == (0.0, 0.0, 0.0)


def test_coverage_by_group_shows_where_one_interval_width_fails():
    """Each patient's interval calibrated on the others: a group whose errors are three times the rest is covered
    less, with a binomial interval per group."""
    import numpy as np
    import pandas as pd

    from cmrlib.stats import coverage_by

    rng = np.random.default_rng(0)
    d = pd.DataFrame(dict(a=rng.normal(size=60), r=0.0, fold=np.arange(60) % 5, group=np.repeat(list("ABC"), 20)))
    d.loc[d.group == "C", "a"] *= 3
    t = coverage_by(d, {"X": ("a", "r")}, ["fold", "group"]).set_index(["by", "group"])
    assert t.loc[("group", "C"), "coverage"] < t.loc[("group", "A"), "coverage"] == 1.0
    assert (t.low <= t.coverage).all() and (t.coverage <= t.high).all() and t.loc["fold"].n.sum() == 60


def test_a_width_in_proportion_to_the_value_is_chosen_where_errors_grow_with_it_and_scored_out_of_fold():
    """Volumes whose errors grow with the volume (DCM's large hearts): one width for every patient under-covers the
    largest hearts, a width in proportion to the value covers each diagnosis near the level, and the procedure that
    chooses between them on the other folds is scored on each fold; where errors do not grow with the value the
    plain width stays (ties keep it)."""
    from cmrlib.stats import chosen_scale, interval_scaling, scaled_errors

    rng = np.random.default_rng(0)
    group = np.repeat(["NOR", "HCM", "DCM"], 40)
    volume = np.where(group == "DCM", 300.0, np.where(group == "HCM", 90.0, 150.0)) * rng.uniform(0.8, 1.2, 120)
    auto = volume * (1 + rng.normal(0, 0.08, 120))  # an 8 % error: 24 mL on a DCM heart, 7 mL on an HCM one
    d = pd.DataFrame(dict(a=auto, r=volume, group=group, fold=np.arange(120) % 5))
    assert chosen_scale(d.a, d.r, d.group) == "value"
    scales, across, t = interval_scaling(d, {"LVEDV": ("a", "r")})
    assert scales == {"LVEDV": "value"} and 0.83 <= across["LVEDV"] <= 0.97
    t = t.set_index(["scale", "group"])
    assert t.loc[("none", "DCM"), "coverage"] < 0.8 < t.loc[("value", "DCM"), "coverage"]
    assert t.loc[("procedure, out of fold", "DCM"), "coverage"] > t.loc[("none", "DCM"), "coverage"]
    assert t.loc[("value", "all"), "shipped"] and not t.loc[("none", "all"), "shipped"]
    assert t.loc[("procedure, out of fold", "all"), "folds_chose"] == "0: value, 1: value, 2: value, 3: value, 4: value"
    assert (t.low <= t.coverage).all() and (t.coverage <= t.high).all() and t.loc[("none", "all"), "n"] == 120
    flat = d.assign(a=d.r + rng.normal(0, 10, 120))  # the same 10 mL error on every heart
    assert chosen_scale(flat.a, flat.r, flat.group) == "none"
    assert scaled_errors([0.0, 50.0], [10.0, 40.0], "value").tolist() == [np.inf, 0.2]  # a failed measure never fits
    failed = d.assign(a=np.where(np.arange(120) < 12, 0.0, d.a))  # 12 volumes of 0: a proportional width is infinite
    assert chosen_scale(failed.a, failed.r, failed.group) == "none"


def test_a_width_in_proportion_to_the_segmenters_entropy_is_chosen_where_errors_follow_it():
    """LVEF errors that follow the segmenter's uncertainty, not the value (a diagnosis whose hearts the model is
    unsure of errs more at every EF): one width and a width in proportion to the value both under-cover the unsure
    diagnosis, a width in proportion to the patient's entropy covers it, and the procedure picks it on every fold;
    where the entropy says nothing about the error the plain width stays; without a spread column the entropy scale
    is never tried, and a missing spread never fits."""
    from cmrlib.stats import chosen_scale, conformal_intervals, coverage_by, interval_scaling, scaled_errors

    rng = np.random.default_rng(1)
    group = np.repeat(["NOR", "HCM", "MINF"], 40)
    ef = rng.uniform(30, 70, 120)
    unsure = np.where(group == "MINF", 0.30, 0.10) * rng.uniform(0.8, 1.2, 120)  # mean entropy inside the LV
    auto = ef + rng.normal(0, 1, 120) * unsure * 30  # 9 points of spread where unsure, 3 elsewhere
    d = pd.DataFrame(dict(a=auto, r=ef, group=group, fold=np.arange(120) % 5, s=unsure))
    assert chosen_scale(d.a, d.r, d.group, spread=d.s) == "entropy"
    assert chosen_scale(d.a, d.r, d.group) in ("none", "value")  # no spread: not tried
    scales, across, t = interval_scaling(d, {"LVEF": ("a", "r")}, spreads={"LVEF": "s"})
    assert scales == {"LVEF": "entropy"} and 0.83 <= across["LVEF"] <= 0.97
    t = t.set_index(["scale", "group"])
    assert max(t.loc[("none", "MINF"), "coverage"], t.loc[("value", "MINF"), "coverage"]) < 0.8
    assert t.loc[("entropy", "MINF"), "coverage"] > 0.8 and t.loc[("entropy", "all"), "shipped"]
    assert t.loc[("procedure, out of fold", "all"), "folds_chose"].count("entropy") == 5
    row = conformal_intervals(d, {"LVEF": ("a", "r")}, scales=scales, spreads={"LVEF": "s"}).loc["LVEF"]
    assert row.scale == "entropy" and 20 < row.half_width < 60  # points per unit of entropy
    cover = coverage_by(d, {"LVEF": ("a", "r")}, ["group"], scales=scales, spreads={"LVEF": "s"}).set_index("group")
    assert cover.loc["MINF", "coverage"] > 0.8
    blind = d.assign(a=d.r + rng.normal(0, 5, 120))  # the same error whatever the entropy
    assert chosen_scale(blind.a, blind.r, blind.group, spread=blind.s) == "none"
    assert scaled_errors([50.0, 60.0], [40.0, 40.0], "entropy", [np.nan, 0.2]).tolist() == [np.inf, 100.0]
    assert np.isinf(scaled_errors([50.0], [40.0], "entropy")).all()  # no spread at all: no width holds it


def test_a_failed_measure_counts_as_the_largest_error_not_as_a_missing_one():
    from cmrlib.stats import conformal_half_width

    errors = np.r_[np.arange(1.0, 19.0), np.inf, np.nan]  # 19 patients measured, the last a failure
    assert conformal_half_width(errors, 0.9) == 18.0 and conformal_half_width(errors, 0.95) == float("inf")


def test_the_bootstrap_mean_interval_holds_the_mean_and_is_seeded():
    import numpy as np

    from cmrlib.stats import mean_bootstrap

    x = np.r_[np.linspace(0.8, 0.9, 30), np.nan]
    m, lo, hi = mean_bootstrap(x, seed=3)
    assert lo < m == np.nanmean(x) < hi and (m, lo, hi) == mean_bootstrap(x, seed=3)
    assert np.isnan(mean_bootstrap([0.5], seed=0)[1])  # one unit: no interval
