"""Notebook 08's steps: HeartMAE's section 4.5 on the run's subjects (a condition against healthy subjects in equal
numbers, each feature set clustered raw and sex-adjusted, the clusters against disease and sex, LAEF across the two
main clusters, a UMAP), and the real patients' feature sets clustered against ACDC's diagnoses."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import matplotlib.pyplot as plt
import pandas as pd

from ..results import Target
from ..stats import not_testable
from ..study import Study
from ..utils import seed_for
from . import clusters as cl

SEGMENTATION = "segmentation measures"
PREFERRED = "HeartMAE"  # the feature set of the paper's figures when notebook 06 wrote it


def clustered(ari: pd.DataFrame) -> bool:
    """Whether any feature set was clustered (an ARI table of notes only has nothing to draw)."""
    return bool(ari["ARI vs sex"].notna().any())


@dataclass(frozen=True)
class Cases:
    """The subjects clustered (the case and healthy ones), the case's flag and its name in the tables."""

    chosen: pd.DataFrame
    case: str
    name: str


@dataclass(frozen=True)
class FeatureSets:
    """The segmentation measures of the subjects measured, every feature set by name, those subjects (indexed),
    their tracks and the feature set the figures show."""

    auto: pd.DataFrame
    sets: dict
    chosen: pd.DataFrame
    tracks: pd.DataFrame
    first: str


class Clustering(Study):
    """Notebook 08: one step per cell, its named pieces shared as cached properties (`outline()` lists both)."""

    method = "clustering"
    number = "08"
    CAPTIONS = cl.CAPTIONS
    GLANCE = dict(method="clustering", headline="ARI of the clusters; learned features vs diagnosis",
                  paper="– (AF split after sex adjustment)",
                  phantom=[["ARI vs sex, adjusted minus raw", "ARI vs sex, adjusted minus raw"]],
                  real=[["smallest learned p (Bonferroni)", "real patients: smallest permutation p*"]])
    PARAMS: ClassVar[dict] = {
        **Study.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "case": "af",                # the condition flag clustered against healthy subjects
        "ks": [2, 3, 4, 5, 6],       # cluster counts compared by silhouette
        "min_per_group": 3,          # fewer cases than this: every diseased subject is clustered against healthy ones
        "n_perm": 1000,              # relabellings of the real patients' diagnoses for the ARI's permutation null
        "threads": 1,                # torch CPU threads for the segmentation
    }

    @cached_property
    def cases(self) -> Cases:
        """Every `case` subject and as many healthy ones drawn with the run's seed (every diseased subject when
        there are too few)."""
        p = self.p
        s = self.store.manifest().drop_duplicates("subject").reset_index(drop=True)
        s["healthy"] = s["condition"] == "healthy"
        s["diseased"] = ~s["healthy"]
        seed = seed_for(p["seed"], "08", "subset")
        case, name = p["case"], str(p["case"]).upper()
        try:
            chosen = cl.balanced_subset(s, case, "healthy", seed, p["min_per_group"])
        except cl.ClusterError as e:
            print(f"{e}: clustering every diseased subject against healthy ones instead")
            chosen = cl.balanced_subset(s, "diseased", "healthy", seed, 1)
            case, name = "diseased", "any condition"
        chosen["disease"] = chosen[case].map({True: name, False: "healthy"})
        return Cases(chosen, case, name)

    def subjects(self) -> pd.DataFrame:
        """The chosen subjects by disease and sex."""
        return self.cases.chosen.groupby(["disease", "sex"]).size().unstack(fill_value=0)

    @cached_property
    def feature_sets(self) -> FeatureSets:
        """The segmentation Predictor's Table-1 measures of the chosen subjects (a SAX stack at its ED and ES, 2CH
        and 4CH at every frame, as notebook 04's) and each HeartMAE-family model's subject features from notebook
        06, the subjects measured, their tracks (disease, sex, age, LAEF) and the set the figures show."""
        with self.nb.timer("Table-1 measures"):  # notebook 06's expert features segmented them: read, not redone
            meas = self.table1_measures(self.store, self.cases.chosen["subject"])
        auto = meas.drop(columns="error_auto", errors="ignore").rename(columns=lambda c: c.removesuffix("_auto"))
        sets = {SEGMENTATION: auto}
        for f in sorted((self.nb.run_dir / "06").glob("subject_features_*.csv")):
            sets[f.stem.removeprefix("subject_features_")] = pd.read_csv(f).set_index("subject")
        c = self.cases.chosen.set_index("subject").loc[auto.index]
        tracks = pd.DataFrame({"disease": c["disease"], "sex": c["sex"], "age": c["age"], "LAEF": auto.get("LAEF")})
        return FeatureSets(auto, sets, c, tracks, PREFERRED if PREFERRED in sets else next(iter(sets)))

    def features(self) -> dict[str, tuple]:
        """Each feature set's shape."""
        return {k: v.shape for k, v in self.feature_sets.sets.items()}

    def _adjusted(self, name: str, adjustment: str) -> pd.DataFrame:
        fs = self.feature_sets
        feats = fs.sets[name].reindex(fs.chosen.index)
        return cl.standardise(feats) if adjustment == "raw" else cl.sex_adjust(feats.dropna(axis=1), fs.chosen["sex"])

    @cached_property
    def ari(self) -> pd.DataFrame:
        """Each feature set raw and sex-adjusted: the cluster count with the best silhouette and the ARI against
        disease and sex (written, with every silhouette)."""
        rows, sil_rows = [], []
        fs, name_ = self.feature_sets, self.cases.name
        truths = {name_: fs.chosen["disease"], "sex": fs.chosen["sex"]}
        for name in fs.sets:
            for adj in ("raw", "sex-adjusted"):
                x = self._adjusted(name, adj).to_numpy()
                try:
                    k, sil = cl.choose_k(x, self.p["ks"])
                except cl.ClusterError as e:  # too few subjects: the row says so
                    rows.append(dict(features=name, adjustment=adj, note=not_testable(e)))
                    continue
                sil_rows.append(sil.assign(features=name, adjustment=adj))
                rows.append(dict(features=name, adjustment=adj, k=k, silhouette=sil["silhouette"].max(),
                                 **cl.rand_indices(cl.cluster(x, k), truths), note=""))
        ari = pd.DataFrame(rows).reindex(columns=["features", "adjustment", "k", "silhouette", f"ARI vs {name_}",
                                                  "ARI vs sex", "note"])
        self.nb.table(ari, "rand_indices")
        self.nb.table(pd.concat(sil_rows, ignore_index=True) if sil_rows else
                      pd.DataFrame(columns=["k", "silhouette"]), "silhouette")
        return ari

    def clusters(self) -> pd.DataFrame:
        """The clusters' ARI against disease and sex, with the figure."""
        if clustered(self.ari):
            self.figure(cl.ari_figure(self.ari), "08_rand_indices", cases=self.cases.name)
        return self.ari

    def clustermaps(self) -> None:
        """The paper's Fig. 3, S2 and S3: clustered heat maps of the first feature set, raw and sex-adjusted."""
        fs = self.feature_sets
        for adj in ("raw", "sex-adjusted") if len(fs.chosen) >= 3 else ():
            fig = cl.clustermap(self._adjusted(fs.first, adj), fs.tracks,
                                f"{fs.first}, {adj}: {self.cases.name} and healthy subjects")
            self.figure(fig, f"08_clustermap_{adj.split('-')[0]}", "08_clustermap", features=fs.first, adjusted=adj)
            plt.show()

    def laef(self) -> pd.DataFrame:
        """LAEF in the two main sex-adjusted clusters: a Mann-Whitney U test and the figure (written)."""
        fs = self.feature_sets
        x = self._adjusted(fs.first, "sex-adjusted").to_numpy()
        two = cl.cluster(x, 2) if len(x) >= 2 else [0] * len(x)
        test = pd.DataFrame([cl.two_cluster_test(fs.tracks["LAEF"], two)])  # its note: a cluster too small
        self.nb.table(test, "laef_clusters")
        self.figure(cl.laef_figure(fs.tracks.assign(cluster=two), test.iloc[0]), "08_laef_clusters")
        return test

    def umap(self) -> None:
        """A UMAP of the first feature set coloured by sex, LV mass and disease (skipped, with why, when too few)."""
        fs = self.feature_sets
        x = self._adjusted(fs.first, "raw")
        try:
            xy = cl.embed(x.to_numpy(), seed_for(self.p["seed"], "08", "umap"))
        except cl.ClusterError as e:
            print(f"UMAP skipped: {e}")
            return
        fig = cl.embedding_figure(xy, {"sex": fs.chosen["sex"], "LV mass (g)": fs.auto["LVM"].to_numpy(),
                                       "disease": fs.chosen["disease"]}, fs.first)
        self.figure(fig, "08_umap", features=fs.first)

    @cached_property
    def real_ari(self) -> pd.DataFrame:
        """The real patients' feature sets (notebook 06) clustered against ACDC's diagnoses, raw and BSA-adjusted,
        with the permutation null (written); `StudySkipped` when 06 wrote none."""
        sets, subjects = cl.read_real(self.nb.run_dir)
        p = self.p
        real_ari = cl.real_diagnoses(sets, subjects, p["ks"], seed_for(p["seed"], "08", "real"), p["n_perm"])
        self.nb.table(real_ari, "real_ari")
        return real_ari

    def real_patients(self) -> pd.DataFrame:
        """The real patients' clusters against ACDC's diagnoses, with the figure."""
        self.figure(cl.real_figure(self.real_ari), "08_real_diagnoses")
        return self.real_ari

    PAPER_FIGURES = ("08_rand_indices",)

    @classmethod
    def paper_figures(cls, run_dir):
        """The clusters' ARI against disease and sex, raw and sex-adjusted, per feature set."""
        if (f := run_dir / "08" / "rand_indices.csv").exists() and clustered(ari := pd.read_csv(f)):
            yield "08_rand_indices", cl.ari_figure(ari)

    def headline_tables(self):
        """The clusters against disease and sex, and the real patients' against diagnosis."""
        yield "rand_indices", f"clusters ({self.cases.name} against healthy): adjusted Rand index", None
        if self.optional("real_ari") is not None:
            yield "real_ari", "real patients' clusters against ACDC's diagnoses (ARI, permutation null)", None

    def checks(self) -> pd.DataFrame:
        """Every feature set clustered raw and adjusted, the sex adjustment lowering the ARI against sex, and on
        the real patients a learned feature set's clusters beyond the null."""
        ari, fs = self.ari, self.feature_sets
        first = ari[ari["features"] == fs.first].set_index("adjustment")["ARI vs sex"]
        first = first.reindex(["raw", "sex-adjusted"])
        real = self.optional("real_ari")
        return self.targets([
            ("feature sets clustered raw and adjusted", int(ari["k"].notna().sum()), ">=", 2 * len(fs.sets)),
            ("ARI vs sex, adjusted minus raw", first["sex-adjusted"] - first["raw"], "<=", 0.0),
            *([] if real is None else [self._real_target(real)])])

    def _real_target(self, real: pd.DataFrame) -> Target:
        """The smallest permutation p of a learned feature set against diagnosis, Bonferroni-corrected, with the
        patients it stands on and the test named."""
        learned = real[~real["features"].isin(cl.LEARNED_NOT)]
        tested, n = int(learned["p"].notna().sum()), learned["n"].max()
        return Target("real patients: smallest permutation p of a learned feature set's ARI vs diagnosis, "
                      "Bonferroni-corrected", cl.learned_p(real), "<", 0.05, n=n,
                      test=f"permutation, Bonferroni over {tested} rows")
