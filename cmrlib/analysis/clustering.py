"""Notebook 08's steps: HeartMAE's section 4.5 on the run's subjects (a condition against healthy subjects in equal
numbers, each feature set clustered raw and sex-adjusted, the clusters against disease and sex, LAEF across the two
main clusters, a UMAP), and the real patients' feature sets clustered against ACDC's diagnoses."""
from __future__ import annotations

from typing import ClassVar

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..stats import not_testable
from ..study import Study
from ..utils import seed_for
from . import clusters as cl

SEGMENTATION = "segmentation measures"
PREFERRED = "HeartMAE"  # the feature set of the paper's figures when notebook 06 wrote it


def clustered(ari: pd.DataFrame) -> bool:
    """Whether any feature set was clustered (an ARI table of notes only has nothing to draw)."""
    return bool(ari["ARI vs sex"].notna().any())


class Clustering(Study):
    """Notebook 08: `subjects`, `features`, `clusters`, `clustermaps`, `laef`, `umap`, `real_patients`, `checks`."""

    method = "clustering"
    number = "08"
    PARAMS: ClassVar[dict] = {
        **Study.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "case": "af",                # the condition flag clustered against healthy subjects
        "ks": [2, 3, 4, 5, 6],       # cluster counts compared by silhouette
        "min_per_group": 3,          # fewer cases than this: every diseased subject is clustered against healthy ones
        "n_perm": 1000,              # relabellings of the real patients' diagnoses for the ARI's permutation null
        "threads": 1,                # torch CPU threads for the segmentation
    }

    def subjects(self) -> pd.DataFrame:
        """Every `case` subject and as many healthy ones drawn with the run's seed (every diseased subject when
        there are too few); subjects by disease and sex."""
        p = self.p
        s = self.store.manifest().drop_duplicates("subject").reset_index(drop=True)
        s["healthy"] = s["condition"] == "healthy"
        s["diseased"] = ~s["healthy"]
        seed = seed_for(p["seed"], "08", "subset")
        self.case, self.case_name = p["case"], str(p["case"]).upper()
        try:
            chosen = cl.balanced_subset(s, self.case, "healthy", seed, p["min_per_group"])
        except cl.ClusterError as e:
            print(f"{e}: clustering every diseased subject against healthy ones instead")
            chosen = cl.balanced_subset(s, "diseased", "healthy", seed, 1)
            self.case, self.case_name = "diseased", "any condition"
        chosen["disease"] = chosen[self.case].map({True: self.case_name, False: "healthy"})
        self.chosen = chosen
        return chosen.groupby(["disease", "sex"]).size().unstack(fill_value=0)

    def features(self) -> dict[str, tuple]:
        """The segmentation Predictor's Table-1 measures of the chosen subjects (a SAX stack at its ED and ES, 2CH
        and 4CH at every frame, as notebook 04's) and each HeartMAE-family model's subject features from notebook
        06; their shapes."""
        with self.nb.timer("Table-1 measures"):  # notebook 06's expert features segmented them: read, not redone
            meas = self.table1_measures(self.store, self.chosen["subject"])
        self.auto = meas.drop(columns="error_auto", errors="ignore").rename(columns=lambda c: c.removesuffix("_auto"))
        self.sets = {SEGMENTATION: self.auto}
        for f in sorted((self.nb.run_dir / "06").glob("subject_features_*.csv")):
            self.sets[f.stem.removeprefix("subject_features_")] = pd.read_csv(f).set_index("subject")
        self.chosen = self.chosen.set_index("subject").loc[self.auto.index]
        c = self.chosen
        self.tracks = pd.DataFrame({"disease": c["disease"], "sex": c["sex"], "age": c["age"],
                                    "LAEF": self.auto.get("LAEF")})
        self.first = PREFERRED if PREFERRED in self.sets else next(iter(self.sets))
        return {k: v.shape for k, v in self.sets.items()}

    def _adjusted(self, name: str, adjustment: str) -> pd.DataFrame:
        feats = self.sets[name].reindex(self.chosen.index)
        return cl.standardise(feats) if adjustment == "raw" else cl.sex_adjust(feats.dropna(axis=1),
                                                                              self.chosen["sex"])

    def clusters(self) -> pd.DataFrame:
        """Each feature set raw and sex-adjusted: the cluster count with the best silhouette and the ARI against
        disease and sex (written, with every silhouette)."""
        rows, sil_rows = [], []
        truths = {self.case_name: self.chosen["disease"], "sex": self.chosen["sex"]}
        for name in self.sets:
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
        self.ari = pd.DataFrame(rows).reindex(columns=["features", "adjustment", "k", "silhouette",
                                                       f"ARI vs {self.case_name}", "ARI vs sex", "note"])
        self.nb.table(self.ari, "rand_indices")
        if clustered(self.ari):
            self.nb.figure(cl.ari_figure(self.ari), "08_rand_indices", f"adjusted Rand index of each feature set's "
                           f"clusters against {self.case_name} and against sex, raw and sex-adjusted")
        self.nb.table(pd.concat(sil_rows, ignore_index=True) if sil_rows else
                      pd.DataFrame(columns=["k", "silhouette"]), "silhouette")
        return self.ari

    def clustermaps(self) -> None:
        """The paper's Fig. 3, S2 and S3: clustered heat maps of the first feature set, raw and sex-adjusted."""
        for adj in ("raw", "sex-adjusted") if len(self.chosen) >= 3 else ():
            fig = cl.clustermap(self._adjusted(self.first, adj), self.tracks,
                                f"{self.first}, {adj}: {self.case_name} and healthy subjects")
            self.nb.figure(fig, f"08_clustermap_{adj.split('-')[0]}", f"clustered heat map of the {self.first} "
                           f"({adj}) with disease, sex, age and LAEF tracks")
            plt.show()

    def laef(self) -> pd.DataFrame:
        """LAEF in the two main sex-adjusted clusters: a Mann-Whitney U test and the figure (written)."""
        x = self._adjusted(self.first, "sex-adjusted").to_numpy()
        two = cl.cluster(x, 2) if len(x) >= 2 else [0] * len(x)
        test = pd.DataFrame([cl.two_cluster_test(self.tracks["LAEF"], two)])  # its note: a cluster too small
        self.nb.table(test, "laef_clusters")
        fig, ax = plt.subplots(figsize=(4, 3.5), constrained_layout=True)
        laef = self.tracks.assign(cluster=two).dropna(subset=["LAEF"])  # a subject whose LA was not found
        if len(laef):
            sns.boxplot(data=laef, x="cluster", y="LAEF", hue="disease", ax=ax)
        else:
            ax.text(0.5, 0.5, "no subject with a measured LAEF", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlabel="cluster (sex-adjusted, k = 2)", ylabel="LAEF (%)")
        note = test["note"].iloc[0]
        ax.set_title(note or f"Mann-Whitney U p = {test['p'].iloc[0]:.3g}", fontsize=9)
        self.nb.figure(fig, "08_laef_clusters", "LAEF in the two main sex-adjusted clusters, by disease")
        return test

    def umap(self) -> None:
        """A UMAP of the first feature set coloured by sex, LV mass and disease (skipped, with why, when too few)."""
        x = self._adjusted(self.first, "raw")
        try:
            xy = cl.embed(x.to_numpy(), seed_for(self.p["seed"], "08", "umap"))
        except cl.ClusterError as e:
            print(f"UMAP skipped: {e}")
            return
        fig = cl.embedding_figure(xy, {"sex": self.chosen["sex"], "LV mass (g)": self.auto["LVM"].to_numpy(),
                                       "disease": self.chosen["disease"]}, self.first)
        self.nb.figure(fig, "08_umap", f"UMAP of the {self.first} coloured by sex, LV mass and disease")

    def real_patients(self) -> pd.DataFrame:
        """The real patients' feature sets (notebook 06) clustered against ACDC's diagnoses, raw and BSA-adjusted,
        with the permutation null (table and figure written); `StudySkipped` when 06 wrote none."""
        sets, subjects = cl.read_real(self.nb.run_dir)
        p = self.p
        self.real_ari = cl.real_diagnoses(sets, subjects, p["ks"], seed_for(p["seed"], "08", "real"), p["n_perm"])
        self.nb.table(self.real_ari, "real_ari")
        self.nb.figure(cl.real_figure(self.real_ari), "08_real_diagnoses", "ARI of each feature set's clusters "
                       "against ACDC's five diagnoses, raw and BSA-adjusted, beside the 95th percentile of its "
                       "permutation null")
        return self.real_ari

    PAPER_FIGURES = ("08_rand_indices",)

    @classmethod
    def paper_figures(cls, run_dir):
        """The clusters' ARI against disease and sex, raw and sex-adjusted, per feature set."""
        if (f := run_dir / "08" / "rand_indices.csv").exists() and clustered(ari := pd.read_csv(f)):
            yield "08_rand_indices", cl.ari_figure(ari)

    def headline_tables(self):
        """The clusters against disease and sex, and the real patients' against diagnosis."""
        yield "rand_indices", f"clusters ({self.case_name} against healthy): adjusted Rand index", None
        if getattr(self, "real_ari", None) is not None:
            yield "real_ari", "real patients' clusters against ACDC's diagnoses (ARI, permutation null)", None

    def checks(self) -> pd.DataFrame:
        """Every feature set clustered raw and adjusted, the sex adjustment lowering the ARI against sex, and on
        the real patients a learned feature set's clusters beyond the null."""
        first = self.ari[self.ari["features"] == self.first].set_index("adjustment")["ARI vs sex"]
        first = first.reindex(["raw", "sex-adjusted"])
        real = getattr(self, "real_ari", None)
        return self.targets([
            ("feature sets clustered raw and adjusted", int(self.ari["k"].notna().sum()), ">=", 2 * len(self.sets)),
            ("ARI vs sex, adjusted minus raw", first["sex-adjusted"] - first["raw"], "<=", 0.0),
            *([] if real is None else [("real patients: smallest permutation p of a learned feature set's ARI vs "
                                        "diagnosis", cl.learned_p(real), "<", 0.05)])])
