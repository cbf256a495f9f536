"""Subject clustering and embeddings as in HeartMAE section 4.5 (notebook 08): atrial fibrillation against healthy
subjects in equal numbers, agglomerative clustering of subject features raw and sex-adjusted, agreement of the
clusters with disease and sex (adjusted Rand index), UMAP of every subject."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..stats import not_testable
from ..utils import rng as _rng

__all__ = ["ClusterError", "balanced_subset", "standardise", "sex_adjust", "adjust", "choose_k", "cluster",
           "rand_indices", "ari_figure", "permutation_ari", "read_real", "real_diagnoses", "learned_p", "real_figure",
           "two_cluster_test", "clustermap", "embed", "embedding_figure"]


class ClusterError(ValueError):
    """Too few subjects or features to cluster."""


def balanced_subset(subjects: pd.DataFrame, case: str, control: str, seed, min_per_group: int = 3) -> pd.DataFrame:
    """Every subject with `case` True and as many `control` subjects drawn at random (one row per subject).

    `subjects` has one row per subject with boolean columns `case` and `control`; the draw follows `seed`."""
    cases = subjects[subjects[case].astype(bool)]
    controls = subjects[subjects[control].astype(bool) & ~subjects[case].astype(bool)]
    n = min(len(cases), len(controls))
    if n < min_per_group:
        raise ClusterError(f"{len(cases)} {case} and {len(controls)} {control} subjects: fewer than "
                           f"{min_per_group} in a group")
    pick = lambda d: d.iloc[np.sort(_rng(seed).choice(len(d), n, replace=False))]
    return pd.concat([pick(cases), pick(controls)]).sort_values("subject").reset_index(drop=True)


def standardise(features: pd.DataFrame) -> pd.DataFrame:
    """Each feature centred and scaled to unit SD; constant or incomplete features dropped."""
    f = features.dropna(axis=1)
    sd = f.std(ddof=0)
    f = f.loc[:, sd > 1e-12]
    return (f - f.mean()) / f.std(ddof=0)


def sex_adjust(features: pd.DataFrame, sex: Sequence) -> pd.DataFrame:
    """Each feature's residual after a least-squares fit on sex (HeartMAE's adjustment), re-standardised."""
    return adjust(features, (np.asarray(sex) == np.asarray(sex)[0]).astype(float))


def adjust(features: pd.DataFrame, covariate: Sequence[float]) -> pd.DataFrame:
    """Each feature's residual after a least-squares fit on one numeric covariate (sex as 0/1, BSA in m2),
    re-standardised; a constant covariate leaves the features standardised only."""
    from sklearn.linear_model import LinearRegression

    x = np.asarray(covariate, dtype=float)[:, None]
    if x.min() == x.max():
        return standardise(features)
    res = features - LinearRegression().fit(x, features.to_numpy()).predict(x)
    return standardise(pd.DataFrame(res, index=features.index, columns=features.columns))


def choose_k(x: np.ndarray, ks: Sequence[int] = (2, 3, 4, 5, 6)) -> tuple[int, pd.DataFrame]:
    """The number of clusters with the best mean silhouette (Ward linkage), and the silhouette of every k tried."""
    from sklearn.metrics import silhouette_score

    ks = [k for k in ks if 2 <= k < len(x)]
    if not ks:
        raise ClusterError(f"{len(x)} subjects: too few to compare cluster counts")
    sil = pd.DataFrame({"k": ks, "silhouette": [silhouette_score(x, cluster(x, k)) for k in ks]})
    return int(sil.loc[sil["silhouette"].idxmax(), "k"]), sil


def cluster(x: np.ndarray, k: int) -> np.ndarray:
    """Agglomerative (Ward) cluster labels, numbered by size (0 = largest) so runs compare."""
    from sklearn.cluster import AgglomerativeClustering

    lab = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(np.asarray(x))
    order = {c: i for i, c in enumerate(pd.Series(lab).value_counts().sort_index().sort_values(
        ascending=False, kind="stable").index)}
    return np.array([order[c] for c in lab])


def rand_indices(labels: np.ndarray, truths: Mapping[str, Sequence]) -> dict[str, float]:
    """Adjusted Rand index of the cluster labels against each named grouping (1 = the same partition, 0 = chance)."""
    from sklearn.metrics import adjusted_rand_score

    return {f"ARI vs {k}": float(adjusted_rand_score(np.asarray(v).astype(str), labels)) for k, v in truths.items()}


def permutation_ari(labels: np.ndarray, truth: Sequence, seed, n_perm: int = 1000) -> dict[str, float]:
    """The clusters' ARI against `truth`, and its null: the ARI against `n_perm` random relabellings of the
    subjects (the same group sizes). p = (1 + relabellings at least as high) / (1 + n_perm)."""
    from sklearn.metrics import adjusted_rand_score

    t = np.asarray(truth).astype(str)
    ari = float(adjusted_rand_score(t, labels))
    g = _rng(seed)
    null = np.array([adjusted_rand_score(g.permutation(t), labels) for _ in range(n_perm)])
    return dict(ARI=ari, null_95=float(np.quantile(null, 0.95)), p=float((1 + (null >= ari).sum()) / (1 + n_perm)))


def read_real(run_dir) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The real patients' feature sets and their diagnosis and BSA, as notebook 06 wrote them; `StudySkipped`
    when it did not (no real cohort under the data root, or 06 has not run)."""
    from pathlib import Path

    from ..study import StudySkipped

    files = sorted((Path(run_dir) / "06").glob("real_subject_features_*.csv"))
    subjects = Path(run_dir) / "06" / "real_subjects.csv"
    if not files or not subjects.exists():
        raise StudySkipped("no real patients' features in 06/: notebook 06 writes them when the data root holds "
                           "acdc-cine/")
    sets = {f.stem.removeprefix("real_subject_features_"): pd.read_csv(f, dtype={"subject": str}).set_index("subject")
            for f in files}
    return sets, pd.read_csv(subjects, dtype={"subject": str})


def real_diagnoses(feature_sets: Mapping[str, pd.DataFrame], subjects: pd.DataFrame, ks: Sequence[int], seed,
                   n_perm: int = 1000) -> pd.DataFrame:
    """Each feature set of the real patients clustered raw and adjusted for BSA (Ward, k by silhouette), its ARI
    against the diagnosis (`subjects`: subject, group, bsa_m2) with the permutation null; a set too small to
    cluster gets a row whose note says why."""
    subj = subjects.set_index("subject")
    rows = []
    for name, feats in feature_sets.items():
        f = feats.reindex(subj.index).dropna(axis=1, how="all")
        keep = f.notna().all(axis=1) & subj.bsa_m2.notna()
        f, s = f[keep], subj[keep]
        for adj, x in (("raw", standardise(f)), ("BSA-adjusted", adjust(f.dropna(axis=1), s.bsa_m2))):
            try:
                k, _ = choose_k(x.to_numpy(), ks)
            except ClusterError as e:
                rows.append(dict(features=name, adjustment=adj, n=len(x), note=not_testable(e)))
                continue
            res = permutation_ari(cluster(x.to_numpy(), k), s.group, seed, n_perm)
            rows.append(dict(features=name, adjustment=adj, n=len(x), k=k, **res, note=""))
    return pd.DataFrame(rows, columns=["features", "adjustment", "n", "k", "ARI", "null_95", "p", "note"])


LEARNED_NOT = ("random", "expert")  # the real feature sets that learned nothing (a random encoder) or no features


def learned_p(table: pd.DataFrame) -> float:
    """The smallest permutation p of a learned feature set (the MAE family) against diagnosis, raw or adjusted,
    Bonferroni-corrected for the rows it is the smallest of (at most 1)."""
    learned = table[~table["features"].isin(LEARNED_NOT)]
    tested = learned["p"].dropna()
    return float(min(1.0, tested.min() * len(tested))) if len(tested) else float("nan")


CAPTIONS = {  # figure name -> its caption, beside the drawings (`{...}`: filled by the step that draws it)
    "08_rand_indices": ("adjusted Rand index of each feature set's clusters against {cases} and against sex, raw and "
                        "sex-adjusted"),
    "08_clustermap": "clustered heat map of the {features} ({adjusted}) with disease, sex, age and LAEF tracks",
    "08_laef_clusters": "LAEF in the two main sex-adjusted clusters, by disease",
    "08_umap": "UMAP of the {features} coloured by sex, LV mass and disease",
    "08_real_diagnoses": ("ARI of each feature set's clusters against ACDC's five diagnoses, raw and BSA-adjusted, "
                          "beside the 95th percentile of its permutation null"),
}


def real_figure(table: pd.DataFrame) -> Figure:
    """ARI against diagnosis per feature set, raw and BSA-adjusted, beside the 95th percentile of its permutation
    null (a bar above its tick is a grouping by diagnosis chance would rarely give)."""
    d = table.dropna(subset=["ARI"])
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * d["features"].nunique() + 1.4))
    names = list(dict.fromkeys(d["features"]))
    for j, (adj, colour) in enumerate((("raw", "tab:blue"), ("BSA-adjusted", "tab:orange"))):
        e = d[d["adjustment"] == adj].set_index("features").reindex(names)
        y = np.arange(len(names)) + (j - 0.5) * 0.36
        ax.barh(y, e["ARI"], height=0.34, color=colour, label=adj)
        ax.plot(e["null_95"], y, "k|", ms=9, label="permutation null, 95th percentile" if j == 0 else None)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set(xlabel="ARI of the clusters against ACDC's five diagnoses")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def ari_figure(table: pd.DataFrame) -> Figure:
    """The `rand_indices` table as bars: each feature set's clusters against disease and sex, raw and sex-adjusted
    (the paper's claim is a sex-adjusted bar against disease well above zero)."""
    long = table.melt(id_vars=["features", "adjustment"], value_vars=[c for c in table if c.startswith("ARI")],
                      var_name="against", value_name="ARI")
    g = sns.catplot(long, x="against", y="ARI", hue="adjustment", col="features", col_wrap=3, kind="bar", height=2.6,
                    aspect=1.2)
    g.set_titles("{col_name}")
    return g.figure


def two_cluster_test(values: Sequence[float], labels: np.ndarray) -> dict:
    """Mann-Whitney U of a measure between the two largest clusters (pingouin), with each cluster's median; clusters
    of fewer than two measured subjects give a row whose `note` says the test was not possible."""
    import pingouin as pg

    v, lab = np.asarray(values, dtype=float), np.asarray(labels)
    a, b = v[(lab == 0) & np.isfinite(v)], v[(lab == 1) & np.isfinite(v)]
    med = lambda x: float(np.median(x)) if len(x) else float("nan")
    row = dict(n0=len(a), n1=len(b), median0=med(a), median1=med(b), U=float("nan"), p=float("nan"), note="")
    if len(a) < 2 or len(b) < 2:
        return dict(row, note=not_testable(f"clusters of {len(a)} and {len(b)} measured subjects (a rank test needs "
                                           "2 in each)"))
    t = pg.mwu(a, b, alternative="two-sided")
    return dict(row, U=float(t["U_val"].iloc[0] if "U_val" in t else t["U-val"].iloc[0]),
                p=float(t["p_val"].iloc[0] if "p_val" in t else t["p-val"].iloc[0]))


def clustermap(features: pd.DataFrame, tracks: pd.DataFrame, title: str) -> Figure:
    """Clustered heat map (Ward) of subjects x features with annotation tracks (categorical or numeric columns)."""
    colours, legends = pd.DataFrame(index=features.index), []
    for col in tracks.columns:
        t = tracks[col].reindex(features.index)
        if pd.api.types.is_numeric_dtype(t) and t.nunique() > 6:
            norm = (t - t.min()) / (t.max() - t.min() or 1)
            colours[col] = [plt.cm.magma(v) if np.isfinite(v) else (0.8, 0.8, 0.8, 1) for v in norm]
        else:
            cats = sorted(t.astype(str).unique())
            pal = dict(zip(cats, sns.color_palette("Set2" if len(legends) % 2 else "Set1", len(cats)), strict=True))
            colours[col] = t.astype(str).map(pal)
            legends.append((col, pal))
    g = sns.clustermap(features.T, method="ward", col_colors=colours, cmap="vlag", center=0, vmin=-3, vmax=3,
                       xticklabels=False, yticklabels=True, figsize=(9, 0.18 * features.shape[1] + 4),
                       dendrogram_ratio=(0.08, 0.15), cbar_kws=dict(label="z"))
    g.ax_heatmap.tick_params(axis="y", labelsize=6)
    handles = [plt.Line2D([], [], marker="s", ls="", color=c, label=f"{col}: {k}") for col, pal in legends
               for k, c in pal.items()]
    g.ax_heatmap.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, -0.02), fontsize=6, frameon=False)
    g.figure.suptitle(title, fontsize=10, y=1.0)
    return g.figure


def embed(x: np.ndarray, seed: int, n_neighbors: int = 15) -> np.ndarray:
    """2-D UMAP embedding of standardised features (umap-learn; neighbours capped by the number of subjects)."""
    import umap

    n = len(x)
    if n < 4:
        raise ClusterError(f"{n} subjects: too few for an embedding")
    return umap.UMAP(n_neighbors=min(n_neighbors, n - 1), random_state=int(seed), n_jobs=1).fit_transform(x)


def embedding_figure(xy: np.ndarray, colour_by: Mapping[str, Sequence], title: str) -> Figure:
    """One UMAP panel per colouring (categorical: legend; numeric: colour bar)."""
    fig, axes = plt.subplots(1, len(colour_by), figsize=(4.2 * len(colour_by), 3.8), squeeze=False,
                             constrained_layout=True)
    for ax, (name, v) in zip(axes[0], colour_by.items(), strict=True):
        v = pd.Series(list(v))
        if pd.api.types.is_numeric_dtype(v) and v.nunique() > 6:
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=v, s=14, cmap="viridis")
            fig.colorbar(sc, ax=ax, label=name)
        else:
            sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=v.astype(str), s=18, ax=ax, palette="Set1")
            ax.legend(title=name, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{title}: {name}", fontsize=9)
    return fig


def laef_figure(tracks: pd.DataFrame, test: pd.Series) -> Figure:
    """LAEF by cluster (`tracks`: LAEF, disease and cluster per subject) and disease, titled with the two clusters'
    Mann-Whitney test (`two_cluster_test`) or its note."""
    fig, ax = plt.subplots(figsize=(4, 3.5), constrained_layout=True)
    laef = tracks.dropna(subset=["LAEF"])  # a subject whose LA was not found
    if len(laef):
        sns.boxplot(data=laef, x="cluster", y="LAEF", hue="disease", ax=ax)
    else:
        ax.text(0.5, 0.5, "no subject with a measured LAEF", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="cluster (sex-adjusted, k = 2)", ylabel="LAEF (%)")
    ax.set_title(test["note"] or f"Mann-Whitney U p = {test['p']:.3g}", fontsize=9)
    return fig
