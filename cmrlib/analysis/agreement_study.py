"""Notebook 07's steps: every measure the method notebooks wrote against its reference in one long table, MAPSE
from the segmentation masks, the real SAX patients, Bland-Altman / ICC / CCC per cohort x measure x method, the
figures, the second-reader yardstick, method against method and bias by condition."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import pandas as pd

from ..predictor import SEGMENTER
from ..results import mean_target
from ..study import Study, StudySkipped
from ..utils import data_root
from . import agreement as ag

LAX_MASKS = "segmentation (LAX masks)"
MVNET = "MVnet 1+2+2"  # notebook 03's full MVnet: the valve measures' headline method
# the headline figure's method per measure, and the method-against-method pairs
HEADLINE_METHODS = {**{m: SEGMENTER for m in ("LVEDV", "LVESV", "LVEF", "LVM", "RVEF", "LAVmax")},
                    "MAPSE": MVNET, "e_prime": MVNET}
PAIRS = [("MAPSE", MVNET, LAX_MASKS), ("e_prime", MVNET, LAX_MASKS),
         ("LVEF", "ED/ES: TempReg-Net", "ED/ES: Segmentation (LV curve)"), ("LVEF", SEGMENTER, "HeartMAE")]
SHOWN = ["cohort", "measure", "method", "unit", "n", "bias", "bias_low", "bias_high", "loa_low", "loa_high", "icc2",
         "icc2_low", "icc2_high", "ccc", "mae", "slope", "note"]


@dataclass(frozen=True)
class Masked:
    """The valve measures from the long-axis masks in the long shape, the cines left out, the subjects measured."""

    rows: pd.DataFrame
    skipped: pd.DataFrame
    subjects: int


class Agreement(Study):
    """Notebook 07: one step per cell, its named pieces shared as cached properties (`outline()` lists both)."""

    method = "agreement"
    number = "07"
    CAPTIONS = ag.CAPTIONS
    GLANCE = dict(method="agreement", headline="LVEF MAE of the run's segmenter vs the reference (points)",
                  paper="– (none)", phantom=[], real=[["LVEF MAE", "real patients: segmenter LVEF MAE*"]])
    PARAMS: ClassVar[dict] = {
        **Study.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "mask_mapse": True,          # MAPSE, s', e', a' from 01's long-axis masks on 03's subjects (needs 01's models)
        "min_n": 3,                  # pairs a statistic needs; groups with fewer keep a row with the reason
        "real_patients": True,       # the real SAX cohort (acdc-cine/ under the data root): volumes, EF and ED/ES frames
        "real_per_group": None,      # only the first real SAX patients of each diagnosis (None: all 64)
        "data_dir": None,            # real-data root; None: $CMRLIB_DATA (the real section is skipped when absent)
        "threads": 1,                # torch CPU threads for the long-axis segmentation
    }

    @cached_property
    def collected(self) -> pd.DataFrame:
        """The long table (subject x measure x method with its reference) of every notebook's measures."""
        with self.nb.timer("collect"):
            return ag.collect(self.nb.run_dir)

    def collect(self) -> pd.DataFrame:
        """Subjects and measures per cohort and method."""
        long = self.collected
        print(f"{len(long)} rows from {long['method'].nunique()} methods, {long['measure'].nunique()} measures")
        return long.groupby(["cohort", "method"]).agg(subjects=("subject", "nunique"), measures=("measure", "nunique"))

    def _segmenter(self):
        """The run's segmentation Predictor, or None (printed: why) when this run has none."""
        if not self._segmentation_file.exists():
            print(f"{self._segmentation_file.name}: absent (notebook 01 has not run on this folder)")
            return None
        return self.segmentation()

    @cached_property
    def mask_rows(self) -> Masked:
        """MAPSE and the annulus velocities from the segmenter's long-axis masks on notebook 03's subjects, in the
        long shape, and the cines left out; `StudySkipped` when off or without 03 or 01."""
        clinical = self.nb.run_dir / "03" / "clinical_subjects.csv"
        seg = self._segmenter() if self.p["mask_mapse"] and clinical.exists() else None
        if seg is None or "LAX" not in seg.nets:
            raise StudySkipped("MAPSE from masks: " + ("turned off" if not self.p["mask_mapse"] else
                                                       "no notebook 03 results in this run" if not clinical.exists()
                                                       else "no long-axis segmenter in this run"))
        store, subj = self.store, pd.read_csv(clinical)
        known = set(store.ids())
        ids = [cid for s in subj["subject"] for cid in (f"{s}_2CH", f"{s}_4CH") if cid in known]
        with self.nb.timer("long-axis segmentation + hinge points"):
            masks = {cid: seg.labels(store.read(cid)) for cid in ids}
            mask_table, skipped = ag.mask_mapse(store, masks)
        cond = self.collected.drop_duplicates("subject").set_index("subject")["condition"].to_dict()
        both = subj.merge(mask_table.add_suffix("_mask").rename(columns={"subject_mask": "subject"}), on="subject")
        return Masked(ag.from_columns(both, {"mask": LAX_MASKS}, "phantom", "observer 1", cond), skipped,
                      len(mask_table))

    @cached_property
    def measures(self) -> pd.DataFrame:
        """Every notebook's measures with the mask-derived valve measures where there are some (written: what
        notebook 09 and the report read)."""
        masked = self.optional("mask_rows")
        long = self.collected if masked is None else pd.concat([self.collected, masked.rows], ignore_index=True)
        self.nb.table(long, "measures")
        return long

    def mask_mapse(self) -> pd.DataFrame:
        """The cines the mask-derived measures left out; `StudySkipped` when off or without 03 or 01."""
        _ = self.measures  # written with or without the mask rows
        masked = self.mask_rows
        print(f"{masked.subjects} subjects measured from masks; {len(masked.skipped)} cine(s) left out")
        return masked.skipped

    @cached_property
    def real_rows(self) -> pd.DataFrame:
        """The real SAX cohort's volumes, EF and ED/ES frames against ACDC's reference, each segmenter only on
        patients it never trained on (written); `StudySkipped` when off or without the cohort."""
        if not self.p["real_patients"]:
            raise StudySkipped("real patients turned off (real_patients=False)")
        with self.nb.timer("real patients"):
            real = ag.real_sax_from_run(self.nb.run_dir, data_root(self.p["data_dir"]), self.p["seed"],
                                        self._segmenter(), self.phantom_segmenter,
                                        per_group=self.p["real_per_group"])
        self.nb.table(real, "real_long")
        return real

    @cached_property
    def long(self) -> pd.DataFrame:
        """Every measure the statistics read: the notebooks', the masks' and the real patients'."""
        real = self.optional("real_rows")
        return self.measures if real is None else pd.concat([self.measures, real], ignore_index=True)

    def real_patients(self) -> pd.DataFrame:
        """The real patients per method and the ED/ES frame differences (written)."""
        real = self.real_rows
        print(real.groupby("method").subject.nunique().rename("patients").to_string())
        frames = ag.frame_differences(real)
        self.nb.table(frames, "real_frames")
        return frames

    @cached_property
    def summary(self) -> pd.DataFrame:
        """Bias, limits of agreement, ICC(2,1), CCC and MAE per cohort x measure x method (written)."""
        with self.nb.timer("statistics"):
            summary = ag.summarise(self.long, min_n=self.p["min_n"])
        self.nb.table(summary, "agreement")
        return summary

    def statistics(self) -> pd.DataFrame:
        """The headline measures' agreement rows."""
        return self.summary[self.summary["measure"].isin(ag.HEADLINE)][SHOWN]

    def figures(self) -> None:
        """ICC heat maps (phantom, ACDC) and the headline regression and Bland-Altman panels."""
        s = self.summary
        self.figure(ag.icc_heatmap(s, "phantom"), "07_icc_phantom")
        if (s["cohort"] == "acdc").any():
            self.figure(ag.icc_heatmap(s, "acdc"), "07_icc_acdc")
        self.figure(ag.headline_figure(self.long, HEADLINE_METHODS, "phantom"), "07_headline")

    def real_statistics(self) -> pd.DataFrame:
        """The real patients' figure and statistics; `StudySkipped` without them."""
        if self.optional("real_rows") is None:
            raise StudySkipped("no real patients in this run (see the real-patients step)")
        s = self.summary
        self.figure(ag.real_figure(self.long), "07_real")
        return s[s["cohort"] == ag.REAL_COHORT][[c for c in SHOWN if c not in ("cohort", "ccc", "slope")]]

    def comparisons(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Each method's limits of agreement against the second observer's (the yardstick) and method against
        method on the same subjects (both written)."""
        yard = ag.yardstick(self.summary)
        self.nb.table(yard, "yardstick")
        mvm = ag.method_vs_method(self.long, PAIRS)
        self.nb.table(mvm, "method_vs_method")
        cols = ["measure", "method_a", "method_b", "n", "bias", "loa_low", "loa_high", "icc2", "ccc", "note"]
        return yard, mvm[cols] if len(mvm) else mvm

    def by_condition(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Bias per condition (written); the headline methods' bias and n by condition on the phantom."""
        cond = ag.by_condition(self.long, min_n=self.p["min_n"])
        self.nb.table(cond, "by_condition")
        shown = cond[cond["measure"].isin(["LVEF", "LVEDV", "MAPSE", "e_prime"]) & (cond["cohort"] == "phantom")
                     & cond["method"].isin([SEGMENTER, MVNET, LAX_MASKS])]
        return tuple(shown.pivot_table(index=["measure", "method"], columns="condition", values=v)
                     for v in ("bias", "n"))

    PAPER_FIGURES = ("07_icc_phantom", "07_headline")

    @classmethod
    def paper_figures(cls, run_dir):
        """ICC of every measure and method, and the headline measures' regression and Bland-Altman panels."""
        if (f := run_dir / "07" / "agreement.csv").exists():
            yield "07_icc_phantom", ag.icc_heatmap(pd.read_csv(f), "phantom")
            yield "07_headline", ag.headline_figure(pd.read_csv(run_dir / "07" / "measures.csv"), HEADLINE_METHODS,
                                                    "phantom")

    def headline_tables(self):
        """The headline measures' agreement with their reference, every cohort."""
        d = self.summary[self.summary["measure"].isin(ag.HEADLINE)]
        cols = ["cohort", "measure", "method", "n", "bias", "loa_low", "loa_high", "icc2", "ccc", "mae"]
        yield "headline_agreement", "agreement with the reference, headline measures", d[cols].round(3)

    def checks(self) -> pd.DataFrame:
        """Every headline measure has an agreement row with a statistic on the phantom; on the real patients, each
        segmenter's LVEF within 6 points of the reference on average."""
        s = self.summary
        ph = s[(s["cohort"] == "phantom") & s["icc2"].notna()] if "icc2" in s else s.iloc[:0]
        covered = len(set(ph["measure"]) & set(ag.HEADLINE))
        real = self.optional("real_rows")
        real = real[(real.measure == "LVEF") & real.method.str.endswith(", full field")].dropna(
            subset=["value", "reference"]) if real is not None else pd.DataFrame(columns=["method"])
        return self.targets([("headline measures with an agreement row", covered, ">=", len(ag.HEADLINE)),
                             *[mean_target(f"real patients: segmenter LVEF MAE vs the reference (points; "
                                           f"{method.removesuffix(', full field')})",
                                           (g.value - g.reference).abs(), "<=", 6.0)
                               for method, g in real.groupby("method", sort=False)]])
