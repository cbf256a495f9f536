"""How CUSSP's forest reads its SAX stacks, screened on validation only (not a speed bench): the Table-1 measures of
notebook 04's labelled subjects read by the run's segmenter as its Predictor ships it (mirrored, round the heart) and
plainly (each frame once, unmirrored, round the frame's centre), each through the notebook's own forest (the same
random search on the training split), scored on the validation split. Test subjects are never scored.

Usage: python bench/screen_forest_reading.py RUN_DIR
RUN_DIR holds notebooks 00, 01 and 04 of the default profile (04's patches and labelled subjects are reused).
Prints a row per reading as it is scored: validation ROC-AUC, the validation cines and the seconds the reading took.
"""
from __future__ import annotations

import sys
import time

import pandas as pd
from sklearn.metrics import roc_auc_score

from cmrlib import runner
from cmrlib.methods.cussp import Study
from cmrlib.methods.cussp.evaluate import fit_forest, per_bsa, segmented_measures
from cmrlib.utils import seed_for


def validation_auc(study: Study, reading: str) -> dict:
    """The forest's validation ROC-AUC on the measures read one way."""
    c, seg = study.labelled_cohort, study.segmentation()
    find = (seg.plain() if reading == "plain" else seg).labels
    t0 = time.perf_counter()
    measures = segmented_measures(c.stores, c.manifest, c.labels.subject, find, study.patches.lax_cache)
    seconds = time.perf_counter() - t0
    forest, _ = fit_forest(c.labels, per_bsa(measures, c.manifest), study.inputs.splits, int(study.p["rf_iter"]),
                           seed_for(study.p["seed"], "cussp", "rf"))
    valid = forest.data["valid"]
    auc = roc_auc_score(valid.mr.to_numpy(), forest.model.predict_proba(forest.Xs["valid"])[:, 1])
    return dict(reading=reading, valid_roc_auc=round(float(auc), 3), valid=len(valid), valid_mr=int(valid.mr.sum()),
                seconds=round(seconds))


def main(run_dir: str) -> None:
    p = Study.parameters(runner.load_profile("default"), "default")
    p.update(run_dir=run_dir, figures_dir=f"{run_dir}/screen_figures")
    study = Study(p)
    for reading in ("shipped", "plain"):  # one row as each reading is scored
        print(pd.DataFrame([validation_auc(study, reading)]).to_string(index=False), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
