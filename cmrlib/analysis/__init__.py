"""The analysis layer across methods, read from a run folder only: agreement (notebook 07's Study in
`agreement_study`), clustering (08's in `clustering_study`), the report and figure index (09's in `figures_study`).

`RUN_FILES` is the run folder's contract: what each notebook hands to the analysis. The analysis reads nothing
else of a notebook's folder (`tests/test_contract.py` reads the code and fails when it names another file).
"""
from . import agreement, clusters, report

EVERY = ("measures_long.csv", "targets.csv", "figures.json", "headlines.json", "glance.json")  # any notebook
# (headlines.json: the tables a notebook lists for the report, read by name from its own folder; glance.json: its
# row of the README's results table)
RUN_FILES = {
    "01": ("measures_phantom.csv", "acdc", "models/seg_sax.model", "crossfit.json", "models/seg_sax_real_fold*.model"),
    # ACDC's store (its training split), the phantom-only SAX model, the cross-fitted SAX models and their folds
    "02": ("afd_table.csv",),
    "03": ("spatial_frames.csv", "conventions.csv", "clinical_subjects.csv"),
    "06": ("subject_features_*.csv", "real_subject_features_*.csv", "real_subjects.csv"),  # the real patients' too
    "07": ("agreement.csv", "measures.csv"),
    "08": ("rand_indices.csv",),
}  # besides run.json, cohort/ (the store), real_sax/ (the real SAX cohort), predictors/ (the methods' Predictors),
# table1/ (the segmentation Predictor's Table-1 measures of a store's subjects, a cache: `Study.table1_measures`)
# and labels/ (every cine's labels by each network that read it, a cache: `segmentation.stored`)

__all__ = ["agreement", "clusters", "report", "EVERY", "RUN_FILES"]
